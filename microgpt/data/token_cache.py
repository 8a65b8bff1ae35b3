"""A disk cache for tokenized datasets, so the second run over the same data starts in seconds.

One `.npz` file per key holds every document's ids concatenated (int32), their offsets, and the tokenizer
that made them (its to_dict as JSON). The key comes from the dataset's sha256 plus the tokenizer settings,
so editing the data or changing a knob makes a new file instead of reusing a stale one; ids made with a
vocabulary built elsewhere (a resumed checkpoint's) add its fingerprint to the key. A cache file
that does not read or hold together (ids outside the vocabulary, offsets that do not add up) is rebuilt.
Files are written to a temporary name, fsynced, then renamed over the target: a crash never leaves half
a cache behind.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import psutil

from microgpt.atomic import atomic_open
from microgpt.data.tokenizer import Tokenizer, tokenizer_from_dict
from microgpt.safe_io import inspect_npz, parse_json


def cache_key(dataset_sha256: str, tokenizer_settings: dict) -> str:
    """A short, stable name for (dataset content, tokenizer settings); put the split in the settings too."""
    payload = json.dumps({"dataset": dataset_sha256, "tokenizer": tokenizer_settings}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]


def tokenizer_fingerprint(tokenizer: Tokenizer) -> str:
    """A short, stable name for a tokenizer's whole vocabulary (its to_dict)."""
    return hashlib.sha256(json.dumps(tokenizer.to_dict(), sort_keys=True).encode("utf-8")).hexdigest()[:24]


def cache_path(cache_dir: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"tokens-{key}.npz"


def load_cached_tokenizer(cache_dir: str | Path, key: str, bpe_file: str | None = None) -> Tokenizer | None:
    """The tokenizer stored under `key`, or None: lets a second run skip building the vocabulary. `bpe_file` is
    the rank file a BPE tokenizer of another encoding than the installed cl100k_base is read from."""
    cached = _read(cache_path(cache_dir, key))
    if cached is None:
        return None
    try:
        return tokenizer_from_dict(cached[2], bpe_file)
    except Exception:  # noqa: BLE001 - an edited or stale cache is rebuilt, never fatal
        return None


def tokenize_cached(
    tokenizer: Tokenizer, texts: list[str], cache_dir: str | Path, key: str
) -> list[np.ndarray]:
    """Each text's ids as an int32 array, read from the cache when it matches, else encoded and stored."""
    path = cache_path(cache_dir, key)
    cached = _read(path)
    if cached and cached[2] == tokenizer.to_dict() and len(cached[1]) == len(texts) + 1 \
            and (cached[0].size == 0 or 0 <= cached[0].min() <= cached[0].max() < tokenizer.vocab_size):
        ids, offsets, _ = cached
    else:
        ids, offsets = tokenizer.encode_concat(texts)
        _write(path, ids, offsets, tokenizer.to_dict())
    return np.split(ids, offsets[1:-1])


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """(ids, offsets, tokenizer dict) from a cache file; None when it is absent, unreadable or does not
    hold together (the caller then rebuilds it: a damaged or edited cache never stops a run)."""
    try:
        inspect_npz(path, max_bytes=psutil.virtual_memory().available)
        with np.load(path, allow_pickle=False) as f:
            ids, offsets, described = f["ids"], f["offsets"], parse_json(f["tokenizer"].tobytes())
    except Exception:  # noqa: BLE001 - the cache's boundary: whatever is wrong with it, it is rebuilt
        return None
    whole = ids.ndim == 1 and ids.dtype.kind in "iu" and offsets.ndim == 1 and offsets.dtype.kind in "iu"
    if not whole or not isinstance(described, dict) or offsets.size == 0:
        return None
    if offsets[0] != 0 or offsets[-1] != ids.size or (np.diff(offsets) < 0).any():
        return None
    return ids, offsets, described


def _write(path: Path, ids: np.ndarray, offsets: np.ndarray, tokenizer: dict) -> None:
    """Write atomically (microgpt.atomic): a temporary sibling, fsynced, then renamed over `path`."""
    described = np.frombuffer(json.dumps(tokenizer).encode("utf-8"), dtype=np.uint8)
    with atomic_open(path, "wb") as f:
        np.savez(f, ids=ids.astype(np.int32), offsets=offsets.astype(np.int64), tokenizer=described)
