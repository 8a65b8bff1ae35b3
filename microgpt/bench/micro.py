"""Autograd micro-benchmarks: forward + backward of a 2-layer MLP and of one attention block."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from microgpt.autograd import Tensor
from microgpt.autograd import functional as F


def _median_ms(fn: Callable[[], None], repeats: int = 50, windows: int = 7) -> float:
    fn()
    times = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        times.append((time.perf_counter() - start) / repeats)
    return 1000 * float(np.median(times))


def mlp_step(batch: int = 64, width: int = 128, seed: int = 0) -> Callable[[], None]:
    """x (64, 128) -> relu(x W1^T) W2^T -> mean square, then backward."""
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal((batch, width)), requires_grad=False, dtype=np.float32)
    w1 = Tensor(rng.standard_normal((4 * width, width)) * 0.05, dtype=np.float32)
    w2 = Tensor(rng.standard_normal((width, 4 * width)) * 0.05, dtype=np.float32)

    def step() -> None:
        w1.grad = w2.grad = None
        out = F.linear(F.linear(x, w1).relu(), w2)
        (out * out).mean().backward()

    return step


def attention_step(batch: int = 8, heads: int = 4, seq: int = 64, head_dim: int = 16,
                   seed: int = 0) -> Callable[[], None]:
    """Causal attention on (8, 4, 64, 16) q, k, v, then backward."""
    rng = np.random.default_rng(seed)
    q, k, v = (Tensor(rng.standard_normal((batch, heads, seq, head_dim)), dtype=np.float32) for _ in range(3))

    def step() -> None:
        q.grad = k.grad = v.grad = None
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    return step


def run_micro() -> dict[str, float]:
    return {"mlp_64x128_ms": _median_ms(mlp_step()), "attention_8x4x64x16_ms": _median_ms(attention_step())}
