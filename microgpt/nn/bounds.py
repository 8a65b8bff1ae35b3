"""A model's shape, checked before a single weight is allocated.

Every path to a GPT (knobs on the command line, a checkpoint's stored config, the original's JSON) goes
through `checked_model_config`: each dimension must be a whole number within `LIMITS`, N_EMBD divisible
by N_HEAD, and the weights (times what training or loading keeps per weight) must fit in the memory this
machine has free right now (psutil). `GPTConfig.parameter_shapes` says, from the config alone, which
arrays a checkpoint of that model must hold and how big each is, so a file can be checked against its own
config before its arrays are read.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import psutil

from microgpt.errors import MicrogptError, shown
from microgpt.nn.gpt import OLD_POSITIONS, GPTConfig

LIMITS: dict[str, tuple[int, int]] = {
    "vocab_size": (1, 1 << 20),  # cl100k_base has about 100k tokens; a million is far beyond any use here
    "n_layer": (1, 256),
    "n_embd": (1, 16_384),
    "n_head": (1, 1024),
    "block_size": (2, 65_536),
}
BYTES_INFERENCE = 4  # float32 weights


def finite_float32(values: np.ndarray) -> bool:
    """Floats that stay finite as float32, which the model computes in: no NaN or infinity, and no float64
    beyond float32's range (1e300 would become infinity on loading)."""
    values = np.asarray(values)
    return values.dtype.kind == "f" and bool(np.isfinite(values).all()) and (
        values.dtype.itemsize <= 4 or float(np.abs(values).max(initial=0.0)) <= float(np.finfo(np.float32).max))


def check_weights(weights: Mapping[str, np.ndarray], label: str, error: type[MicrogptError] = MicrogptError) -> None:
    """Every weight finite floats (as float32 too); `error` naming `label` and the weight if not (NaN or
    infinity: the run diverged before the save, or the file is damaged). Huge finite weights load: a run with a
    learning rate far too high saves them itself, and what they make the model say is its own business."""
    for name, value in weights.items():
        if not finite_float32(value):
            raise error(f"{label}: weight {name} holds NaN or infinite values (or numbers past float32's range, "
                        "or is not floats); the model diverged before this was saved, or the file is damaged: use "
                        "an earlier checkpoint")


def checked_model_config(values: Mapping[str, Any] | GPTConfig, label: str,
                         error: type[MicrogptError] = MicrogptError,
                         needed_bytes: Callable[[GPTConfig], float] | None = None) -> GPTConfig:
    """`values` as a GPTConfig whose model fits in free memory; otherwise `error` with one line naming
    `label` (a file or "model shape"), the field, the value and the allowed range.

    `needed_bytes` says what the caller will allocate for that config (default: the float32 weights).
    """
    if isinstance(values, GPTConfig):
        values = values.to_dict()
    if not isinstance(values, Mapping):
        raise error(f"{label}: the model config is {type(values).__name__}, not an object of fields")
    values = {"positions": OLD_POSITIONS, **values}  # a config saved before RoPE existed had a position table
    for name, (low, high) in LIMITS.items():
        value = values.get(name, getattr(GPTConfig, name))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise error(f"{label}: {name}={value!r}: must be a whole number from {low:,} to {high:,}")
    unknown = sorted(set(values) - set(GPTConfig.__dataclass_fields__))
    if unknown:
        raise error(f"{label}: unknown model config field(s): {', '.join(shown(key, 40) for key in unknown[:3])}"
                    f"{f' and {len(unknown) - 3} more' if len(unknown) > 3 else ''}")
    try:
        config = GPTConfig(**values)
    except (TypeError, ValueError) as exc:
        raise error(f"{label}: {exc}") from None
    flags_ok = isinstance(config.norm_gain, bool) and isinstance(config.tie_embeddings, bool)
    if not flags_ok or not isinstance(config.init_std, (int, float)) or not math.isfinite(config.init_std):
        raise error(f"{label}: init_std must be a finite number, norm_gain and tie_embeddings true or false")
    needed = needed_bytes(config) if needed_bytes else BYTES_INFERENCE * config.num_parameters()
    check_free_memory(needed, f"{label}: a model of {config.num_parameters():,} weights", "choose a smaller shape",
                      error)
    return config


def check_free_memory(needed_bytes: float, what: str, fix: str, error: type[MicrogptError] = MicrogptError) -> None:
    """`error` in one line when `needed_bytes` is more than the memory free right now (psutil), before anything
    that size is allocated: "WHAT needs about X GiB, but only Y GiB of memory is free; FIX"."""
    available = psutil.virtual_memory().available
    if needed_bytes > available:
        raise error(f"{what} needs about {needed_bytes / 2**30:,.1f} GiB, but only {available / 2**30:,.1f} GiB of "
                    f"memory is free; {fix}")
