"""Fused operations: each is one graph node with a hand-derived backward.

Composing these from primitives would work, but every primitive stores its own intermediate arrays
and makes its own passes over memory. A fused op makes the fewest passes, saves only what its
backward needs, and is numerically stable by construction (softmax shifts by the row maximum, unless a
bound proves that exp cannot overflow). It is long because every fast path stays next
to the plain derivation it implements; tests/test_fast_paths.py checks each against the plain ops.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from microgpt.autograd.deferred import Deferred, deferred
from microgpt.autograd.parallel import MAC_WORK, PASS_WORK, run_split
from microgpt.autograd.tensor import Tensor, is_grad_enabled, unbroadcast


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x, requires_grad=False)


WIDE_OUTPUT = 8  # linear's outputs at least this many times its inputs: a vocabulary head, whose logits wait
SKINNY_ROWS = 16  # products with at most this many rows (generation's tokens) may take the transposed route


def _matmul_rows(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """out = a @ b, the rows of a split over the cores when the product is big (each part on one BLAS
    thread): unlike BLAS's own threads, which spin and wait for each other, our parts slow down gracefully
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
    when given (a part may already be it), else into the first part."""
    keys = sorted(parts)
    first = parts[keys[0]]
    if out is None or first is out:
        total = first
    elif len(keys) > 1:
        total = np.add(first, parts[keys[1]], out=out)
        keys = keys[1:]
    else:
        total = out
        np.copyto(out, first)
    for lo in keys[1:]:
        total += parts[lo]
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


def _rows_of(x: Tensor, weight: Tensor, name: str) -> np.ndarray:
    """x's data as (rows, in_features), checked against a weight stored (out, in)."""
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
    return x.relu()


def gelu(x: Tensor) -> Tensor:
    return x.gelu()


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
    e = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    p = e / e.sum(axis=axis, keepdims=True)

    def backward(g: np.ndarray):
        return (p * (g - (g * p).sum(axis=axis, keepdims=True)),)

    return Tensor._result(p, (x,), backward)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x): log-probabilities, stable for any logits.

    d/dx (x - lse(x)) applied to g: g - softmax(x) * sum(g).
    """
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g: np.ndarray):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return Tensor._result(out, (x,), backward)


def _targets(targets: Any, logits_shape: tuple[int, ...], V: int,
             ignore_index: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """Flattened targets checked against the logits: (which count, targets with ignored ones set to 0, count)."""
    t = np.asarray(targets.data if isinstance(targets, Tensor) else targets).reshape(-1).astype(np.intp)
    if t.shape[0] != math.prod(logits_shape[:-1]):
        raise ValueError(f"cross_entropy: logits shape {logits_shape} does not match targets shape "
                         f"{np.shape(targets)}")
    valid = np.ones(t.shape, dtype=bool) if ignore_index is None else t != ignore_index
    safe_t = np.where(valid, t, 0)
    if np.any((safe_t < 0) | (safe_t >= V)):
        raise ValueError(f"cross_entropy: a target is outside [0, {V})")
    return valid, safe_t, int(valid.sum())


EXP_SAFE = 60.0  # exp(z) for |z| <= 60, and sums of 2^40 such terms, stay finite and normal in float32
LOSS_BLOCK_ROWS = 256  # tokens (rows of logits) the losses hold at a time (cross_entropy: fewer if past the cache)
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
    inputs = getattr(logits._backward, "linear_inputs", None)
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
    saved = {"grad": grad}

    def backward(g: np.ndarray):
        if n == 0:  # every target ignored: the loss does not depend on the logits
            return (np.zeros_like(logits.data),)
        dx = saved.pop("grad", None)  # the first backward takes the gradient made in the forward
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
    instead of the (V, tokens) block, and the sums come from one matrix-vector product.
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
                e[t[counted], index[counted]] -= total[counted]  # e - s onehot(t)
                np.matmul(e.T, W, out=dX[r0:r1])
                dX[r0:r1] *= scale
                if dW is None:
                    dW = e @ (X[r0:r1] * scale)
                else:
                    part = np.matmul(e, X[r0:r1] * scale, out=part)
                    dW += part
        if dW is not None:
            dW_parts[lo] = dW

    run_split(rows, N, N * V * (3 * X.shape[1] * MAC_WORK + 3 * PASS_WORK))  # three products, exp and sum
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
    """sqrt(mean(x^2) + eps) over the last axis, shaped (..., 1) to divide x by."""
    return np.sqrt(np.einsum("...i,...i->...", x, x)[..., None] * (1.0 / x.shape[-1]) + eps, out=out)


def rms_rows(x: np.ndarray, weight: np.ndarray | None = None, eps: float = 1e-5) -> np.ndarray:
    """rms_norm's forward on a plain array, with no graph: for generation's step, where a Tensor per op costs
    more than the op itself (a few rows)."""
    y = x / _root_mean_square(x, eps)
    return y if weight is None else y * weight


RMS_BACKWARD_PASSES = 8  # what rms_norm's backward costs in a training step, in simple passes (see below)


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """y = x / sqrt(mean(x^2) + eps) over the last dim, times an optional gain.

    With r = (mean(x^2) + eps)^(-1/2) and y = x r: dL/dx = r (g - y mean(g y)), dL/dw = sum(g y).
    Rows are independent: big inputs are split over the cores. The backward makes four passes, two of them
    scaling each row by its own factor (slow on short rows), over arrays that are no longer in the cache by
    then: in a c2-b8 step it took as long as eight simple passes, so it is split where the forward is not.
    """
    X = x.data
    C = X.shape[-1]
    rows = X.reshape(-1, C)
    inv_c = 1.0 / C
    W = None if weight is None else weight.data
    r = np.empty((rows.shape[0], 1), dtype=X.dtype)
    y = np.empty(rows.shape, dtype=np.result_type(X, r))
    out = y if W is None else np.empty(rows.shape, dtype=np.result_type(y, W))
    work = 3 * rows.size * PASS_WORK  # about three simple passes' worth

    def forward_rows(lo: int, hi: int) -> None:
        xs = rows[lo:hi]
        _root_mean_square(xs, eps, out=r[lo:hi])
        np.divide(xs, r[lo:hi], out=y[lo:hi])
        if W is not None:
            np.multiply(y[lo:hi], W, out=out[lo:hi])

    run_split(forward_rows, rows.shape[0], work)
    np.reciprocal(r, out=r)

    def backward(g: np.ndarray):
        g_rows = g.reshape(rows.shape)
        gy = g_rows if W is None else g_rows * W
        gx = None
        if x.requires_grad:
            gx = np.empty(rows.shape, dtype=gy.dtype)
            sent = x.take_gradient()  # what x has received so far (a residual stream's): added in here
            sent = None if sent is None else sent.reshape(rows.shape)

            def backward_rows(lo: int, hi: int) -> None:
                ys, gs = y[lo:hi], gy[lo:hi]
                np.multiply(ys, np.einsum("ij,ij->i", gs, ys)[:, None] * inv_c, out=gx[lo:hi])
                np.subtract(gs, gx[lo:hi], out=gx[lo:hi])
                gx[lo:hi] *= r[lo:hi]
                if sent is not None:
                    gx[lo:hi] += sent[lo:hi]

            run_split(backward_rows, rows.shape[0], RMS_BACKWARD_PASSES * rows.size * PASS_WORK)
            gx = gx.reshape(X.shape)
        if W is None:
            return (gx,)
        gw = unbroadcast((g_rows * y).reshape(*X.shape[:-1], C), W.shape) if weight.requires_grad else None
        return gx, gw

    parents = (x,) if weight is None else (x, weight)
    return Tensor._result(out.reshape(X.shape), parents, backward)


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

    run_split(forward_part, n0, cost)

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
                    dS *= eb  # E (G V^T - r) / s = P (dP - r)
                    np.matmul(dS, kT[..., :kend].swapaxes(-1, -2), out=dQ[..., r0:r1, :])
                    into_k = dK if i == 0 else dK_part[:n, ..., :kend, :]
                    np.matmul(dS.swapaxes(-1, -2), Qs[..., r0:r1, :], out=into_k)
                    if i:
                        dV[..., :kend, :] += into_v
                        dK[..., :kend, :] += into_k
                if summed:
                    dKw[c0:c1], dVw[c0:c1] = dK, dV

        run_split(backward_part, n0, cost)
        return grads

    return out, backward


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(D)) v on (B, H, T, D) tensors, masked so no query sees a later key.

    q may be shorter than k (the KV-cached case): query i then sits at position Tk - Tq + i.
    With E = exp(S - max) the unnormalised weights, s = sum(E) per row, P = E / s and O = P V, the backward
    needs only E, s and O:
      dV = E^T (G / s),  dP = G V^T,  dS = P (dP - r) with r = rowsum(G O)  (= rowsum(dP P), but cheap),
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
