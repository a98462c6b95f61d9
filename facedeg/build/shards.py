"""Shard format v1: deterministic tar writing, atomic files, the manifest and the wids index.

A shard is a plain (ustar) tar whose members carry fixed metadata (mtime 0, uid/gid 0, empty owner
names, mode 0o444) in the order they were added, so equal content gives equal bytes. Files become
visible under their final name only when complete: they are written as ``*.tmp``, fsynced and renamed.

>>> import io, tarfile
>>> buf = io.BytesIO()
>>> with ShardWriter(buf) as w:
...     w.add("00000001", {"json": b"{}"})
>>> tarfile.open(fileobj=io.BytesIO(buf.getvalue())).getnames()
['00000001.json']
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from facedeg.codec import decode
from facedeg.errors import BuildError
from facedeg.files import atomic_file

FORMAT_NAME = "facedeg-shards"
FORMAT_VERSION = 1
MANIFEST = "dataset.json"
SPLITS = ("train", "val")
#: The members of a sample, by role: the member suffixes readers accept, the writer's choice first (the
#: HQ may be stored as JPEG/WebP when a build asks; LQ is always lossless). Writer (``task.py``),
#: ``verify.py`` and hifacegan's loader all read this table: a new member is one line here.
MEMBERS: dict[str, tuple[str, ...]] = {
    "hq": ("hq.png", "hq.jpg", "hq.webp"),
    "lq": ("lq.png",),
    "json": ("json",),
    # optional: the image the plan started from, stored only when the HQ alone cannot rebuild the LQ
    # (a step touched the HQ after the LQ's chain began: Plan.replays_from_hq); replay starts there
    "src": ("src.png",),
}
#: Roles every sample has.
REQUIRED = ("hq", "lq", "json")
HQ_EXTENSIONS = MEMBERS["hq"]
LQ_MEMBER = MEMBERS["lq"][0]
JSON_MEMBER = MEMBERS["json"][0]
SRC_MEMBER = MEMBERS["src"][0]
#: Every suffix a reader keeps; anything else in a shard (a pickle, say) is never read.
MEMBER_SUFFIXES = frozenset(s for suffixes in MEMBERS.values() for s in suffixes)

_KEY_RE = re.compile(r"^[0-9]{8}(_f[0-9]+)?(_[0-9]+)?$")
_SUFFIX_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
_SHARD_RE = re.compile(r"^(train|val)-[0-9]{6}\.tar$")


def shard_name(split: str, index: int) -> str:
    """``train-000003.tar`` style file name (never a path)."""
    if split not in SPLITS:
        raise BuildError(f"unknown split {split!r}")
    return f"{split}-{index:06d}.tar"


def is_shard_name(name: str) -> bool:
    return bool(_SHARD_RE.match(name))


def sample_key(index: int, variant: int | None = None) -> str:
    """``00000012`` or ``00000012_3``: digits and one underscore, so no dots and no path separators
    (``--faces all`` builds insert the face: ``00000012_f1`` or ``00000012_f1_3``)."""
    return f"{index:08d}" if variant is None else f"{index:08d}_{variant}"


def find_member(members: Mapping[str, Any], role: str) -> str | None:
    """The suffix under which ``members`` holds ``role`` (``"hq"``, ``"lq"``, ``"json"``), or None."""
    return next((s for s in MEMBERS[role] if s in members), None)


def decode_member(members: Mapping[str, bytes], role: str, name: str) -> np.ndarray:
    """Decode the image member ``role`` of a stored sample (any accepted suffix) to RGB ``uint8``."""
    suffix = find_member(members, role)
    if suffix is None:
        raise BuildError(f"{name}: sample has no {'/'.join(MEMBERS[role])} member")
    return decode(members[suffix], f"{name}.{suffix}")


def check_member(key: str, suffix: str) -> str:
    """The member name ``{key}.{suffix}``; refuses anything that could be a path or break key parsing."""
    if not _KEY_RE.match(key):
        raise BuildError(f"invalid sample key {key!r} (expected 8 digits with optional _variant)")
    if not _SUFFIX_RE.match(suffix):
        raise BuildError(f"invalid member suffix {suffix!r}")
    return f"{key}.{suffix}"


# --------------------------------------------------------------------------- hashing file objects


class _HashingWriter(io.RawIOBase):
    """Write-through wrapper that hashes and counts bytes (tarfile only needs write/tell)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw, self.sha, self.md5, self.size = raw, hashlib.sha256(), hashlib.md5(), 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        mv = memoryview(b)
        self.sha.update(mv)
        self.md5.update(mv)
        self.raw.write(mv)
        self.size += mv.nbytes
        return mv.nbytes

    def tell(self) -> int:
        return self.size


class ShardWriter:
    """Context manager that writes samples to a deterministic tar stream.

    ``add(key, {"hq.png": b"...", "lq.png": b"...", "json": b"..."})`` writes members in the given
    order. After exit, ``sha256``, ``md5`` and ``size`` describe the bytes written.
    """

    def __init__(self, fileobj: IO[bytes]) -> None:
        self._out = _HashingWriter(fileobj)
        self._tar = tarfile.open(fileobj=self._out, mode="w", format=tarfile.USTAR_FORMAT)
        self.count = 0
        self.sha256 = self.md5 = ""
        self.size = 0

    def add(self, key: str, members: dict[str, bytes]) -> None:
        for suffix, data in members.items():
            info = tarfile.TarInfo(check_member(key, suffix))
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            self._tar.addfile(info, io.BytesIO(data))
        self.count += 1

    def close(self) -> None:
        self._tar.close()
        self.sha256, self.md5, self.size = self._out.sha.hexdigest(), self._out.md5.hexdigest(), self._out.size

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_json_atomic(path: Path, data: Any, root: Path | None = None) -> None:
    """Write ``data`` as canonical JSON, atomically (``root``: the output folder, see facedeg.files)."""
    with atomic_file(path, root) as f:
        f.write(dumps(data).encode("utf-8"))


def dumps(data: Any) -> str:
    """Canonical JSON used for every file we write (sorted keys, 1-space indent, trailing newline)."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=True, allow_nan=False) + "\n"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- manifest and wids


def read_manifest(out: Path) -> dict:
    """Load ``OUT/dataset.json``; :class:`BuildError` when missing, unreadable or of another format."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise BuildError(f"{path}: no manifest (not a finished facedeg build)")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as e:
        raise BuildError(f"{path}: unreadable manifest ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise BuildError(f"{path}: not a facedeg shard manifest")
    if data.get("format_version") != FORMAT_VERSION:
        raise BuildError(f"{path}: format version {data.get('format_version')} (this facedeg reads {FORMAT_VERSION})")
    return data


def wids_index(shards: list[dict], split: str) -> dict:
    """A wids-shard-index-v1 document for one split (URLs relative to the index file)."""
    return {
        "__kind__": "wids-shard-index-v1",
        "name": split,
        "wids_version": 1,
        "shardlist": [
            {"url": s["name"], "md5sum": s["md5"], "nsamples": s["samples"], "filesize": s["bytes"]}
            for s in shards
            if s["split"] == split
        ],
    }


def iter_tar_samples(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {suffix: bytes})`` per sample of a shard, grouping consecutive members by key."""
    with tarfile.open(path, mode="r:") as tar:
        key, members = None, {}
        for info in tar:
            if not info.isfile():
                continue
            k, _, suffix = info.name.partition(".")
            if k != key and key is not None:
                yield key, members
                members = {}
            key = k
            f = tar.extractfile(info)
            members[suffix] = f.read() if f else b""
        if key is not None:
            yield key, members
