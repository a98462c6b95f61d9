"""Writing inside an output folder: files that appear only when complete, and never through a link.

The one atomic-write helper of the project: shards, state files and manifests (facedeg), checkpoints,
logs, sample grids and restored images (hifacegan) all go through here. An output folder (OUT) is the
user's choice and may itself be a symbolic link; below it nothing is followed:

- folders between OUT and a file are checked with ``lstat`` and created one level at a time: a symbolic
  link (or a non-folder) there is refused with :class:`OutputError`, one line naming it;
- new files are created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a name unique to the call
  (``<name>.<12 hex digits>.tmp``), fsynced and renamed over the target: a link planted at the target's
  name is replaced, never written through; lock files and logs are opened with ``O_NOFOLLOW``;
- a temporary is removed on any error, even when closing it fails (a full disk), and only names of that
  unique pattern are ever cleaned up as leftovers (a user's ``dataset.json.tmp`` is left alone).

>>> import tempfile
>>> out = Path(tempfile.mkdtemp())
>>> write_atomic(out / "sub" / "a.json", b"{}", root=out)
>>> sorted(p.name for p in (out / "sub").iterdir())
['a.json']
>>> tmp_target("a.json.0123456789ab.tmp"), tmp_target("a.json.tmp")
('a.json', None)
"""

from __future__ import annotations

import errno
import os
import re
import stat
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from facedeg.errors import FacedegError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMP_RE = re.compile(r"^(.+)\.[0-9a-f]{12}\.tmp$")


class OutputError(FacedegError):
    """Writing into an output folder would follow a symbolic link, or meets something that is not ours."""


def shown(name: object) -> str:
    """``name`` printable on any terminal: bytes of a file name that are not UTF-8 as ``\\xNN``.

    >>> shown("bad\\udcffname.png")
    'bad\\\\xffname.png'
    """
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def tmp_target(name: str) -> str | None:
    """The file a temporary of :func:`atomic_file` becomes (``x.tar`` for ``x.tar.1a2b3c4d5e6f.tmp``);
    None for any other name."""
    m = _TMP_RE.match(name)
    return m.group(1) if m else None


def _link_error(path: Path) -> OutputError:
    return OutputError(f"{shown(path)}: is a symbolic link; refusing to write through it "
                       "(remove it, or choose another output folder)")


def check_parents(path: Path, root: Path | None) -> None:
    """Refuse when a folder between ``root`` (excluded) and ``path`` (excluded) is a symbolic link or not a
    folder; missing ones are fine (:func:`makedirs` creates them). Nothing is checked without ``root``."""
    if root is None:
        return
    try:
        parts = Path(path).relative_to(root).parts[:-1]
    except ValueError:
        raise OutputError(f"{shown(path)}: lies outside the output folder {shown(root)}") from None
    here = Path(root)
    for part in parts:
        here = here / part
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise _link_error(here)
        if not stat.S_ISDIR(mode):
            raise OutputError(f"{shown(here)}: exists and is not a folder")


def makedirs(path: Path, root: Path | None) -> None:
    """``mkdir -p path`` below ``root`` without following a symbolic link (``root`` itself may be one)."""
    path = Path(path)
    if root is None:
        path.mkdir(parents=True, exist_ok=True)
        return
    check_parents(path / "_", root)
    here = Path(root)
    for part in path.relative_to(root).parts:
        here = here / part
        try:
            os.mkdir(here)
        except FileExistsError:
            mode = os.lstat(here).st_mode
            if stat.S_ISLNK(mode):
                raise _link_error(here) from None
            if not stat.S_ISDIR(mode):
                raise OutputError(f"{shown(here)}: exists and is not a folder") from None


def open_nofollow(path: Path, flags: int, root: Path | None = None, mode: int = 0o644) -> int:
    """``os.open`` of a regular file that refuses a symbolic link at ``path`` or between ``root`` and it
    (:class:`OutputError`, one line naming the link) instead of following it."""
    check_parents(path, root)
    try:
        fd = os.open(path, flags | _NOFOLLOW | _CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP or (e.errno == errno.EEXIST and os.path.islink(path)):
            raise _link_error(Path(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputError(f"{shown(path)}: exists and is not a regular file")
    return fd


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory fds
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_file(path: Path, root: Path | None = None, durable: bool = True) -> Iterator[IO[bytes]]:
    """Write ``path`` whole or not at all: into ``path.<random>.tmp`` (new, never a link), fsynced and
    renamed over ``path`` (a link there is replaced, not followed). On any error the temporary is removed,
    even when closing it fails. The name is new for every call, so two writers of one file (an orphaned
    worker of a killed build and the rerun) never share or rename each other's half-written file.
    ``root``: the output folder; no folder between it and ``path`` may be a link. ``durable=False`` skips
    the fsyncs (progress files that only matter while the process runs)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    f = os.fdopen(open_nofollow(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, root, 0o644), "wb")
    try:
        yield f
        f.flush()
        if durable:
            os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        if durable:
            fsync_dir(path.parent)
    except BaseException:
        with suppress(OSError):
            f.close()  # flushing the last bytes onto a full disk fails: the file must still go
        with suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes, root: Path | None = None) -> None:
    """:func:`atomic_file` for bytes at hand, creating missing folders below ``root``."""
    makedirs(Path(path).parent, root)
    with atomic_file(path, root) as f:
        f.write(data)


def remove_leftovers(folder: Path, ours: Callable[[str], bool] = lambda target: True) -> None:
    """Remove the temporaries of :func:`atomic_file` (unique pattern only) in ``folder`` whose target name
    ``ours`` accepts: what a killed or failed run left. A link is unlinked, never followed."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    for name in names:
        target = tmp_target(name)
        if target is not None and ours(target):
            with suppress(FileNotFoundError):
                os.unlink(Path(folder) / name)


def file_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a regular file (None when it can be opened for reading): no such
    file, a folder, a FIFO or other special file, a symbolic link loop, permission denied.

    >>> file_problem("/nonexistent/x.png")
    'no such file'
    """
    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken symbolic link" if os.path.islink(path) else "no such file"
        if e.errno == errno.EACCES:
            return "permission denied"
        return e.strerror or str(e)
    if stat.S_ISDIR(st.st_mode):
        return "is a directory"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "a device"
        return f"{kind}, not a regular file"
    return None
