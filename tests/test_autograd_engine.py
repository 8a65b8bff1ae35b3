"""The graph machinery rather than any one op: accumulation, ordering, depth, no_grad, dtypes, errors."""

from __future__ import annotations

import operator
import sys

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays,
    check_gradients,
    non_broadcastable_pair,
    seeds,
    shape_broadcastable_to,
    shapes,
)

from microgpt.autograd import Tensor, functional, is_grad_enabled, no_grad, unbroadcast, where

# ----- accumulation over shared subexpressions -------------------------------------------------------------


def test_a_tensor_hashes_by_identity_so_the_walk_can_key_by_it():
    """backward() keeps its visited set and its gradients dict keyed by the nodes themselves: two tensors with
    equal values are two nodes. == is refused (a mask made with it would be a plain bool, silently), which
    dicts and sets never call: distinct objects have distinct identity hashes."""
    a, b = Tensor(np.ones(3)), Tensor(np.ones(3))
    assert Tensor.__hash__ is object.__hash__
    assert len({a, b}) == 2 and {a: 1, b: 2}[b] == 2
    for compare in (lambda: a == 1, lambda: a != b, lambda: b == a):
        with pytest.raises(TypeError, match="t.data == 1"):
            compare()
    (a * b).sum().backward()
    np.testing.assert_array_equal(a.grad, b.data)


@given(x=arrays(shapes()), seed=seeds)
def test_a_subexpression_used_several_times_sums_its_gradients(x, seed):
    """z = y x + y + x with y = x x: dz/dx = 3x^2 + 2x + 1, through three paths that meet at x."""

    def fn(t):
        y = t * t
        return y * t + y + t

    xt = Tensor(x)
    fn(xt).sum().backward()
    np.testing.assert_allclose(xt.grad, 3 * x**2 + 2 * x + 1, rtol=1e-12, atol=1e-12)
    check_gradients(fn, [x], seed=seed)


@given(x=arrays(shapes(), -2, 2))
def test_diamond_graph(x):
    """b = e^a and c = 2a both feed d = b c: dd/da = 2 e^a (a + 1)."""
    a = Tensor(x)
    d = a.exp() * (a * 2.0)
    d.backward(np.ones(x.shape))
    np.testing.assert_allclose(a.grad, 2 * np.exp(x) * (x + 1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (operator.add, lambda x: np.full_like(x, 2.0)),
        (operator.sub, lambda x: np.zeros_like(x)),
        (operator.mul, lambda x: 2 * x),
        (operator.truediv, lambda x: np.zeros_like(x)),
    ],
)
@given(x=hnp.arrays(np.float64, shapes(), elements=st.floats(0.5, 3.0)))
def test_the_same_tensor_on_both_sides_of_an_operator(op, expected, x):
    t = Tensor(x)
    op(t, t).backward(np.ones(x.shape))
    np.testing.assert_allclose(t.grad, expected(x), atol=1e-12)


def test_each_node_is_visited_once_even_when_reached_by_many_paths():
    """y <- y + y fifty times: 2^50 paths from x to the output, but only 51 nodes; the gradient is 2^50."""
    x = Tensor(np.array(1.0, dtype=np.float64))
    y = x
    for _ in range(50):
        y = y + y
    y.backward()
    assert x.grad == 2.0**50


def test_a_100000_deep_chain_backpropagates_without_recursion():
    x = Tensor(np.array([0.5, -1.5]), dtype=np.float64)
    y = x
    for i in range(100_000):
        y = y + 0.25 if i % 2 else y * 1.0
    limit = sys.getrecursionlimit()
    y.sum().backward()
    assert sys.getrecursionlimit() == limit
    np.testing.assert_array_equal(y.data, x.data + 0.25 * 50_000)
    np.testing.assert_array_equal(x.grad, [1.0, 1.0])


# ----- .grad across backward calls ---------------------------------------------------------------------


@given(x=arrays(shapes()))
def test_grad_accumulates_over_two_backward_calls_and_zero_grad_clears_it(x):
    t = Tensor(x)
    loss = (t * t).sum()
    loss.backward()
    np.testing.assert_allclose(t.grad, 2 * x, rtol=1e-12)
    loss.backward()  # the same graph again
    np.testing.assert_allclose(t.grad, 4 * x, rtol=1e-12)
    (t * 3.0).sum().backward()  # a second graph over the same leaf
    np.testing.assert_allclose(t.grad, 4 * x + 3.0, rtol=1e-12)
    t.zero_grad()
    assert t.grad is None
    (t * t).sum().backward()
    np.testing.assert_allclose(t.grad, 2 * x, rtol=1e-12)


def test_leaf_gradient_is_a_private_copy_of_the_upstream_gradient():
    t = Tensor(np.zeros(3))
    upstream = np.array([1.0, 2.0, 3.0])
    t.backward(upstream)
    t.backward(upstream)  # accumulating must not write into the caller's array
    np.testing.assert_array_equal(upstream, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(t.grad, [2.0, 4.0, 6.0])


def test_constants_and_detached_tensors_get_no_gradient():
    x = Tensor(np.array([1.0, 2.0]))
    c = Tensor(np.array([3.0, 4.0]), requires_grad=False)
    (x * c + x.detach() * x).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0 + 1.0, 4.0 + 2.0])  # the detached copy is a constant


def test_an_op_on_constants_only_records_no_graph():
    out = Tensor([1.0], requires_grad=False) * Tensor([2.0], requires_grad=False)
    assert not out.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.backward()


# ----- backward's arguments ------------------------------------------------------------------------------


@given(shape=shapes().filter(lambda s: int(np.prod(s)) > 1))
def test_backward_without_grad_on_a_non_scalar_raises_a_clear_error(shape):
    t = Tensor(np.ones(shape))
    with pytest.raises(RuntimeError, match="scalar") as info:
        (t * 2.0).backward()
    assert str(shape) in str(info.value)
    assert t.grad is None


@given(shape=st.sampled_from([(), (1,), (1, 1), (1, 1, 1)]))
def test_backward_without_grad_on_a_single_element_seeds_with_one(shape):
    t = Tensor(np.full(shape, 3.0))
    (t * t).backward()
    np.testing.assert_array_equal(t.grad, np.full(shape, 6.0))


def test_backward_with_a_wrongly_shaped_grad_names_both_shapes():
    t = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3\)"):
        (t * 2.0).backward(np.ones((3, 2)))


# ----- no_grad ---------------------------------------------------------------------------------------------

RECORDING_OPS = {
    "add": lambda t: t + t,
    "scalar mul": lambda t: t * 2.0,
    "matmul": lambda t: t @ t.T,
    "sum": lambda t: t.sum(axis=0),
    "max": lambda t: t.max(),
    "exp": lambda t: t.exp(),
    "getitem": lambda t: t[np.array([0, 0])],
    "masked_fill": lambda t: t.masked_fill(np.array([True, False]), 0.0),
    "where": lambda t: where(np.array([True, False]), t, 0.0),
    "softmax": lambda t: functional.softmax(t),
    "cross_entropy": lambda t: functional.cross_entropy(t, np.array([0, 1])),
    "rms_norm": lambda t: functional.rms_norm(t, Tensor(np.ones(2))),
    "attention": lambda t: functional.scaled_dot_product_attention(t, t, t),
}


@pytest.mark.parametrize("name", list(RECORDING_OPS))
def test_no_grad_records_nothing(name):
    x = Tensor(np.array([[1.0, 2.0], [3.0, -1.0]]))
    assert is_grad_enabled()
    with no_grad():
        assert not is_grad_enabled()
        out = RECORDING_OPS[name](x)
    assert is_grad_enabled()
    assert not out.requires_grad
    assert out._parents == () and out._backward is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        out.sum().backward()
    assert x.grad is None
    # the same op outside no_grad does record, so the assertions above can fail
    assert RECORDING_OPS[name](x).requires_grad


def test_no_grad_nests_and_restores_after_an_exception():
    with no_grad():
        with no_grad():
            assert not is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()
    with pytest.raises(ZeroDivisionError), no_grad():
        raise ZeroDivisionError
    assert is_grad_enabled()


def test_a_graph_built_before_no_grad_still_backpropagates_after_it():
    x = Tensor(np.array([2.0]))
    y = x * x
    with no_grad():
        _ = y * 3.0
    y.backward(np.ones(1))
    np.testing.assert_array_equal(x.grad, [4.0])


# ----- dtypes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "dtype", "expected"),
    [
        ([1.0, 2.0], None, np.float32),
        (1.5, None, np.float32),
        (np.arange(3), None, np.float32),
        (np.ones(2, dtype=np.float32), None, np.float32),
        (np.ones(2, dtype=np.float64), None, np.float64),
        (np.float64(2.0), None, np.float64),
        ([1.0, 2.0], np.float64, np.float64),
        (np.ones(2, dtype=np.float64), np.float32, np.float32),
        (Tensor(np.ones(2, dtype=np.float64)), None, np.float64),
    ],
)
def test_float32_by_default_float64_preserved(data, dtype, expected):
    assert Tensor(data, dtype=dtype).dtype == expected


@given(x=arrays(shapes()))
def test_a_float32_graph_stays_float32_down_to_the_leaf_gradient(x):
    t = Tensor(x.astype(np.float32))
    out = ((t * 2 + 1.5) / 3.0 - np.float64(0.5)).tanh().exp().sum()
    assert out.dtype == np.float32
    out.backward()
    assert t.grad.dtype == np.float32


# ----- shape errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sym", ["+", "-", "*", "/"])
@pytest.mark.parametrize("form", ["tensor-tensor", "tensor-ndarray", "ndarray-tensor"])
@given(pair=non_broadcastable_pair())
def test_mismatched_shapes_raise_a_value_error_naming_both(sym, form, pair):
    op = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[sym]
    a, b = np.ones(pair[0]), np.ones(pair[1])
    left = np.ones(pair[0]) if form == "ndarray-tensor" else Tensor(a)
    right = np.ones(pair[1]) if form == "tensor-ndarray" else Tensor(b)
    with pytest.raises(ValueError) as info:
        op(left, right)
    assert str(pair[0]) in str(info.value) and str(pair[1]) in str(info.value)


@given(
    m=st.integers(1, 4),
    ks=st.lists(st.integers(1, 4), min_size=2, max_size=2, unique=True),
    n=st.integers(1, 4),
    batch=st.sampled_from([(), (2,)]),
)
def test_misaligned_matmul_raises_a_value_error_naming_both(m, ks, n, batch):
    a_shape, b_shape = batch + (m, ks[0]), (ks[1], n)
    with pytest.raises(ValueError) as info:
        Tensor(np.ones(a_shape)) @ Tensor(np.ones(b_shape))
    assert str(a_shape) in str(info.value) and str(b_shape) in str(info.value)


@given(pair=non_broadcastable_pair())
def test_where_with_mismatched_shapes_names_them(pair):
    with pytest.raises(ValueError) as info:
        where(np.ones(pair[0], dtype=bool), Tensor(np.ones(pair[1])), 0.0)
    assert str(pair[0]) in str(info.value) and str(pair[1]) in str(info.value)


# ----- unbroadcast -------------------------------------------------------------------------------------------


@given(data=st.data(), big=shapes())
def test_unbroadcast_sums_every_copy_back_onto_its_source(data, big):
    """Reference: broadcast the source's flat indices, then add each gradient element to its source."""
    small = data.draw(shape_broadcastable_to(big), label="small")
    g = data.draw(arrays(big), label="g")
    g_before = g.copy()
    source = np.broadcast_to(np.arange(int(np.prod(small))).reshape(small), big)
    expected = np.bincount(source.reshape(-1), weights=g.reshape(-1), minlength=int(np.prod(small)))
    got = unbroadcast(g, small)
    assert got.shape == small
    np.testing.assert_allclose(got, expected.reshape(small), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(g, g_before)


def test_no_grad_is_per_thread_and_interleaving_restores_it() -> None:
    import threading

    from microgpt.autograd import is_grad_enabled, no_grad

    inside, release = threading.Event(), threading.Event()
    seen: list[bool] = []

    def decoder() -> None:  # like a server's decoding thread: under no_grad for a long time
        with no_grad():
            seen.append(is_grad_enabled())
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=decoder)
    thread.start()
    inside.wait(5)
    assert is_grad_enabled()  # this thread still records graphs
    with no_grad():
        release.set()  # the other thread leaves its block while this one is inside its own
        thread.join(5)
    assert seen == [False] and is_grad_enabled()
