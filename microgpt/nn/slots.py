"""Decoding many sequences at once: a KV cache whose rows are independent sequences of different lengths.

A server gets requests at different times with prompts of different lengths. Each prompt is first run
through a plain KVCache (the prefill, alone or beside others padded to the same length); its keys and values
are then copied into a free row ("slot") of a SlotCache, and from then on every live sequence advances by one token per step in ONE batched forward pass:
the weight matrices are read once for all rows instead of once per sequence.

Row b holds lengths[b] positions. Its new token sits at position lengths[b], and its query may see keys
0..lengths[b] of its own row only: positions past that are masked out (they hold stale or zero keys). Live rows
are kept at the front (0..n-1), so the batch is always a plain slice of the buffers, never a copy.
"""

from __future__ import annotations

import numpy as np

from microgpt.autograd import Tensor
from microgpt.autograd import functional as F
from microgpt.nn.gpt import GPT
from microgpt.nn.layers import KVCache


class SlotCache(KVCache):
    """A KVCache of `slots` rows (slots, H, block_size, D) per layer whose rows advance on their own: the first
    `n` are live, row b holding lengths[b] positions (KVCache's shared `length` is not used)."""

    def __init__(self, n_layer: int, slots: int, n_head: int, block_size: int, head_dim: int,
                 dtype: np.dtype) -> None:
        super().__init__(n_layer, slots, n_head, block_size, head_dim, dtype)
        self.lengths = np.zeros(slots, dtype=np.int64)
        self.n = 0  # live rows: 0..n-1
        self.block_size = block_size

    @property
    def free(self) -> int:
        return len(self.lengths) - self.n

    def add(self, prefilled: KVCache, row: int = 0, length: int | None = None) -> int:
        """Copy row `row` of a prefilled cache, its first `length` positions (default: all it holds), into
        the next free slot; returns the slot. Several prompts prefilled together, padded on the right to the
        longest, are added row by row, each with its own length: the padding is never copied."""
        slot = self.n
        length = prefilled.length if length is None else length
        for layer, (k, v) in enumerate(zip(prefilled.keys, prefilled.values)):
            self.keys[layer][slot, :, :length] = k[row, :, :length]
            self.values[layer][slot, :, :length] = v[row, :, :length]
        self.lengths[slot] = length
        self.n += 1
        return slot

    def remove(self, slot: int) -> int | None:
        """Free `slot` by moving the last live row into it; returns the row that moved there (None if none)."""
        last = self.n - 1
        self.n -= 1
        if slot == last:
            return None
        for buffers in (self.keys, self.values):
            for layer_buffer in buffers:
                layer_buffer[slot] = layer_buffer[last]
        self.lengths[slot] = self.lengths[last]
        return last

    # ----- KVCache's interface, row by row --------------------------------------------------------------------
    def positions(self, T: int) -> np.ndarray:  # type: ignore[override]
        """(n, 1) position of each live row's new token."""
        if T != 1:
            raise ValueError("a SlotCache advances one token per row at a time; prefill with a KVCache")
        if self.n and self.lengths[:self.n].max() >= self.block_size:
            raise ValueError(f"a sequence reached block_size {self.block_size}")
        return self.lengths[:self.n, None]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """attend_step on Tensors (inference only: no graph is recorded)."""
        return Tensor(self.attend_step(layer, q.data, k.data, v.data), requires_grad=False)

    def attend_step(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Each row's query over its own keys 0..lengths[b]. Only the positions up to the longest row's are
        read: a step costs what the live sequences hold, not the block."""
        n, length = self.n, self.lengths[:self.n]
        rows = np.arange(n)
        span = int(length.max()) + 1 if n else 0
        self.keys[layer][rows, :, length] = k[:, :, 0]
        self.values[layer][rows, :, length] = v[:, :, 0]
        keys, values = self.keys[layer][:n, :, :span], self.values[layer][:n, :, :span]  # (n, H, span, D)
        unseen = np.arange(span)[None, :] > length[:, None]  # (n, span): not this row's past
        return F.attend_newest(q, keys, values, unseen[:, None, None, :])

    def advance(self, T: int) -> None:
        self.lengths[:self.n] += T


def slot_cache_bytes(model: GPT, slots: int) -> int:
    """What `slot_cache_for(model, slots)` allocates: keys and values for every layer, row and position."""
    c = model.config
    return 2 * c.n_layer * slots * c.block_size * c.n_embd * model.wte.weight.dtype.itemsize


def slot_cache_for(model: GPT, slots: int) -> SlotCache:
    """An empty SlotCache shaped for `model`, with room for `slots` sequences."""
    c = model.config
    return SlotCache(c.n_layer, slots, c.n_head, c.block_size, c.n_embd // c.n_head, model.wte.weight.dtype)
