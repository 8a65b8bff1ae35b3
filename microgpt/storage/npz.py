"""Our checkpoint format: one self-describing .npz file, readable without pickle, written atomically.

Inside: `format_version`; `meta` (UTF-8 JSON: model config, training config, tokenizer, step, RNG state,
metrics); one array per weight under `param/<name>`; the optimizer's state under `optim/<key>`.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from microgpt.atomic import atomic_open
from microgpt.data.tokenizer import Tokenizer, tokenizer_from_dict
from microgpt.errors import CheckpointError, MicrogptError
from microgpt.nn import GPT, Adam, GPTConfig
from microgpt.storage.checkpoint import Checkpoint

FORMAT_VERSION = 1
META_ERRORS = (OSError, EOFError, KeyError, TypeError, AttributeError, ValueError, zipfile.BadZipFile,
               UnicodeDecodeError)


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


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the `meta` JSON of an .npz checkpoint (no weights); raises one of META_ERRORS if unreadable."""
    with np.load(path, allow_pickle=False) as f:
        return json.loads(f["meta"].tobytes().decode("utf-8"))


def load_npz_checkpoint(path: Path) -> Checkpoint:
    """Read one of our .npz checkpoints; CheckpointError (one line) if it is damaged or does not fit together."""
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
