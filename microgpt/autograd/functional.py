"""Fused operations: each is one graph node with a hand-derived backward.

Composing these from primitives would work, but every primitive stores its own intermediate arrays
and makes its own passes over memory. A fused op makes the fewest passes, saves only what its
backward needs, and is numerically stable by construction (softmax shifts by the row maximum, unless a
bound proves that exp cannot overflow). It is long because every fast path stays next
to the plain derivation it implements; tests/test_fast_paths.py checks each against the plain ops.
Attention's ops live in `attention` and are offered here too (`F.causal_self_attention`, `F.rotary`, ...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from microgpt.autograd.attention import (
    attend_newest,
    causal_self_attention,
    rotary,
    rotary_turns,
    scaled_dot_product_attention,
    turn_qk,
)
from microgpt.autograd.deferred import Deferred, deferred
from microgpt.autograd.parallel import MAC_WORK, PASS_WORK, run_split
from microgpt.autograd.tensor import Tensor, is_grad_enabled, unbroadcast

__all__ = [
    "attend_newest", "causal_self_attention", "cross_entropy", "dropout", "gelu", "linear", "linear_cross_entropy",
    "log_softmax", "relu", "relu_mlp", "rms_norm", "rms_rows", "rotary", "rotary_turns", "scaled_dot_product_attention",
    "softmax", "turn_qk",
]


WIDE_OUTPUT = 8  # linear's outputs at least this many times its inputs: a vocabulary head, whose logits wait
SKINNY_ROWS = 16  # products with at most this many rows (generation's tokens) may take the transposed route


def _matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """out = a @ b, split over the cores when the product is big (each part on one BLAS thread): by the rows
    of a, or by b's columns when a has only a few rows and b is wide (a generated token through a weight).
    Unlike BLAS's own threads, which spin and wait for each other, our parts slow down gracefully
    when another program is using a core."""
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a, b))
    work = a.shape[0] * b.shape[0] * b.shape[1] * MAC_WORK
    if a.shape[0] <= SKINNY_ROWS:  # so few rows that reading b from memory, not multiplying, sets the time
        work = max(work, b.size * PASS_WORK)
    if a.shape[0] == 1 and b.shape[1] >= 2 * b.shape[0]:
        # one row times a wide matrix (one generated token through the output layer): split b's columns,
        # so each core streams only its share of the weights from memory
        def column_range(lo: int, hi: int) -> None:
            np.matmul(a, b[:, lo:hi], out=out[:, lo:hi])

        run_split(column_range, b.shape[1], work)
        return out
    if 2 <= a.shape[0] <= SKINNY_ROWS and b.shape[1] >= 2 * b.shape[0]:
        # a few rows times a wide matrix (a generated token of each sequence through a weight): OpenBLAS packs
        # the wide operand slowly for so few rows, while (b^T a^T)^T, the same product made tall, runs ~1.5x
        # faster even with the transposed copy. Split by b's columns: each core reads only its share of b.
        tall = np.empty((b.shape[1], a.shape[0]), dtype=out.dtype)

        def columns(lo: int, hi: int) -> None:
            np.matmul(b.T[lo:hi], a.T, out=tall[lo:hi])

        run_split(columns, b.shape[1], work)
        np.copyto(out, tall.T)
        return out

    def rows(lo: int, hi: int) -> None:
        np.matmul(a[lo:hi], b, out=out[lo:hi])

    run_split(rows, a.shape[0], work)
    return out


def _weight_gradient(g: np.ndarray, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """dL/dW = g^T x, summed over every token: g (N, out), x (N, in); written into `out` when given.

    When the tokens outnumber the output rows (every layer but a big vocabulary's head), the tokens are split
    over the cores and the parts' (out, in) sums are added: splitting the output rows instead would make every
    core read and pack all of x. The parts are added in a fixed order, whichever thread finished first.
    """
    if g.shape[0] <= g.shape[1]:
        return _matmul_rows(g.T, x, out)
    return _backward_by_tokens(g, x, lambda lo, hi: None, 0.0, True, out)


def _sum_parts(parts: dict[int, np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
    """Per-thread partial sums, keyed by their first token, added in token order (reproducible): into `out`
    when given (the first part may already be it; no other may), else into the first part. The rows of the
    sum are split over the cores: eight parts of a vocabulary head's dL/dW are seven additions of 4 MiB
    arrays, too long for one core."""
    arrays = [parts[lo] for lo in sorted(parts)]
    total = arrays[0] if out is None or out is arrays[0] else out
    if len(arrays) == 1:
        if total is not arrays[0]:
            np.copyto(total, arrays[0])
        return total

    def rows(lo: int, hi: int) -> None:  # every element is summed in the same order, however the rows are cut
        np.add(arrays[0][lo:hi], arrays[1][lo:hi], out=total[lo:hi])
        for part in arrays[2:]:
            total[lo:hi] += part[lo:hi]

    run_split(rows, len(total), 2 * len(arrays) * total.size * PASS_WORK, calls=len(arrays) - 1)  # read, rewrite
    return total


def _backward_by_tokens(g: np.ndarray, x: np.ndarray, steps: Callable[[int, int], None], work: float,
                        want_w: bool, out: np.ndarray | None = None) -> np.ndarray | None:
    """Run a backward's per-token work and its weight gradient g^T x in one split over the tokens.

    steps(lo, hi) does the op's own work for tokens lo:hi (input gradients, masks...); each thread then adds
    its tokens' g^T x. One hand-off covers it all, where separate products would pay one each. The sum is
    written into `out` when given (a part that covers every token is computed there directly).
    """
    parts: dict[int, np.ndarray] = {}

    def tokens(lo: int, hi: int) -> None:
        steps(lo, hi)
        if want_w:
            whole = out is not None and lo == 0 and hi == g.shape[0]
            parts[lo] = np.matmul(g[lo:hi].T, x[lo:hi], out=out if whole else None)

    run_split(tokens, g.shape[0], work + (g.shape[0] * g.shape[1] * x.shape[1] * MAC_WORK if want_w else 0))
    return _sum_parts(parts, out) if want_w else None


def need_tensor(x: Any, name: str) -> Tensor:
    """x itself if it is a Tensor; else a TypeError naming the op (a bare array has no graph to record into)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} takes a Tensor, not {type(x).__name__}: wrap an array as Tensor(a)")
    return x


def _rows_of(x: Tensor, weight: Tensor, name: str) -> np.ndarray:
    """x's data as (rows, in_features), checked against a weight stored (out, in)."""
    if not (isinstance(x, Tensor) and isinstance(weight, Tensor)):
        raise TypeError(f"{name} takes Tensors, not {type(x).__name__} and {type(weight).__name__}")
    if x.ndim < 1 or weight.ndim != 2:
        raise ValueError(f"{name}: the weight must be 2-D (out, in) and x at least 1-D, not {weight.shape} and "
                         f"{x.shape}")
    X2 = x.data.reshape(-1, x.shape[-1])
    if X2.shape[1] != weight.shape[1]:
        raise ValueError(f"{name}: input shape {x.shape} does not match weight shape {weight.shape}")
    return X2


def linear(x: Tensor, weight: Tensor) -> Tensor:
    """y = x @ W.T with W stored (out, in), as in nn.Linear.

    dL/dx = G @ W and dL/dW = G^T @ x, with every leading dim folded into one big GEMM, split by rows over
    the cores when big. A wide output (an output layer: WIDE_OUTPUT times more outputs than inputs) that
    records a gradient is Deferred: computed when first read, never if it only goes to cross_entropy.
    """
    W = weight.data
    X2 = _rows_of(x, weight, "linear")
    shape = (*x.shape[:-1], W.shape[0])
    defer = W.shape[0] >= WIDE_OUTPUT * W.shape[1] and is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if defer:  # an optimizer step changes W in place: the logits, and a loss taken from them, stay this forward's
        X2, W = X2.copy(), W.copy()

    def backward(g: np.ndarray):
        g2 = g.reshape(X2.shape[0], W.shape[0])
        home = weight.gradient_home()  # dL/dW straight into the optimizer's buffer, when it has one for W
        if g2.shape[0] <= max(g2.shape[1], SKINNY_ROWS):  # few tokens, or a wide head: each product splits alone
            gx = _matmul_rows(g2, W).reshape(x.shape) if x.requires_grad else None
            return gx, (_weight_gradient(g2, X2, home) if weight.requires_grad else None)
        gx = np.empty(X2.shape, dtype=g2.dtype) if x.requires_grad else None

        def input_gradient(lo: int, hi: int) -> None:
            if gx is not None:
                np.matmul(g2[lo:hi], W, out=gx[lo:hi])

        gw = _backward_by_tokens(g2, X2, input_gradient, g2.size * W.shape[1] * MAC_WORK, weight.requires_grad,
                                 home)
        return (None if gx is None else gx.reshape(x.shape)), gw

    backward.linear_inputs = (x, weight, X2, W)  # lets cross_entropy fuse with this product (see there)
    if defer:
        return deferred(shape, np.result_type(X2, W), lambda: _matmul_rows(X2, W.T).reshape(shape),
                        (x, weight), backward)
    return Tensor._result(_matmul_rows(X2, W.T).reshape(shape), (x, weight), backward)


def relu_mlp(x: Tensor, w1: Tensor, w2: Tensor) -> Tensor:
    """y = relu(x W1^T) W2^T, the transformer's MLP, as one op.

    With h = relu(x W1^T): dL/dW2 = G^T h, dh = (G W2) where h > 0 (relu's slope), dL/dW1 = dh^T x,
    dL/dx = dh W1. The same as linear, relu, linear, but the hidden activations are written once and
    masked in place, and no node sits between the two products.
    """
    W1, W2 = w1.data, w2.data
    X2 = _rows_of(x, w1, "relu_mlp")
    if W1.shape[0] != W2.shape[1]:
        raise ValueError(f"relu_mlp: hidden width {W1.shape[0]} does not match w2's shape {w2.shape}")
    N, hidden = X2.shape[0], W1.shape[0]
    products = N * hidden * (X2.shape[1] + W2.shape[0]) * MAC_WORK  # x W1^T, and h W2^T (or G W2 and dh W1)
    if N <= SKINNY_ROWS:  # a few generated tokens: each product splits its own columns
        h = np.maximum(_matmul_rows(X2, W1.T), 0)
        out = _matmul_rows(h, W2.T)
    else:  # every token's row goes through both products and the relu on one thread: a single hand-off
        h = np.empty((N, hidden), dtype=np.result_type(X2, W1))
        out = np.empty((N, W2.shape[0]), dtype=h.dtype)

        def forward_rows(lo: int, hi: int) -> None:
            np.matmul(X2[lo:hi], W1.T, out=h[lo:hi])
            np.maximum(h[lo:hi], 0, out=h[lo:hi])
            np.matmul(h[lo:hi], W2.T, out=out[lo:hi])

        run_split(forward_rows, N, products + h.size * PASS_WORK)

    def backward(g: np.ndarray):
        g2 = g.reshape(out.shape)
        dh = np.empty_like(h)
        gx = np.empty(X2.shape, dtype=dh.dtype) if x.requires_grad else None
        w2_parts: dict[int, np.ndarray] = {}

        def token_steps(lo: int, hi: int) -> None:  # G^T h; dh = (G W2) where h > 0; then dL/dx = dh W1
            if w2.requires_grad:
                w2_parts[lo] = g2[lo:hi].T @ h[lo:hi]
            np.matmul(g2[lo:hi], W2, out=dh[lo:hi])
            np.multiply(dh[lo:hi], h[lo:hi] > 0, out=dh[lo:hi])
            if gx is not None:
                np.matmul(dh[lo:hi], W1, out=gx[lo:hi])

        gw1 = _backward_by_tokens(dh, X2, token_steps, 1.5 * products + 2 * h.size * PASS_WORK, w1.requires_grad,
                                  w1.gradient_home())
        gw2 = _sum_parts(w2_parts, w2.gradient_home()) if w2.requires_grad else None
        return (None if gx is None else gx.reshape(x.shape)), gw1, gw2

    return Tensor._result(out.reshape(*x.shape[:-1], W2.shape[0]), (x, w1, w2), backward)


def relu(x: Tensor) -> Tensor:
    """max(x, 0) elementwise (Tensor.relu, where its backward sits)."""
    return need_tensor(x, "relu").relu()


def gelu(x: Tensor) -> Tensor:
    """x Phi(x), the smooth relu, in its tanh approximation (Tensor.gelu, where its backward sits)."""
    return need_tensor(x, "gelu").gelu()


def dropout(x: Tensor, p: float, rng: np.random.Generator) -> Tensor:
    """Zero each element with probability p and scale the survivors by 1/(1-p), so the expected value is x.

    A regulariser for small data: no unit can rely on one particular other unit being there. The mask is
    drawn once and kept; dL/dx = G * mask / (1-p), the same scaled mask the forward multiplied by.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), not {p}")
    if p == 0.0:
        return x
    scaled_mask = (rng.random(x.shape) >= p).astype(x.dtype) / np.asarray(1.0 - p, dtype=x.dtype)

    def backward(g: np.ndarray):
        return (g * scaled_mask,)  # d(x * m)/dx = m

    return Tensor._result(x.data * scaled_mask, (x,), backward)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum exp(x), shifted by the maximum so exp never overflows.

    For p = softmax(x): dL/dx = p * (g - sum(g * p)) along the axis.
    """
    e = np.exp(need_tensor(x, "softmax").data - x.data.max(axis=axis, keepdims=True))
    p = e / e.sum(axis=axis, keepdims=True)

    def backward(g: np.ndarray):
        return (p * (g - (g * p).sum(axis=axis, keepdims=True)),)

    return Tensor._result(p, (x,), backward)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x): log-probabilities, stable for any logits.

    d/dx (x - lse(x)) applied to g: g - softmax(x) * sum(g).
    """
    shifted = need_tensor(x, "log_softmax").data - x.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g: np.ndarray):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return Tensor._result(out, (x,), backward)


def _without_leading_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape with its leading 1-axes dropped: a batch of one sequence (1, T) is the sequence (T,)."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def _targets(targets: Any, logits_shape: tuple[int, ...], V: int,
             ignore_index: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Flattened targets checked against the logits: (which count, targets with ignored ones set to 0, count)."""
    given = np.asarray(targets.data if isinstance(targets, Tensor) else targets)
    if _without_leading_ones(given.shape) != _without_leading_ones(logits_shape[:-1]):  # (T,) fits (1, T)
        raise ValueError(f"cross_entropy: targets of shape {given.shape} do not match logits of shape "
                         f"{tuple(logits_shape)}: one target per row of logits, shape {tuple(logits_shape[:-1])}")
    if given.dtype.kind not in "iufb":
        raise ValueError(f"cross_entropy: targets are class ids (integers), not {given.dtype} values")
    if given.dtype.kind not in "iu" and not np.all(np.isfinite(given) & (given == np.trunc(given))):
        raise ValueError("cross_entropy: targets are class ids: whole numbers, not fractions")
    t = given.reshape(-1).astype(np.intp)
    if ignore_index is None:  # every target counts (a training step's case: no passes to find the ignored ones)
        valid, safe_t, n = np.ones(t.shape, dtype=bool), t, t.size
    else:
        valid = t != ignore_index
        safe_t, n = np.where(valid, t, 0), int(valid.sum())
    if safe_t.size and (safe_t.min() < 0 or safe_t.max() >= V):
        raise ValueError(f"cross_entropy: a target is outside [0, {V})")
    return valid, safe_t, n


RMS_EPS = 1e-5  # added to mean(x^2) before the square root in RMSNorm: a row of zeros stays finite
EXP_SAFE = 60.0  # exp(z) for |z| <= 60, and sums of 2^40 such terms, stay finite and normal in float32
LOSS_BLOCK_ROWS = 256  # tokens (rows of logits) the losses hold at a time (cross_entropy: fewer if past the cache)
LOSS_BLOCK_CALLS = 10  # about as many big NumPy calls per block of linear_cross_entropy (products, exp, scalings)
_CACHE_ELEMENTS = 1 << 17  # 512 KiB of float32: a block of this size stays in the CPU's L2 cache between passes


def _loss_block_rows(V: int) -> int:
    """Rows per block for cross_entropy: at most LOSS_BLOCK_ROWS, and few enough to stay in the cache."""
    return max(1, min(LOSS_BLOCK_ROWS, _CACHE_ELEMENTS // max(V, 1)))


def cross_entropy(logits: Tensor, targets: Any, ignore_index: int | None = None) -> Tensor:
    """Mean of -log softmax(logits)[target] over all positions whose target is not `ignore_index`.

    logits (..., V), integer targets (...). With e = exp(x - max) and s = sum(e):
    loss_i = log s + max - x[t]; dloss_i/dx = e / s - onehot(t).
    The rows go in blocks small enough to stay in the CPU cache, and each block makes its one trip to memory
    whole: max, exp and sum, then, while it is still in the cache, its gradient for an upstream g of 1,
    (e / s - onehot(t)) / n, written over e. That is the one (N, V) array kept (none at all when no gradient
    is wanted), and the backward of a loss that backward() starts from returns it as it is (another g scales
    it). Rows are split over the cores when the logits are big.

    Logits that come straight out of `linear(x, W)` (a model's output layer) take the fused route instead:
    linear_cross_entropy, whose gradient goes to x and W block by block while in the cache, so the (N, V)
    gradient is never written, nor the logits themselves while nothing has read them (they are Deferred).
    The loss's parents are then x and W, not the logits.
    """
    inputs = getattr(need_tensor(logits, "cross_entropy")._backward, "linear_inputs", None)
    if inputs is not None and is_grad_enabled():
        x, weight, X, W = inputs
        made = None if isinstance(logits, Deferred) and logits.pending else logits.data
        return linear_cross_entropy(x, weight, targets, ignore_index, logits=made, arrays=(X, W))
    V = logits.shape[-1]
    x = logits.data.reshape(-1, V)
    valid, safe_t, n = _targets(targets, logits.shape, V, ignore_index)
    N = x.shape[0]
    step = _loss_block_rows(V)
    want_grad = is_grad_enabled() and logits.requires_grad
    top = np.empty(N, dtype=x.dtype)
    s = np.empty(N, dtype=x.dtype)
    inv_n = 1.0 / max(n, 1)

    def exp_rows(r0: int, r1: int, out: np.ndarray) -> None:
        """out = exp(x - top) for rows r0:r1, top their max."""
        top[r0:r1] = x[r0:r1].max(axis=1)
        np.subtract(x[r0:r1], top[r0:r1, None], out=out)
        np.exp(out, out=out)

    def to_gradient(r0: int, r1: int, out: np.ndarray) -> None:
        """out, holding exp(x - top) of rows r0:r1, becomes dL/dx for g = 1: (e / s - onehot(t)) / n, 0 on
        ignored rows."""
        out *= (valid[r0:r1] * inv_n / s[r0:r1]).astype(x.dtype)[:, None]
        hit = np.flatnonzero(valid[r0:r1])
        out[hit, safe_t[r0:r1][hit]] -= inv_n

    grad = np.empty_like(x) if want_grad else None  # no gradient wanted: one cache-sized block per thread

    def forward_rows(lo: int, hi: int) -> None:
        block = np.empty((min(step, hi - lo), V), dtype=x.dtype) if grad is None else None
        for r0 in range(lo, hi, step):
            r1 = min(r0 + step, hi)
            out = grad[r0:r1] if grad is not None else block[:r1 - r0]
            exp_rows(r0, r1, out)
            s[r0:r1] = out.sum(axis=1)
            if grad is not None:
                to_gradient(r0, r1, out)

    run_split(forward_rows, N, 6 * x.size * PASS_WORK)  # max, shift, exp (heavier), sum, scale
    per_row = np.log(s) + top - x[np.arange(N), safe_t]
    loss = np.asarray(np.where(valid, per_row, 0).sum() / n if n else np.nan, dtype=x.dtype)

    def backward(g: np.ndarray):
        nonlocal grad
        if n == 0:  # every target ignored: the loss does not depend on the logits
            return (np.zeros_like(logits.data),)
        dx, grad = grad, None  # the first backward takes the gradient made in the forward
        if dx is None:  # a repeated backward over the same graph recomputes it
            dx = np.empty_like(x)
            run_split(lambda lo, hi: (exp_rows(lo, hi, dx[lo:hi]), to_gradient(lo, hi, dx[lo:hi])), N,
                      6 * dx.size * PASS_WORK)
        upstream = float(g)  # 1 when this loss is what backward() started from: then the array is returned as is
        if upstream != 1.0:
            run_split(lambda lo, hi: np.multiply(dx[lo:hi], upstream, out=dx[lo:hi]), N, dx.size * PASS_WORK)
        return (dx.reshape(logits.shape),)

    return Tensor._result(loss, (logits,), backward)


def linear_cross_entropy(x: Tensor, weight: Tensor, targets: Any, ignore_index: int | None = None,
                         logits: np.ndarray | None = None,
                         arrays: tuple[np.ndarray, np.ndarray] | None = None) -> Tensor:
    """cross_entropy(linear(x, W), targets), without ever holding the whole (N, V) logits.

    The output layer and the loss are computed together, LOSS_BLOCK_ROWS tokens at a time: each block's
    logits z = x W^T are turned into the loss and, right away, into dL/dz = (softmax(z) - onehot(t)) / n, which
    gives dL/dx = dz W and adds dz^T x to dL/dW. The block then dies, so the big (N, V) arrays that the unfused
    pair writes and reads several times never exist. The backward only scales the stored gradients by g.
    A block is held transposed, (V, tokens), as W x^T: OpenBLAS makes that product and the two after it
    faster than the untransposed ones. With e = exp(z) and s = sum(e) per token, dz = (e - s onehot(t)) / (n s):
    the token's scale 1/(n s) is applied to the small operands (the (tokens, C) product and the rows of x)
    instead of the (V, tokens) block, and the sums come from one matrix-vector product. Ignored tokens have a
    scale of 0, which wipes out whatever finite values their columns hold.
    `logits`, if given, is x W^T already computed: each block is then read from it, not computed. `arrays`,
    if given, are the (rows of x, W) to compute with: those that `linear` used for these logits.
    """
    X, W = arrays if arrays is not None else (x.data.reshape(-1, x.shape[-1]), weight.data)
    Z = None if logits is None else logits.reshape(-1, logits.shape[-1])
    V = W.shape[0]
    valid, safe_t, n = _targets(targets, (*x.shape[:-1], V), V, ignore_index)
    N = X.shape[0]
    want_grad = is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    losses = np.zeros(N, dtype=X.dtype)
    dX = np.empty_like(X) if want_grad else None
    dW_parts: dict[int, np.ndarray] = {}  # each thread's dL/dW, by its first row: added in row order
    # |z_ij| <= |x_i| |w_j|: a block whose rows are short enough cannot overflow exp, so it skips the shift
    x_norm = np.sqrt(np.einsum("ij,ij->i", X, X))
    w_norm = math.sqrt(float(np.einsum("ij,ij->i", W, W).max(initial=0.0)))
    ones = np.ones(V, dtype=X.dtype)  # ones @ e: every token's sum in one matrix-vector product

    def rows(lo: int, hi: int) -> None:
        step = LOSS_BLOCK_ROWS
        dW = part = None  # this thread's dL/dW: the first block writes it, later blocks add theirs via `part`
        space = np.empty(V * min(step, hi - lo), dtype=X.dtype)  # this thread's block, reused block to block
        for r0 in range(lo, hi, step):
            r1 = min(r0 + step, hi)
            index, t, counted = np.arange(r1 - r0), safe_t[r0:r1], valid[r0:r1]
            e = space[:V * (r1 - r0)].reshape(V, r1 - r0)  # this block's exp(logits - top), one column a token
            if Z is None:
                np.matmul(W, X[r0:r1].T, out=e)
            else:
                e[...] = Z[r0:r1].T
            picked = e[t, index]
            if x_norm[r0:r1].max(initial=0.0) * w_norm <= EXP_SAFE:
                top = 0.0
            else:
                top = e.max(axis=0)
                e -= top
            np.exp(e, out=e)
            total = ones @ e
            losses[r0:r1] = np.where(counted, np.log(total) + top - picked, 0)
            if want_grad:
                scale = (counted / (max(n, 1) * total)).astype(X.dtype)[:, None]  # 1/(n s), 0 on ignored tokens
                e[t, index] -= total  # e - s onehot(t)
                np.matmul(e.T, W, out=dX[r0:r1])
                dX[r0:r1] *= scale
                if dW is None:
                    dW = e @ (X[r0:r1] * scale)
                else:
                    part = np.matmul(e, X[r0:r1] * scale, out=part)
                    dW += part
        if dW is not None:
            dW_parts[lo] = dW

    run_split(rows, N, N * V * (3 * X.shape[1] * MAC_WORK + 3 * PASS_WORK), calls=LOSS_BLOCK_CALLS)
    loss = np.asarray(losses.sum() / n if n else np.nan, dtype=X.dtype)

    def backward(g: np.ndarray):
        scale = float(g)  # 1 when this loss is what backward() started from: then no copies are needed
        gx = (dX if scale == 1.0 else dX * scale).reshape(x.shape) if x.requires_grad else None
        gw = None
        if weight.requires_grad:  # the threads' parts, summed straight into the optimizer's buffer when it has one
            home = weight.gradient_home() if scale == 1.0 else None
            gw = _sum_parts(dW_parts, np.empty_like(W) if home is None else home) if dW_parts else np.zeros_like(W)
            if scale != 1.0:
                gw *= scale
        return gx, gw

    return Tensor._result(loss, (x, weight), backward)


def _root_mean_square(x: np.ndarray, eps: float, out: np.ndarray | None = None) -> np.ndarray:
    """sqrt(mean(x^2) + eps) over the last axis, shaped (..., 1) to divide x by; written into `out` if given."""
    if out is None:
        out = np.empty((*x.shape[:-1], 1), dtype=np.result_type(x.dtype, 1.0))  # integers give float64, as x / rms
    np.einsum("...i,...i->...", x, x, out=out[..., 0])
    out *= 1.0 / x.shape[-1]
    out += eps
    return np.sqrt(out, out=out)


def rms_rows(x: np.ndarray, weight: np.ndarray | None = None, eps: float = RMS_EPS) -> np.ndarray:
    """rms_norm's forward on a plain array, with no graph: for generation's step, where a Tensor per op costs
    more than the op itself (a few rows)."""
    y = x / _root_mean_square(x, eps)
    return y if weight is None else y * weight


RMS_BACKWARD_PASSES = 8  # what rms_norm's backward costs in a training step, in simple passes (see below)


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = RMS_EPS) -> Tensor:
    """y = x / sqrt(mean(x^2) + eps) over the last dim, times an optional gain.

    With r = (mean(x^2) + eps)^(-1/2), y = x r, G the upstream gradient and g = G w (G itself without a gain):
    dL/dx = r (g - y mean(g y)), dL/dw = sum over rows of G y.
    Rows are independent: big inputs are split over the cores. The backward makes four passes, two of them
    scaling each row by its own factor (slow on short rows), over arrays that are no longer in the cache by
    then: in a c2-b8 step it took as long as eight simple passes, so it is split where the forward is not.
    """
    X = need_tensor(x, "rms_norm").data
    C = X.shape[-1]
    if weight is not None and weight.shape != (C,):
        raise ValueError(f"rms_norm: the gain has shape {weight.shape}, x's last dim needs ({C},)")
    rows = X.reshape(-1, C)
    inv_c = 1.0 / C
    W = None if weight is None else weight.data
    r = np.empty((rows.shape[0], 1), dtype=X.dtype)  # 1 / rms of each row
    y = np.empty(rows.shape, dtype=X.dtype)
    out = y if W is None else np.empty(rows.shape, dtype=np.result_type(y, W))
    work = 5 * rows.size * PASS_WORK  # three passes, two of them writing a new array: about five simple ones

    def forward_rows(lo: int, hi: int) -> None:
        xs, rs = rows[lo:hi], r[lo:hi]
        np.divide(xs, _root_mean_square(xs, eps, out=rs), out=y[lo:hi])
        np.reciprocal(rs, out=rs)
        if W is not None:
            np.multiply(y[lo:hi], W, out=out[lo:hi])

    run_split(forward_rows, rows.shape[0], work)

    def backward(g: np.ndarray):
        g_rows = g.reshape(rows.shape)
        gy = g_rows if W is None else g_rows * W
        gx = None
        if x.requires_grad:
            gx = np.empty(rows.shape, dtype=gy.dtype)
            sent = x.take_gradient()  # what x has received so far (a residual stream's): added in here
            sent = None if sent is None else sent.reshape(rows.shape)

            def backward_rows(lo: int, hi: int) -> None:
                ys, gs, dx = y[lo:hi], gy[lo:hi], gx[lo:hi]
                mean = np.einsum("ij,ij->i", gs, ys)[:, None]
                mean *= inv_c
                np.multiply(ys, mean, out=dx)
                np.subtract(gs, dx, out=dx)
                dx *= r[lo:hi]
                if sent is not None:
                    dx += sent[lo:hi]

            run_split(backward_rows, rows.shape[0], RMS_BACKWARD_PASSES * rows.size * PASS_WORK)
            gx = gx.reshape(X.shape)
        if W is None:
            return (gx,)
        gw = unbroadcast((g_rows * y).reshape(*X.shape[:-1], C), W.shape) if weight.requires_grad else None
        return gx, gw

    parents = (x,) if weight is None else (x, weight)
    return Tensor._result(out.reshape(X.shape), parents, backward)
