"""Dataset file -> tokenizer and token streams for training and validation (cached on disk)."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from microgpt.config import TrainConfig
from microgpt.config.parse import not_text
from microgpt.data.dataset import load_documents, sha256_file
from microgpt.data.token_cache import cache_key, load_cached_tokenizer, tokenize_cached, tokenizer_fingerprint
from microgpt.data.tokenizer import TOKENIZER_VERSION, Tokenizer, build_tokenizer
from microgpt.errors import ConfigError, clipped
from microgpt.train.batches import join_with_bos, split_documents


@dataclass
class PreparedData:
    """Everything the training loop needs from the dataset."""

    tokenizer: Tokenizer
    train_stream: np.ndarray
    val_stream: np.ndarray
    dataset_sha256: str
    counts: dict[str, int]
    n_train_docs: int
    n_val_docs: int
    val_texts: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {"sha256": self.dataset_sha256, "records": sum(self.counts.values()), "counts": self.counts,
                "train_documents": self.n_train_docs, "val_documents": self.n_val_docs,
                "train_tokens": int(self.train_stream.size), "val_tokens": int(self.val_stream.size)}


def cache_dir() -> Path:
    """Where tokenized datasets are kept: $MICROGPT_CACHE_DIR (empty or spaces: unset; ~ expands) or .cache/microgpt in
    the working folder; a control character in it is refused, as in every other folder a user names."""
    raw = os.environ.get("MICROGPT_CACHE_DIR", "")
    if any(map(not_text, raw)):  # the knobs' own test: a no-break space or a Persian name is a folder's name
        raise ConfigError(f"MICROGPT_CACHE_DIR={clipped(raw)}: holds a control character; give a plain folder path")
    return Path(raw.strip() or ".cache/microgpt").expanduser()


def prepare_data(cfg: TrainConfig, tokenizer: Tokenizer | None = None) -> PreparedData:
    """Load and validate the dataset (DatasetError lists every bad line), split it by document, build the
    tokenizer on the training split (unless one is given, e.g. when resuming) and tokenize both splits."""
    documents = load_documents(cfg.dataset_path)
    digest = sha256_file(cfg.dataset_path)
    train_idx, val_idx = split_documents(len(documents), cfg.val_split, cfg.seed)
    train_texts = [documents[i].text for i in train_idx]
    val_texts = [documents[i].text for i in val_idx]
    settings = {"kind": cfg.tokenizer, "vocab_size": cfg.model.vocab_size, "encoding": cfg.bpe_encoding,
                "bpe_file": cfg.bpe_file, "val_split": cfg.val_split, "seed": cfg.seed, "version": TOKENIZER_VERSION}
    key = cache_key(digest, settings)
    built = load_cached_tokenizer(cache_dir(), key, cfg.bpe_file or None)  # the vocabulary an earlier run built on this training split
    if tokenizer is None:  # a second run finds it in the cache instead of counting tokens again
        tokenizer = built or build_tokenizer(
            cfg.tokenizer, cfg.model.vocab_size, train_texts, cfg.bpe_encoding, cfg.bpe_file or None)
    elif built is None or built.to_dict() != tokenizer.to_dict():
        # a checkpoint's vocabulary built on other data (fine-tuning, eval): its ids get a file of their own,
        # so a fresh run on this dataset never mistakes that vocabulary for the one built on it
        key = cache_key(digest, {**settings, "given": tokenizer_fingerprint(tokenizer)})
    tokens = tokenize_cached(tokenizer, train_texts + val_texts, cache_dir(), key)
    bos = tokenizer.bos_id
    counts = Counter(d.record_type for d in documents)
    return PreparedData(
        tokenizer=tokenizer,
        train_stream=join_with_bos(tokens[:len(train_texts)], bos),
        val_stream=join_with_bos(tokens[len(train_texts):], bos),
        dataset_sha256=digest,
        counts=dict(counts),
        n_train_docs=len(train_texts),
        n_val_docs=len(val_texts),
        val_texts=val_texts,
    )
