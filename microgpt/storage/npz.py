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
import psutil

from microgpt.atomic import atomic_open
from microgpt.data.tokenizer import Tokenizer, tokenizer_from_dict
from microgpt.errors import CheckpointError, ConfigError, MicrogptError, clipped
from microgpt.nn import GPT, Adam, GPTConfig
from microgpt.nn.bounds import check_weights, checked_model_config
from microgpt.safe_io import NpyMember, inspect_npz, parse_json
from microgpt.storage.checkpoint import Checkpoint

FORMAT_VERSION = 1
MAX_META_BYTES = 16 << 20  # a checkpoint's metadata is a few kB (a char vocabulary, an RNG state)
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


def is_npz_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a zip holding our format's version member: a microgpt checkpoint (its content unchecked)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return "format_version.npy" in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the `meta` JSON of an .npz checkpoint (no weights); raises one of META_ERRORS if unreadable."""
    members = inspect_npz(path, max_bytes=psutil.virtual_memory().available)
    with np.load(path, allow_pickle=False) as f:
        return _meta(f, members)


def load_npz_checkpoint(path: Path, bpe_file: str | None = None) -> Checkpoint:
    """Read one of our .npz checkpoints; CheckpointError (one line) if it is damaged or does not fit together.

    Nothing is believed before it is checked, and nothing big is allocated before the check that bounds
    it: the archive's members (sizes, headers: safe_io.inspect_npz), the metadata (size, depth), the model
    shape against sane limits and free memory (nn.bounds), every weight's declared shape against that
    shape; then the weights are read and must be finite. `bpe_file` is the rank file the user chose
    (BPE_FILE); the path a checkpoint stores is never opened.
    """
    damaged = f"{path}: damaged or truncated checkpoint ({{}}); use another file, e.g. models/best_checkpoint.npz"
    if not zipfile.is_zipfile(path):  # np.load would read a .npy or a pickle instead, and explain neither well
        raise CheckpointError(damaged.format("not an .npz archive"))
    try:  # the error boundary: whatever the file holds, the caller gets one CheckpointError
        members = inspect_npz(path, max_bytes=psutil.virtual_memory().available)
        with np.load(path, allow_pickle=False) as f:
            if "format_version" not in members or members["format_version"].shape != ():
                raise CheckpointError(damaged.format("no format_version"))
            version = int(f["format_version"])
            if version != FORMAT_VERSION:
                raise CheckpointError(f"{path}: checkpoint format version {version}, this microgpt reads "
                                      f"version {FORMAT_VERSION}")
            meta = _meta(f, members)
            config = checked_model_config(meta.get("model_config"), f"{path}: model_config", CheckpointError)
            _check_declared_weights(path, members, config)
            params = {k.removeprefix("param/"): f[k] for k in f.files if k.startswith("param/")}
            optim = {k.removeprefix("optim/"): f[k] for k in f.files if k.startswith("optim/")}
        check_weights({f"param/{name}": value for name, value in params.items()}, str(path), CheckpointError)
        if not isinstance(meta.get("tokenizer"), dict):
            raise CheckpointError(f"{path}: meta.tokenizer is missing or not an object")
        try:
            tokenizer = tokenizer_from_dict(meta["tokenizer"], bpe_file)
        except ConfigError as exc:  # a rank file to give, or a tokenizer the file spoils: say which file
            raise ConfigError(f"{path}: {exc}") from None
        if tokenizer.vocab_size != config.vocab_size:
            raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but model_config."
                                  f"vocab_size is {config.vocab_size}")
        model = GPT(config, seed=0)
        model.load_state_dict(params)
    except MicrogptError:
        raise
    except Exception as exc:  # noqa: BLE001 - the loader's boundary: any malformed content is one line
        raise CheckpointError(damaged.format(f"{type(exc).__name__}: {clipped(str(exc), 400)}")) from None
    return Checkpoint(model, tokenizer, meta, optim)


def _meta(f: Any, members: dict[str, NpyMember]) -> dict[str, Any]:
    """The `meta` member as a dict: at most MAX_META_BYTES of UTF-8 JSON nested at most 64 deep."""
    declared = members.get("meta")
    if declared is None or declared.dtype != np.uint8 or len(declared.shape) != 1:
        raise ValueError("meta: missing or not a byte array")
    if declared.nbytes > MAX_META_BYTES:
        raise ValueError(f"meta: {declared.nbytes:,} bytes, more than the {MAX_META_BYTES:,} allowed")
    meta = parse_json(f["meta"].tobytes())
    if not isinstance(meta, dict):
        raise TypeError(f"meta: a JSON {type(meta).__name__}, not an object")
    return meta


def _check_declared_weights(path: Path, members: dict[str, NpyMember], config: GPTConfig) -> None:
    """Every weight the config implies is there, as floats of the implied shape, and nothing else is."""
    expected = config.parameter_shapes()
    stored = {name.removeprefix("param/"): m for name, m in members.items() if name.startswith("param/")}
    for name in sorted(set(stored) - set(expected)):
        raise CheckpointError(f"{path}: param/{name} is not a weight of the model its model_config describes")
    for name, shape in expected.items():
        member = stored.get(name)
        if member is None:
            raise CheckpointError(f"{path}: param/{name} is missing")
        if member.shape != shape or member.dtype.kind != "f":
            raise CheckpointError(f"{path}: param/{name} is {member.dtype} {member.shape}; model_config implies "
                                  f"float {shape}")
