"""Read checkpoints written by the original Go microgpt: one JSON file with `config`, `tokenization`,
`bpe_token_ids` or `vocab`, and `state` (each weight a list of rows, named as our state_dict).

Its vocabularies are `data.go_tokenizer`'s; the weights load into our GPT unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from microgpt.data.go_tokenizer import GoBPETokenizer, GoCharTokenizer
from microgpt.data.tokenizer import CL100K
from microgpt.errors import CheckpointError, clipped
from microgpt.nn import GPT
from microgpt.nn.bounds import check_free_memory, check_weights, checked_model_config
from microgpt.safe_io import parse_json, read_capped
from microgpt.storage.checkpoint import Checkpoint

JSON_EXPANSION = 8  # parsed, a JSON number takes several times the bytes of its text
CONTAINER_BYTES = 100  # and each list or object about this much on its own: "[]," is 3 bytes of text


def load_go_checkpoint(path: Path, bpe_file: str | None = None) -> Checkpoint:
    """Build our GPT and a matching tokenizer from an original Go JSON checkpoint (a BPE vocabulary's ranks
    from `bpe_file` when given: an encoding other than the installed cl100k_base needs one).

    One error boundary: whatever the file holds (not JSON, nested 100,000 deep, bigger than memory allows,
    a list where an object belongs, a shape that does not fit, NaN weights), the answer is one
    CheckpointError naming the file and, where it can, the field.
    """
    try:
        size = os.stat(path).st_size
        check_free_memory(size * JSON_EXPANSION, f"{path}: {size:,} bytes of JSON", "use a smaller checkpoint",
                          CheckpointError)
        text = read_capped(path, size)
        containers = text.count(b"[") + text.count(b"{")  # an upper bound (brackets in strings count too)
        check_free_memory(size * JSON_EXPANSION + containers * CONTAINER_BYTES,
                          f"{path}: {size:,} bytes of JSON with {containers:,} lists and objects",
                          "use a smaller checkpoint", CheckpointError)
        raw = parse_json(text, max_depth=8)
        if not isinstance(raw, dict) or not isinstance(raw.get("config"), dict) or not isinstance(
                raw.get("state"), dict):
            raise CheckpointError(f"{path}: not a Go microgpt checkpoint (needs the objects config and state)")
        cfg, state = raw["config"], raw["state"]
        if raw.get("tokenization") == "bpe_cl100k" or raw.get("bpe_token_ids"):
            tokenizer = GoBPETokenizer(raw["bpe_token_ids"], raw.get("bpe_encoding", CL100K), bpe_file)
        else:
            tokenizer = GoCharTokenizer(raw["vocab"])
        with np.errstate(over="ignore"):  # 1e39 becomes infinity here, which check_weights names in one line
            weights = {name: np.asarray(rows, dtype=np.float32) for name, rows in state.items()}
        wte = weights.get("wte")
        if wte is None or wte.ndim != 2:
            raise CheckpointError(f"{path}: state.wte is missing or not a matrix of rows")
        if wte.shape[0] != tokenizer.vocab_size:
            raise CheckpointError(f"{path}: wte has {wte.shape[0]} rows but the tokenizer has "
                                  f"{tokenizer.vocab_size} ids")
        shape = {name: cfg.get(name) for name in ("n_layer", "n_embd", "n_head", "block_size")}
        config = checked_model_config({**shape, "vocab_size": tokenizer.vocab_size}, f"{path}: config",
                                      CheckpointError)
        check_weights({f"state.{name}": value for name, value in weights.items()}, str(path), CheckpointError)
        model = GPT(config, seed=0)
        model.load_state_dict(weights)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - the loader's boundary: any malformed content is one line
        raise CheckpointError(f"{path}: not a usable Go microgpt checkpoint ({type(exc).__name__}: "
                              f"{clipped(str(exc), 400)})") from None
    meta = {"format": "go-json", "version": raw.get("version"), "step": 0, "model_config": config.to_dict(),
            "tokenizer": tokenizer.to_dict()}
    return Checkpoint(model, tokenizer, meta)
