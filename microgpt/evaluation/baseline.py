"""The compressor anchor for held-out scores: bits per byte that xz needs for a text after reading the training data.

A language model that has learned something general about its training text should predict new text better
than a general-purpose compressor that has read the same training text. The figure is

    bits/byte = 8 * (len(xz(train + heldout)) - len(xz(train))) / UTF-8 bytes of the held-out texts

with LZMA preset 9 (extreme), both sides rendered exactly as training renders records, documents joined by
newlines; its denominator is the same as `microgpt eval`'s bits per byte. xz at that preset looks back at most
64 MiB (its dictionary), so only the last 64 MiB of the training text can help with the held-out text: only
those are compressed, which keeps the time bounded however large the training data is.
"""

from __future__ import annotations

import lzma
from collections.abc import Sequence

XZ_PRESET = 9 | lzma.PRESET_EXTREME
XZ_WINDOW_BYTES = 64 << 20  # preset 9's dictionary: xz never refers further back than this


def _xz_size(data: bytes) -> int:
    return len(lzma.compress(data, preset=XZ_PRESET))


def xz_bits_per_byte(train_texts: Sequence[str], heldout_texts: Sequence[str]) -> float:
    """What xz pays, in bits per byte of `heldout_texts`, to compress them once it has seen `train_texts`."""
    train = "\n".join(train_texts).encode("utf-8")[-XZ_WINDOW_BYTES:]
    heldout = "\n".join(heldout_texts).encode("utf-8")
    n_bytes = sum(len(text.encode("utf-8")) for text in heldout_texts)
    if n_bytes == 0:
        raise ValueError("no held-out bytes to compress")
    return 8 * (_xz_size(train + b"\n" + heldout) - _xz_size(train)) / n_bytes
