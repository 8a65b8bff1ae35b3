"""A Tensor whose values are computed the first time something reads them.

A model's output layer makes (tokens, vocab) logits: at 2,048 tokens and a vocabulary of 8,192 that is 64 MB
written to memory, only for `F.cross_entropy` to read it straight back. When the logits go to the loss and
nowhere else, the loss can compute them itself, block by block, while each block is in the CPU cache
(`F.linear_cross_entropy`). So `F.linear` returns such wide outputs as a `Deferred` tensor: its shape and
dtype are known at once, its values only when `.data` is first read. `F.cross_entropy` asks `pending` and,
while it is true, never makes the logits at all. Everything else that reads them gets them as usual (a read
after the loss makes them then: the product runs a second time).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from microgpt.autograd.tensor import Tensor

_stored = Tensor.__dict__["data"]  # the slot that holds every Tensor's array


class Deferred(Tensor):
    """A Tensor computed on first read: `compute()` runs once, then it behaves as any Tensor. Its shape and
    dtype are known before (ndim and size follow from the shape)."""

    __slots__ = ("_compute", "_dtype", "_shape")

    @property
    def data(self) -> np.ndarray:
        compute = self._compute  # read once: another thread may finish the same computation meanwhile
        if compute is not None:
            self.data = compute()
        return _stored.__get__(self, Deferred)

    @data.setter
    def data(self, value: np.ndarray) -> None:
        _stored.__set__(self, value)
        self._compute = None  # also frees what compute() held on to
        self._shape, self._dtype = value.shape, value.dtype

    @property
    def pending(self) -> bool:
        """True while nothing has read the values yet."""
        return self._compute is not None

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def __len__(self) -> int:
        return self._shape[0]


def deferred(shape: tuple[int, ...], dtype: np.dtype, compute: Callable[[], np.ndarray],
             parents: tuple[Tensor, ...], backward: Callable[[np.ndarray], Sequence[np.ndarray | None]]) -> Deferred:
    """A graph node whose values `compute()` makes when first read (only for ops that record a gradient)."""
    out = Deferred.__new__(Deferred)
    out._compute, out._shape, out._dtype = compute, tuple(shape), np.dtype(dtype)
    out.grad, out.grad_home, out.requires_grad, out._parents, out._backward = None, None, True, parents, backward
    return out
