"""The machine as the dashboard shows it: CPU and RAM, the trainer's process, the GPU line, the project root.

`SystemSampler.tick` takes a sample once a second whether or not a run is going (psutil calls that never
block), so the Train tab's Runtime Summary and the Monitor header are current even when idle. The GPU line
is what `gpu-check` finds; nvidia-smi can take a moment, so it is asked once, on a background thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

from microgpt.hardware import nvidia_gpus

_MB = 1024 * 1024
ROOT_MARKERS = ("pyproject.toml", "datasets")


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (the current one) that holds pyproject.toml or datasets/;
    `start` itself when none does. The TUI works from there, so datasets/, logs/ and models/ mean the
    project's folders wherever it was launched from."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in ROOT_MARKERS):
            return folder
    return start


@dataclass
class SystemSnapshot:
    """One sample: the machine's CPU and RAM, and the trainer's pid and resident memory (None when idle)."""

    cpu_percent: float = 0.0
    ram_used_mb: float = 0.0
    ram_total_mb: float = 0.0
    trainer_pid: int | None = None
    trainer_rss_mb: float | None = None


class SystemSampler:
    """The latest SystemSnapshot and the GPU line, refreshed by `tick` every `interval_s`."""

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 gpu_probe: Callable[[], list[str]] = nvidia_gpus) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.latest = SystemSnapshot()
        self.gpu = "checking…"
        self._last = -float("inf")
        self._gpu_probe = gpu_probe
        self._gpu_thread: threading.Thread | None = None
        psutil.cpu_percent(interval=None)  # primes the counter: the next call measures a real interval

    def _find_gpu(self) -> None:
        try:
            found = self._gpu_probe()
        except OSError as exc:
            found, self.gpu = [], f"unknown ({exc})"
            return
        self.gpu = found[0] if found else "none found: training uses the CPU"

    def tick(self, trainer_pid: int | None) -> bool:
        """Sample when `interval_s` has passed since the last sample; True when it did."""
        if self._gpu_thread is None:
            self._gpu_thread = threading.Thread(target=self._find_gpu, daemon=True, name="gpu-check")
            self._gpu_thread.start()
        now = self.clock()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        memory = psutil.virtual_memory()
        rss = None
        if trainer_pid is not None:
            try:
                rss = psutil.Process(trainer_pid).memory_info().rss / _MB
            except (psutil.Error, OSError):
                rss = None
        self.latest = SystemSnapshot(psutil.cpu_percent(interval=None), memory.used / _MB, memory.total / _MB,
                                     trainer_pid, rss)
        return True

    def machine(self) -> str:
        """`cpu 35%  ram 3.2/7.7 GB` for the whole machine."""
        s = self.latest
        if not s.ram_total_mb:
            return "cpu/ram: first sample in a second"
        return f"cpu {s.cpu_percent:.0f}%  ram {s.ram_used_mb / 1024:.1f}/{s.ram_total_mb / 1024:.1f} GB"

    def trainer(self) -> str:
        """`pid 4242  rss 250 MB` for the training process, `-` while none runs."""
        s = self.latest
        if s.trainer_pid is None:
            return "-"
        return f"pid {s.trainer_pid}" + (f"  rss {s.trainer_rss_mb:.0f} MB" if s.trainer_rss_mb is not None else "")

    def summary(self) -> str:
        """The machine and, while one runs, the trainer's resident memory."""
        rss = self.latest.trainer_rss_mb
        return self.machine() + (f"  rss {rss:.0f} MB" if rss is not None else "")
