"""Read checkpoints written by the original Go microgpt: one JSON file with `config`, `tokenization`,
`bpe_token_ids` or `vocab`, and `state` (each weight a list of rows, named as our state_dict).

Its vocabularies are `data.go_tokenizer`'s; the weights load into our GPT unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from microgpt.data.go_tokenizer import GoBPETokenizer, GoCharTokenizer
from microgpt.errors import CheckpointError
from microgpt.nn import GPT, GPTConfig
from microgpt.storage.checkpoint import Checkpoint


def load_go_checkpoint(path: Path) -> Checkpoint:
    """Build our GPT and a matching tokenizer from an original Go JSON checkpoint."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        cfg, state = raw["config"], raw["state"]
        if raw.get("tokenization") == "bpe_cl100k" or raw.get("bpe_token_ids"):
            tokenizer = GoBPETokenizer(raw["bpe_token_ids"], raw.get("bpe_encoding", "cl100k_base"))
        else:
            tokenizer = GoCharTokenizer(raw["vocab"])
        weights = {name: np.asarray(rows, dtype=np.float32) for name, rows in state.items()}
        config = GPTConfig(vocab_size=weights["wte"].shape[0], n_layer=int(cfg["n_layer"]),
                           n_embd=int(cfg["n_embd"]), n_head=int(cfg["n_head"]), block_size=int(cfg["block_size"]))
        if config.vocab_size != tokenizer.vocab_size:
            raise ValueError(f"wte has {config.vocab_size} rows but the tokenizer has {tokenizer.vocab_size} ids")
        model = GPT(config, seed=0)
        model.load_state_dict(weights)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a usable Go microgpt checkpoint ({type(exc).__name__}: {exc})") from None
    meta = {"format": "go-json", "version": raw.get("version"), "step": 0, "model_config": config.to_dict(),
            "tokenizer": tokenizer.to_dict()}
    return Checkpoint(model, tokenizer, meta)
