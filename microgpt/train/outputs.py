"""What a run needs, checked before it starts: a run that cannot fit or cannot save must fail in the first
second, not after an hour of training.

`preflight` checks the model shape against free memory (nn.bounds, with the training footprint: weights,
gradients, Adam's moments and one batch's activations), then the outputs. `check_output_locations` checks
MODEL_DIR, LOG_DIR, the token cache folder, MODEL_OUT_PATH and MODEL_BEST_PATH: each folder exists or can be
created, is a folder, and accepts a new file; the two paths are not folders, devices or FIFOs, and the best
checkpoint's path (the default one too) is neither the final's nor the latest's (each save would overwrite
the best model), and neither path is a file the run writes itself (LOG_DIR's train_latest.log, the run lock);
MODEL_DIR's disk has room for the checkpoints a run writes; a file already at either path is a checkpoint (a
run replaces an earlier run's model, never a dataset or a log). Every problem is one ConfigError naming the
knob, the path and the fix.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from microgpt.config import TrainConfig
from microgpt.errors import ConfigError
from microgpt.nn import GPTConfig
from microgpt.nn.bounds import check_free_memory, checked_model_config
from microgpt.safe_io import writable_file, writable_folder
from microgpt.storage import checkpoint_name, is_npz_checkpoint
from microgpt.train.artifacts import LATEST_LOG
from microgpt.train.run_lock import LOCK_NAME

CHECKPOINTS_PER_RUN = 3  # latest, best and the final one may all be written before the first is replaced


def checkpoint_bytes(parameters: int) -> int:
    """A checkpoint's size: float32 weights plus Adam's two moments, and a little for the metadata."""
    return 3 * 4 * parameters + (1 << 20)


def _only_a_checkpoint_there(knob: str, path: str) -> None:
    """ConfigError if a file is at `path` and it is not a microgpt checkpoint (.npz with its format_version)."""
    if not Path(path).is_file() or is_npz_checkpoint(path):
        return
    raise ConfigError(f"{knob}={path!r}: already holds a file that is not a microgpt checkpoint, which the run "
                      "would overwrite; give a new path (or move that file away first)")


def check_output_locations(model_dir: str, log_dir: str, cache_dir: str | os.PathLike[str], model_out_path: str,
                           parameters: int, model_best_path: str) -> None:
    """Every output location of a run, checked up front (see the module docstring)."""
    models = writable_folder("MODEL_DIR", model_dir)
    writable_folder("LOG_DIR", log_dir)
    writable_folder("the token cache's folder MICROGPT_CACHE_DIR", cache_dir)  # a variable the help names too
    if model_out_path:
        writable_file("MODEL_OUT_PATH", model_out_path, "final.npz")
        _only_a_checkpoint_there("MODEL_OUT_PATH", model_out_path)
    if model_best_path:
        writable_file("MODEL_BEST_PATH", model_best_path, "best.npz")
        _only_a_checkpoint_there("MODEL_BEST_PATH", model_best_path)
    own = {Path(log_dir) / LATEST_LOG: "LOG_DIR's train_latest.log", models / LOCK_NAME: "MODEL_DIR's run lock"}
    for knob, path in (("MODEL_OUT_PATH", model_out_path), ("MODEL_BEST_PATH", model_best_path)):
        for other, what in own.items():
            if path and Path(path).resolve() == other.resolve():
                raise ConfigError(f"{knob}={path!r}: is {what}, a file the run writes itself; give another path")
    best = Path(model_best_path) if model_best_path else models / checkpoint_name("best")
    best_named = f"MODEL_BEST_PATH={model_best_path!r}" if model_best_path else f"the best checkpoint ({best})"
    for knob, other in (("MODEL_OUT_PATH", model_out_path), ("MODEL_DIR", models / checkpoint_name("latest"))):
        if other and Path(other).resolve() == best.resolve():
            raise ConfigError(f"{best_named}: is also where {knob} puts "
                              f"{'the final' if knob == 'MODEL_OUT_PATH' else 'the latest'} checkpoint, "
                              "which would overwrite the best one; give another path")
    needed = CHECKPOINTS_PER_RUN * checkpoint_bytes(parameters)
    with contextlib.suppress(OSError):
        free = shutil.disk_usage(models).free
        if free < needed:
            raise ConfigError(f"MODEL_DIR={model_dir!r}: {free / 2**20:,.0f} MiB free, a run of this size needs "
                              f"about {needed / 2**20:,.0f} MiB for its checkpoints; free some space or choose "
                              "another MODEL_DIR")


def preflight(cfg: TrainConfig, model: GPTConfig, cache_dir: str | os.PathLike[str]) -> None:
    """The model fits in memory for training with this batch size, so do the validation windows, and every
    output location works."""
    checked_model_config(model, "model shape (N_LAYER, N_EMBD, N_HEAD, BLOCK_SIZE, TOKEN_VOCAB_SIZE with "
                         f"BATCH_SIZE={cfg.batch_size})", ConfigError,
                         needed_bytes=lambda shape: shape.training_memory_mb(cfg.batch_size) * 2**20)
    windows = cfg.batch_size * cfg.eval_steps  # held for the whole run: inputs and targets, int64 each
    training = model.training_memory_mb(cfg.batch_size) * 2**20
    check_free_memory(2 * 8 * windows * (model.block_size + 1) + training, f"EVAL_STEPS={cfg.eval_steps}: its "
                      f"{windows:,} validation windows (with BATCH_SIZE={cfg.batch_size}) beside training",
                      "give a smaller EVAL_STEPS", ConfigError)
    check_output_locations(cfg.model_dir, cfg.log_dir, cache_dir, cfg.model_out_path, model.num_parameters(),
                           cfg.model_best_path)
