"""Benchmark faces in the wild: detection + alignment per image, and ``facedeg build --crop align``
against ``--crop center`` on the same inputs (one worker, one core for OpenCV).

- detect + align ms per image: the 5 bundled 512x512 portraits, and 1600x1200 photos (each bundled face
  shrunk to 400 px and pasted off-centre on a textured background), for the largest face (what
  ``--faces largest`` does: a quick search first) and for all faces (``--faces all``, restore), split
  into MTCNN's box search, the O-Net landmark refinement, and the fit + warp;
- build pairs/s with --crop align vs --crop center (HQ passthrough, the default for such inputs, and
  HQ re-encoded) on N 512x512 portraits made like bench_build's, with 1 and 4 variants per input.

Usage: python benchmarks/bench_faces.py [--pairs 60] [--rounds 2] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_build import machine, make_inputs, timed_build  # noqa: E402

from facedeg.faces import align_matrix, get_detector, warp_face  # noqa: E402
from facedeg.imread import read_image  # noqa: E402
from facedeg.samples import sample_paths  # noqa: E402


def wild_photo(face: np.ndarray, i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    bg = cv2.GaussianBlur(rng.integers(0, 255, (1200, 1600, 3), dtype=np.uint8), (0, 0), 8)
    small = cv2.resize(face, (400, 400), interpolation=cv2.INTER_AREA)
    y, x = 150 + 130 * i, 100 + 260 * i
    bg[y:y + 400, x:x + 400] = small
    return bg


def time_align(images: list[np.ndarray], size: int, repeats: int, largest_only: bool) -> dict:
    """Median ms per image of each step (box search, landmark refinement, fit + warp, and the whole
    ``detect`` + fit + warp), then the mean over images."""
    det = get_detector()
    steps = {"boxes": [], "refine": [], "fit_warp": [], "total": []}
    for img in images:
        faces = det.detect(img, largest_only)  # warm-up; which copy found the face
        quick = largest_only and bool(det.refined(img, det._coarse(img, det.quick_side)))
        side = det.quick_side if quick else det.max_side
        per = {k: [] for k in steps}
        for _ in range(repeats):
            t0 = time.perf_counter()
            coarse = det._coarse(img, side)
            t1 = time.perf_counter()
            det.refined(img, coarse)
            t2 = time.perf_counter()
            faces = det.detect(img, largest_only)
            t3 = time.perf_counter()
            warp_face(img, align_matrix(faces[0].landmarks, size), size)
            t4 = time.perf_counter()
            for k, v in zip(steps, (t1 - t0, t2 - t1, t4 - t3, t4 - t2), strict=True):
                per[k].append(v * 1e3)
        for k in steps:
            steps[k].append(statistics.median(per[k]))
    return {k: round(float(np.mean(v)), 2) for k, v in steps.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2, help="alternate the builds this many times; best kept")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    result: dict = {"machine": machine()}
    portraits = [read_image(p) for p in sample_paths()]
    wild = [wild_photo(f, i) for i, f in enumerate(portraits)]
    for largest_only, mode in ((True, "largest face"), (False, "all faces")):
        result[f"align_ms_512_portrait, {mode}"] = time_align(portraits, args.size, args.repeats, largest_only)
        result[f"align_ms_1600x1200_photo, {mode}"] = time_align(wild, args.size, args.repeats, largest_only)
    print(json.dumps(result, indent=1), flush=True)
    rows = {
        "center (HQ passthrough)": dict(crop="center"),
        "center (HQ re-encoded)": dict(crop="center", passthrough=False),
        "align": dict(crop="align"),
    }
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "in"
        inputs.mkdir()
        make_inputs(inputs, args.pairs, args.size)
        for variants in (1, 4):
            for _ in range(args.rounds):
                for name, kw in rows.items():
                    wall, m = timed_build(inputs, Path(tmp) / "out", args.size, 1000, variants=variants, **kw)
                    key = f"{name}, {variants} variant(s)"
                    pairs = sum(c["pairs"] for c in m["counts"].values())
                    if key not in best or wall < best[key]["wall_s"]:
                        stages = {k: round(v * 1e3 / pairs, 2) for k, v in m["run"]["stage_seconds"].items()}
                        best[key] = {"wall_s": round(wall, 2), "pairs": pairs, "pairs_per_s": round(pairs / wall, 2),
                                     "stage_ms_per_pair": stages}
    result["builds"] = best
    for variants in (1, 4):
        a = best[f"align, {variants} variant(s)"]["pairs_per_s"]
        result[f"per_pair_cost_align_vs_center_{variants}v"] = {
            "vs passthrough": round(best[f"center (HQ passthrough), {variants} variant(s)"]["pairs_per_s"] / a, 2),
            "vs re-encoded": round(best[f"center (HQ re-encoded), {variants} variant(s)"]["pairs_per_s"] / a, 2),
        }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
