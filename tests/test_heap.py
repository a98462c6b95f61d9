"""facedeg.build.heap: freed image buffers stay mapped, so degrading image after image does not page-fault."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import resource, sys
import cv2
import facedeg
from facedeg.build.heap import keep_heap
from facedeg.samples import sample_paths
if sys.argv[1] == "keep":
    assert keep_heap() and keep_heap()
img = cv2.cvtColor(cv2.imread(str(sample_paths()[0])), cv2.COLOR_BGR2RGB)
recipe = facedeg.load_recipe("mixed")
facedeg.degrade(img, recipe, 0)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for seed in range(30):
    cv2.imencode(".png", facedeg.degrade(img, recipe, seed)[0])
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120, check=True)
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_keep_heap_stops_page_faults_per_image() -> None:
    default, kept = _faults("default"), _faults("keep")
    # glibc defaults: the heap is trimmed and buffers re-faulted on nearly every image (~1,400 faults each)
    assert default > 10_000
    assert kept < default / 5
