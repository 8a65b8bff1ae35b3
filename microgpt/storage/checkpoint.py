"""What every checkpoint format loads into (`Checkpoint`), and how checkpoint files are named."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microgpt.data.tokenizer import TokenCodec
from microgpt.nn import GPT


@dataclass
class Checkpoint:
    """What a checkpoint file holds, ready to use: the model, its tokenizer, `meta` and the optimizer state."""

    model: GPT
    tokenizer: TokenCodec  # a data.tokenizer.Tokenizer, or one of data.go_tokenizer's for the original's files
    meta: dict[str, Any]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


EXPORT_FILES = ("model.safetensors", "config.json", "tokenizer.json")  # an export folder's files (storage.export)
WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE = EXPORT_FILES
STEP_PREFIX = "ckpt_"  # a named step checkpoint's file: ckpt_<run>_step<NNNN>[_valloss<L>].npz


def checkpoint_name(kind: str) -> str:
    """The file a run keeps its `kind` ("best" or "latest") checkpoint in, in MODEL_DIR."""
    return f"{kind}_checkpoint.npz"


def step_checkpoint_name(run_id: str, step: int, val_loss: float) -> str:
    """models/ckpt_<run>_step<NNNN>_valloss<L.LLLL>.npz, or without the loss when none was measured yet."""
    loss = f"_valloss{val_loss:.4f}" if math.isfinite(val_loss) else ""
    return f"{STEP_PREFIX}{run_id}_step{step:04d}{loss}.npz"


def checkpoint_stem(path: str | os.PathLike[str]) -> str:
    """A checkpoint's short name, for a server's model list and an eval's results file: the file's stem, or an
    export folder's name (given as "." too, which has none of its own)."""
    path = Path(os.path.abspath(path))
    return (path.name if path.is_dir() else path.stem) or "model"  # a folder's dots are its name's: gpt.v1


def checkpoint_kind(name: str) -> str:
    """latest, best, step (a named step checkpoint) or other, from a file name."""
    for kind in ("latest", "best"):
        if name.startswith(Path(checkpoint_name(kind)).stem):
            return kind
    return "step" if name.startswith(STEP_PREFIX) else "other"
