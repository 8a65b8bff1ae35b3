"""Read checkpoints written by the original Go microgpt: one JSON file with `config`, `tokenization`,
`bpe_token_ids` or `vocab`, and `state` (each weight a list of rows, named as our state_dict).

Its vocabularies differ from ours. BPE: local id i is cl100k token bpe_token_ids[i], then UNK = K and BOS = K+1;
tokens outside the vocabulary become UNK. Char: local id i is vocab[i], then BOS = len(vocab); unknown
characters are dropped. Decoding drops UNK and BOS, as the original did.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from microgpt.errors import CheckpointError
from microgpt.nn import GPT, GPTConfig


class GoBPETokenizer:
    """The original's BPE vocabulary: a list of cl100k ids, plus UNK and BOS at the end."""

    def __init__(self, token_ids: list[int], encoding: str = "cl100k_base") -> None:
        from microgpt.data.tokenizer import BPETokenizer

        self._cl100k = BPETokenizer([], encoding)._ranks
        self.token_ids = [int(t) for t in token_ids]
        self.unk_id = len(self.token_ids)
        self.bos_id = self.unk_id + 1
        self.vocab_size = self.bos_id + 1
        self._to_local = {t: i for i, t in enumerate(self.token_ids)}

    def encode(self, text: str) -> list[int]:
        ranks, _ = self._cl100k.encode([text])
        return [self._to_local.get(int(r), self.unk_id) for r in ranks]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self._cl100k.token_bytes(self.token_ids[i]) for i in ids if 0 <= i < self.unk_id)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict:
        return {"kind": "go-bpe", "token_ids": self.token_ids}


class GoCharTokenizer:
    """The original's character vocabulary, BOS last, unknown characters dropped."""

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = list(vocab)
        self.bos_id = len(self.vocab)
        self.vocab_size = self.bos_id + 1
        self._to_local = {c: i for i, c in enumerate(self.vocab)}

    def encode(self, text: str) -> list[int]:
        return [self._to_local[c] for c in text if c in self._to_local]

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return self.decode(ids).encode("utf-8")

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.vocab[i] for i in ids if 0 <= i < self.bos_id)

    def to_dict(self) -> dict:
        return {"kind": "go-char", "vocab": self.vocab}


def load_go_checkpoint(path: Path):  # -> Checkpoint (imported lazily to avoid a cycle)
    """Build our GPT and a matching tokenizer from an original Go JSON checkpoint."""
    from microgpt.train.checkpoint import Checkpoint

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
