"""Splitting one big NumPy operation over the CPU cores with threads.

NumPy releases the GIL inside its loops and BLAS calls, so two Python threads working on two halves of an
array really run at the same time. NumPy's own elementwise loops (exp, max, sum, ...) use one core only,
which is why big softmaxes and attention blocks are split here. A hand-off costs tens of microseconds, so
only work above a size threshold is split.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from microgpt.autograd.blas import set_blas_threads

MIN_PARALLEL_ELEMENTS = 1 << 18  # below ~256k elements one thread is faster than a hand-off


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


def run_split(fn: Callable[[int, int], None], n: int, elements: int) -> None:
    """Call fn(lo, hi) on consecutive ranges covering [0, n): in parallel when `elements` is large.

    BLAS itself runs on one thread (set below, when this module is imported): the parts are the parallelism.
    Each part gets at least half of MIN_PARALLEL_ELEMENTS, so small work stays on few cores however many
    there are. The calling thread works on the first range itself: one hand-off per helper is the overhead.
    """
    global _pool
    parts = min(_parts, n, elements // (MIN_PARALLEL_ELEMENTS // 2))
    if parts < 2:
        fn(0, n)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=_parts - 1, thread_name_prefix="microgpt")
    bounds = [n * i // parts for i in range(parts + 1)]
    futures = [_pool.submit(fn, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    fn(bounds[0], bounds[1])
    for future in futures:
        future.result()


set_blas_threads(1)  # the parts above are the parallelism; see microgpt/autograd/blas.py for why
