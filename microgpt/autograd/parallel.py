"""Splitting one big NumPy operation over the CPU cores with threads.

NumPy releases the GIL inside its loops and BLAS calls, so two Python threads working on two halves of an
array really run at the same time. NumPy's own elementwise loops (exp, max, sum, ...) use one core only,
which is why big softmaxes and attention blocks are split here.

A hand-off is not free: waking a sleeping helper thread takes tens of microseconds, and on a virtual machine
(a 2-core cloud VM measured 40-60 us to start a helper, as long again for the caller to wake if it ends up
waiting) about 100. So every caller states its `work` in nanoseconds of one core (the `*_WORK` rates below
are measured), only work worth more than a hand-off is split, and the calling thread, which starts at
once, takes a larger first range so it finishes last and never sleeps waiting for a late helper.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from microgpt.autograd.blas import set_blas_threads

MIN_PART_WORK = 120_000  # ns: what one more part costs (a hand-off); it must save more than this to be worth it
HANDOFF = 50_000  # ns of work the calling thread does more than each helper: the helper's late start
# Rates in ns of one core, measured on one AVX-512 core (OpenBLAS SkylakeX); estimates, not guarantees.
MAC_WORK = 1 / 64  # one multiply-add inside a BLAS product
PASS_WORK = 1 / 4  # one element through one simple NumPy pass (max, multiply, add...)


def _default_parts() -> int:
    """One part per core this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_parts = _default_parts()
_pool: ThreadPoolExecutor | None = None


def set_threads(n: int) -> None:
    """Use `n` threads for split operations (0 = one per available core)."""
    global _parts, _pool
    _parts = _default_parts() if n <= 0 else n
    if _pool is not None:
        _pool.shutdown(wait=False)
    _pool = None


def run_split(fn: Callable[[int, int], None], n: int, work: float) -> None:
    """Call fn(lo, hi) on consecutive ranges covering [0, n): in parallel when `work` (ns) is large.

    BLAS itself runs on one thread (set below, when this module is imported): the parts are the parallelism.
    Going from p parts to p + 1 saves work/p - work/(p + 1) = work/(p(p + 1)) of waiting and costs one more
    hand-off, so parts are added while that saving exceeds MIN_PART_WORK: small work stays on few cores
    however many there are (on 16 cores, 8 parts of a c1-sized step ran slower than 2). The calling thread
    works on the first range itself, HANDOFF longer than the others. The ranges depend only on
    (n, work, threads), so results are the same run to run.
    """
    global _pool
    parts, most = 1, min(_parts, n)
    while parts < most and work > MIN_PART_WORK * parts * (parts + 1):
        parts += 1
    if parts < 2:
        fn(0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_parts - 1, thread_name_prefix="microgpt")
    first = min(n - parts + 1, round(n * (work + (parts - 1) * HANDOFF) / (parts * work)))
    bounds = [0] + [first + (n - first) * i // (parts - 1) for i in range(parts)]
    futures = [_pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    fn(bounds[0], bounds[1])
    for future in futures:
        future.result()


set_blas_threads(1)  # the parts above are the parallelism; see microgpt/autograd/blas.py for why
