"""From documents to training windows: a document-level split, one token stream per split, fixed
validation windows and seeded random training windows.

Documents are joined into one stream with BOS between them ([BOS] doc1 [BOS] doc2 [BOS] ...), so every
window is full of real tokens: no padding, no compute wasted. A window may cross a BOS, and the model learns
that BOS means "a new, unrelated document starts here", which is also the end-of-text signal at chat time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from microgpt.errors import DatasetError

MIN_DOCUMENTS = 2  # one to train on, one to validate with


def split_documents(n_documents: int, val_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle document indices with `seed` and cut off the validation share (at least 1 each side)."""
    if n_documents < MIN_DOCUMENTS:
        raise DatasetError(f"the dataset has {n_documents} valid document(s); training needs at least {MIN_DOCUMENTS} "
                           "(one for training, one for validation): add records")
    order = np.random.default_rng(seed).permutation(n_documents)
    n_val = min(max(1, int(n_documents * val_split)), n_documents - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def join_with_bos(token_docs: Sequence[np.ndarray], bos_id: int) -> np.ndarray:
    """[BOS] doc1 [BOS] doc2 ... [BOS] as one int32 array."""
    pieces: list[np.ndarray] = [np.array([bos_id], dtype=np.int32)]
    for doc in token_docs:
        pieces += [np.asarray(doc, dtype=np.int32), np.array([bos_id], dtype=np.int32)]
    return np.concatenate(pieces)


def windows_at(stream: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs x = stream[s : s+T] and targets y = stream[s+1 : s+T+1] for every start s: (B, T) each."""
    rows = stream[starts[:, None] + np.arange(block_size + 1)]
    return rows[:, :-1], rows[:, 1:]


def random_starts(rng: np.random.Generator, stream_length: int, block_size: int, batch_size: int) -> np.ndarray:
    """`batch_size` uniformly random window starts that leave room for T + 1 tokens."""
    return rng.integers(0, stream_length - block_size, size=batch_size)


def document_starts(stream: np.ndarray, bos_id: int, block_size: int) -> np.ndarray:
    """The start of every document in a [BOS] doc [BOS] doc ... stream (its BOS), as far as a window fits."""
    starts = np.flatnonzero(stream[:-1] == bos_id)
    return np.unique(np.minimum(starts, len(stream) - block_size - 1))


def sequential_starts(doc_starts: np.ndarray, step: int, batch_size: int) -> np.ndarray:
    """Batch `step` of a walk through the documents in order: one window per document, wrapping around.

    It depends on the step alone, so a resumed run continues the walk exactly where it stopped."""
    return doc_starts[(step * batch_size + np.arange(batch_size)) % len(doc_starts)]


def validation_batches(stream: np.ndarray, block_size: int, batch_size: int,
                       n_batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A fixed set of windows spread evenly over the validation stream, so every evaluation is comparable."""
    last_start = len(stream) - block_size - 1
    n = batch_size * n_batches
    starts = np.linspace(0, max(0, last_start), num=n).astype(np.int64)
    return [windows_at(stream, starts[i:i + batch_size], block_size) for i in range(0, n, batch_size)]


def fit_block_size(stream_length: int, block_size: int) -> int:
    """The largest window that fits a stream (validation streams of tiny datasets can be short)."""
    return max(1, min(block_size, stream_length - 1))
