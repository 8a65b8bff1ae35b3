"""Every Tensor operation: forward value against NumPy, gradient against finite differences.

Each property test draws shapes (0-d, size-1 dims, broadcastable pairs), values kept away from the
op's singularities, and where relevant axes and keepdims; `check_gradients` then runs the op in float64
and float32 with a random upstream gradient, checks shapes, dtypes and that nothing was mutated, and
finishes with gradcheck.
"""

from __future__ import annotations

import math
import operator

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays,
    axis_and_keepdims,
    broadcastable_shapes,
    check_gradients,
    distinct_arrays,
    join_shapes,
    matmul_shapes,
    nonzero_arrays,
    nonzero_floats,
    permutations,
    positive_arrays,
    reshape_targets,
    seeds,
    shape_broadcastable_to,
    shapes,
)

from microgpt.autograd import Tensor, concatenate, gradcheck, stack, where

ELEMENTWISE = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


# ----- binary arithmetic with broadcasting ------------------------------------------------------------
@pytest.mark.parametrize("sym", list(ELEMENTWISE))
@given(data=st.data(), pair=broadcastable_shapes(2), seed=seeds)
def test_binary_op_broadcasts_and_differentiates(sym, data, pair, seed):
    op = ELEMENTWISE[sym]
    a = data.draw(arrays(pair[0]), label="a")
    b = data.draw(nonzero_arrays(pair[1]) if sym == "/" else arrays(pair[1]), label="b")
    out = op(Tensor(a), Tensor(b))
    np.testing.assert_allclose(out.data, op(a, b), rtol=1e-12, atol=0)
    assert out.shape == np.broadcast_shapes(a.shape, b.shape)
    check_gradients(op, [a, b], seed=seed)


@given(x=arrays(shapes()), seed=seeds)
def test_negation(x, seed):
    np.testing.assert_array_equal((-Tensor(x)).data, -x)
    check_gradients(operator.neg, [x], seed=seed)


@given(data=st.data(), shape=shapes(), exponent=st.sampled_from([-2, -1, 0, 1, 2, 3]), seed=seeds)
def test_power_with_integer_exponent_on_either_sign(data, shape, exponent, seed):
    x = data.draw(nonzero_arrays(shape), label="x")
    np.testing.assert_allclose((Tensor(x) ** exponent).data, x**exponent, rtol=1e-12)
    check_gradients(lambda t: t**exponent, [x], seed=seed)


@given(data=st.data(), shape=shapes(), exponent=st.floats(-2.0, 3.0), seed=seeds)
def test_power_with_real_exponent_on_positive_base(data, shape, exponent, seed):
    x = data.draw(positive_arrays(shape), label="x")
    np.testing.assert_allclose((Tensor(x) ** exponent).data, x**exponent, rtol=1e-12)
    check_gradients(lambda t: t**exponent, [x], seed=seed)


def test_power_rejects_a_tensor_exponent():
    with pytest.raises(TypeError, match="scalar exponent"):
        Tensor([1.0, 2.0]) ** Tensor([2.0, 2.0])


# ----- Tensors mixed with Python scalars and ndarrays, on either side ---------------------------------
SCALAR_KINDS = [
    "int",
    "float",
    "np.float64",
    "np.float32",
    "ndarray float64",
    "ndarray float32",
    "0-d ndarray",
]


def _constant(data, kind: str, tensor_shape: tuple[int, ...]):
    """A non-Tensor operand of the given kind, away from zero (it may end up as a divisor)."""
    if kind == "int":
        return data.draw(st.sampled_from([-3, -2, -1, 1, 2, 3]), label="int")
    value = data.draw(nonzero_floats(), label="value")
    if kind == "float":
        return value
    if kind == "np.float64":
        return np.float64(value)
    if kind == "np.float32":
        return np.float32(value)
    if kind == "0-d ndarray":
        return np.array(value)
    shape = data.draw(shape_broadcastable_to(tensor_shape), label="const shape")
    const = data.draw(nonzero_arrays(shape), label="const")
    return const.astype(np.float32) if kind == "ndarray float32" else const


@pytest.mark.parametrize("sym", list(ELEMENTWISE))
@pytest.mark.parametrize("kind", SCALAR_KINDS)
@given(
    data=st.data(),
    shape=shapes(),
    tensor_on_left=st.booleans(),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=seeds,
)
def test_tensor_mixes_with_constants_on_either_side(sym, kind, data, shape, tensor_on_left, dtype, seed):
    op = ELEMENTWISE[sym]
    x = data.draw(nonzero_arrays(shape), label="x")
    const = _constant(data, kind, shape)

    def fn(t):
        return op(t, const) if tensor_on_left else op(const, t)

    out = fn(Tensor(x.astype(dtype)))
    assert isinstance(out, Tensor), f"{type(const).__name__} {sym} Tensor did not give a Tensor"
    assert out.dtype == dtype, f"a {dtype.__name__} tensor mixed with {kind} gave {out.dtype}"
    c64 = np.asarray(const, dtype=np.float64)
    expected = op(x, c64) if tensor_on_left else op(c64, x)
    if dtype == np.float32:
        np.testing.assert_allclose(out.data, expected, rtol=1e-5, atol=1e-5)
    else:
        np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    check_gradients(fn, [x], seed=seed)


@pytest.mark.parametrize("tensor_on_left", [True, False])
@given(data=st.data(), pair=matmul_shapes(allow_vector_dot=False), seed=seeds)
def test_matmul_with_an_ndarray_on_either_side(tensor_on_left, data, pair, seed):
    a = data.draw(arrays(pair[0]), label="a")
    b = data.draw(arrays(pair[1]), label="b")
    if tensor_on_left:

        def fn(t):
            return t @ b.astype(np.float32)

        x = a
    else:

        def fn(t):
            return a.astype(np.float32) @ t

        x = b
    out = fn(Tensor(x, dtype=np.float32))
    assert isinstance(out, Tensor) and out.dtype == np.float32
    np.testing.assert_allclose(out.data, a @ b, rtol=1e-4, atol=1e-5)
    check_gradients(fn, [x], seed=seed)


# ----- matrix product -----------------------------------------------------------------------------------
@given(data=st.data(), pair=matmul_shapes(allow_vector_dot=False), seed=seeds)
def test_matmul_1d_2d_and_batched_with_broadcast_batch_dims(data, pair, seed):
    a = data.draw(arrays(pair[0], -2, 2), label="a")
    b = data.draw(arrays(pair[1], -2, 2), label="b")
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    check_gradients(operator.matmul, [a, b], seed=seed)


@pytest.mark.parametrize(
    ("a_shape", "b_shape"),
    [
        ((2, 3, 4), (1, 4, 2)),  # b's batch dim of 1 is broadcast: its gradient sums over a's batch
        ((1, 3, 4), (2, 4, 2)),
        ((2, 1, 2, 3), (3, 3, 2)),  # batch dims broadcast both ways: (2, 1) against (3,)
        ((4,), (2, 4, 3)),  # a vector against a batch of matrices
        ((2, 2, 3), (3,)),  # a batch of matrices against a vector
        ((2, 3, 4), (4, 2)),  # a shared matrix: its gradient is one big GEMM over the batch
        ((3, 4), (2, 4, 2)),
    ],
)
def test_matmul_broadcast_cases(a_shape, b_shape):
    """Cases the random draw may miss in a short CI run, each with a distinct broadcast pattern."""
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-2, 2, a_shape), rng.uniform(-2, 2, b_shape)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    check_gradients(operator.matmul, [a, b], seed=1)


@given(data=st.data(), n=st.integers(1, 4), seed=seeds)
def test_matmul_vector_dot_vector(data, n, seed):
    """(n,) @ (n,) is a 0-d inner product; d/da = g b and d/db = g a."""
    a = data.draw(arrays((n,)), label="a")
    b = data.draw(arrays((n,)), label="b")
    out = Tensor(a) @ Tensor(b)
    assert out.shape == ()
    np.testing.assert_allclose(out.data, a @ b, rtol=1e-12, atol=1e-12)
    check_gradients(operator.matmul, [a, b], seed=seed)


# ----- reductions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["sum", "mean"])
@given(data=st.data(), shape=shapes(), seed=seeds)
def test_sum_and_mean_over_any_axes(name, data, shape, seed):
    x = data.draw(arrays(shape), label="x")
    axis, keepdims = data.draw(axis_and_keepdims(len(shape)), label="axis, keepdims")
    out = getattr(Tensor(x), name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.data, expected, rtol=1e-12, atol=1e-12)
    check_gradients(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [x], seed=seed)


@given(data=st.data(), shape=shapes(), seed=seeds)
def test_max_over_any_axes_away_from_ties(data, shape, seed):
    x = data.draw(distinct_arrays(shape), label="x")
    axis, keepdims = data.draw(axis_and_keepdims(len(shape)), label="axis, keepdims")
    out = Tensor(x).max(axis=axis, keepdims=keepdims)
    expected = np.max(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(expected)
    np.testing.assert_array_equal(out.data, expected)
    check_gradients(lambda t: t.max(axis=axis, keepdims=keepdims), [x], seed=seed)


def test_max_splits_the_gradient_evenly_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]))
    x.max(axis=1).backward(np.array([1.0, 3.0]))
    np.testing.assert_allclose(x.grad, [[0.0, 0.5, 0.5], [1.0, 1.0, 1.0]])


# ----- elementwise functions ------------------------------------------------------------------------------
def _gelu_reference(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


UNARY = {
    # name: (reference, values strategy for a shape)
    "exp": (np.exp, lambda s: arrays(s, -2.0, 2.0)),
    "log": (np.log, lambda s: positive_arrays(s, 0.2, 4.0)),
    "sqrt": (np.sqrt, lambda s: positive_arrays(s, 0.2, 4.0)),
    "tanh": (np.tanh, lambda s: arrays(s)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda s: nonzero_arrays(s, 0.1, 3.0)),
    "gelu": (_gelu_reference, lambda s: arrays(s, -4.0, 4.0)),
}


@pytest.mark.parametrize("name", list(UNARY))
@given(data=st.data(), shape=shapes(), seed=seeds)
def test_elementwise_function(name, data, shape, seed):
    reference, values = UNARY[name]
    x = data.draw(values(shape), label="x")
    out = getattr(Tensor(x), name)()
    assert out.shape == x.shape
    np.testing.assert_allclose(out.data, reference(x), rtol=1e-12, atol=1e-15)
    check_gradients(lambda t: getattr(t, name)(), [x], seed=seed)


def test_gelu_known_values():
    out = Tensor(np.array([-1.0, 0.0, 1.0, 3.0])).gelu().data
    np.testing.assert_allclose(out, [-0.158808, 0.0, 0.841192, 2.996363], atol=1e-6)


def test_relu_passes_no_gradient_at_or_below_zero():
    x = Tensor(np.array([-2.0, 0.0, 0.5]))
    x.relu().backward(np.array([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


# ----- shape ops ------------------------------------------------------------------------------------------
@given(data=st.data(), shape=shapes(), seed=seeds)
def test_reshape(data, shape, seed):
    x = data.draw(arrays(shape), label="x")
    target = data.draw(reshape_targets(x.size), label="target")
    out = Tensor(x).reshape(target)
    np.testing.assert_array_equal(out.data, x.reshape(target))
    np.testing.assert_array_equal(Tensor(x).reshape(*target).data, x.reshape(target))
    check_gradients(lambda t: t.reshape(target), [x], seed=seed)


@given(data=st.data(), shape=shapes(), seed=seeds)
def test_transpose_with_any_axis_order(data, shape, seed):
    x = data.draw(arrays(shape), label="x")
    perm = data.draw(permutations(len(shape)), label="axes")
    np.testing.assert_array_equal(Tensor(x).transpose(*perm).data, np.transpose(x, perm))
    np.testing.assert_array_equal(Tensor(x).transpose(perm).data, np.transpose(x, perm))
    check_gradients(lambda t: t.transpose(*perm), [x], seed=seed)


@given(x=arrays(shapes()), seed=seeds)
def test_transpose_without_axes_and_T_reverse_the_dims(x, seed):
    np.testing.assert_array_equal(Tensor(x).transpose().data, x.T)
    np.testing.assert_array_equal(Tensor(x).T.data, x.T)
    check_gradients(lambda t: t.T, [x], seed=seed)


@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds)
def test_transpose_accepts_negative_axes(data, shape, seed):
    """NumPy accepts transpose(-1, 0); so does the forward pass, and the gradient must match it."""
    x = data.draw(arrays(shape), label="x")
    perm = data.draw(permutations(len(shape), allow_negative=True), label="axes")
    np.testing.assert_array_equal(Tensor(x).transpose(*perm).data, np.transpose(x, perm))
    check_gradients(lambda t: t.transpose(*perm), [x], seed=seed)


# ----- indexing -------------------------------------------------------------------------------------------
@given(data=st.data(), shape=shapes(), seed=seeds)
def test_getitem_with_basic_indices(data, shape, seed):
    """Ints, slices (steps, negative steps, empty), Ellipsis and None."""
    x = data.draw(arrays(shape), label="x")
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=True), label="index")
    np.testing.assert_array_equal(Tensor(x)[index].data, x[index])
    check_gradients(lambda t: t[index], [x], seed=seed)


@given(data=st.data(), shape=shapes(min_dims=1), idx_shape=shapes(max_dims=2), seed=seeds)
def test_getitem_gathers_with_an_integer_array_repeats_included(data, shape, idx_shape, seed):
    """x[idx] for an int array idx (the embedding lookup when x is 2-D); repeated rows add up."""
    x = data.draw(arrays(shape), label="x")
    rows = shape[0]
    idx = data.draw(hnp.arrays(np.intp, idx_shape, elements=st.integers(-rows, rows - 1)), label="idx")
    idx_before = idx.copy()
    np.testing.assert_array_equal(Tensor(x)[idx].data, x[idx])
    check_gradients(lambda t: t[idx], [x], seed=seed)
    np.testing.assert_array_equal(idx, idx_before)


@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds)
def test_getitem_with_a_tuple_of_integer_arrays(data, shape, seed):
    x = data.draw(arrays(shape), label="x")
    index = data.draw(hnp.integer_array_indices(shape, result_shape=shapes(max_dims=2)), label="index")
    np.testing.assert_array_equal(Tensor(x)[index].data, x[index])
    check_gradients(lambda t: t[index], [x], seed=seed)


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_getitem_repeated_indices_accumulate(ndim):
    shape = (3,) + (2,) * (ndim - 1)
    x = Tensor(np.arange(math.prod(shape), dtype=np.float64).reshape(shape))
    idx = np.array([0, 2, 0, 0])
    out = x[idx]
    out.backward(np.ones(out.shape))
    counts = np.array([3.0, 0.0, 1.0]).reshape((3,) + (1,) * (ndim - 1))
    np.testing.assert_array_equal(x.grad, np.broadcast_to(counts, shape))


def test_dividing_by_a_zero_number_gives_inf_as_dividing_by_a_zero_tensor_does():
    x = Tensor(np.array([1.0, -2.0]))
    with np.errstate(divide="ignore"):
        np.testing.assert_array_equal((x / 0).data, (x / Tensor(np.array(0.0))).data)
        np.testing.assert_array_equal((x / 0).data, [np.inf, -np.inf])


def test_a_column_major_tensor_gathers_its_gradient_as_a_row_major_one():
    """np.array(W.T) is column-major: its rows' gradients must still add up (a flat view, not a copy)."""
    for layout in (np.asfortranarray, np.ascontiguousarray):
        x = Tensor(layout(np.arange(12.0).reshape(4, 3)))
        x[np.array([1, 1, 3])].sum().backward()
        np.testing.assert_array_equal(x.grad, np.repeat([[0.0], [2.0], [0.0], [1.0]], 3, axis=1))
    assert gradcheck(lambda t: t[np.array([1, 1, 3])] * 2.0, [np.asfortranarray(np.ones((4, 3)))])


@pytest.mark.parametrize("index", [[1, 1, 0], Tensor(np.array([1, 1, 0]), requires_grad=False, dtype=np.int64)])
def test_getitem_accepts_a_list_or_an_integer_tensor(index):
    x = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    out = x[index]
    np.testing.assert_array_equal(out.data, [[3.0, 4.0], [3.0, 4.0], [1.0, 2.0]])
    out.backward(np.ones((3, 2)))
    np.testing.assert_array_equal(x.grad, [[1.0, 1.0], [2.0, 2.0]])


@pytest.mark.parametrize("index", [np.array([True, False, True]), np.array([0.9, 1.7])])
def test_getitem_refuses_a_float_tensor_whose_values_could_be_a_mask_or_fractions(index):
    """Tensor(bools) holds 1.0 and 0.0: read as rows they would pick rows 1, 0, 1 instead of masking."""
    x = Tensor(np.arange(12.0).reshape(3, 4))
    with pytest.raises(TypeError, match=r"t\[m.data > 0\]"):
        x[Tensor(index, requires_grad=False)]
    np.testing.assert_array_equal(x[np.array([True, False, True])].data, x.data[[0, 2]])


# ----- joining --------------------------------------------------------------------------------------------
@given(data=st.data(), layout=join_shapes(new_axis=False), seed=seeds)
def test_concatenate(data, layout, seed):
    piece_shapes, axis = layout
    pieces = [data.draw(arrays(s), label=f"piece {i}") for i, s in enumerate(piece_shapes)]
    out = concatenate([Tensor(p) for p in pieces], axis=axis)
    np.testing.assert_array_equal(out.data, np.concatenate(pieces, axis=axis))
    check_gradients(lambda *ts: concatenate(ts, axis=axis), pieces, seed=seed)


@given(data=st.data(), layout=join_shapes(new_axis=True), seed=seeds)
def test_stack(data, layout, seed):
    piece_shapes, axis = layout
    pieces = [data.draw(arrays(s), label=f"piece {i}") for i, s in enumerate(piece_shapes)]
    out = stack([Tensor(p) for p in pieces], axis=axis)
    np.testing.assert_array_equal(out.data, np.stack(pieces, axis=axis))
    check_gradients(lambda *ts: stack(ts, axis=axis), pieces, seed=seed)


def test_concatenate_and_stack_accept_plain_arrays_among_tensors():
    t = Tensor(np.array([[1.0, 2.0]]))
    plain = np.array([[5.0, 6.0]])
    joined = concatenate([t, plain], axis=0)
    stacked = stack([plain, t], axis=1)
    np.testing.assert_array_equal(joined.data, [[1.0, 2.0], [5.0, 6.0]])
    (joined.sum() * 2.0 + (stacked * np.array([[[1.0, 2.0]]]).reshape(1, 2, 1)).sum()).backward()
    np.testing.assert_array_equal(t.grad, [[4.0, 4.0]])


# ----- selection ------------------------------------------------------------------------------------------
@given(data=st.data(), trio=broadcastable_shapes(3), seed=seeds)
def test_where_with_broadcast_mask_and_operands(data, trio, seed):
    mask_shape, a_shape, b_shape = trio
    mask = data.draw(hnp.arrays(np.bool_, mask_shape), label="mask")
    a = data.draw(arrays(a_shape), label="a")
    b = data.draw(arrays(b_shape), label="b")
    np.testing.assert_array_equal(where(mask, Tensor(a), Tensor(b)).data, np.where(mask, a, b))
    check_gradients(lambda ta, tb: where(mask, ta, tb), [a, b], seed=seed)


@pytest.mark.parametrize("tensor_first", [True, False])
@given(data=st.data(), shape=shapes(), seed=seeds)
def test_where_with_a_scalar_on_one_side(tensor_first, data, shape, seed):
    mask = data.draw(hnp.arrays(np.bool_, shape), label="mask")
    x = data.draw(arrays(shape), label="x")

    def fn(t):
        return where(mask, t, 0.5) if tensor_first else where(mask, 0.5, t)

    out = fn(Tensor(x, dtype=np.float32))
    assert out.dtype == np.float32
    expected = np.where(mask, x, 0.5) if tensor_first else np.where(mask, 0.5, x)
    np.testing.assert_allclose(out.data, expected, rtol=1e-6, atol=1e-6)
    check_gradients(fn, [x], seed=seed)


@given(data=st.data(), shape=shapes(), value=st.sampled_from([0.0, -5.0, 2.5]), seed=seeds)
def test_masked_fill(data, shape, value, seed):
    x = data.draw(arrays(shape), label="x")
    mask_shape = data.draw(shape_broadcastable_to(shape), label="mask shape")
    mask = data.draw(hnp.arrays(np.bool_, mask_shape), label="mask")
    mask_before = mask.copy()
    np.testing.assert_array_equal(Tensor(x).masked_fill(mask, value).data, np.where(mask, value, x))
    check_gradients(lambda t: t.masked_fill(mask, value), [x], seed=seed)
    np.testing.assert_array_equal(mask, mask_before)


def test_masked_fill_with_minus_infinity_gives_zero_gradient_there():
    x = Tensor(np.array([[1.0, 2.0], [3.0, 4.0]]))
    mask = np.array([False, True])
    out = x.masked_fill(mask, -np.inf)
    np.testing.assert_array_equal(out.data, [[1.0, -np.inf], [3.0, -np.inf]])
    out.backward(np.full((2, 2), 2.0))
    np.testing.assert_array_equal(x.grad, [[2.0, 0.0], [2.0, 0.0]])
