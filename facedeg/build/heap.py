"""Keep freed image buffers in the process heap (glibc) instead of returning them to the OS.

Every op allocates a few 512²×3 buffers (0.8 MB each). With glibc's defaults such buffers are mmapped
and unmapped, or the heap top is trimmed, on nearly every call, so each new buffer page-faults again:
that costs ~40 % of `mixed`'s degrade time inside a build. Raising the mmap and trim thresholds once
per worker process keeps those pages mapped (a build worker then holds at most a few hundred MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 256 << 20  # bytes


@functools.cache
def keep_heap() -> bool:
    """Apply once per process; True if glibc accepted it (False elsewhere: nothing changes)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok_trim = mallopt(_M_TRIM_THRESHOLD, _THRESHOLD) == 1
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1  # glibc caps this setting at 32 MB
    return ok_trim and ok_mmap
