"""Where a run writes, checked before it starts: a run that cannot save must fail in the first second, not
after an hour of training.

`check_output_locations` checks MODEL_DIR, LOG_DIR, the token cache folder and MODEL_OUT_PATH: each
folder exists or can be created, is a folder, and accepts a new file; MODEL_OUT_PATH is not a folder;
MODEL_DIR's disk has room for the checkpoints a run writes. Every problem is one ConfigError naming the
knob, the path and the fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil

from microgpt.errors import ConfigError
from microgpt.files import writable_file, writable_folder

CHECKPOINTS_PER_RUN = 3  # latest, best and the final one may all be written before the first is replaced


def checkpoint_bytes(parameters: int) -> int:
    """A checkpoint's size: float32 weights plus Adam's two moments, and a little for the metadata."""
    return 3 * 4 * parameters + (1 << 20)


def check_output_locations(model_dir: str, log_dir: str, cache_dir: str | os.PathLike[str], model_out_path: str,
                           parameters: int) -> None:
    """Every output location of a run, checked up front (see the module docstring)."""
    models = writable_folder("MODEL_DIR", model_dir)
    writable_folder("LOG_DIR", log_dir)
    writable_folder("MICROGPT_CACHE_DIR", cache_dir)
    if model_out_path:
        writable_file("MODEL_OUT_PATH", model_out_path, "final.npz")
    needed = CHECKPOINTS_PER_RUN * checkpoint_bytes(parameters)
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(models).free
        if free < needed:
            raise ConfigError(f"MODEL_DIR={model_dir!r}: {free / 2**20:,.0f} MiB free, a run of this size needs "
                              f"about {needed / 2**20:,.0f} MiB for its checkpoints; free some space or choose "
                              "another MODEL_DIR")
