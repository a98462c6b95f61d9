"""One process at a time per folder: an advisory ``flock`` on a lock file inside it.

Used by ``facedeg build`` (one build per OUT) and ``hifacegan train`` (one trainer per run folder). The
lock belongs to the process that holds it, so the OS releases it when that process ends or is killed: a
killed job can be resumed at once. The file records who holds it and is removed on release.

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
from typing import IO

_TRIES = 10


class LockBusy(Exception):
    """Another process holds the lock; ``holder`` says which (``pid N on HOST``) when it could be read."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class FolderLock:
    """Take the lock at ``path`` now (LockBusy if another process has it; OSError if the file cannot be
    created); hold it until :meth:`release` or the end of a ``with`` block."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = self._acquire()

    def _acquire(self) -> IO[str]:
        for _ in range(_TRIES):
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (closed by release)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "another process"
                f.close()
                raise LockBusy(holder) from None
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file just before we locked it: lock the new one
                f.seek(0)
                f.truncate()
                f.write(f"pid {os.getpid()} on {platform.node()}\n")
                f.flush()
                return f
            f.close()
        raise LockBusy("another process (its lock file keeps being replaced)")

    def release(self) -> None:
        """Remove the file, then let go (while it is still held nobody can take the removed file)."""
        if self._file is None:
            return
        with suppress(OSError):
            self.path.unlink()
        self._file.close()
        self._file = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
