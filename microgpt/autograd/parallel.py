"""Splitting one big NumPy operation over the CPU cores with threads.

NumPy releases the GIL inside its loops and BLAS calls, so two Python threads working on two halves of an
array really run at the same time. NumPy's own elementwise loops (exp, max, sum, ...) use one core only,
which is why big softmaxes and attention blocks are split here.

A hand-off is not free: waking a sleeping helper thread takes tens of microseconds, and on a virtual machine
(a 2-core cloud VM measured 40-60 us to start a helper, as long again for the caller to wake if it ends up
waiting) about 100. Each further helper costs much less (10-20 us: it is woken while the others already
run; measured on that VM and on a 16-core Xeon). So every caller states its `work` in nanoseconds of one
core (the `*_WORK` rates below are measured), only work worth more than a hand-off is split, and the calling
thread, which starts at once, takes a larger first range so it finishes last and never sleeps waiting for a
late helper. Parts also queue for the interpreter lock: every NumPy call on a big array lets go of it and
must take it back, waiting while another part runs Python. Callers whose parts make many such calls say how
many (`calls`), and get fewer parts (on a 16-core Xeon, 64 small products split 8 ways took 2.8x as long as
on one thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from microgpt.autograd.blas import set_blas_threads
from microgpt.hardware import usable_cores

MAX_THREADS = 256  # the most parts a split may be asked for (THREADS, bench --threads)
MIN_PART_WORK = 120_000  # ns: what splitting at all costs (the first helper's hand-off and the wait for it)
MORE_PART_WORK = 20_000  # ns: what each part past the second costs on top (one more helper woken)
CALL_WORK = 10_000  # ns: what each big NumPy call of a part costs per other part beside it (a turn at the lock)
HANDOFF = 50_000  # ns of work the calling thread does more than each helper: the helper's late start
# Rates in ns of one core, measured on one AVX-512 core (OpenBLAS SkylakeX); estimates, not guarantees.
MAC_WORK = 1 / 64  # one multiply-add inside a BLAS product
PASS_WORK = 1 / 4  # one element through one simple NumPy pass (max, multiply, add...)


class _Helper:
    """A thread that runs one range of a split at a time: `start` hands it (fn, lo, hi), `finish` waits for it.

    Two bare locks are the whole protocol (released to signal, acquired to wait): a hand-off costs one wake-up
    each way and none of a general-purpose pool's bookkeeping (futures, queues), ~7 us less per split here.
    """

    def __init__(self) -> None:
        self._go, self._done = threading.Lock(), threading.Lock()
        self._go.acquire()
        self._done.acquire()
        self._task: tuple[Callable[[int, int], None], int, int] | None = None
        self._error: BaseException | None = None
        threading.Thread(target=self._serve, name="microgpt-split", daemon=True).start()

    def _serve(self) -> None:
        while True:
            self._go.acquire()
            fn, lo, hi = self._task  # type: ignore[misc]
            try:
                fn(lo, hi)
            except Exception as error:  # noqa: BLE001 - not swallowed: finish() hands it to the caller, who raises it
                self._error = error
            finally:
                self._task = None
                self._done.release()

    def start(self, fn: Callable[[int, int], None], lo: int, hi: int) -> None:
        self._task = (fn, lo, hi)
        self._go.release()

    def finish(self) -> BaseException | None:
        """Wait until the range is done; the exception it raised, if any."""
        self._done.acquire()
        error, self._error = self._error, None
        return error


_parts = usable_cores()
_helpers: list[_Helper] = []
_in_use = threading.Lock()  # one split at a time has the helpers; a split started meanwhile runs on its caller


def _forget_helpers() -> None:
    """In a forked child the helper threads do not exist: start new ones when needed."""
    global _in_use
    _helpers.clear()
    _in_use = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_helpers)


def set_threads(n: int) -> None:
    """Use `n` threads for split operations (0 = one per available core)."""
    global _parts
    _parts = usable_cores() if n <= 0 else n


def _split_time(n: int, work: float, parts: int, calls: int = 0) -> float:
    """Estimated ns until `parts` parts are done: the longest part's units, plus the hand-offs, plus the turns
    at the interpreter lock when each part makes `calls` big NumPy calls.

    For many units this is work/p + MIN_PART_WORK + (p - 2) MORE_PART_WORK + (p - 1) calls CALL_WORK: going
    from p to p + 1 parts saves work/(p(p + 1)) and costs MORE_PART_WORK + calls CALL_WORK. For few units the
    longest part counts whole ones: 8 sequences in 7 parts take as long as in 4.
    """
    if parts == 1:
        return work
    return (-(-n // parts) * work / n + MIN_PART_WORK + (parts - 2) * MORE_PART_WORK
            + (parts - 1) * calls * CALL_WORK)


def split_parts(n: int, work: float, calls: int = 0) -> int:
    """How many parts run_split cuts `n` units of `work` ns into: the quickest by `_split_time`, at most the
    threads set (set_threads)."""
    if n < 2 or work <= MIN_PART_WORK:  # then no split beats one part: the first hand-off alone costs more
        return 1
    return min(range(1, min(_parts, n) + 1), key=lambda p: _split_time(n, work, p, calls))


def run_split(fn: Callable[[int, int], None], n: int, work: float, calls: int = 0) -> None:
    """Call fn(lo, hi) on consecutive ranges covering [0, n): in parallel when `work` (ns) is large.

    BLAS itself runs on one thread (set below, when this module is imported): the parts are the parallelism.
    The number of parts is the one that makes the split quickest by `_split_time`: small work stays on few
    cores however many there are. The calling thread works on the first range itself, HANDOFF longer than the
    others. The ranges depend only on (n, work, calls, threads), so results are the same run to run. A split
    asked for while another is running (from another thread, or from inside a part) runs on its own caller,
    whole.
    """
    parts = split_parts(n, work, calls)
    if parts < 2 or not _in_use.acquire(blocking=False):
        fn(0, n)
        return
    try:
        while len(_helpers) < parts - 1:
            _helpers.append(_Helper())
        first = min(n - parts + 1, round(n * (work + (parts - 1) * HANDOFF) / (parts * work)))
        bounds = [0] + [first + (n - first) * i // (parts - 1) for i in range(parts)]
        helpers = _helpers[:parts - 1]
        for i, helper in enumerate(helpers, start=1):
            helper.start(fn, bounds[i], bounds[i + 1])
        try:
            fn(bounds[0], bounds[1])
        finally:  # every helper is done with the shared arrays before anything moves on, even on an error
            errors = [helper.finish() for helper in helpers]
        for error in errors:
            if error is not None:
                raise error
    finally:
        _in_use.release()


set_blas_threads(1)  # the parts above are the parallelism; see microgpt/autograd/blas.py for why
