"""Hypothesis strategies shared by every autograd test, plus the one gradient check they all run.

Sizes stay small (at most 4 dims, 4 per dim, 64 elements) so that gradcheck's finite differences,
two forward passes per input element, stay cheap. Value strategies come in flavours that keep each op
away from the places where its derivative is undefined or huge: zero for log, sqrt, division and the
relu kink, ties for max.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import hypothesis.extra.numpy as hnp
import numpy as np
from hypothesis import strategies as st

from microgpt.autograd import Tensor, gradcheck

MAX_DIMS = 4
MAX_SIDE = 4
MAX_ELEMENTS = 64


def _small(shape: Sequence[int]) -> bool:
    return math.prod(shape) <= MAX_ELEMENTS


# ----- shapes ------------------------------------------------------------------------------------------
def shapes(min_dims: int = 0, max_dims: int = MAX_DIMS, min_side: int = 1, max_side: int = MAX_SIDE):
    """Array shapes including 0-d and size-1 dims, at most MAX_ELEMENTS elements."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    ).filter(_small)


def broadcastable_shapes(num_shapes: int = 2, min_dims: int = 0, max_dims: int = MAX_DIMS):
    """`num_shapes` shapes drawn together so that they broadcast against each other (0-d and 1s included).

    Returns a tuple of the input shapes; the broadcast result also has at most MAX_ELEMENTS elements.
    """
    return (
        hnp.mutually_broadcastable_shapes(
            num_shapes=num_shapes, min_dims=min_dims, max_dims=max_dims, max_side=MAX_SIDE
        )
        .filter(lambda b: _small(b.result_shape) and all(_small(s) for s in b.input_shapes))
        .map(lambda b: b.input_shapes)
    )


@st.composite
def shape_broadcastable_to(draw, target: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts *to* `target`: some leading dims dropped, some dims squashed to 1."""
    keep = draw(st.integers(0, len(target)))
    tail = target[len(target) - keep :]
    return tuple(1 if draw(st.booleans()) else n for n in tail)


def matmul_shapes(allow_vector_dot: bool = True):
    """Operand shapes for a @ b: 1-D, 2-D and batched N-D, batch dims broadcasting, up to 4 dims each.

    `allow_vector_dot=False` leaves out the (n,) @ (n,) case so other cases can be tested on their own.
    """

    def ok(b) -> bool:
        a_shape, b_shape = b.input_shapes
        if not allow_vector_dot and len(a_shape) == 1 and len(b_shape) == 1:
            return False
        return _small(b.result_shape) and _small(a_shape) and _small(b_shape)

    return (
        hnp.mutually_broadcastable_shapes(signature=np.matmul.signature, max_dims=2, max_side=MAX_SIDE)
        .filter(ok)
        .map(lambda b: b.input_shapes)
    )


@st.composite
def reshape_targets(draw, size: int) -> tuple[int, ...]:
    """A shape with `size` elements (0-d when size is 1 and drawn so), maybe with one -1 to infer."""
    dims: list[int] = []
    remaining = size
    for _ in range(draw(st.integers(0, MAX_DIMS - 1))):
        divisor = draw(st.sampled_from([d for d in range(1, remaining + 1) if remaining % d == 0]))
        dims.append(divisor)
        remaining //= divisor
    if remaining != 1 or not dims or draw(st.booleans()):
        dims.append(remaining)
    if size == 1 and draw(st.booleans()):
        return ()
    if draw(st.booleans()):
        dims[draw(st.integers(0, len(dims) - 1))] = -1
    return tuple(dims)


@st.composite
def join_shapes(draw, new_axis: bool) -> tuple[list[tuple[int, ...]], int]:
    """Piece shapes and an axis for concatenate (new_axis=False) or stack (new_axis=True).

    Concatenate: 1 to 3 pieces agreeing on every dim but `axis`, where their sizes differ.
    Stack: 1 to 3 pieces of one shape (0-d allowed); axis ranges over the result's dims.
    """
    count = draw(st.integers(1, 3))
    if new_axis:
        shape = draw(shapes(max_dims=3).filter(lambda s: math.prod(s) * count <= MAX_ELEMENTS))
        axis = draw(st.integers(-len(shape) - 1, len(shape)))
        return [shape] * count, axis
    shape = draw(shapes(min_dims=1, max_dims=3))
    axis = draw(single_axis(len(shape)))
    rest = math.prod(shape) // shape[axis]
    sizes = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    if rest * sum(sizes) > MAX_ELEMENTS:
        sizes = [1] * count
    pieces = [tuple(n if d != axis % len(shape) else size for d, n in enumerate(shape)) for size in sizes]
    return pieces, axis


@st.composite
def non_broadcastable_pair(draw) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Two shapes that do not broadcast: equal except for one dim where both sizes are >= 2 and differ."""
    first = draw(shapes(min_dims=1))
    dim = draw(st.integers(0, len(first) - 1))
    sizes = draw(st.lists(st.integers(2, MAX_SIDE), min_size=2, max_size=2, unique=True))
    a = first[:dim] + (sizes[0],) + first[dim + 1 :]
    b = first[:dim] + (sizes[1],) + first[dim + 1 :]
    return a, b


# ----- values ------------------------------------------------------------------------------------------
def floats(low: float = -3.0, high: float = 3.0):
    return st.floats(low, high, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def arrays(shape, low: float = -3.0, high: float = 3.0):
    """float64 arrays of `shape` (a shape or a strategy of shapes) with finite values in [low, high]."""
    return hnp.arrays(np.float64, shape, elements=floats(low, high))


def nonzero_floats(low: float = 0.5, high: float = 3.0):
    """Either sign, magnitude in [low, high]: away from zero."""
    return st.tuples(floats(low, high), st.booleans()).map(lambda p: -p[0] if p[1] else p[0])


def nonzero_arrays(shape, low: float = 0.5, high: float = 3.0):
    """float64 arrays whose elements are at least `low` away from zero (division, relu's kink, 1/x)."""
    return hnp.arrays(np.float64, shape, elements=nonzero_floats(low, high))


def positive_arrays(shape, low: float = 0.5, high: float = 3.0):
    """float64 arrays in [low, high] (log, sqrt, fractional powers)."""
    return arrays(shape, low, high)


@st.composite
def distinct_arrays(draw, shape: tuple[int, ...], spacing: float = 0.1) -> np.ndarray:
    """float64 arrays whose elements are pairwise at least `spacing` apart: no ties for max to split."""
    n = math.prod(shape)
    grid = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n, unique=True))
    jitter = draw(hnp.arrays(np.float64, n, elements=floats(0.0, spacing / 4)))
    return (np.array(grid, dtype=np.float64) * spacing + jitter).reshape(shape)


# ----- axes ----------------------------------------------------------------------------------------------
@st.composite
def axis_and_keepdims(draw, ndim: int):
    """(axis, keepdims) valid for an array of `ndim` dims: None, an int (maybe negative), or a tuple."""
    choices = [st.none(), hnp.valid_tuple_axes(ndim)]
    if ndim > 0:
        choices.append(st.integers(-ndim, ndim - 1))
    return draw(st.one_of(*choices)), draw(st.booleans())


def single_axis(ndim: int):
    """One axis of an `ndim`-dim array, possibly negative."""
    return st.integers(-ndim, ndim - 1)


@st.composite
def permutations(draw, ndim: int, allow_negative: bool = False) -> tuple[int, ...]:
    """An axis order for transpose; with allow_negative some axes are written as negative numbers."""
    perm = draw(st.permutations(range(ndim)))
    if allow_negative:
        perm = [a - ndim if draw(st.booleans()) else a for a in perm]
    return tuple(perm)


seeds = st.integers(0, 2**16)


# ----- the shared gradient check ----------------------------------------------------------------------------
def check_gradients(
    fn: Callable[..., Tensor],
    arrays_in: Sequence[np.ndarray],
    seed: int = 0,
    atol: float = 1e-6,
    rtol: float = 1e-5,
) -> None:
    """Everything every differentiable op must satisfy, for fn(*tensors) built from `arrays_in`.

    1. float64 in, float64 out; backward with a random upstream gradient gives every input a gradient of
       its own shape and dtype; neither the inputs nor the upstream gradient are changed (forward or back).
    2. float32 in: float32 out and float32 gradients.
    3. gradcheck: the analytic gradient matches central finite differences (in float64). The tolerances
       sit a little above gradcheck's defaults because a sum of 64 weighted outputs loses a few digits
       to rounding in (f(x+eps) - f(x-eps)) / 2eps; a wrong gradient is off by far more.
    """
    arrays_in = [np.asarray(a, dtype=np.float64) for a in arrays_in]
    before = [a.copy() for a in arrays_in]

    for dtype in (np.float64, np.float32):
        tensors = [Tensor(a.astype(dtype)) for a in arrays_in]
        tensor_data = [t.data.copy() for t in tensors]
        out = fn(*tensors)
        assert out.dtype == dtype, f"{dtype.__name__} inputs gave a {out.dtype} output"
        upstream = np.random.default_rng(seed).standard_normal(out.shape).astype(dtype)
        upstream_before = upstream.copy()
        out.backward(upstream)
        np.testing.assert_array_equal(upstream, upstream_before, err_msg="backward changed the upstream grad")
        for i, (t, data) in enumerate(zip(tensors, tensor_data)):
            np.testing.assert_array_equal(t.data, data, err_msg=f"input {i} was changed by forward/backward")
            assert t.grad is not None, f"input {i} got no gradient"
            assert t.grad.shape == t.shape, f"input {i}: gradient shape {t.grad.shape}, input shape {t.shape}"
            assert t.grad.dtype == dtype, f"input {i}: gradient dtype {t.grad.dtype}, input dtype {dtype}"

    assert gradcheck(fn, arrays_in, atol=atol, rtol=rtol, seed=seed)
    for i, (a, b) in enumerate(zip(arrays_in, before)):
        np.testing.assert_array_equal(a, b, err_msg=f"gradcheck changed input array {i}")
