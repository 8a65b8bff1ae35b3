"""Blocked causal attention: long sequences (Tq >= 2 * ATTENTION_BLOCK, which includes the default
BLOCK_SIZE) are processed ATTENTION_BLOCK queries at a time, each block against the keys it can see.

That path must agree with attention written out from primitive autograd ops (matmul, masked_fill, exp,
sum, division), whose gradients come from the engine rather than from a hand-derived backward, and must pass
a float64 gradcheck. ATTENTION_BLOCK is patched down to 4 so that 11 positions already make three blocks
(the last one partial) and the gradcheck stays cheap.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from strategies import check_gradients

from microgpt.autograd import Tensor, functional, matmul
from microgpt.autograd import attention as A

F = functional


@pytest.fixture
def block_of_four(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(A, "ATTENTION_BLOCK", 4)
    return 4


def primitive_attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(D)) v with query i at position Tk - Tq + i seeing keys 0..that position,
    from primitive ops only."""
    tq, tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scores = matmul(q, k.transpose(*range(k.ndim - 2), k.ndim - 1, k.ndim - 2)) * (1.0 / math.sqrt(d))
    future = np.arange(tk)[None, :] > np.arange(tq)[:, None] + (tk - tq)
    scores = scores.masked_fill(future, -np.inf)
    weights = (scores - scores.max(axis=-1, keepdims=True)).exp()
    return matmul(weights / weights.sum(axis=-1, keepdims=True), v)


def qkv(seed: int, tq: int, tk: int, lead: tuple[int, ...] = (2, 2), d: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(0.0, 1.0, (*lead, n, d)) for n in (tq, tk, tk)]


def run(fn, arrays_in: list[np.ndarray], upstream: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    tensors = [Tensor(a.copy()) for a in arrays_in]
    out = fn(*tensors)
    out.backward(upstream)
    return out.data, [t.grad for t in tensors]


def assert_matches_primitive_ops(arrays_in: list[np.ndarray], seed: int) -> None:
    upstream = np.random.default_rng(seed + 100).normal(0.0, 1.0, arrays_in[0].shape)
    fused_out, fused_grads = run(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True),
                                 arrays_in, upstream)
    plain_out, plain_grads = run(primitive_attention, arrays_in, upstream)
    np.testing.assert_allclose(fused_out, plain_out, rtol=1e-10, atol=1e-12)
    for name, ours, reference in zip("QKV", fused_grads, plain_grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12, err_msg=f"d{name}")


@pytest.mark.parametrize("tq,tk", [(11, 11), (8, 8), (9, 11)], ids=["T11", "T8-two-full-blocks", "cached-9-of-11"])
def test_blocked_attention_matches_primitive_ops(block_of_four, tq, tk):
    assert len(A._query_blocks(tq, tk, causal=True)) >= 2  # the blocked path is the one under test
    assert_matches_primitive_ops(qkv(tq * tk, tq, tk), seed=tq)


@pytest.mark.parametrize("seed", [0, 1])
def test_blocked_attention_passes_gradcheck(block_of_four, seed):
    arrays_in = qkv(seed, 11, 11, lead=(1, 2))
    assert len(A._query_blocks(11, 11, causal=True)) == 3
    check_gradients(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True), arrays_in, seed=seed)


def test_blocked_attention_at_the_real_block_size_matches_primitive_ops():
    """Unpatched: a sequence just over two blocks of the shipped ATTENTION_BLOCK, as the default BLOCK_SIZE."""
    t = 2 * A.ATTENTION_BLOCK + 3
    assert len(A._query_blocks(t, t, causal=True)) == 3
    assert_matches_primitive_ops(qkv(5, t, t, lead=(1, 2), d=4), seed=5)


def test_blocked_attention_in_uneven_chunks_with_broadcast_keys(block_of_four, monkeypatch):
    """Each NumPy call covering fewer slices than the work buffers hold (chunks of 1, 2, 2 of five slices), with
    k and v broadcast over q's batch: the per-thread sums of dK and dV are reused from chunk to chunk and
    copied out at each chunk's length. A second backward adds the same gradients again."""
    scores_per_slice = sum((r1 - r0) * kend for r0, r1, kend in A._query_blocks(11, 11, causal=True))
    monkeypatch.setattr(A, "ATTENTION_CHUNK", 2 * scores_per_slice)  # two slices per call
    assert [hi - lo for lo, hi in A._chunks(0, 5, 2)] == [1, 2, 2]
    rng = np.random.default_rng(7)
    arrays_in = [rng.normal(0.0, 1.0, (*lead, 11, 3)) for lead in ((5,), (1,), (1,))]
    assert_matches_primitive_ops(arrays_in, seed=7)
    tensors = [Tensor(a.copy()) for a in arrays_in]
    out = F.scaled_dot_product_attention(*tensors, causal=True)
    upstream = rng.normal(0.0, 1.0, out.shape)
    out.backward(upstream)
    once = [t.grad.copy() for t in tensors]
    out.backward(upstream)
    for name, t, first in zip("QKV", tensors, once):
        np.testing.assert_allclose(t.grad, 2 * first, rtol=1e-12, err_msg=f"d{name} after a second backward")
