"""Resuming a run: which settings a checkpoint decides, and which it never may.

A resumed run keeps what its checkpoint fixed (`FIXED_ON_RESUME`: the model's shape and function, i.e. its
weights' names and sizes, the activation, tied embeddings and norm gains; the tokenizer, split and seed; the
optimizer, whose state the checkpoint holds; the run name, which is its run id). DROPOUT
is not among them: it is a training regulariser, not part of the model (the same weights, the same function at
inference), so a resumed run may change it like the learning rate, and the trainer applies the new value.
Where it writes and which rank file it reads (`NEVER_FROM_CHECKPOINT`) come from the command line, the
environment or the defaults, never from the checkpoint: a checkpoint is data that anyone may have made,
and it must not choose which files get overwritten. Its stored paths are shown in the log, never used.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from microgpt.config import KNOBS, TrainConfig, config_from_dict, format_value
from microgpt.errors import CheckpointError, ConfigError
from microgpt.nn.bounds import finite_float32
from microgpt.nn.gpt import OLD_POSITIONS
from microgpt.storage import Checkpoint, load_checkpoint
from microgpt.train.artifacts import SAFE_RUN_ID

# the checkpoint's model, tokenizer and data split decide these: a resumed run cannot change them
MODEL_KNOBS = ("N_LAYER", "N_EMBD", "N_HEAD", "BLOCK_SIZE", "ACTIVATION", "TIE_EMBEDDINGS", "NORM_GAIN", "POSITIONS")
# what a resumed run keeps from its checkpoint, each knob with the words for what it is part of
FIXED_ON_RESUME = {**dict.fromkeys(MODEL_KNOBS, "model"), "TOKENIZER": "tokenizer", "TOKEN_VOCAB_SIZE": "tokenizer",
                   "BPE_ENCODING": "tokenizer", "VAL_SPLIT": "data split", "SEED": "seed", "OPTIMIZER": "optimizer",
                   "RUN_NAME": "run name (its run id)", "ZERO_INIT": "initialisation (weights it began from)"}
# where a run writes, and which rank file it opens, come from this command line, the environment or the
# defaults: never from a checkpoint, which may come from anyone (the rank file is checked by its sha256)
NEVER_FROM_CHECKPOINT = ("MODEL_OUT_PATH", "MODEL_BEST_PATH", "MODEL_DIR", "LOG_DIR", "BPE_FILE")


def stored_config(checkpoint: Checkpoint, where: str = "checkpoint",
                  fix: str = "resume from another checkpoint") -> TrainConfig:
    """The training config a checkpoint was saved with; CheckpointError (ending in `fix`) if it holds none."""
    stored = checkpoint.meta.get("train_config")
    if stored is None:
        raise CheckpointError(f"{where}: holds no training state to resume (not a training checkpoint)")
    if not isinstance(stored, Mapping):
        raise CheckpointError(f"{where}: meta.train_config is not an object of settings; {fix}")
    try:  # checkpoints from before OPTIMIZER used Adam, from before POSITIONS a learned position table, and
        # from before ZERO_INIT random output weights (the original's initialisation)
        return config_from_dict({"optimizer": "adam", "positions": OLD_POSITIONS, "zero_init": False, **stored})
    except ConfigError as exc:  # a value no run could have saved: the file's fault, not the command line's
        raise CheckpointError(f"{where}: meta.train_config: {exc}; {fix}") from None


def check_resumable(cfg: TrainConfig, checkpoint: Checkpoint, where: str = "checkpoint") -> None:
    """ConfigError (one line) when `cfg` changes a setting the checkpoint fixed (FIXED_ON_RESUME);
    CheckpointError when the training state a resume needs is missing or malformed (check_training_state)."""
    check_training_state(checkpoint, where)
    before = stored_config(checkpoint, where)
    for knob in MODEL_KNOBS:  # the stored config must describe the model the file holds, or the log would lie
        field = knob.lower()
        if before.get(field) != getattr(checkpoint.model.config, field):
            raise CheckpointError(f"{where}: meta.train_config says {knob}={format_value(before.get(field))} but its "
                                  f"model has {format_value(getattr(checkpoint.model.config, field))}; resume from "
                                  "another checkpoint")
    for knob, what in FIXED_ON_RESUME.items():
        old, new = before.get(knob.lower()), cfg.get(knob.lower())
        if new != old:
            raise ConfigError(f"{knob}={format_value(new)}: a resumed run keeps the {what} it was started with "
                              f"({knob}={format_value(old)}); start a new run to change it")
    _check_steps_left(cfg, checkpoint.meta)


def _check_steps_left(cfg: TrainConfig, meta: Mapping[str, Any]) -> None:
    """ConfigError (one line) when the resumed run has nothing left to do: its step has reached NUM_STEPS (an
    evaluation a stop interrupted there is still made up), or early stopping has already ended it."""
    step, used = meta["step"], meta["patience_used"]
    pending = meta.get("eval_pending") is True
    if step > cfg.num_steps or (step == cfg.num_steps and not pending):
        raise ConfigError(f"NUM_STEPS={cfg.num_steps}: this run is already at step {step}; give --num-steps above "
                          f"{step} to train it further")
    if used >= cfg.early_stop_patience and not pending:
        raise ConfigError(f"EARLY_STOP_PATIENCE={cfg.early_stop_patience}: this run has gone {used} evaluation"
                          f"{'s' * (used != 1)} without an improvement above EARLY_STOP_MIN_DELTA "
                          f"({format_value(cfg.early_stop_min_delta)}) by step {step}, which that patience ends at "
                          f"once; give --early-stop-patience above {used} to train it further")


def resume_config(checkpoint_path: str, overrides: Mapping[str, str],
                  env: Mapping[str, str] | None = None) -> tuple[TrainConfig, Checkpoint]:
    """The checkpoint and its stored config with `overrides` ({KNOB: text}, e.g. flags) laid on top.

    The NEVER_FROM_CHECKPOINT knobs are not taken from the checkpoint at all: they come from `overrides`,
    else the environment (`env`, default os.environ), else their defaults.
    """
    environ = os.environ if env is None else env
    checkpoint = load_checkpoint(checkpoint_path, bpe_file=overrides.get("BPE_FILE", environ.get("BPE_FILE")))
    stored = stored_config(checkpoint, checkpoint_path).to_dict()
    base = {field: value for field, value in stored.items() if field.upper() not in NEVER_FROM_CHECKPOINT}
    fresh = {name: environ[name] for name in NEVER_FROM_CHECKPOINT if environ.get(name, "").strip()}
    try:
        return config_from_dict({**base, **fresh, **overrides}, check_paths=True), checkpoint
    except ConfigError as exc:
        if "DATASET_PATH" in overrides or not str(exc).startswith("DATASET_PATH="):
            raise
        raise ConfigError(f"{exc}: it is the dataset {checkpoint_path} was trained on; give --dataset-path to "
                          "continue on it from here (a resumed run does not read DATASET_PATH from the environment)"
                          ) from None


def ignored_environment_note(overrides: Mapping[str, str], cfg: TrainConfig,
                             env: Mapping[str, str] | None = None) -> str | None:
    """One line naming the knob variables set in the environment that differ from what a resume uses: on
    resume the checkpoint's config and the flags decide, so `NUM_STEPS=2000 train --resume ...` would
    otherwise stop at the stored NUM_STEPS without a word."""
    environ = os.environ if env is None else env

    def differs(name: str, field: str) -> bool:
        try:
            return config_from_dict({name: environ[name]}).get(field) != cfg.get(field)
        except ConfigError:  # not even a valid value: ignored all the same
            return True

    ignored = [f"{k.name}={environ[k.name].strip()!r}" for k in KNOBS
               if k.name not in NEVER_FROM_CHECKPOINT and k.name not in overrides and environ.get(k.name, "").strip()
               and differs(k.name, k.field)]
    if not ignored:
        return None
    return (f"note: a resumed run takes its settings from the checkpoint and the flags, not the environment: "
            f"{', '.join(ignored)} ignored (pass them as flags, e.g. --num-steps, to change them)")


def check_training_state(checkpoint: Checkpoint, where: str) -> None:
    """Every field a resume reads, present and of the right kind, or one CheckpointError naming it."""
    meta, count = checkpoint.meta, checkpoint.model.num_parameters()
    checks: dict[str, Any] = {
        "run_id": lambda v: isinstance(v, str) and SAFE_RUN_ID.fullmatch(v) is not None,
        "step": _whole, "patience_used": _whole, "tokens_seen": _whole,
        "best_val_loss": lambda v: _number(v) and (math.isfinite(v) or v == math.inf),  # inf: none measured yet
        "val_loss": _number,
        "recent_losses": lambda v: isinstance(v, list) and all(map(_number, v)),
        "rng_state": _rng_state_fits,
    }
    optional: dict[str, Any] = {  # written by later versions; an older checkpoint has none of them
        "patience_mark": checks["best_val_loss"],
        "val_step": lambda v: v is None or (_whole(v) and v <= meta.get("step", -1)),
        "elapsed_s": lambda v: _number(v) and 0 <= v < 1e10,  # the run's training time so far, in seconds
    }
    for name, fits in checks.items():
        if name not in meta or not fits(meta[name]):
            raise CheckpointError(f"{where}: meta.{name} is missing or malformed, so the run cannot resume "
                                  "from it (resume from another checkpoint, or start a new run)")
    for name, fits in optional.items():
        if name in meta and not fits(meta[name]):
            raise CheckpointError(f"{where}: meta.{name} is malformed, so the run cannot resume from it (resume "
                                  "from another checkpoint, or start a new run)")
    state = checkpoint.optimizer_state
    for name in ("m", "v"):
        if name not in state or state[name].shape != (count,) or not finite_float32(state[name]) \
                or (name == "v" and (state[name] < 0).any()):
            raise CheckpointError(f"{where}: optim/{name} is missing or is not {count:,} finite numbers"
                                  f"{' (at least 0: squares)' if name == 'v' else ''}")
    if "t" not in state or state["t"].shape != () or not _whole(state["t"].item()):
        raise CheckpointError(f"{where}: optim/t (the optimizer's step count) is missing or malformed")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62  # a count any run reaches


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rng_state_fits(value: Any) -> bool:
    """True when NumPy accepts `value` as a generator state (it checks the algorithm and the fields)."""
    try:
        np.random.default_rng().bit_generator.state = value
    except (TypeError, ValueError, KeyError, OverflowError):
        return False
    return True


def schedule_note(stored: Mapping[str, Any] | None, cfg: TrainConfig, step: int) -> str | None:
    """One log line when a resume changes NUM_STEPS: the learning-rate schedule is stretched (or shrunk) to the
    new length, so the rate from here on is not the one the run would have had (a decayed rate can rise again)."""
    before = stored.get("num_steps") if isinstance(stored, Mapping) else None
    if not isinstance(before, int) or isinstance(before, bool) or before == cfg.num_steps or step >= cfg.num_steps:
        return None
    then = ""
    if step > 0:  # the rate of the last step trained, by the schedule it was trained under
        with contextlib.suppress(ConfigError, ValueError, TypeError):
            then = f" (step {step:,} trained at {config_from_dict(dict(stored)).optim.lr_at(step - 1, before):.6f})"
    return (f"NUM_STEPS {before:,} -> {cfg.num_steps:,}: the {cfg.optim.lr_schedule} learning-rate schedule now spans "
            f"{cfg.num_steps:,} steps, so step {step + 1:,} trains at {cfg.optim.lr_at(step, cfg.num_steps):.6f}{then}")


def validation_note(stored: Mapping[str, Any] | None, cfg: TrainConfig) -> str | None:
    """A warning when a resume changes BATCH_SIZE x EVAL_STEPS: the validation windows are spread over the
    validation text by their count, that product, so another count measures other windows, and a loss may
    beat the best so far without the model being any better (the same count in other batches: the same loss)."""
    stored = stored if isinstance(stored, Mapping) else {}
    before = (stored.get("batch_size"), stored.get("eval_steps"))
    if not all(type(v) is int for v in before) or before[0] * before[1] == cfg.batch_size * cfg.eval_steps:
        return None
    return (f"BATCH_SIZE x EVAL_STEPS is {cfg.batch_size} x {cfg.eval_steps}, the checkpoint's {before[0]} x "
            f"{before[1]}: the validation loss is measured on other windows than the best so far, so the two do "
            "not compare (keep both to compare)")


def stored_paths_note(stored: Mapping[str, Any] | None, cfg: TrainConfig) -> str | None:
    """One log line naming the checkpoint's paths that differ from this run's (shown, never used)."""
    stored = stored if isinstance(stored, Mapping) else {}
    differ = [f"{name}={stored[name.lower()]!r}" for name in NEVER_FROM_CHECKPOINT
              if name.lower() in stored and stored[name.lower()] != cfg.get(name.lower())]
    if not differ:
        return None
    return (f"the checkpoint was saved with {', '.join(differ)}; this run writes where its own command line, "
            "environment and defaults say (a checkpoint never chooses paths)")
