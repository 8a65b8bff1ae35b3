"""Check an analytic gradient against central finite differences, in float64."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from microgpt.autograd.tensor import Tensor, no_grad


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree; the message says where and by how much."""


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any],
    eps: float = 1e-6,
    atol: float = 1e-7,
    rtol: float = 1e-6,
    seed: int = 0,
) -> bool:
    """Compare backward() of `fn(*inputs)` with (f(x + eps) - f(x - eps)) / 2 eps for every element.

    A non-scalar output is reduced as sum(out * R) with a fixed random R, so every output element's
    gradient path is exercised with a different weight. Inputs are copied to float64 (the caller's arrays
    are never changed). Returns True, or raises GradcheckError naming the input, the worst element's index
    and both values.
    """
    params = [Tensor(np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64, order="C"))  # flat views
              for x in inputs]
    out = fn(*params)
    weights = np.random.default_rng(seed).standard_normal(out.shape)

    def objective() -> float:
        with no_grad():
            return float(np.sum(fn(*params).data * weights))

    out.backward(weights)
    for i, p in enumerate(params):
        analytic = np.zeros_like(p.data) if p.grad is None else p.grad
        if analytic.shape != p.shape:
            raise GradcheckError(f"gradient of input {i} has shape {analytic.shape}, the input has shape {p.shape}")
        numeric = np.zeros_like(p.data)
        flat = p.data.reshape(-1)
        for j in range(flat.size):
            original = flat[j]
            flat[j] = original + eps
            plus = objective()
            flat[j] = original - eps
            minus = objective()
            flat[j] = original
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if excess.size and excess.max() > 0:
            worst = np.unravel_index(int(np.argmax(excess)), excess.shape)
            raise GradcheckError(
                f"gradient of input {i} (shape {p.shape}) is wrong at index {tuple(int(w) for w in worst)}: "
                f"analytic {analytic[worst]!r}, numerical {numeric[worst]!r}"
            )
    return True
