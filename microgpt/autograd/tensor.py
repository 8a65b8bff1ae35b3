"""The Tensor: an ndarray plus the recipe that sends its gradient back to whatever made it.

Every operation below computes its result with NumPy and, right beside it, defines `backward(g)`:
given g = dLoss/dOut it returns dLoss/dInput for each input, in order (None where no gradient is needed).
`Tensor.backward()` walks the graph in reverse topological order and applies those recipes.
The module is long because it is one idea, the table of operations, each with its backward beside it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from microgpt.autograd.parallel import PASS_WORK, run_split


class _GradMode(threading.local):
    """Whether ops record a graph, per thread (as in PyTorch): a server's decoding thread under no_grad must
    not switch recording off for a training loop running in another thread."""

    enabled = True


_grad_mode = _GradMode()
_passes = itertools.count(1)  # every backward() call gets its own number: a gradient_home is handed out once per pass
_walk = threading.local()  # this thread's running backward pass: its number, and the gradients it has gathered


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Inside this block no graph is recorded: results are plain constants (inference, evaluation)."""
    previous, _grad_mode.enabled = _grad_mode.enabled, False
    try:
        yield
    finally:
        _grad_mode.enabled = previous


def is_grad_enabled() -> bool:
    """True unless this thread is inside `no_grad()`."""
    return _grad_mode.enabled


def unbroadcast(grad: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient that NumPy broadcast up to a bigger shape back down to `shape`.

    Broadcasting copies a value to many places, so its gradient is the sum over those places.
    This is the one function in the project that undoes broadcasting.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def _float_dtype(data: Any, dtype: Any) -> np.dtype:
    """float32 unless asked otherwise or built from float64 NumPy data."""
    if dtype is not None:
        return np.dtype(dtype)
    if isinstance(data, (np.ndarray, np.floating)) and data.dtype == np.float64:
        return np.dtype(np.float64)
    return np.dtype(np.float32)


class Tensor:
    """An n-dimensional array that remembers how it was computed, so it can be differentiated."""

    __slots__ = ("__weakref__", "_backward", "_home_pass", "_parents", "data", "grad", "grad_home", "requires_grad")
    __array_ufunc__ = None  # ndarray <op> Tensor hands over to Tensor's reflected operator
    __array_priority__ = 1000

    def __init__(self, data: Any, requires_grad: bool = True, dtype: Any = None) -> None:
        if isinstance(data, Tensor):
            data = data.data
        elif data is None:
            raise TypeError("Tensor(None): give numbers or an array")
        self.data: np.ndarray = np.asarray(data, dtype=_float_dtype(data, dtype))
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(f"only float Tensors can require gradients, not {self.data.dtype} (a gradient of whole "
                            "numbers would be cut to zero): give a float dtype, or requires_grad=False")
        self.grad: np.ndarray | None = None
        self.grad_home: np.ndarray | None = None  # where backward writes a first gradient (an optimizer's buffer)
        self._home_pass = 0  # the backward pass that last handed grad_home to an op (gradient_home)
        self.requires_grad = requires_grad
        self._parents: tuple[Tensor, ...] = ()
        self._backward: Callable[[np.ndarray], Sequence[np.ndarray | None]] | None = None

    # ----- bookkeeping -------------------------------------------------------------------------
    @staticmethod
    def _result(
        data: np.ndarray,
        parents: tuple[Tensor, ...],
        backward: Callable[[np.ndarray], Sequence[np.ndarray | None]],
    ) -> Tensor:
        """Wrap an op's output; record the graph edge only if some parent wants a gradient."""
        out = Tensor.__new__(Tensor)
        out.data = data if isinstance(data, np.ndarray) else np.asarray(data)  # reductions give NumPy scalars
        out.grad = out.grad_home = None
        if _grad_mode.enabled and any(p.requires_grad for p in parents):
            out.requires_grad = True
            out._parents = parents
            out._backward = backward
        else:
            out.requires_grad = False
            out._parents = ()
            out._backward = None
        return out

    def _lift(self, other: Any) -> Tensor:
        """Turn a scalar or array into a constant Tensor of our dtype (no float64 upcasts)."""
        if isinstance(other, Tensor):
            return other
        return Tensor(np.asarray(other, dtype=self.data.dtype), requires_grad=False)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __bool__(self) -> bool:
        return bool(self.data)  # as NumPy: one element's truth, an error for several

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self) -> Iterator[Tensor]:
        """The rows along the first axis, each a Tensor in the graph (as t[0], t[1], ...)."""
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d Tensor: it holds one number (t.item())")
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        raise TypeError("Tensors are not compared with == or != (that would have no gradient): compare their "
                        "arrays, e.g. t.data == 1, for a mask")

    __ne__ = __eq__
    __hash__ = object.__hash__  # by identity: the graph walk keeps Tensors in sets and dicts

    def item(self) -> float:
        return self.data.item()

    def __float__(self) -> float:
        if self.size != 1:
            raise TypeError(f"float() of a Tensor of shape {self.shape}: only a one-element Tensor is a number")
        return float(self.data.reshape(-1)[0])

    def numpy(self) -> np.ndarray:
        return self.data

    def detach(self) -> Tensor:
        """The same values, cut off from the graph."""
        return Tensor(self.data, requires_grad=False)

    def __repr__(self) -> str:
        return f"Tensor({self.data!r}, requires_grad={self.requires_grad})"

    # ----- backpropagation ---------------------------------------------------------------------
    def _topological_order(self) -> list[Tensor]:
        """Nodes that need a gradient, each after all of its parents (iterative DFS, no recursion). A Tensor
        hashes by identity (it defines no __eq__), so the set here, and the walk's dict, hold the nodes."""
        order: list[Tensor] = []
        visited: set[Tensor] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, parents_done = stack.pop()
            if parents_done:
                order.append(node)
                continue
            if node in visited:
                continue
            visited.add(node)
            stack.append((node, True))
            for parent in node._parents:
                if parent.requires_grad and parent not in visited:
                    stack.append((parent, False))
        return order

    def backward(self, grad: Any = None) -> None:
        """Accumulate dSelf/dLeaf into `.grad` of every leaf that requires a gradient (a leaf without one gets
        a new array, or its `grad_home` written over: an optimizer's buffer)."""
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad (built under no_grad?)")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward() without grad= needs a scalar, this tensor has shape {self.shape}; "
                    "pass grad= with that shape"
                )
            grad = np.ones(self.shape, dtype=self.dtype)
        else:
            grad = np.asarray(grad.data if isinstance(grad, Tensor) else grad, dtype=self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"grad has shape {grad.shape} but the tensor has shape {self.shape}")
        grads: dict[Tensor, np.ndarray] = {self: grad}
        _walk.pass_id = next(_passes)
        _walk.grads = grads
        try:
            for node in reversed(self._topological_order()):
                g = grads.pop(node, None)
                if g is None:
                    continue
                if node._backward is None:  # a leaf: keep its gradient, summed over backward calls
                    if node.grad is not None:
                        node.grad += g
                    elif node.grad_home is not None:  # written into its home: no zeroed buffer to add to
                        if g is not node.grad_home:  # (an op that took gradient_home() has written it there)
                            np.copyto(node.grad_home, g)
                        node.grad = node.grad_home
                    else:
                        node.grad = np.array(g, dtype=node.data.dtype)
                    continue
                for parent, pg in zip(node._parents, node._backward(g)):
                    if pg is None or not parent.requires_grad:
                        continue
                    grads[parent] = grads[parent] + pg if parent in grads else pg
        finally:
            _walk.pass_id = 0  # no op outside a backward pass is handed a gradient_home
            _walk.grads = None

    def zero_grad(self) -> None:
        self.grad = None

    def gradient_home(self) -> np.ndarray | None:
        """Where an op may write this leaf's gradient during the running backward: its optimizer's buffer
        (grad_home), or None. Handed out once per backward pass, and only while the leaf holds no gradient,
        so the op's array is the leaf's whole gradient or is summed with the others into a new one; an op
        that writes there returns that very array, and the walk keeps it instead of copying it in."""
        running = getattr(_walk, "pass_id", 0)
        if (not running or self._backward is not None or not self.requires_grad or self.grad is not None
                or self.grad_home is None or self._home_pass == running):
            return None
        self._home_pass = running
        return self.grad_home

    def take_gradient(self) -> np.ndarray | None:
        """The gradient that ops have already sent this tensor in the running backward pass, taken out of the
        walk (None if there is none, or outside a backward): an op that adds it to the gradient it sends this
        tensor, inside a pass it makes anyway, spares the walk a pass over the sum."""
        grads = getattr(_walk, "grads", None)
        return None if grads is None else grads.pop(self, None)

    # ----- elementwise arithmetic (with broadcasting) --------------------------------------------
    def _broadcast_op(self, other: Tensor, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], sym: str):
        try:
            return fn(self.data, other.data)
        except ValueError:
            raise ValueError(f"shapes {self.shape} and {other.shape} do not broadcast for '{sym}'") from None

    def __add__(self, other: Any) -> Tensor:
        if isinstance(other, (int, float)):
            return Tensor._result(self.data + float(other), (self,), lambda g: (g,))  # d(x+c)/dx = 1
        a, b = self, self._lift(other)

        def backward(g: np.ndarray):  # d(a+b)/da = d(a+b)/db = 1
            return unbroadcast(g, a.shape), unbroadcast(g, b.shape)

        return Tensor._result(a._broadcast_op(b, np.add, "+"), (a, b), backward)

    __radd__ = __add__

    def __sub__(self, other: Any) -> Tensor:
        if isinstance(other, (int, float)):
            return Tensor._result(self.data - float(other), (self,), lambda g: (g,))  # d(x-c)/dx = 1
        a, b = self, self._lift(other)

        def backward(g: np.ndarray):  # d(a-b)/da = 1, d(a-b)/db = -1
            return unbroadcast(g, a.shape), (unbroadcast(-g, b.shape) if b.requires_grad else None)

        return Tensor._result(a._broadcast_op(b, np.subtract, "-"), (a, b), backward)

    def __rsub__(self, other: Any) -> Tensor:
        return self._lift(other) - self

    def __neg__(self) -> Tensor:
        return Tensor._result(-self.data, (self,), lambda g: (-g,))  # d(-x)/dx = -1

    def __mul__(self, other: Any) -> Tensor:
        if isinstance(other, (int, float)):
            c = float(other)
            return Tensor._result(self.data * c, (self,), lambda g: (g * c,))  # d(cx)/dx = c
        a, b = self, self._lift(other)

        def backward(g: np.ndarray):  # d(ab)/da = b, d(ab)/db = a
            ga = unbroadcast(g * b.data, a.shape) if a.requires_grad else None
            gb = unbroadcast(g * a.data, b.shape) if b.requires_grad else None
            return ga, gb

        return Tensor._result(a._broadcast_op(b, np.multiply, "*"), (a, b), backward)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> Tensor:
        if isinstance(other, (int, float)):  # x / 0 is inf (NumPy's warning), as x / Tensor(0.0) is
            return self * float(np.divide(1.0, float(other)))
        a, b = self, self._lift(other)
        out = a._broadcast_op(b, np.divide, "/")

        def backward(g: np.ndarray):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2 = -out/b
            ga = unbroadcast(g / b.data, a.shape) if a.requires_grad else None
            gb = unbroadcast(-g * out / b.data, b.shape) if b.requires_grad else None
            return ga, gb

        return Tensor._result(out, (a, b), backward)

    def __rtruediv__(self, other: Any) -> Tensor:
        return self._lift(other) / self

    def __pow__(self, exponent: float) -> Tensor:
        if isinstance(exponent, Tensor) or not np.isscalar(exponent):
            raise TypeError("Tensor ** only takes a scalar exponent")
        p = float(exponent)
        x = self.data
        if p == 0.0:  # x^0 = 1 everywhere: no gradient (p x^(p-1) would be 0 * inf = NaN at x = 0)
            return Tensor._result(np.ones_like(x), (self,), lambda g: (np.zeros_like(x),))
        return Tensor._result(x**p, (self,), lambda g: (g * (p * x ** (p - 1.0)),))  # d/dx x^p = p x^(p-1)

    # ----- matrix product ----------------------------------------------------------------------
    def __matmul__(self, other: Any) -> Tensor:
        return matmul(self, self._lift(other))

    def __rmatmul__(self, other: Any) -> Tensor:
        return matmul(self._lift(other), self)

    # ----- reductions ----------------------------------------------------------------------------
    def sum(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        shape = self.shape

        def backward(g: np.ndarray):  # every summed element receives the same gradient
            return (np.broadcast_to(_restore_axes(g, axis, keepdims, len(shape)), shape),)

        return Tensor._result(self.data.sum(axis=axis, keepdims=keepdims), (self,), backward)

    def mean(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        total = self.sum(axis=axis, keepdims=keepdims)
        return total * (total.data.size / self.data.size if self.data.size else math.nan)  # / the count averaged

    def max(self, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> Tensor:
        x = self.data
        top = x.max(axis=axis, keepdims=True)

        def backward(g: np.ndarray):  # the gradient goes to the maximum (split evenly between ties)
            winners = x == top
            share = (winners / winners.sum(axis=axis, keepdims=True)).astype(x.dtype)
            return (_restore_axes(g, axis, keepdims, x.ndim) * share,)

        out = top if keepdims else np.squeeze(top, axis=axis) if axis is not None else top.reshape(())
        return Tensor._result(out, (self,), backward)

    # ----- elementwise functions -----------------------------------------------------------------
    def exp(self) -> Tensor:
        out = np.exp(self.data)
        return Tensor._result(out, (self,), lambda g: (g * out,))  # d/dx e^x = e^x

    def log(self) -> Tensor:
        x = self.data
        return Tensor._result(np.log(x), (self,), lambda g: (g / x,))  # d/dx log x = 1/x

    def sqrt(self) -> Tensor:
        out = np.sqrt(self.data)
        return Tensor._result(out, (self,), lambda g: (g * 0.5 / out,))  # d/dx sqrt x = 1/(2 sqrt x)

    def tanh(self) -> Tensor:
        out = np.tanh(self.data)
        return Tensor._result(out, (self,), lambda g: (g * (1.0 - out * out),))  # d tanh = 1 - tanh^2

    def relu(self) -> Tensor:
        """max(x, 0); its slope is 1 where x > 0 and 0 elsewhere. Big inputs are split over the cores."""
        x = self.data
        rows = x.reshape(-1, x.shape[-1]) if x.ndim > 1 and x.size else x.reshape(1, -1)  # a view if contiguous
        out = np.empty(rows.shape, dtype=x.dtype)
        run_split(lambda lo, hi: np.maximum(rows[lo:hi], 0, out=out[lo:hi]), len(rows), x.size * PASS_WORK)

        def backward(g: np.ndarray):  # g where x > 0
            g_rows = g.reshape(rows.shape)
            gx = np.empty(rows.shape, dtype=g.dtype)
            run_split(lambda lo, hi: np.multiply(g_rows[lo:hi], rows[lo:hi] > 0, out=gx[lo:hi]), len(rows),
                      2 * x.size * PASS_WORK)
            return (gx.reshape(x.shape),)

        return Tensor._result(out.reshape(x.shape), (self,), backward)

    def gelu(self) -> Tensor:
        """GELU, tanh approximation: 0.5 x (1 + tanh(k (x + 0.044715 x^3))), k = sqrt(2/pi)."""
        x = self.data
        k = math.sqrt(2.0 / math.pi)
        t = np.tanh(k * (x + 0.044715 * x**3))

        def backward(g: np.ndarray):  # product rule: 0.5(1+t) + 0.5 x (1-t^2) k (1 + 3*0.044715 x^2)
            return (g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x)),)

        return Tensor._result(0.5 * x * (1.0 + t), (self,), backward)

    # ----- shape -----------------------------------------------------------------------------------
    def reshape(self, *shape: Any) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        old = self.shape
        return Tensor._result(self.data.reshape(shape), (self,), lambda g: (g.reshape(old),))  # same values, old shape

    def transpose(self, *axes: int) -> Tensor:
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        out = self.data.transpose(axes or None)  # NumPy refuses an axis out of range or given twice
        perm = tuple(a % self.ndim for a in axes) if axes else tuple(reversed(range(self.ndim)))
        inverse = tuple(sorted(range(len(perm)), key=perm.__getitem__))
        return Tensor._result(out, (self,), lambda g: (g.transpose(inverse),))  # undo the perm

    @property
    def T(self) -> Tensor:
        return self.transpose()

    def __getitem__(self, index: Any) -> Tensor:
        if isinstance(index, Tensor):  # only whole numbers are rows: a Tensor made from bools holds floats
            if index.dtype.kind not in "iu":
                raise TypeError(f"index a Tensor with ints or a bool mask as a NumPy array or list, not a "
                                f"{index.dtype} Tensor (for a mask Tensor m: t[m.data > 0])")
            index = index.data
        x = self.data
        out = x[index]

        def backward(g: np.ndarray):  # scatter the gradient back; repeated indices add up
            full = self.gradient_home()  # the optimizer's buffer for an embedding table, if it has one
            if full is None:  # row-major whatever x's layout: the flat view below must not be a copy
                full = np.zeros(x.shape, dtype=x.dtype)
            else:
                full.fill(0)
            if isinstance(index, np.ndarray) and index.dtype.kind in "iu" and x.ndim == 2:
                rows = index.reshape(-1).astype(np.intp, copy=False) % x.shape[0]  # -1 is the last row
                cols = x.shape[1]
                flat = (rows[:, None] * cols + np.arange(cols)).reshape(-1)
                np.add.at(full.reshape(-1), flat, g.reshape(-1))
            elif _is_basic_index(index):
                full[index] = g
            else:
                np.add.at(full, index, g)
            return (full,)

        return Tensor._result(out, (self,), backward)

    def masked_fill(self, mask: Any, value: float) -> Tensor:
        """Where mask is True, replace by `value` (its gradient there is 0)."""
        m = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
        shape = self.shape
        out = np.where(m, np.asarray(value, dtype=self.dtype), self.data)
        # filled places no longer depend on x: gradient 0 there, g elsewhere
        return Tensor._result(out, (self,), lambda g: (unbroadcast(np.where(m, 0, g), shape),))


def _restore_axes(g: np.ndarray, axis: Any, keepdims: bool, ndim: int) -> np.ndarray:
    """Put back the axes a reduction removed, so g broadcasts against the input."""
    if keepdims or axis is None:
        return g if keepdims or g.ndim == ndim else g.reshape((1,) * ndim)
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)  # an int, a NumPy integer or a tuple of them
    return np.expand_dims(g, tuple(a % ndim for a in axes))


def _is_basic_index(index: Any) -> bool:
    """Slices, ints, Ellipsis and None select each element at most once: plain assignment works."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, np.integer, slice, type(Ellipsis), type(None))) for p in parts)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a @ b for 1-D, 2-D and batched N-D operands (batch dims broadcast).

    d(A@B)/dA = G @ B^T and d(A@B)/dB = A^T @ G, summed over broadcast batch dims.
    """
    A, B = a.data, b.data
    try:
        out = np.matmul(A, B)
    except ValueError:
        raise ValueError(f"shapes {a.shape} and {b.shape} are not aligned for '@'") from None

    def backward(g: np.ndarray):  # dA = G B^T, dB = A^T G (vectors promoted to matrices, batch dims summed)
        A2 = A if A.ndim > 1 else A[None, :]  # a vector is a 1-row (or 1-column) matrix
        B2 = B if B.ndim > 1 else B[:, None]
        g2 = g.reshape(np.broadcast_shapes(A2.shape[:-2], B2.shape[:-2]) + (A2.shape[-2], B2.shape[-1]))
        ga = gb = None
        if a.requires_grad:
            ga = unbroadcast(np.matmul(g2, np.swapaxes(B2, -1, -2)), A2.shape).reshape(A.shape)
        if b.requires_grad:
            if B2.ndim == 2 and A2.ndim > 2:  # one big GEMM instead of a batch of small ones
                gb = A2.reshape(-1, A2.shape[-1]).T @ g2.reshape(-1, g2.shape[-1])
            else:
                gb = unbroadcast(np.matmul(np.swapaxes(A2, -1, -2), g2), B2.shape)
            gb = gb.reshape(B.shape)
        return ga, gb

    return Tensor._result(out, (a, b), backward)


def _join(join: Callable[..., np.ndarray], tensors: Sequence[Any], axis: int) -> tuple[tuple[Tensor, ...], np.ndarray]:
    """The pieces as Tensors and np.concatenate / np.stack of their data; a mismatch names every shape."""
    parts = tuple(t if isinstance(t, Tensor) else Tensor(t, requires_grad=False) for t in tensors)
    try:
        return parts, join([t.data for t in parts], axis=axis)
    except ValueError:
        raise ValueError(f"cannot {join.__name__} shapes {[t.shape for t in parts]} along axis {axis}") from None


def concatenate(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along an existing axis; the gradient is split back into the pieces."""
    parts, out = _join(np.concatenate, tensors, axis)
    before = (slice(None),) * (axis % out.ndim)  # the axes before `axis`, taken whole
    ends = itertools.accumulate(t.shape[axis] for t in parts)
    pieces = [(*before, slice(end - t.shape[axis], end)) for t, end in zip(parts, ends)]
    return Tensor._result(out, parts, lambda g: [g[piece] for piece in pieces])  # each piece gets its own slice


def stack(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Join tensors along a new axis; piece i gets slice i of the gradient."""
    parts, out = _join(np.stack, tensors, axis)
    return Tensor._result(out, parts, lambda g: [np.take(g, i, axis=axis) for i in range(len(parts))])  # slice i


def where(mask: Any, a: Any, b: Any) -> Tensor:
    """Elementwise choice: a where mask is True, else b. Each side gets the gradient where it was chosen."""
    m = np.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=bool)
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else Tensor(np.asarray(a))
    ta, tb = like._lift(a), like._lift(b)
    try:
        out = np.where(m, ta.data, tb.data)
    except ValueError:
        raise ValueError(f"shapes {m.shape}, {ta.shape} and {tb.shape} do not broadcast in where()") from None

    def backward(g: np.ndarray):  # each side gets g where it was chosen, 0 elsewhere
        ga = unbroadcast(np.where(m, g, 0), ta.shape) if ta.requires_grad else None
        gb = unbroadcast(np.where(m, 0, g), tb.shape) if tb.requires_grad else None
        return ga, gb

    return Tensor._result(out, (ta, tb), backward)


def masked_fill(x: Tensor, mask: Any, value: float) -> Tensor:
    """Module-level form of `Tensor.masked_fill`: `value` where mask is True, x elsewhere."""
    return x.masked_fill(mask, value)
