"""Reverse-mode automatic differentiation on NumPy arrays.

`Tensor` holds data and the recipe for its gradient; `functional` holds fused ops (softmax,
cross-entropy, RMSNorm, and attention's, which live in `attention`) with hand-written backward passes;
`gradcheck` verifies any of them.
"""

from microgpt.autograd import functional
from microgpt.autograd.gradcheck import GradcheckError, gradcheck
from microgpt.autograd.memory import keep_freed_memory
from microgpt.autograd.tensor import (
    Tensor,
    concatenate,
    is_grad_enabled,
    masked_fill,
    matmul,
    no_grad,
    stack,
    unbroadcast,
    where,
)

__all__ = [
    "GradcheckError",
    "Tensor",
    "concatenate",
    "functional",
    "gradcheck",
    "is_grad_enabled",
    "masked_fill",
    "matmul",
    "no_grad",
    "stack",
    "unbroadcast",
    "where",
]

keep_freed_memory()  # big arrays are reused from step to step instead of page-faulted in again
