"""What this machine offers: its CPU and usable cores, the BLAS library under NumPy, and NVIDIA GPUs.

Read by `gpu-check`, the benchmarks and the dashboard, so each of them describes the machine the same way.
threadpoolctl is optional: without it the BLAS comes from NumPy's build information.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

GPU_QUERY = ("--query-gpu=index,name,driver_version,memory.total,memory.used", "--format=csv,noheader,nounits")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:  # not Linux: platform's answer is the best there is
        return name


def blas_pools() -> list[dict[str, Any]]:
    """threadpoolctl's record of each BLAS library loaded (version, kernels, threads); [] without it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [pool for pool in threadpool_info() if pool.get("user_api") == "blas"]


def blas_kernels() -> str:
    """The BLAS library, version and the kernels it picked for this CPU: a speed figure holds only for them."""
    pool = next(iter(blas_pools()), None)
    if pool is None:
        return "BLAS unknown (threadpoolctl not installed)"
    return f"{pool.get('internal_api', '?')} {pool.get('version', '?')} ({pool.get('architecture') or 'unknown'} kernels)"


def blas_report() -> list[str]:
    """One line per BLAS library with its threads, or NumPy's build information when threadpoolctl is missing."""
    lines = [f"{pool.get('internal_api', '?')} {pool.get('version') or ''} "
             f"({pool.get('threading_layer', 'threads')}, {pool.get('num_threads', '?')} threads)".replace("  ", " ")
             for pool in blas_pools()]
    if lines:
        return lines
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return [f"{blas.get('name', '?')} {blas.get('version', '')} (from NumPy build info)".replace("  ", " ")]
    except (TypeError, KeyError, AttributeError):
        return ["unknown (this NumPy cannot report its build configuration)"]


def _smi(smi: str, *args: str) -> list[str]:
    """The non-empty output lines of one nvidia-smi call, [] if it fails or hangs."""
    try:
        result = subprocess.run([smi, *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()] if result.returncode == 0 else []


def _describe(row: str) -> str:
    """One `index, name, driver, total MiB, used MiB` CSV row -> a readable line (the row itself if odd)."""
    parts = [p.strip() for p in row.split(",")]
    if len(parts) != 5:
        return row
    index, name, driver, total, used = parts
    return f"{index}: {name}, driver {driver}, memory {total} MiB ({used} MiB used)"


def nvidia_gpus() -> list[str]:
    """One line per NVIDIA GPU with its driver and memory (as the original's gpu-check), from `nvidia-smi` when
    it is on PATH, else the driver's /proc entries; [] when none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        found = [_describe(row) for row in _smi(smi, *GPU_QUERY)] or _smi(smi, "-L")
        if found:
            return found
    gpus_dir = Path("/proc/driver/nvidia/gpus")
    if gpus_dir.is_dir():
        return [f"NVIDIA GPU at PCI {entry.name} (from /proc/driver/nvidia)" for entry in sorted(gpus_dir.iterdir())]
    return []
