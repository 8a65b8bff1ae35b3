"""A model for use outside microgpt: one folder any safetensors reader (PyTorch, NumPy, ...) understands.

    model.safetensors   every weight under the original project's names (wte, wpe with learned positions,
                        layer0.attn_wq, ..., lm_head)
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
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from microgpt.atomic import atomic_folder, atomic_write_bytes, atomic_write_json
from microgpt.data.go_tokenizer import any_tokenizer_from_dict
from microgpt.errors import CheckpointError, ConfigError, MicrogptError, shown
from microgpt.nn import GPT
from microgpt.nn.bounds import check_weights, checked_model_config
from microgpt.safe_io import check_name_length, open_regular, parse_json, read_capped, writable_folder
from microgpt.storage.checkpoint import CONFIG_FILE, EXPORT_FILES, TOKENIZER_FILE, WEIGHTS_FILE, Checkpoint

EXPORT_FORMAT = "microgpt-export"
EXPORT_VERSION = 1
MAX_JSON_BYTES = 64 << 20  # tokenizer.json lists every token's bytes: a few MB for the largest vocabulary


def save_export(checkpoint: Checkpoint, out_dir: str | os.PathLike[str], source: str = "",
                replace: bool = False) -> Path:
    """Write `checkpoint`'s model and tokenizer to `out_dir`. A new folder, or one replacing an earlier export,
    is swapped in whole (atomic.atomic_folder): a crash or an error on the way leaves no half-written folder and
    the earlier export as it was. An existing empty folder, or a mount point (which no rename can replace), is
    filled in place, each file written whole (temp, fsync, rename), so the folder's own permissions stay and
    only it need be writable; a link is followed to its folder.

    A new or empty `out_dir` is taken; one holding an earlier export is replaced only with `replace`; a folder
    holding anything else is never touched. Each refusal is one ConfigError naming OUT_DIR.
    """
    label = f"OUT_DIR={os.fspath(out_dir)!r}"
    if not os.fspath(out_dir).strip():
        raise ConfigError(f"{label}: empty; give a folder path, such as 'exported'")
    out = Path(os.path.realpath(out_dir))  # "." or "exported/" too, or a link: the real folder, its real parent
    check_name_length(label, out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{label}: is not a folder; give a folder path")
    try:
        held = {entry.name for entry in out.iterdir()} if out.is_dir() else set()
    except OSError as exc:
        raise ConfigError(f"{label}: cannot be read ({exc.strerror}); give a folder you can read") from None
    in_place = out.is_dir() and (not held or os.path.ismount(out))  # see below
    # an unwritable place: one line, nothing written (a folder filled in place needs only itself writable; a
    # folder swapped in whole is made beside it)
    writable_folder("OUT_DIR", out if in_place else out.parent, value=out_dir)
    if held - set(EXPORT_FILES):
        foreign = sorted(held - set(EXPORT_FILES))
        raise ConfigError(f"{label}: holds files that are not an export's ({shown(foreign[0])}"
                          f"{', ...' if len(foreign) > 1 else ''}); "
                          "give a new or empty folder")
    if held and not replace:
        raise ConfigError(f"{label}: already holds an export; add --force to replace it (atomically), or give "
                          "another folder")
    model, tokenizer = checkpoint.model, checkpoint.tokenizer
    weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in model.state_dict().items()}
    config = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "model": model.config.to_dict(),
              "source": {"checkpoint": source, "run_id": checkpoint.meta.get("run_id"),
                         "step": checkpoint.meta.get("step")}}
    vocabulary = {"format": "microgpt-tokenizer", "version": EXPORT_VERSION, **_vocabulary(tokenizer),
                  "state": tokenizer.to_dict()}

    def write_into(folder: Path) -> None:
        atomic_write_bytes(folder / WEIGHTS_FILE, save(weights, metadata={"format": "pt"}))
        atomic_write_json(folder / CONFIG_FILE, config)
        atomic_write_json(folder / TOKENIZER_FILE, vocabulary)

    if in_place:  # an empty folder (one with its own permissions), or a mount point, is filled in place, each
        write_into(out)  # file atomically: a new folder renamed over it would fail or lose them
    else:  # a new folder, or an earlier export replaced: swapped in whole
        with atomic_folder(out) as folder:
            write_into(folder)
    return out


def load_export(folder: str | os.PathLike[str], bpe_file: str | None = None) -> Checkpoint:
    """An export folder -> Checkpoint; one-line CheckpointError naming the file and the problem.

    As for our .npz files, nothing is believed before it is checked: the JSON files are size- and
    depth-capped, the model shape is bounded (nn.bounds), the safetensors header's shapes must be the
    ones that shape implies before the weights are read, and the weights must be finite. `bpe_file` is
    the user's BPE_FILE; a rank-file path named in tokenizer.json is never opened.
    """
    folder = Path(folder)
    weights_path = folder / WEIGHTS_FILE
    config = _json(folder / CONFIG_FILE)
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{folder / CONFIG_FILE}: not a microgpt export (no \"format\": \"{EXPORT_FORMAT}\")")
    version = config.get("version")
    if type(version) is not int or version != EXPORT_VERSION:
        raise CheckpointError(f"{folder / CONFIG_FILE}: export format version {json.dumps(version)[:40]}, this "
                              f"microgpt reads version {EXPORT_VERSION}")
    tokenizer_file = _json(folder / TOKENIZER_FILE)
    try:  # the loader's boundary: any malformed content is one CheckpointError
        shape = checked_model_config(config.get("model"), f"{folder / CONFIG_FILE}: model", CheckpointError)
        open_regular(weights_path).close()  # a FIFO would block safe_open forever, a device feed it without end
        with safe_open(weights_path, "np") as f:
            declared = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
        expected = shape.parameter_shapes()
        for name in sorted(set(declared) | set(expected)):
            if declared.get(name) != expected.get(name):
                raise CheckpointError(f"{weights_path}: {name} is {declared.get(name)}, config.json implies "
                                      f"{expected.get(name)}")
        weights = load_file(weights_path)
        check_weights(weights, str(weights_path), CheckpointError)
        if not isinstance(tokenizer_file, dict) or not isinstance(tokenizer_file.get("state"), dict):
            raise CheckpointError(f"{folder / TOKENIZER_FILE}: no tokenizer state object")
        tokenizer = any_tokenizer_from_dict(tokenizer_file["state"], bpe_file)
        _check_vocabulary(tokenizer_file, tokenizer, folder / TOKENIZER_FILE)
        model = GPT(shape, seed=0)
        model.load_state_dict(weights)
    except CheckpointError:
        raise
    except MicrogptError as exc:
        raise CheckpointError(f"{folder}: {exc}") from None
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights_path}: unreadable ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - the loader's boundary
        raise CheckpointError(f"{folder}: export content does not fit together ({type(exc).__name__}: {exc})") \
            from None
    if tokenizer.vocab_size != model.config.vocab_size:
        raise CheckpointError(f"{folder}: tokenizer has {tokenizer.vocab_size} tokens, the model "
                              f"{model.config.vocab_size}")
    source = config.get("source") if isinstance(config.get("source"), dict) else {}
    kept = {key: source.get(key) for key, kind in (("checkpoint", str), ("run_id", str), ("step", int))
            if isinstance(source.get(key), kind) and not isinstance(source.get(key), bool)}
    return Checkpoint(model, tokenizer, {**kept, "format": "export"})  # only what is shown, checked by type


def _vocabulary(tokenizer: Any) -> dict[str, Any]:
    """What tokenizer.json says about the vocabulary, for readers outside microgpt."""
    return {"kind": tokenizer.kind, "bos_id": tokenizer.bos_id, "vocab_size": tokenizer.vocab_size,
            "tokens_hex": [tokenizer.decode_bytes([i]).hex() for i in range(tokenizer.vocab_size)]}


def _check_vocabulary(saved: dict, tokenizer: Any, path: Path) -> None:
    """tokenizer.json's bos_id, vocab_size and tokens_hex must be those of the tokenizer its state rebuilds:
    a reader outside microgpt believes them, so a file whose two halves disagree is refused."""
    for name, value in _vocabulary(tokenizer).items():
        if saved.get(name) != value:
            shown = "its list" if name == "tokens_hex" else repr(saved.get(name))[:40]
            raise CheckpointError(f"{path}: {name} ({shown}) disagrees with the tokenizer its state rebuilds; "
                                  "export the checkpoint again")


def _json(path: Path) -> Any:
    try:
        return parse_json(read_capped(path, MAX_JSON_BYTES))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError, too deep are ValueErrors
        raise CheckpointError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
