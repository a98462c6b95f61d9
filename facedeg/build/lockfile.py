"""One process at a time per folder: an advisory ``flock`` on a lock file inside it.

Used by ``facedeg build`` (one build per OUT) and ``hifacegan train`` (one trainer per run folder). The
lock belongs to the process that holds it, so the OS releases it when that process ends or is killed: a
killed job can be resumed at once. The file records who holds it and is removed on release. It is
opened without following links (:func:`facedeg.files.open_nofollow`): a symbolic link planted at its
name is refused, never written through.

>>> import tempfile
>>> from pathlib import Path
>>> path = Path(tempfile.mkdtemp()) / ".lock"
>>> with FolderLock(path):
...     try:
...         FolderLock(path)
...     except LockBusy as busy:
...         print("busy:", busy.holder.startswith("pid "))
busy: True
>>> path.exists()
False
"""

from __future__ import annotations

import fcntl
import os
import platform
from contextlib import suppress
from pathlib import Path

from facedeg.files import open_nofollow

_TRIES = 10


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` says which (``pid N on HOST``) when it could be read."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class FolderLock:
    """Take the lock at ``path`` now (LockBusy if another process has it; OutputError if ``path`` is a
    symbolic link; OSError if the file cannot be created); hold it until :meth:`release` or the end of a
    ``with`` block."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd: int | None = self._acquire()

    def _acquire(self) -> int:
        for _ in range(_TRIES):
            fd = open_nofollow(self.path, os.O_RDWR | os.O_CREAT)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
                os.close(fd)
                raise LockBusy(holder) from None
            try:
                same = os.fstat(fd).st_ino == os.lstat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file just before we locked it: lock the new one
                with suppress(OSError):  # who holds it is for messages only: a full disk must not stop us
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"pid {os.getpid()} on {platform.node()}\n".encode(), 0)
                return fd
            os.close(fd)
        raise LockBusy("another process (its lock file keeps being replaced)")

    def release(self) -> None:
        """Remove the file, then let go (while it is still held nobody can take the removed file)."""
        if self._fd is None:
            return
        with suppress(OSError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
