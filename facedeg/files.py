"""Files that appear only when complete: write to a unique temporary name, fsync, rename, fsync the folder.

The one atomic-write helper of the project: shards, state files and manifests (facedeg) and training
checkpoints (hifacegan) all go through :func:`atomic_file`.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

_TMP_RE = re.compile(r"^(.+?)(\.[0-9a-f]{12})?\.tmp$")


def tmp_target(name: str) -> str | None:
    """The file a temporary file of :func:`atomic_file` becomes (``x.tar`` for ``x.tar.1a2b3c4d5e6f.tmp``)."""
    m = _TMP_RE.match(name)
    return m.group(1) if m else None


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
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """Open ``path.<random>.tmp`` for writing; on success fsync it and rename it to ``path``; on error
    remove it. The name is new for every call, so two writers of one file (an orphaned worker of a killed
    build and the rerun) never share or rename each other's half-written file; ``"xb"`` never follows a
    leftover symlink."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    f = open(tmp, "xb")
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
