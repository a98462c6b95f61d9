"""Checking and reading a finished build: ``verify``, ``inspect`` and ``replay``.

All three read ``OUT/dataset.json`` first and raise :class:`facedeg.errors.BuildError` when it is
missing; problems found inside the shards are reported, never raised.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facedeg.build.shards import (
    JSON_MEMBER,
    MANIFEST,
    MEMBERS,
    REQUIRED,
    SPLITS,
    decode_member,
    find_member,
    is_shard_name,
    iter_tar_samples,
    read_manifest,
    sha256_file,
)
from facedeg.codec import decode
from facedeg.errors import FacedegError, ImageError
from facedeg.plan import Plan


@dataclass
class VerifyReport:
    problems: list[str] = field(default_factory=list)
    shards: int = 0
    samples: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(out: str | Path, decode_images: bool = True, on_shard: Callable[[str], None] | None = None) -> VerifyReport:
    """Recompute every shard's sha256 and size, read every sample (decoding its images unless
    ``decode_images`` is False), and check keys, members and counts against the manifest."""
    out = Path(out)
    manifest = read_manifest(out)
    report = VerifyReport()
    size = manifest.get("size")
    lq = tuple(manifest.get("lq_size") or (size, size))  # builds before the LQ size could change: the HQ's
    listed = {s["name"] for s in manifest["shards"]}
    for extra in sorted(p.name for p in out.iterdir() if is_shard_name(p.name) and p.name not in listed):
        report.problems.append(f"{extra}: shard file not listed in {MANIFEST}")
    pairs: Counter = Counter()
    for entry in manifest["shards"]:
        name = entry["name"]
        if on_shard:
            on_shard(name)
        path = out / name
        if not path.is_file():
            report.problems.append(f"{name}: missing")
            continue
        report.shards += 1
        if path.stat().st_size != entry["bytes"]:
            report.problems.append(f"{name}: size {path.stat().st_size} bytes, manifest says {entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            report.problems.append(f"{name}: sha256 mismatch (file changed since the build)")
        n = _check_samples(path, entry, (size, lq) if size else None, decode_images, report.problems)
        report.samples += n
        pairs[entry["split"]] += n
    for split in SPLITS:
        want = manifest["counts"].get(split, {}).get("pairs", 0)
        if pairs[split] != want and not any(p.startswith(f"{split}-") and "missing" in p for p in report.problems):
            report.problems.append(f"{split}: {pairs[split]} pairs in shards, manifest counts {want}")
    return report


def _check_samples(path: Path, entry: dict, sizes: tuple[int, tuple] | None, decode_images: bool,
                   problems: list[str]) -> int:
    """``sizes``: (HQ side, LQ (height, width)) as the manifest states them; None skips the size check."""
    name, count, seen = entry["name"], 0, set()
    try:
        for key, members in iter_tar_samples(path):
            count += 1
            where = f"{name}: {key}"
            if key in seen:
                problems.append(f"{where}: key appears twice (members not grouped)")
            seen.add(key)
            found = {role: find_member(members, role) for role in MEMBERS}
            lacking = ["/".join(MEMBERS[role]) for role in REQUIRED if found[role] is None]
            if lacking:
                problems.append(f"{where}: no {', '.join(lacking)} member")
                continue
            try:
                meta = json.loads(members[found["json"]])
                if not isinstance(meta, dict):
                    raise ValueError(f"a JSON {type(meta).__name__}, expected an object")
                if meta.get("key") != key:
                    problems.append(f"{where}: json names key {meta.get('key')!r}")
                Plan.from_json(meta["plan"])
            except (ValueError, KeyError, TypeError, FacedegError) as e:
                problems.append(f"{where}: bad json ({e})")
            if decode_images:
                for role in ("hq", "lq", "src"):
                    suffix = found[role]
                    if suffix is None:
                        continue
                    try:
                        img = decode(members[suffix], f"{key}.{suffix}")
                    except ImageError:
                        problems.append(f"{where}: {suffix} does not decode")
                        continue
                    want = sizes and (sizes[1] if role == "lq" else (sizes[0], sizes[0]))
                    if want and img.shape[:2] != tuple(want):
                        problems.append(f"{where}: {suffix} is {img.shape[1]}x{img.shape[0]}, "
                                        f"expected {want[1]}x{want[0]}")
    except Exception as e:  # tarfile.ReadError, truncated stream, ...
        problems.append(f"{name}: unreadable tar ({type(e).__name__}: {e})")
    if count != entry["samples"]:
        problems.append(f"{name}: {count} samples, manifest says {entry['samples']}")
    return count


@contextmanager
def _shard_errors(out: Path, name: str) -> Iterator[None]:
    """A missing or damaged shard (or sample JSON) as one line that points at ``facedeg verify``."""
    try:
        yield
    except (OSError, tarfile.TarError, EOFError, ValueError, KeyError, TypeError, AttributeError) as e:
        what = "missing" if isinstance(e, FileNotFoundError) else f"unreadable ({type(e).__name__}: {e})"
        raise FacedegError(f"{out / name}: {what}; run `facedeg verify {out}` for details") from None


def iter_metadata(out: str | Path) -> Iterator[tuple[str, dict]]:
    """Yield ``(shard name, sample JSON)`` for every sample of a build, in shard order."""
    out = Path(out)
    manifest = read_manifest(out)
    for entry in manifest["shards"]:
        with _shard_errors(out, entry["name"]), tarfile.open(out / entry["name"], mode="r:") as tar:
            for info in tar:
                if info.isfile() and info.name.endswith(".json"):
                    f = tar.extractfile(info)
                    meta = json.loads(f.read() if f else b"{}")
                    if not isinstance(meta, dict):
                        raise ValueError(f"{info.name} is not a JSON object")
                    yield entry["name"], meta


def inspect(out: str | Path) -> dict:
    """Counts per split, how often each op fired, each sampled parameter's range, and LQ-vs-HQ PSNR
    (min / median / max) per recipe branch (the set of ops a plan used)."""
    manifest = read_manifest(Path(out))
    fired: Counter = Counter()
    params: dict[tuple[str, str], list] = defaultdict(list)
    psnr: dict[str, list[float]] = defaultdict(list)
    n = 0
    for _, meta in iter_metadata(out):
        n += 1
        for step in meta["plan"]["steps"]:
            fired[step["op"]] += 1
            for k, v in step["params"].items():
                if k != "seed":  # an op's noise seed is not a degradation parameter
                    params[(step["op"], k)].append(v)
        value = meta.get("psnr")
        psnr[meta.get("branch", "?")].append(float("inf") if value is None else float(value))
    ranges = {}
    for (op, k), values in sorted(params.items()):
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            ranges[f"{op}.{k}"] = {"min": min(numbers), "max": max(numbers), "n": len(numbers)}
        else:
            ranges[f"{op}.{k}"] = {"values": dict(Counter(map(str, values)).most_common(6)), "n": len(values)}
    branches = {
        b: {"n": len(v), "min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v))}
        for b, v in sorted(psnr.items(), key=lambda kv: -len(kv[1]))
    }
    return {
        "recipe": manifest["recipe"]["name"],
        "recipe_hash": manifest["recipe"]["hash"],
        "size": manifest["size"],
        "scale": manifest.get("scale", 1.0),
        "lq_size": manifest.get("lq_size", [manifest["size"], manifest["size"]]),
        "counts": manifest["counts"],
        "samples": n,
        "skipped": len(manifest["skipped"]),
        "ops_fired": dict(fired.most_common()),
        "params": ranges,
        "psnr_by_branch": branches,
    }


@dataclass
class ReplayResult:
    key: str
    shard: str
    summary: str
    identical: bool
    differing: int = 0  # number of differing values (pixels x channels)
    first: tuple[int, int, int, int, int] | None = None  # (y, x, channel, stored, replayed)
    image: str = "lq"  # the image that differs: the LQ, or (replayed from the stored source) the HQ


def replay(out: str | Path, key: str) -> ReplayResult:
    """Re-apply the stored plan of ``key`` and compare with the stored LQ: from the stored HQ (steps that
    acted on both sides before the LQ's chain are already in it), or from the stored source image when
    the sample has one, which also rebuilds the HQ (compared too when stored losslessly)."""
    out = Path(out)
    manifest = read_manifest(out)
    for entry in manifest["shards"]:
        path = out / entry["name"]
        if not path.is_file():
            continue
        with _shard_errors(out, entry["name"]):
            members = next((m for k, m in iter_tar_samples(path) if k == key), None)
            if members is None:
                continue
            if find_member(members, "json") is None:
                raise FacedegError(f"{entry['name']}: sample {key} lacks its {JSON_MEMBER} member")
            plan = Plan.from_json(json.loads(members[JSON_MEMBER])["plan"])
        where = f"{entry['name']}: {key}"
        hq = decode_member(members, "hq", where)
        stored = decode_member(members, "lq", where)
        if find_member(members, "src") is not None:  # rebuild both images from the source
            replayed_hq, replayed = plan.apply_pair(decode_member(members, "src", where))
            lossless = find_member(members, "hq") == MEMBERS["hq"][0]
            if lossless and not np.array_equal(replayed_hq, hq):
                return ReplayResult(key, entry["name"], plan.summary(), False, int(hq.size), None, "hq")
        else:
            replayed = plan.lq_from_hq(hq)
        if replayed.shape != stored.shape:
            return ReplayResult(key, entry["name"], plan.summary(), False, int(stored.size), None)
        diff = replayed != stored
        if not diff.any():
            return ReplayResult(key, entry["name"], plan.summary(), True)
        y, x, c = (int(v) for v in np.argwhere(diff)[0])
        first = (y, x, c, int(stored[y, x, c]), int(replayed[y, x, c]))
        return ReplayResult(key, entry["name"], plan.summary(), False, int(diff.sum()), first)
    raise FacedegError(f"key {key!r} not found in {out} (keys look like 00000012 or 00000012_3)")
