"""How many threads the BLAS library (OpenBLAS or MKL, under NumPy's matmul) may use.

microgpt keeps BLAS on one thread and splits big operations over the cores itself
(microgpt.autograd.parallel). BLAS's own threads spin while they wait for each other: they make the many
tiny per-head products of attention 5-8x slower, and every product far slower when another program holds a
core. Our own parts just share the cores that are free. Without threadpoolctl this module does nothing.
"""

from __future__ import annotations

try:
    from threadpoolctl import ThreadpoolController

    _BLAS = [c for c in ThreadpoolController().lib_controllers if c.user_api == "blas"]
except ImportError:  # threadpoolctl is optional: then BLAS keeps its own default
    _BLAS = []


def set_blas_threads(n: int) -> None:
    """Let BLAS use `n` threads from now on."""
    for controller in _BLAS:
        controller.set_num_threads(n)
