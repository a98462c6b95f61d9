"""The paper recipes against the authors' own degradations: LQ-vs-HQ PSNR on the bundled faces.

Protocol (issue 10): the 5 bundled faces in sorted order, ``--seeds`` seeds each, seed
``1000 * face_index + s``; median and interquartile range in dB. The authors' column was measured
with their ``degrade.py`` augmenters (github Lotayou/Face-Renovation, imgaug 0.4.0, images read with
cv2 as that script does) on the same protocol, outside this repository; the 16x mosaic figure is from
their later BasicSR port. With 40 seeds the medians of two different random streams differ by a few
tenths of a dB by chance alone (the IQRs are 3-6 dB wide): raise ``--seeds`` to compare the
distributions rather than the draws.

Usage::

    .venv/bin/python benchmarks/paper_degradations.py [--seeds 40]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np

import facedeg
from facedeg.samples import sample_paths

# recipe -> authors' (median, IQR low, IQR high) at 40 seeds per face; None where not measured.
AUTHORS_40: dict[str, tuple[float, float | None, float | None]] = {
    "downsample": (29.26, 26.30, 31.57),
    "mosaic": (21.94, None, None),
    "noise": (18.88, 17.40, 20.89),
    "blur": (27.36, 25.23, 28.81),
    "jpeg": (33.61, 32.47, 35.60),
    "mixed": (22.56, 19.31, 25.67),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="seeds per face (the issue's protocol: 40)")
    args = parser.parse_args()
    faces = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in sample_paths()]
    print(f"LQ vs HQ PSNR (dB), {len(faces)} faces x {args.seeds} seeds, seed 1000*face + s")
    print(f"{'recipe':<11} {'ours median (IQR)':<24} {'authors median (IQR), 40 seeds':<32} diff")
    for name, (med, lo, hi) in AUTHORS_40.items():
        recipe = facedeg.load_recipe(name)
        values = [psnr(recipe.sample(1000 * i + s, face.shape[:2]).apply(face), face)
                  for i, face in enumerate(faces) for s in range(args.seeds)]
        q1, q2, q3 = np.percentile(values, [25, 50, 75])
        theirs = f"{med:.2f}" + (f" ({lo:.2f}-{hi:.2f})" if lo is not None else "")
        print(f"{name:<11} {f'{q2:.2f} ({q1:.2f}-{q3:.2f})':<24} {theirs:<32} {q2 - med:+.2f}")


if __name__ == "__main__":
    main()
