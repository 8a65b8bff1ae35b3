"""A model for use outside microgpt: one folder any safetensors reader (PyTorch, NumPy, ...) understands.

    model.safetensors   every weight under the original project's names (wte, wpe, layer0.attn_wq, ..., lm_head)
    config.json         the model's shape (GPTConfig) and where it came from
    tokenizer.json      the local vocabulary: BOS (id 0), the 256 bytes (ids 1-256), then the cl100k ids kept
                        (or the characters, for a char tokenizer), each token's bytes in hex, and the state
                        microgpt rebuilds the tokenizer from

`load_export` reads such a folder back into a Checkpoint, so chat-once, eval and serve take it like a file.
Needs the `safetensors` package (the serve extra).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save

from microgpt.atomic import atomic_write_bytes, atomic_write_json
from microgpt.data.tokenizer import tokenizer_from_dict
from microgpt.errors import CheckpointError, ConfigError, MicrogptError
from microgpt.nn import GPT, GPTConfig
from microgpt.storage.checkpoint import Checkpoint

EXPORT_FORMAT = "microgpt-export"
EXPORT_VERSION = 1
FILES = ("model.safetensors", "config.json", "tokenizer.json")


def is_export(path: Path) -> bool:
    """A folder that holds an export's files."""
    return path.is_dir() and all((path / name).is_file() for name in FILES)


def save_export(checkpoint: Checkpoint, out_dir: str | os.PathLike[str], source: str = "") -> Path:
    """Write `checkpoint`'s model and tokenizer to `out_dir` (created if needed), each file atomically."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file; give a folder to export into")
    out.mkdir(parents=True, exist_ok=True)
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    if not hasattr(tokenizer, "to_dict"):
        raise ConfigError(f"{source or 'this checkpoint'}: its tokenizer (the original Go format's) cannot be "
                          "exported; retrain or export a checkpoint made by microgpt")
    weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in model.state_dict().items()}
    atomic_write_bytes(out / "model.safetensors", save(weights, metadata={"format": "pt"}))
    atomic_write_json(out / "config.json", {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model": model.config.to_dict(),
        "source": {"checkpoint": source, "run_id": checkpoint.meta.get("run_id"), "step": checkpoint.meta.get("step")},
    })
    atomic_write_json(out / "tokenizer.json", {
        "format": "microgpt-tokenizer", "version": EXPORT_VERSION, "kind": tokenizer.kind,
        "bos_id": tokenizer.bos_id, "vocab_size": tokenizer.vocab_size,
        "tokens_hex": [tokenizer.decode_bytes([i]).hex() for i in range(tokenizer.vocab_size)],
        "state": tokenizer.to_dict(),
    })
    return out


def load_export(folder: str | os.PathLike[str]) -> Checkpoint:
    """An export folder -> Checkpoint; one-line CheckpointError naming the file and the problem."""
    folder = Path(folder)
    config = _json(folder / "config.json")
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{folder / 'config.json'}: not a microgpt export (no \"format\": \"{EXPORT_FORMAT}\")")
    tokenizer_file = _json(folder / "tokenizer.json")
    try:
        model = GPT(GPTConfig(**config["model"]), seed=0)
        weights = load_file(folder / "model.safetensors")
        model.load_state_dict(weights)
        tokenizer = tokenizer_from_dict(tokenizer_file["state"])
    except MicrogptError as exc:
        raise CheckpointError(f"{folder}: {exc}") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{folder / 'model.safetensors'}: unreadable ({exc})") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}: export content does not fit together ({type(exc).__name__}: {exc})") \
            from None
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{folder}: tokenizer has {tokenizer.vocab_size} tokens, the model "
                              f"{model.config.vocab_size}")
    return Checkpoint(model, tokenizer, {"format": "export", **config.get("source", {})})


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
