"""Attention as fused ops: causal softmax attention with its blocked fast path, and the rotary turns of q and k.

Each op is one graph node with a hand-derived backward (see `scaled_dot_product_attention` for the
derivation). `functional` offers them too, so `F.causal_self_attention` and the rest read as before. The
module is long because the fast paths (query blocks, chunked calls, the exp bound, the column of ones) each
stay next to the plain formula they implement; tests/test_blocked_attention.py and tests/test_fast_paths.py
check each against the plain ops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from microgpt.autograd.parallel import PASS_WORK, run_split
from microgpt.autograd.tensor import Tensor, unbroadcast


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x, requires_grad=False)


ATTENTION_BLOCK = 64  # causal queries are processed 64 at a time, each block against the keys it can see
ATTENTION_CHUNK = 1 << 22  # scores (16 MiB of float32) one core takes per NumPy call; bounds the backward's buffers
SOFTMAX_SAFE = 20.0  # scores within +-20: exp needs no shift, and the unshifted weights (<= e^20) stay finite
SHIFT_BOUND_MIN = 1 << 14  # fewer scores than this (a generated token's): always shift, skip the bound


def _max_norm(a: np.ndarray) -> float:
    """The largest Euclidean norm of a's last-axis vectors."""
    return math.sqrt(float(np.einsum("...i,...i->...", a, a).max(initial=0.0)))


@functools.lru_cache(maxsize=64)
def _causal_mask(Tq: int, Tk: int, dtype: np.dtype) -> np.ndarray:
    """0 where query i may see key j (j <= i + Tk - Tq), -inf where j lies in its future."""
    future = np.triu(np.ones((Tq, Tk), dtype=bool), k=Tk - Tq + 1)
    return np.where(future, -np.inf, 0.0).astype(dtype)


def _query_blocks(Tq: int, Tk: int, causal: bool) -> list[tuple[int, int, int]]:
    """(first query, end query, end key) per block of queries: with a causal mask, a block of queries
    only sees the keys up to its last query, so the (T, T) work shrinks to about its lower triangle."""
    if not causal or Tq < 2 * ATTENTION_BLOCK:
        return [(0, Tq, Tk)]
    return [(r0, min(r0 + ATTENTION_BLOCK, Tq), min(Tk, min(r0 + ATTENTION_BLOCK, Tq) + Tk - Tq))
            for r0 in range(0, Tq, ATTENTION_BLOCK)]


def _work_view(a: np.ndarray, batch: tuple[int, ...]) -> np.ndarray:
    """a (..., T, D) broadcast to the batch shape, as the view the attention splits over its first axis: leading
    axes of length 1 are dropped (one sequence's heads are then what is split), and no batch axis becomes one."""
    a = np.broadcast_to(a, (*batch, *a.shape[-2:])) if a.shape[:-2] != batch else a
    while a.ndim > 3 and a.shape[0] == 1:
        a = a[0]
    return a if a.ndim > 2 else a[None]


def _with_ones(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """[a, 1]: a (..., T, D) copied into (..., T, D + 1) with a column of ones after the last."""
    if out is None:
        out = np.empty((*a.shape[:-1], a.shape[-1] + 1), dtype=a.dtype)
    out[..., :-1] = a
    out[..., -1] = 1.0
    return out


def _chunks(lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """[lo, hi) cut into as few ranges of at most `size` as possible, their lengths within one of each other."""
    count = -(-(hi - lo) // size)
    return [(lo + (hi - lo) * i // count, lo + (hi - lo) * (i + 1) // count) for i in range(count)]


def _attention(Q: np.ndarray, K: np.ndarray, Vv: np.ndarray, causal: bool, out: np.ndarray | None = None
               ) -> tuple[np.ndarray, Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """The arrays behind the attention ops (see scaled_dot_product_attention).

    Q (*batch, Tq, D), K (*batch, Tk, D) and V (*batch, Tk, Dv) broadcast against each other and may be any
    strided views (heads cut out of packed projections are used in place: BLAS takes their row stride); the
    result is written into `out` (*batch, Tq, Dv), which may be a view too. Returns out and
    backward(G, into=None) -> dQ, dK, dV of the full batch shape, written into `into` when given.
    All the work, copies included, is split over the cores along the first batch axis.
    """
    Tq, Tk, D, Dv = Q.shape[-2], K.shape[-2], Q.shape[-1], Vv.shape[-1]
    batch = Q.shape[:-2]
    if not batch == K.shape[:-2] == Vv.shape[:-2]:
        batch = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2], Vv.shape[:-2])
    dtype = Q.dtype
    if out is None:
        out = np.empty((*batch, Tq, Dv), dtype=dtype)
    Qw, Kw, Vw, Ow = (_work_view(a, batch) for a in (Q, K, Vv, out))
    n0, lead = Qw.shape[0], Qw.shape[1:-2]  # split along n0; each unit holds prod(lead) slices
    scale = 1.0 / math.sqrt(D)
    ones = Tq > 1  # for a generated token's one row per slice, a plain sum is cheaper than copying V
    blocks = _query_blocks(Tq, Tk, causal)[::-1]  # the block that sees every key first (see the backward)
    masks = [_causal_mask(r1 - r0, kend, dtype) if causal and r1 - r0 > 1 else None for r0, r1, kend in blocks]
    E = [np.empty((n0, *lead, r1 - r0, kend), dtype=dtype) for r0, r1, kend in blocks]
    s = np.empty((n0, *lead, Tq, 1), dtype=dtype)  # the row sums of E
    KT = np.empty((n0, *lead, D, Tk), dtype=dtype)  # k^T / sqrt(D), contiguous: a faster product; kept for dQ
    V1 = np.empty((n0, *lead, Tk, Dv + 1), dtype=dtype) if ones else None  # [V, 1], kept for dP
    work = sum(e.size for e in E)
    cost = 12 * work * PASS_WORK  # ns; per score: two thin products, the mask, exp and sums
    chunk = max(1, ATTENTION_CHUNK * n0 // max(work, 1))  # units per NumPy call (bounds the temporary arrays)
    always_shift = work < SHIFT_BOUND_MIN  # too few scores for the bound to pay for itself

    def forward_part(lo: int, hi: int) -> None:
        for c0, c1 in _chunks(lo, hi, chunk):
            q = Qw[c0:c1]
            k = Kw[c0:c1]
            kT = KT[c0:c1]
            np.multiply(k.swapaxes(-1, -2), scale, out=kT)
            v = _with_ones(Vw[c0:c1], out=V1[c0:c1]) if ones else Vw[c0:c1]  # [V, 1], or V itself
            out_s = np.empty((*q.shape[:-1], Dv + 1), dtype=dtype)  # [E V, s]
            # the bound costs two passes over q and k: they are small beside the scores
            shift = always_shift or _max_norm(q) * _max_norm(k) * scale > SOFTMAX_SAFE
            for (r0, r1, kend), e, mask in zip(blocks, E, masks):
                S = e[c0:c1]
                np.matmul(q[..., r0:r1, :], kT[..., :kend], out=S)
                if mask is not None:
                    S += mask  # one in-place pass; boolean indexing is 10x slower
                if shift:
                    S -= S.max(axis=-1, keepdims=True)
                np.exp(S, out=S)
                if ones:
                    np.matmul(S, v[..., :kend, :], out=out_s[..., r0:r1, :])
                else:
                    np.matmul(S, v[..., :kend, :], out=out_s[..., r0:r1, :Dv])
                    np.sum(S, axis=-1, keepdims=True, out=out_s[..., r0:r1, Dv:])
            s[c0:c1] = out_s[..., Dv:]
            np.divide(out_s[..., :Dv], s[c0:c1], out=Ow[c0:c1])

    run_split(forward_part, n0, cost, calls=8 + 5 * len(blocks))  # NumPy calls a part makes (one chunk's)

    def backward(g: np.ndarray, into: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grads = into or (np.empty((*batch, Tq, D), dtype=dtype), np.empty((*batch, Tk, D), dtype=dtype),
                         np.empty((*batch, Tk, Dv), dtype=dtype))
        Gw, dQw, dKw, dVw = (_work_view(a, batch) for a in (g, *grads))

        def backward_part(lo: int, hi: int) -> None:
            rows, size = max(r1 - r0 for r0, r1, _ in blocks), min(chunk, hi - lo)
            dS_buffer = np.empty((size, *lead, rows, Tk), dtype=dtype)
            summed = len(blocks) > 1  # blocks add up dK and dV in contiguous arrays, copied out once per chunk
            if summed:
                dK_sum = np.empty((size, *lead, Tk, D), dtype=dtype)
                dV_sum = np.empty((size, *lead, Tk, Dv), dtype=dtype)
                dK_part, dV_part = np.empty_like(dK_sum), np.empty_like(dV_sum)
            for c0, c1 in _chunks(lo, hi, chunk):
                n = c1 - c0
                inv_s = 1.0 / s[c0:c1]
                G = Gw[c0:c1]
                G_r = np.empty((n, *lead, Tq, Dv + 1), dtype=dtype)  # [G, -r] / s, r = rowsum(G O)
                np.multiply(G, inv_s, out=G_r[..., :Dv])
                np.multiply(np.einsum("...d,...d->...", G, Ow[c0:c1])[..., None], -inv_s, out=G_r[..., Dv:])
                Gs = G_r[..., :Dv]  # G / s
                Qs = Qw[c0:c1] * scale
                v = V1[c0:c1] if ones else _with_ones(Vw[c0:c1])
                kT, dQ = KT[c0:c1], dQw[c0:c1]
                dK, dV = (dK_sum[:n], dV_sum[:n]) if summed else (dKw[c0:c1], dVw[c0:c1])
                for i, ((r0, r1, kend), e) in enumerate(zip(blocks, E)):
                    eb = e[c0:c1]
                    # the first block sees every key: it writes dV and dK, the others add to them
                    into_v = dV if i == 0 else dV_part[:n, ..., :kend, :]
                    np.matmul(eb.swapaxes(-1, -2), Gs[..., r0:r1, :], out=into_v)
                    dS = np.matmul(G_r[..., r0:r1, :], v[..., :kend, :].swapaxes(-1, -2),
                                   out=dS_buffer[:n, ..., :r1 - r0, :kend])  # [G, -r] [V, 1]^T / s = (G V^T - r) / s
                    dS *= eb  # E ⊙ (G V^T - r) / s = P ⊙ (dP - r)
                    np.matmul(dS, kT[..., :kend].swapaxes(-1, -2), out=dQ[..., r0:r1, :])
                    into_k = dK if i == 0 else dK_part[:n, ..., :kend, :]
                    np.matmul(dS.swapaxes(-1, -2), Qs[..., r0:r1, :], out=into_k)
                    if i:
                        dV[..., :kend, :] += into_v
                        dK[..., :kend, :] += into_k
                if summed:
                    dKw[c0:c1], dVw[c0:c1] = dK, dV

        run_split(backward_part, n0, cost, calls=10 + 7 * len(blocks))
        return grads

    return out, backward


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(D)) v on (B, H, T, D) tensors, masked so no query sees a later key.

    q may be shorter than k (the KV-cached case): query i then sits at position Tk - Tq + i.
    With E = exp(S - max) the unnormalised weights, s = sum(E) per row, P = E / s and O = P V, the backward
    needs only E, s and O (juxtaposition is a matrix product, ⊙ an elementwise one):
      dV = E^T (G / s),  dP = G V^T,  dS = P ⊙ (dP - r) with r = rowsum(G ⊙ O)  (= rowsum(dP ⊙ P), but cheap),
      dQ = dS K / sqrt(D),  dK = dS^T Q / sqrt(D).
    Every division by s and by sqrt(D) is applied to a small (T, D) operand instead of the (T, T) weights,
    and causal queries go in blocks that skip the keys they cannot see. Two passes over the weights are
    folded into products by a column of ones after V: E [V, 1] = [E V, s] gives the row sums with the
    output, and [G, -r] [V, 1]^T / s = (G V^T - r) / s gives dP already shifted and scaled. [V, 1] and
    k^T / sqrt(D) (made contiguous for the forward's product) are kept for the backward, where the latter gives
    dQ with no scaling pass; the blocks' dK and dV are summed in contiguous arrays, copied out once per chunk
    (into causal_self_attention's strided packed gradient). The shift by the row max only guards
    exp against overflow: since |S_ij| <= |q_i| |k_j| / sqrt(D), when that bound is small (SOFTMAX_SAFE)
    the max and the shift (two more passes) are skipped. The slices are independent: they are split over
    the CPU cores along the first batch axis (the heads, when there is one sequence), and each core takes
    them many at a time (up to ATTENTION_CHUNK scores' worth) in each NumPy call: every call hands the
    interpreter lock to the other threads and back, so a core running many small calls waits on the others
    (on a 2-core VM, chunks of 1 MiB of scores made c2's attention 16% slower than 16 MiB).
    """
    q, k, v = _tensor(q), _tensor(k), _tensor(v)
    Q, K, Vv = q.data, k.data, v.data
    if min(Q.ndim, K.ndim, Vv.ndim) < 2 or Q.shape[-1] != K.shape[-1] or K.shape[-2] != Vv.shape[-2]:
        raise ValueError(f"attention: q (..., Tq, D), k (..., Tk, D) and v (..., Tk, Dv) do not fit: {Q.shape}, "
                         f"{K.shape}, {Vv.shape}")
    if not (Q.shape[-2] and K.shape[-2]):
        raise ValueError(f"attention over an empty sequence (q {Q.shape}, k {K.shape}): give at least one query "
                         "and one key")
    if causal and Q.shape[-2] > K.shape[-2]:
        raise ValueError(f"causal attention with {Q.shape[-2]} queries over {K.shape[-2]} keys: the queries "
                         "are the last positions of the keys, so there cannot be more of them")
    out, grads = _attention(Q, K, Vv, causal)

    def backward(g: np.ndarray):
        dQ, dK, dV = grads(g)
        return (unbroadcast(dQ, Q.shape) if q.requires_grad else None,
                unbroadcast(dK, K.shape) if k.requires_grad else None,
                unbroadcast(dV, Vv.shape) if v.requires_grad else None)

    return Tensor._result(out, (q, k, v), backward)


def attend_newest(q: np.ndarray, keys: np.ndarray, values: np.ndarray, unseen: np.ndarray | None = None
                  ) -> np.ndarray:
    """softmax(q K^T / sqrt(D)) V for generation's step: one new query per (row, head), q (..., 1, D), over
    keys and values (..., L, D). The newest token may see every key before it, so no causal mask is built;
    `unseen` (True where a key is not this query's past, broadcast against the (..., 1, L) scores) masks the
    rest. Inference only: plain arrays, no graph, a handful of passes over L scores."""
    scores = q @ keys.swapaxes(-1, -2)
    scores *= 1.0 / math.sqrt(q.shape[-1])
    if unseen is not None:
        scores[np.broadcast_to(unseen, scores.shape)] = -np.inf
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores @ values


ROPE_BASE = 10000.0  # angles per position from 1 radian down towards 1/10000, as RoFormer and LLaMA use


def rotary_turns(positions: Any, head_dim: int, n_head: int, dtype: np.dtype) -> np.ndarray:
    """e^(i p f) for every position p and every pair of q's and k's columns: shape positions.shape + (C,).

    Each head's D dims are D/2 pairs, and pair j turns at frequency f_j = ROPE_BASE^(-2j/D): the first pair
    by a radian per position, the last by almost nothing, so a head can attend by short or long distance.
    The columns of q and of k (2C floats, C pairs) are tiled in that order: head by head, q's then k's.
    """
    half = head_dim // 2
    freq = ROPE_BASE ** (-np.arange(half) / half)
    angle = np.asarray(positions, dtype=np.float64)[..., None] * np.tile(freq, 2 * n_head)
    return np.exp(1j * angle).astype(np.result_type(dtype, np.complex64))


def turn_qk(qkv: np.ndarray, turns: np.ndarray) -> np.ndarray:
    """A copy of packed qkv (..., 3C) whose q and k pairs are multiplied by `turns` (..., C) and v kept.

    A pair (a, b) read as the complex number a + ib turns by angle t when multiplied by e^(it): one complex
    product per pair instead of four real ones, on a complex view of the same memory.
    """
    qkv = np.ascontiguousarray(qkv)
    out = np.empty_like(qkv)
    turns = turns.astype(np.result_type(qkv.dtype, np.complex64), copy=False)  # float32 pairs: complex64
    c = turns.shape[-1]  # C pairs = the 2C columns of q and k
    pairs, turned = qkv.view(turns.dtype)[..., :c], out.view(turns.dtype)[..., :c]
    turns = np.broadcast_to(turns, pairs.shape)  # a view: rows share their positions' turns

    def rows(lo: int, hi: int) -> None:
        np.multiply(pairs[lo:hi], turns[lo:hi], out=turned[lo:hi])
        out[lo:hi, ..., 2 * c:] = qkv[lo:hi, ..., 2 * c:]

    run_split(rows, len(qkv), 3 * qkv.size * PASS_WORK)  # a complex product per pair, the copy of v
    return out


def rotary(qkv: Tensor, turns: np.ndarray) -> Tensor:
    """Rotary position embedding (RoPE) on packed projections qkv (B, T, 3C): each head's q and k at position
    p turned pairwise by the angles p f_j, `turns` being rotary_turns of the positions; v unchanged.

    q_p . k_s then depends on the positions only through p - s (a turn by p f against a turn by s f leaves
    the angle (p - s) f), so attention sees how far back a token is, with no position table to learn.
    A turn is a rotation, whose transpose is the turn back: dL/dqkv = g turned by the conjugate e^(-i p f).
    """
    out = turn_qk(qkv.data, turns)
    return Tensor._result(out, (qkv,), lambda g: (turn_qk(g, np.conj(turns)),))


def causal_self_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Multi-head causal self-attention on packed projections: qkv (B, T, 3C) holds q, k and v side by side
    (one product x [Wq; Wk; Wv]^T), the result (B, T, C) holds the heads side by side.

    The same as cutting qkv into heads and calling scaled_dot_product_attention, but nothing is copied: each
    head's q, k, v are read in place from qkv, its output is written straight into its columns of the
    result, and its dQ, dK, dV straight into its columns of one (B, T, 3C) gradient (slicing q, k and v out
    of a Tensor would give each slice a full-size zero gradient, then add the three up).
    """
    if qkv.ndim != 3:
        raise ValueError(f"causal_self_attention takes packed projections (B, T, 3C), not shape {qkv.shape}")
    B, T, C3 = qkv.shape
    C = C3 // 3
    if C3 != 3 * C or C % n_head:
        raise ValueError(f"causal_self_attention: last dim {C3} is not 3 x n_embd with n_embd divisible by "
                         f"{n_head} heads")
    D = C // n_head

    def by_head(a: np.ndarray) -> np.ndarray:
        """(B, T, H, D) seen as (B, H, T, D), a view."""
        return a.transpose(0, 2, 1, 3)

    heads = qkv.data.reshape(B, T, 3, n_head, D)
    out = np.empty((B, T, n_head, D), dtype=qkv.dtype)
    _, grads = _attention(*(by_head(heads[:, :, i]) for i in range(3)), causal=True, out=by_head(out))

    def backward(g: np.ndarray):  # each head's dQ, dK, dV go into its columns of the packed gradient
        packed = np.empty((B, T, 3, n_head, D), dtype=out.dtype)
        grads(by_head(g.reshape(B, T, n_head, D)), into=tuple(by_head(packed[:, :, i]) for i in range(3)))
        return (packed.reshape(B, T, C3),)

    return Tensor._result(out.reshape(B, T, C), (qkv,), backward)
