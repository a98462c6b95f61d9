"""Finding build inputs: a folder, a list file, tar shards of HQ images, one image, or the bundled samples.

Every input becomes a :class:`Source` whose ``rel`` is its path relative to the input root (POSIX
slashes; ``shard.tar/member.png`` for tar members). Sources are sorted by ``rel``, so the order, and
with it every key and seed, never depends on the file system's listing order.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from braceexpand import braceexpand

from facedeg.errors import BuildError, ImageError
from facedeg.files import file_problem, shown
from facedeg.imread import IMAGE_EXTENSIONS, read_bytes


@dataclass(frozen=True)
class Source:
    """One input image: a file (``offset`` -1) or a member of a tar file (bytes at ``offset``)."""

    rel: str
    path: str  # absolute: Dask workers may run in another working directory
    size: int
    offset: int = -1
    mtime_ns: int = 0  # of the file (or its tar), to notice inputs edited in place between runs

    def read(self) -> bytes:
        """The source's bytes; :class:`ImageError` (naming ``rel``) when unreadable."""
        if self.offset < 0:
            return read_bytes(self.path, self.rel)
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read(self.size)
        except OSError as e:
            raise ImageError(f"{self.rel}: unreadable ({e.strerror or e})") from None
        if len(data) != self.size:
            raise ImageError(f"{self.rel}: tar member is cut short ({len(data)} of {self.size} bytes)")
        return data


@dataclass(frozen=True)
class Inputs:
    kind: str  # "samples" | "folder" | "list" | "tar" | "file"
    root: str  # what the user gave (absolute), for the report only
    sources: tuple[Source, ...]
    #: entries rejected while listing (duplicates), as {"source", "reason"}
    rejected: tuple[dict, ...] = ()

    def fingerprint(self) -> str:
        """sha256 over every source's relative path and byte size, and the rejected entries (no file is read)."""
        h = hashlib.sha256()
        for s in self.sources:
            h.update(f"{s.rel}\t{s.size}\n".encode("utf-8", "surrogateescape"))
        for r in self.rejected:
            h.update(f"{r['source']}\t{r['reason']}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def stamp(self) -> str:
        """Like :meth:`fingerprint` but with modification times: changes when a file is rewritten with
        the same name and size. Kept out of the manifest (mtimes are not part of the data)."""
        h = hashlib.sha256()
        for s in self.sources:
            h.update(f"{s.rel}\t{s.size}\t{s.mtime_ns}\n".encode("utf-8", "surrogateescape"))
        return h.hexdigest()

    def without_unreadable(self) -> Inputs:
        """Move sources that are empty, missing or not files to ``rejected`` (known from ``stat`` alone),
        so that they take no place in the train/val split."""
        keep, rejected = [], list(self.rejected)
        for s in self.sources:
            if s.offset < 0 and s.size <= 0:
                reason = "empty file" if s.size == 0 else file_problem(s.path) or "unreadable"
                rejected.append({"source": s.rel, "reason": reason})
            else:
                keep.append(s)
        return Inputs(self.kind, self.root, tuple(keep), tuple(rejected))


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _file_source(rel: str, path: Path) -> Source:
    path = path.absolute()
    try:
        st = path.stat()
    except OSError:
        return Source(rel, str(path), -1)
    return Source(rel, str(path), st.st_size if stat.S_ISREG(st.st_mode) else -1, mtime_ns=st.st_mtime_ns)


def discover(spec: str | None) -> Inputs:
    """Resolve ``--input``: None (bundled samples), a folder, a list file, a tar pattern or one image."""
    if spec is None:
        from facedeg.samples import sample_paths

        paths = sample_paths()
        if not paths:
            raise BuildError("no bundled sample faces found; give --input")
        root = paths[0].parent
        return Inputs("samples", str(root), tuple(_file_source(p.name, p) for p in paths))
    text = str(spec)
    path = Path(text)
    if path.is_dir():  # before the tar test: a folder may be called "x.tar" or "photos{1}"
        return _folder_inputs(path)
    if "{" in text or text.lower().endswith(".tar"):
        return _tar_inputs(text)
    if path.is_file():
        if is_image_name(path.name):
            return Inputs("file", str(path.absolute()), (_file_source(path.name, path),))
        return _list_inputs(path)
    raise BuildError(f"--input: {text} does not exist")


def _folder_inputs(root: Path) -> Inputs:
    sources, rejected = [], []

    def unreadable(e: OSError) -> None:  # a subfolder we may not list: say so instead of dropping it
        rel = Path(e.filename).relative_to(root).as_posix() + "/"
        rejected.append({"source": rel, "reason": f"unreadable folder ({e.strerror or e})"})

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames.sort()
        for name in filenames:
            if is_image_name(name):
                p = Path(dirpath) / name
                sources.append(_file_source(p.relative_to(root).as_posix(), p))
    if not sources:
        raise BuildError(f"--input: no image files ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}) under {root}")
    rejected.sort(key=lambda r: r["source"])
    return Inputs("folder", str(root.absolute()), tuple(sorted(sources, key=lambda s: s.rel)), tuple(rejected))


def _list_inputs(list_file: Path) -> Inputs:
    try:  # entries are file names: bytes that are not UTF-8 are kept as Python keeps them in names
        lines = read_bytes(list_file).decode("utf-8", "surrogateescape").splitlines()
    except ImageError as e:
        raise BuildError(f"--input: cannot read list file {e}") from None
    base = list_file.absolute().parent
    seen: dict[str, Source] = {}
    rejected = []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        p = Path(entry).expanduser()
        p = p if p.is_absolute() else base / p
        try:
            rel = p.relative_to(base).as_posix()
        except ValueError:
            rel = p.as_posix()
        rel = os.path.normpath(rel).replace(os.sep, "/")
        if rel in seen:
            rejected.append({"source": rel, "reason": "listed more than once (later entries ignored)"})
            continue
        seen[rel] = _file_source(rel, p)
    if not seen:
        raise BuildError(f"--input: list file {list_file} names no files")
    sources = tuple(sorted(seen.values(), key=lambda s: s.rel))
    return Inputs("list", str(list_file.absolute()), sources, tuple(rejected))


def _tar_inputs(pattern: str) -> Inputs:
    paths = [Path(p) for p in braceexpand(pattern)]
    problems = [(p, why) for p in paths if (why := file_problem(p))]
    if problems:
        (first, why), more = problems[0], len(problems) - 1
        raise BuildError(f"--input: tar file {shown(first)}: {why}" + (f" (and {more} more)" if more else ""))
    sources: list[Source] = []
    rejected: list[dict] = []
    seen: set[str] = set()
    for path in paths:
        try:
            with tarfile.open(path, mode="r:") as tar:
                members = [m for m in tar.getmembers() if m.isfile() and is_image_name(m.name)]
        except (OSError, tarfile.TarError) as e:
            raise BuildError(f"--input: {path} is not a readable tar file ({e})") from None
        if any(".hq." in m.name.rsplit("/", 1)[-1] for m in members):  # paired shards: take the HQ side only
            members = [m for m in members if ".hq." in m.name.rsplit("/", 1)[-1]]
        mtime = path.stat().st_mtime_ns
        for m in members:  # a name seen before (twice in one tar, or in two tars of one name) is not used again
            rel = f"{path.name}/{m.name}"
            if rel in seen:
                rejected.append({"source": rel, "reason": "member name appears more than once (later copies ignored)"})
                continue
            seen.add(rel)
            sources.append(Source(rel, str(path.absolute()), m.size, m.offset_data, mtime))
    if not sources:
        raise BuildError(f"--input: no image members in {pattern}")
    rejected.sort(key=lambda r: r["source"])
    return Inputs("tar", str(Path(pattern).absolute()), tuple(sorted(sources, key=lambda s: s.rel)), tuple(rejected))
