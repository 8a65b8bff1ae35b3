"""`microgpt gpu-check`: what compute this machine offers, and what TRAIN_DEVICE=gpu will really do.

microgpt runs every tensor operation through NumPy, so training speed comes from the CPU and the
BLAS library NumPy was built with (OpenBLAS, MKL, Accelerate). A GPU, if present, is reported but
not used: TRAIN_DEVICE=gpu falls back to the CPU with a warning.
"""

from __future__ import annotations

import argparse
import importlib.util
import os

import numpy as np
import psutil

from microgpt.errors import clipped
from microgpt.hardware import blas_report, nvidia_gpus

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """gpu-check takes no options; it only reads the machine."""


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
    thread_vars = [f"{name}={clipped(os.environ[name], 40)}" for name in THREAD_ENV_VARS if name in os.environ]
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
