"""Checkpoints: one self-describing .npz file, readable without pickle, written atomically.

Inside: `format_version`; `meta` (UTF-8 JSON: model config, training config, tokenizer, step, RNG state,
metrics); one array per weight under `param/<name>`; Adam's state under `optim/<key>`.
The original Go project's JSON checkpoints are read by `go_checkpoint.py`.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microgpt.atomic import atomic_open
from microgpt.data.tokenizer import Tokenizer, tokenizer_from_dict
from microgpt.errors import CheckpointError, MicrogptError
from microgpt.nn import GPT, GPTConfig
from microgpt.nn.optim import Adam

FORMAT_VERSION = 1
_NAME = re.compile(r"ckpt_(?P<run>.+?)_step(?P<step>\d+)(?:_valloss(?P<loss>[0-9.]+|nan|inf))?\.npz$")


@dataclass
class Checkpoint:
    """What a checkpoint file holds, ready to use."""

    model: GPT
    tokenizer: Any
    meta: dict[str, Any]
    optimizer_state: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def _json_array(obj: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


def save_checkpoint(path: str | os.PathLike[str], model: GPT, tokenizer: Tokenizer, meta: dict[str, Any],
                    optimizer: Adam | None = None) -> Path:
    """Write model, tokenizer, optimizer state and `meta` (step, config, RNG, metrics) to one file, atomically."""
    path = Path(path)
    meta = {**meta, "model_config": model.config.to_dict(), "tokenizer": tokenizer.to_dict()}
    arrays = {f"param/{name}": value for name, value in model.state_dict().items()}
    if optimizer is not None:
        arrays.update({f"optim/{k}": v for k, v in optimizer.state_dict().items()})
    with atomic_open(path, "wb") as f:
        np.savez(f, format_version=np.asarray(FORMAT_VERSION), meta=_json_array(meta), **arrays)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint of ours (.npz) or of the original Go project (.json); one-line error if unusable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file (train one with `python -m microgpt train`)")
    if path.suffix == ".json":
        from microgpt.train.go_checkpoint import load_go_checkpoint

        return load_go_checkpoint(path)
    damaged = f"{path}: damaged or truncated checkpoint ({{}}); use another file, e.g. models/best_checkpoint.npz"
    if not zipfile.is_zipfile(path):  # np.load would read a .npy or a pickle instead, and explain neither well
        raise CheckpointError(damaged.format("not an .npz archive"))
    try:
        with np.load(path, allow_pickle=False) as f:
            version = int(f["format_version"])
            if version != FORMAT_VERSION:
                raise CheckpointError(f"{path}: checkpoint format version {version}, this microgpt reads "
                                      f"version {FORMAT_VERSION}")
            meta = json.loads(f["meta"].tobytes().decode("utf-8"))
            params = {k.removeprefix("param/"): f[k] for k in f.files if k.startswith("param/")}
            optim = {k.removeprefix("optim/"): f[k] for k in f.files if k.startswith("optim/")}
    except MicrogptError:
        raise
    except (OSError, EOFError, KeyError, TypeError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(damaged.format(f"{type(exc).__name__}: {exc}")) from None
    try:
        model = GPT(GPTConfig(**meta["model_config"]), seed=0)
        model.load_state_dict(params)
        tokenizer = tokenizer_from_dict(meta["tokenizer"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: checkpoint content does not fit together ({exc})") from None
    return Checkpoint(model, tokenizer, meta, optim)


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Run, step, val loss, kind, size and date of a checkpoint, read cheaply (name and meta, not weights)."""
    path = Path(path)
    stat = path.stat()
    info: dict[str, Any] = {"path": str(path), "run": "", "step": None, "val_loss": None,
                            "kind": _kind_of(path.name), "size_bytes": stat.st_size, "modified": stat.st_mtime}
    named = _NAME.match(path.name)
    if named:
        info.update(run=named["run"], step=int(named["step"]),
                    val_loss=float(named["loss"]) if named["loss"] else None)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(f["meta"].tobytes().decode("utf-8"))
            info.update(run=meta.get("run_id", info["run"]), step=meta.get("step"),
                        val_loss=meta.get("val_loss", info["val_loss"]))
        except (OSError, EOFError, KeyError, TypeError, AttributeError, ValueError, zipfile.BadZipFile,
                UnicodeDecodeError):
            info["kind"] = "damaged"
    return info


def _kind_of(name: str) -> str:
    if name.startswith("latest_checkpoint"):
        return "latest"
    if name.startswith("best_checkpoint"):
        return "best"
    return "step" if name.startswith("ckpt_") else "other"


def step_checkpoint_name(run_id: str, step: int, val_loss: float) -> str:
    """models/ckpt_<run>_step<NNNN>_valloss<L.LLLL>.npz, or without the loss when none was measured yet."""
    loss = f"_valloss{val_loss:.4f}" if math.isfinite(val_loss) else ""
    return f"ckpt_{run_id}_step{step:04d}{loss}.npz"
