"""How many threads the BLAS library (OpenBLAS or MKL, under NumPy's matmul) may use.

Splitting one big matrix product over both cores pays off; splitting each of the many tiny per-head
products of attention does not: the threads' hand-off costs more than the work (measured 5-8x slower).
`blas_threads(1)` runs a block of code with a single BLAS thread. Without threadpoolctl it does nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

try:
    from threadpoolctl import ThreadpoolController

    _BLAS = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
except ImportError:  # threadpoolctl is optional: then BLAS keeps its own default
    _BLAS = []


def set_blas_threads(n: int) -> None:
    """Let BLAS use `n` threads from now on."""
    for controller in _BLAS:
        controller.set_num_threads(n)


def get_blas_threads() -> int:
    return _BLAS[0].get_num_threads() if _BLAS else 0


@contextlib.contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with `n` BLAS threads, then restore the previous count."""
    if not _BLAS:
        yield
        return
    previous = [c.get_num_threads() for c in _BLAS]
    for controller in _BLAS:
        controller.set_num_threads(n)
    try:
        yield
    finally:
        for controller, count in zip(_BLAS, previous):
            controller.set_num_threads(count)
