"""`microgpt gpu-check`: what compute this machine offers, and what TRAIN_DEVICE=gpu will really do.

microgpt runs every tensor operation through NumPy, so training speed comes from the CPU and the
BLAS library NumPy was built with (OpenBLAS, MKL, Accelerate). A GPU, if present, is reported but
not used: TRAIN_DEVICE=gpu falls back to the CPU with a warning.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import psutil

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """gpu-check takes no options; it only reads the machine."""


def blas_report() -> list[str]:
    """One line per BLAS library NumPy uses, from threadpoolctl (live, with thread counts) or NumPy's build info."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        lines = [
            f"{pool.get('internal_api', '?')} {pool.get('version') or ''} "
            f"({pool.get('threading_layer', 'threads')}, {pool.get('num_threads', '?')} threads)".replace("  ", " ")
            for pool in threadpool_info()
            if pool.get("user_api") == "blas"
        ]
        if lines:
            return lines
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return [f"{blas.get('name', '?')} {blas.get('version', '')} (from NumPy build info)".replace("  ", " ")]
    except (TypeError, KeyError, AttributeError):
        return ["unknown (this NumPy cannot report its build configuration)"]


GPU_QUERY = ("--query-gpu=index,name,driver_version,memory.total,memory.used", "--format=csv,noheader,nounits")


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


def report() -> list[str]:
    """The whole report as lines of text."""
    memory = psutil.virtual_memory()
    logical = psutil.cpu_count(logical=True)
    physical = psutil.cpu_count(logical=False)
    lines = [
        f"NumPy          {np.__version__}",
        *(f"BLAS           {line}" for line in blas_report()),
        f"CPU cores      {logical} logical, {physical if physical else 'unknown'} physical",
        f"Memory         {memory.total / 2**30:.1f} GiB total, {memory.available / 2**30:.1f} GiB available",
    ]
    thread_vars = [f"{name}={os.environ[name]}" for name in THREAD_ENV_VARS if name in os.environ]
    lines.append(f"Thread env     {' '.join(thread_vars) if thread_vars else 'none set'}")
    gpus = nvidia_gpus()
    lines += [f"NVIDIA GPU     {gpu}" for gpu in gpus] or ["NVIDIA GPU     none found"]
    if importlib.util.find_spec("cupy") is not None:
        lines.append("CuPy           installed, but microgpt does not use it")
    lines += [
        "",
        "TRAIN_DEVICE=cpu  trains with NumPy on the CPU cores above (the only backend microgpt has).",
        "TRAIN_DEVICE=gpu  is accepted, but this NumPy build trains on the CPU: the trainer prints a warning",
        "                  and falls back to cpu." + (" The GPU above stays idle." if gpus else ""),
        ("BLAS runs on one thread; microgpt splits big operations over the cores itself "
        "(THREADS=0: one part per core; THREADS=N: N parts)."),
    ]
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the report; always succeeds."""
    print("\n".join(report()))
    return 0
