"""A cheap snapshot of the machine and this process, taken every few seconds during training."""

from __future__ import annotations

import psutil

_MB = 1024 * 1024


class SystemMonitor:
    """Samples CPU, RAM and this process's footprint without ever blocking.

    `psutil.cpu_percent(interval=None)` reports the CPU use *since the previous call*, so the
    constructor primes it once; the first `sample()` then already measures a real interval.
    """

    def __init__(self) -> None:
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)

    def sample(self) -> dict[str, float | int]:
        """Return cpu_percent (whole machine), ram_used_mb, ram_percent, rss_mb (this process), threads."""
        memory = psutil.virtual_memory()
        with self._process.oneshot():
            rss = self._process.memory_info().rss
            threads = self._process.num_threads()
        return {
            "cpu_percent": round(psutil.cpu_percent(interval=None), 1),
            "ram_used_mb": round(memory.used / _MB, 1),
            "ram_percent": round(memory.percent, 1),
            "rss_mb": round(rss / _MB, 1),
            "threads": threads,
        }
