"""Hostile and careless input to facedeg (issue 8): nothing written outside OUT, inputs never deleted,
file names of any encoding, bounded recipe files, no temporaries left after a write error, no command
waiting on a FIFO. One test per class of defect, each driven by a table of instances."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from facedeg.build import BuildConfig, build
from facedeg.build.verify import verify
from facedeg.errors import FacedegError, ImageError, RecipeError
from facedeg.files import atomic_file, tmp_target
from facedeg.imread import read_image
from facedeg.recipe import load_recipe
from facedeg.samples import sample_paths
from hifacegan.config import resolve_config
from hifacegan.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BAD = os.fsdecode(b"bad\xffutf8")  # a name the file system allows that is not UTF-8
FACES = sample_paths()[:2]


def photos(folder: Path, names=("a.png", "b.png")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, src in zip(names, FACES, strict=False):
        (folder / name).write_bytes(src.read_bytes())
    return folder


def small(inp, out, **kw) -> BuildConfig:
    return BuildConfig(**{"recipe": "jpeg", "input": str(inp), "out": out, "size": 32, "val_fraction": 0.0, **kw})


def everything(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (links not followed) with the bytes of regular files."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            found[str(p.relative_to(folder))] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return found


# --------------------------------------------------------------------------- 1. links planted in OUT

LINKS = [  # (name in OUT, link to a file or a folder outside, pre-existing real folders, overwrite)
    (".facedeg-build.lock", "file", (), False),
    (".facedeg-build", "dir", (), False),
    (".facedeg-build/shards", "dir", (".facedeg-build",), False),
    (".facedeg-build/progress", "dir", (".facedeg-build",), False),
    ("train-000000.tar", "file", (), True),
    ("dataset.json", "file", (), True),
    ("train.wids.json", "file", (), True),
]


@pytest.mark.parametrize(("name", "kind", "dirs", "overwrite"), LINKS)
def test_build_never_writes_through_a_link_in_out(tmp_path, name, kind, dirs, overwrite) -> None:
    inp = photos(tmp_path / "in")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("DATA")
    out = tmp_path / "out"
    for d in dirs:
        (out / d).mkdir(parents=True)
    out.mkdir(exist_ok=True)
    (out / name).symlink_to(outside / "victim.txt" if kind == "file" else outside)
    before = everything(outside)
    try:
        build(small(inp, out, overwrite=overwrite))
    except FacedegError as e:
        assert "symbolic link" in str(e) and name.split("/")[-1] in str(e) and "\n" not in str(e)
    else:  # our own file names: the link is replaced (or removed by --overwrite), never followed
        assert not (out / name).is_symlink() and verify(out).ok
    assert everything(outside) == before


# --------------------------------------------------------------------------- 2. inputs inside OUT


def _tar_of(path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for src in FACES:
            tar.add(src, arcname=src.name)
    return path


INSIDE = {  # what is put inside OUT -> the --input spec
    "tar shards named like ours": lambda out: f"{_tar_of(out / 'train-000000.tar').parent}/train-{{000000..000000}}.tar",
    "an image": lambda out: str(photos(out / "imgs") / "a.png"),
    "a folder": lambda out: str(photos(out / "imgs")),
    "a list file": lambda out: (out / "dataset.json").write_text(f"{FACES[0]}\n") and str(out / "dataset.json"),
    "a list entry": lambda out: (out.parent / "list.txt").write_text(f"{photos(out / 'imgs') / 'a.png'}\n")
    and str(out.parent / "list.txt"),
    "a link into OUT": lambda out: str(photos(out.parent / "in") and (out.parent / "in" / "c.png").symlink_to(
        photos(out / "imgs") / "a.png") or out.parent / "in"),
}


@pytest.mark.parametrize("overwrite", [True, False])
@pytest.mark.parametrize("what", INSIDE)
def test_inputs_inside_out_are_refused_before_anything_is_touched(tmp_path, what, overwrite) -> None:
    out = tmp_path / "out"
    out.mkdir()
    spec = INSIDE[what](out)
    before = everything(tmp_path)
    with pytest.raises(FacedegError, match="lies inside --out"):
        build(small(spec, out, overwrite=overwrite))
    assert everything(tmp_path) == before


def test_only_facedegs_own_temporaries_are_cleaned(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = ["dataset.json.tmp", "train-000000.tar.tmp", "notes.0123456789ab.tmp"]  # the user's files
    ours = ["train-000000.tar.0123456789ab.tmp", "dataset.json.fedcba987654.tmp"]  # left by a killed build
    for name in mine + ours:
        (out / name).write_text("x")
    build(small(photos(tmp_path / "in"), out))
    assert [n for n in mine + ours if (out / n).exists()] == mine
    assert tmp_target("dataset.json.tmp") is None and tmp_target("a.json.0123456789ab.tmp") == "a.json"


# --------------------------------------------------------------------------- 3. names of any encoding

_STRICT = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}  # a terminal that refuses them


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    code = "import sys; from cli.facedeg_cli import main; sys.argv[0] = 'facedeg'; main()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, capture_output=True,
                          env={**_STRICT, "PYTHONPATH": str(ROOT)}, timeout=120)


def test_build_degrade_preview_take_names_that_are_not_utf8(tmp_path) -> None:
    inp = photos(tmp_path / "in", (f"{BAD}.png", "b.png"))
    (tmp_path / "list.txt").write_bytes(b"in/bad\xffutf8.png\nin/b.png\n")
    for spec, out in ((inp, tmp_path / f"out{BAD}"), (tmp_path / "list.txt", tmp_path / "out_list")):
        r = _cli("build", "-r", "jpeg", "-i", spec, "-o", out, "--size", "32", "--val-fraction", "0.5", cwd=tmp_path)
        assert r.returncode == 0, r.stderr.decode(errors="replace")
        sources = {json.loads(line)["source"] for line in _metas(out)}
        assert sources == {f"{BAD}.png" if spec == inp else f"in/{BAD}.png", "b.png" if spec == inp else "in/b.png"}
    for cmd in ("degrade", "preview"):
        lq = tmp_path / f"{cmd}{BAD}.png"
        r = _cli(cmd, inp / f"{BAD}.png", "-r", "jpeg", "-o", lq, cwd=tmp_path)
        assert r.returncode == 0 and lq.is_file(), r.stderr.decode(errors="replace")
        assert b"\\xff" in r.stdout  # shown, not a crash on the strict terminal


def _metas(out: Path) -> list[str]:
    lines = []
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            lines += [tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".json")]
    return lines


# --------------------------------------------------------------------------- 6. recipe and config files


def _laughs(levels: int = 9, fanout: int = 10) -> str:
    lines = ["steps:", "  - sequence: &a0 [{jpeg: {quality: 50}}]"]
    for i in range(1, levels + 1):
        lines.append(f"  - sequence: &a{i} [" + ", ".join([f"{{sequence: *a{i - 1}}}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def _chain(n: int = 200) -> str:  # each alias one level deeper: shallow text, deep expansion
    lines = ["x0: &x0 [{jpeg: {quality: 50}}]"] + [f"x{i}: &x{i} [{{sequence: *x{i - 1}}}]" for i in range(1, n)]
    return f"_: {{{', '.join(lines)}}}\nsteps: [{{sequence: *x{n - 1}}}]\n"


HOSTILE = {  # file content -> what the one-line error says
    "deep flow": ("steps: " + "[" * 10000 + "]" * 10000 + "\n", "nested too deeply"),
    "deep block": ("steps:\n" + "".join("  " * i + "-\n" for i in range(1, 300)), "nested too deeply"),
    "deep bare": ("- " * 10000 + "x\n", "nested too deeply"),
    "deep mappings": ("steps: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested too deeply"),
    "billion laughs": (_laughs(), "expand to more than"),
    "alias chain": (_chain(), "nested too deeply"),
    "self alias": ("steps: &s\n  - sequence: *s\n", "nested too deeply"),
    "not UTF-8": (b"steps: [{jpeg: {quality: 50}}]\n# caf\xe9\n", "not UTF-8 text (byte 0xe9"),
    "too large": ("# " + "x" * (1 << 20) + "\nsteps: [{jpeg: {quality: 50}}]\n", "too large"),
    "FIFO": (None, "a FIFO, not a regular file"),
}


@pytest.mark.parametrize("what", HOSTILE)
def test_hostile_recipe_and_config_files_give_one_line_fast(tmp_path, what) -> None:
    text, expected = HOSTILE[what]
    path = tmp_path / "r.yaml"
    if text is None:
        os.mkfifo(path)
    else:
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    for load, error in ((load_recipe, RecipeError), (lambda p: resolve_config(p, {}), ConfigError)):
        t0 = time.perf_counter()
        with pytest.raises(error) as info:
            load(str(path))
        message = str(info.value)
        assert str(path) in message and expected in message and "\n" not in message and len(message) < 300, message
        assert time.perf_counter() - t0 < 5


# --------------------------------------------------------------------------- 7. temporaries after a write error

_LIMITED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
{body}
"""


def _limited(body: str, limit: int, *args: str) -> subprocess.CompletedProcess:
    """Run ``body`` with every file capped at ``limit`` bytes (writes beyond fail with EFBIG: a full disk)."""
    return subprocess.run([sys.executable, "-c", _LIMITED.format(limit=limit, body=body), *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)


def _temporaries(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)


def test_no_temporary_survives_a_failed_close(tmp_path) -> None:
    """The last buffered bytes are flushed by close(): on a full disk it fails, and the file must still go."""
    r = _limited("from facedeg.files import atomic_file\n"
                 "try:\n"
                 "    with atomic_file(sys.argv[1]) as f:\n"
                 "        f.write(b'x' * 3000)\n"
                 "except OSError as e:\n"
                 "    print(e.strerror)\n", 1000, str(tmp_path / "a.bin"))
    assert "File too large" in r.stdout, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_build_on_a_full_disk_leaves_no_temporaries_and_reclaims_old_ones(tmp_path) -> None:
    inp = photos(tmp_path / "in")
    out = tmp_path / "out"
    body = ("from facedeg.build import BuildConfig, build\nfrom facedeg.errors import BuildError\n"
            "try:\n"
            "    build(BuildConfig(recipe='jpeg', input=sys.argv[1], out=sys.argv[2], size=256, val_fraction=0.0))\n"
            "except BuildError as e:\n"
            "    print(e)\n")
    r = _limited(body, 60_000, str(inp), str(out))  # state files fit, a 256px shard does not
    assert "File too large" in r.stdout, r.stderr
    assert _temporaries(out) == []
    (out / "train-000000.tar.0123456789ab.tmp").write_bytes(b"x" * 50_000)  # as a killed build leaves them
    (out / ".facedeg-build" / "shards" / "train-000000.tar.json.0123456789ab.tmp").write_bytes(b"")
    r = _limited(body, 0, str(inp), str(out))  # the disk is still full: nothing can be written at all
    assert "File too large" in r.stdout, r.stderr
    assert _temporaries(out) == []
    build(BuildConfig(recipe="jpeg", input=str(inp), out=out, size=256, val_fraction=0.0))
    assert verify(out).ok


# --------------------------------------------------------------------------- 9. FIFOs, link loops, duplicates, empty shards


def _never_blocks(fn, path: Path) -> BaseException | None:
    """Call ``fn(path)`` in a thread; if it is still waiting on the FIFO after 10 s, unblock it and fail."""
    result: list[BaseException | None] = []

    def run() -> None:
        try:
            fn(path)
            result.append(None)
        except BaseException as e:  # noqa: BLE001 (handed back to the test)
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a writer appears: the reader's open returns
        os.close(fd)
        t.join(5)
        pytest.fail(f"{fn.__name__} waited on a FIFO")
    return result[0]


def test_special_files_are_reported_for_what_they_are(tmp_path) -> None:
    inp = photos(tmp_path / "in")
    os.mkfifo(inp / "fifo.png")
    (inp / "loop.png").symlink_to("loop.png")
    (inp / "dangling.png").symlink_to("nowhere.png")
    error = _never_blocks(read_image, inp / "fifo.png")
    assert isinstance(error, ImageError) and "a FIFO, not a regular file" in str(error)
    with pytest.raises(ImageError, match="symbolic link loop"):
        read_image(inp / "loop.png")
    report = build(small(inp, tmp_path / "out"))
    assert {s["source"]: s["reason"] for s in report.manifest["skipped"]} == {
        "fifo.png": "a FIFO, not a regular file", "loop.png": "symbolic link loop",
        "dangling.png": "broken symbolic link"}
    for cmd in ("degrade", "preview"):  # the CLI reads the same way: one line, at once
        r = _cli(cmd, inp / "fifo.png", "-r", "jpeg", "-o", tmp_path / f"{cmd}.png", cwd=tmp_path)
        assert r.returncode == 2 and b"a FIFO, not a regular file" in r.stderr


def test_a_tar_member_name_used_twice_is_reported_not_used_twice(tmp_path) -> None:
    path = tmp_path / "dup.tar"
    with tarfile.open(path, "w") as tar:
        for src in (*FACES, FACES[0]):
            data = src.read_bytes()
            info = tarfile.TarInfo("face.png" if src == FACES[0] else "other.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    report = build(small(path, tmp_path / "out"))
    assert report.pairs == 2
    assert report.manifest["skipped"] == [{"source": "dup.tar/face.png",
                                           "reason": "member name appears more than once (later copies ignored)"}]


def test_a_split_whose_sources_all_fail_gets_no_empty_shard(tmp_path) -> None:
    inp = photos(tmp_path / "in", [f"{c}.png" for c in "abcd"])
    build(small(inp, tmp_path / "probe", val_fraction=0.25))
    (val_source,) = {m["source"] for m in map(json.loads, _metas(tmp_path / "probe")) if m["split"] == "val"}
    (inp / val_source).write_bytes(b"not an image")  # the only val source now fails to decode
    report = build(small(inp, tmp_path / "out", val_fraction=0.25))
    assert report.manifest["counts"]["val"] == {"images": 0, "pairs": 0, "shards": 0}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dataset.json", "train-000000.tar",
                                                                    "train.wids.json"]
    assert report.manifest["skipped"][0]["source"] == val_source and verify(tmp_path / "out").ok


def test_atomic_file_refuses_a_linked_folder(tmp_path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FacedegError, match="sub: is a symbolic link"), atomic_file(tmp_path / "out" / "sub" / "x",
                                                                                   root=tmp_path / "out"):
        pass
    assert list((tmp_path / "elsewhere").iterdir()) == []
