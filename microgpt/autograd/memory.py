"""Keeping freed big arrays inside the process, so the next step reuses them without page faults.

glibc's malloc serves every block above its mmap threshold (128 KiB at start) with a fresh mmap and gives it
back to the kernel on free. A training step allocates ~100 MB of activations and gradients, so each step
page-faults all of it in again, and the kernel zeroes every 4 KiB page first: about a fifth of a step's CPU
time at the default preset's shape. Raising the thresholds makes freed blocks stay in malloc's heap, where
the next step's arrays of the same sizes find them; turning mmap off does the same for blocks above glibc's
32 MiB threshold cap (the (N, vocab) logits of a big vocabulary), which otherwise cost a quarter of a step
at c2's shape. Freed memory mostly stays with the process (its peak is what it would have been).
Other C libraries (macOS, musl) have no `mallopt`: there this does nothing.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h parameter numbers
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit systems (with mmap off it only stops adjusting)


def keep_freed_memory() -> bool:
    """Ask glibc to serve every block from its heap and keep freed ones for reuse; True if it accepted."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
                and mallopt(_M_TRIM_THRESHOLD, 1 << 30) and mallopt(_M_TOP_PAD, 64 << 20)
                and mallopt(_M_MMAP_MAX, 0))
