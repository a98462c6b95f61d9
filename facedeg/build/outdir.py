"""The output folder of a build: which build made it (its identity), resuming or resetting it, its lock,
and the temporaries a killed build left.

A build's identity is everything that decides its bytes (recipe, seed, size, options, inputs, library
versions; ``dataset.json`` holds it at the top level, a running build in its state folder). A rerun
with the same identity resumes or keeps OUT; another identity is refused unless ``--overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from facedeg.build.inputs import Inputs
from facedeg.build.lockfile import FolderLock, LockBusy
from facedeg.build.shards import MANIFEST, SPLITS, is_shard_name, read_manifest
from facedeg.build.task import result_path, state_dir
from facedeg.errors import BuildError
from facedeg.files import check_parents, remove_leftovers, shown, tmp_target

LOCK_FILE = ".facedeg-build.lock"  # in OUT; see build_lock
TOP_LEVEL = ("format_version", "facedeg_version", "seed", "size", "libraries")  # held once in dataset.json

_IDENTITY_LABELS = {
    "format_version": "shard format version",
    "facedeg_version": "facedeg version",
    "recipe_hash": "recipe",
    "seed": "--seed",
    "size": "--size",
    "crop": "--crop",
    "variants": "--variants",
    "val_fraction": "--val-fraction",
    "shard_size": "--shard-size",
    "hq_format": "--hq-format",
    "max_pixels": "pixel limit",
    "png_level": "PNG level",
    "passthrough": "HQ passthrough",
    "faces": "face options (--faces, --min-face, --no-face, detector)",
    "inputs": "inputs",
    "libraries": "library versions",
}


def _difference(old: dict, new: dict) -> str | None:
    for key, label in _IDENTITY_LABELS.items():
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "inputs":
            a, b = f"{a['count']} files {a['fingerprint'][:12]}", f"{b['count']} files {b['fingerprint'][:12]}"
        elif key == "libraries":
            changed = sorted(k for k in set(a or {}) | set(b or {}) if (a or {}).get(k) != (b or {}).get(k))
            a = ", ".join(f"{k} {(old.get(key) or {}).get(k)}" for k in changed)
            b = ", ".join(f"{k} {(new.get(key) or {}).get(k)}" for k in changed)
        elif key == "recipe_hash":
            a = f"{old.get('recipe_name')} {str(a)[:12]}"
            b = f"{new.get('recipe_name')} {str(b)[:12]}"
        return f"{label}: {a} in OUT vs {b} now"
    return None


def _is_ours(name: str) -> bool:
    return is_shard_name(name) or name == MANIFEST or name in {f"{s}.wids.json" for s in SPLITS}


def _our_files(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if _is_ours(p.name) or _is_ours(tmp_target(p.name) or "")]


def _read_previous(out: Path) -> tuple[dict | None, str | None]:
    """What OUT already holds: ``(identity of the build that made it, where that was read)``; ``({}, ...)``
    when its identity cannot be read, ``(None, None)`` when OUT holds no build."""
    if (out / MANIFEST).exists():
        try:
            return build_identity(read_manifest(out)), MANIFEST
        except (BuildError, KeyError):
            return {}, MANIFEST
    if (state_dir(out) / "config.json").exists():
        try:
            return json.loads((state_dir(out) / "config.json").read_text("utf-8")), "an unfinished build"
        except (OSError, ValueError):
            return {}, "an unfinished build"
    if any(is_shard_name(p.name) for p in out.iterdir()):
        return {}, "shards of an unknown build"
    return None, None


def _why_different(previous: dict, where: str, identity: dict, stamp: str) -> str | None:
    """Why the build in OUT is not this build (None when it is: resume it, or keep it when finished)."""
    if not previous:
        return "cannot tell which build made them"
    diff = _difference(previous, identity)
    if not diff and where != MANIFEST and previous.get("inputs_stamp") != stamp:
        diff = "inputs: files changed since the interrupted build (same names and sizes, other modification times)"
    return diff


def reset(out: Path) -> None:
    """Remove every file a build of ours made in OUT, and its state folder (``--overwrite``)."""
    for p in _our_files(out):
        p.unlink()
    shutil.rmtree(state_dir(out), ignore_errors=True)


def prepare_out(out: Path, identity: dict, stamp: str, overwrite: bool) -> dict | None:
    """Read what OUT (created and locked by `build_lock`) holds, check it against this build, reset it
    when asked; return the finished manifest when there is nothing to do."""
    previous, where = _read_previous(out)
    if previous is None:
        return None
    diff = _why_different(previous, where, identity, stamp)
    if diff and not overwrite:
        raise BuildError(f"{out} holds {where} with different settings ({diff}); use --overwrite to replace it")
    if diff:
        reset(out)
        return None
    if where == MANIFEST:
        manifest = read_manifest(out)
        if all((out / s["name"]).is_file() and (out / s["name"]).stat().st_size == s["bytes"] for s in manifest["shards"]):
            shutil.rmtree(state_dir(out), ignore_errors=True)  # left when killed just after the manifest
            return manifest
    return None


def is_done(out: Path, name: str) -> dict | None:
    try:
        result = json.loads(result_path(out, name).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    tar = out / name
    if tar.is_file() and tar.stat().st_size == result.get("bytes"):
        return result
    return None


def refuse_inputs_inside(inputs: Inputs, out: Path) -> None:
    """BuildError when an input (an image, a list file, a tar shard) lies inside OUT, where the build
    writes and ``--overwrite`` deletes: checked before anything in OUT is touched (links resolved)."""
    inside = os.path.realpath(out) + os.sep
    paths = {s.path: s.rel for s in inputs.sources}  # one entry per tar file
    if inputs.kind in ("list", "file"):
        paths[inputs.root] = Path(inputs.root).name
    for path, rel in paths.items():
        if os.path.realpath(path).startswith(inside):
            raise BuildError(f"--input: {shown(rel)} ({shown(path)}) lies inside --out {shown(out)}, which the build "
                             "writes into and --overwrite clears; choose another --out (nothing was changed)")


@contextmanager
def build_lock(out: Path) -> Iterator[None]:
    """Create OUT and hold its build lock meanwhile (`facedeg.build.lockfile`): one build at a time per OUT.
    The lock dies with a killed build, and its file is removed when the build returns or fails, so a
    finished dataset folder holds only the dataset."""
    with out_errors(out):
        if out.exists() and not out.is_dir():
            raise BuildError(f"--out: {out} exists and is not a directory")
        out.mkdir(parents=True, exist_ok=True)
        try:
            lock = FolderLock(out / LOCK_FILE)
        except LockBusy as busy:
            raise BuildError(f"{out} is being written by another facedeg build ({busy.holder}); "
                             "wait for it to finish, or choose another --out") from None
    with lock:
        with out_errors(out):
            check_parents(state_dir(out) / "shards" / "x", out)  # no link for a state folder
            _remove_leftovers(out)
        yield


def _remove_leftovers(out: Path) -> None:
    """Remove the temporaries a killed or failed build left (facedeg's unique temporary names only),
    before anything else is written: on a still-full disk they are what frees the space."""
    remove_leftovers(out, _is_ours)
    for folder in (state_dir(out), state_dir(out) / "shards", state_dir(out) / "progress"):
        remove_leftovers(folder)


@contextmanager
def out_errors(out: Path) -> Iterator[None]:
    """OS errors while preparing or finishing OUT (not a folder, read-only, full) as one-line BuildErrors."""
    try:
        yield
    except OSError as e:
        raise BuildError(f"--out: cannot write {e.filename or out}: {e.strerror or e}") from None



def build_identity(manifest: dict) -> dict:
    """The identity of the build that wrote ``manifest`` (what a rerun is compared with): its "build"
    record plus the fields the manifest holds once at its top level. Older manifests that repeated
    them under "build" read the same."""
    recipe = manifest.get("recipe") or {}
    return {**{k: manifest.get(k) for k in TOP_LEVEL}, "recipe_name": recipe.get("name"),
            "recipe_hash": recipe.get("hash"), **manifest["build"]}
