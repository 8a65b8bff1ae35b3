"""gradcheck is what every other gradient test leans on, so it must itself pass right answers, fail
wrong ones loudly, say where, and leave the caller's data alone."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, seeds, shapes

from microgpt.autograd import GradcheckError, Tensor, gradcheck


def square_with_backward(derivative):
    """x^2 elementwise, with the given function of (x, g) as its backward: a way to plant a bug."""

    def fn(x: Tensor) -> Tensor:
        return Tensor._result(x.data**2, (x,), lambda g: (derivative(x.data, g),))

    return fn


def product_with_wrong_b_gradient_at(index):
    """a * b whose gradient for b is right except at `index`, where it is off by 1."""

    def fn(a: Tensor, b: Tensor) -> Tensor:
        def backward(g):
            gb = g * a.data
            gb[index] += 1.0
            return g * b.data, gb

        return Tensor._result(a.data * b.data, (a, b), backward)

    return fn


_NUMBER = r"(?:np\.float\d+\()?(-?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)"  # 1.5, -2e-07, np.float64(0.5)


def _reported_values(message: str) -> tuple[float, float]:
    found = re.search(rf"analytic:?\s*{_NUMBER}.*numerical:?\s*{_NUMBER}", message)
    assert found, f"no analytic/numerical values in: {message}"
    return float(found.group(1)), float(found.group(2))


@given(x=arrays(shapes()), seed=seeds)
def test_gradcheck_passes_a_correct_backward(x, seed):
    assert gradcheck(square_with_backward(lambda x, g: 2 * x * g), [x], seed=seed) is True


@given(x=arrays(shapes(), 0.5, 3.0), seed=seeds)
def test_gradcheck_fails_a_wrong_backward(x, seed):
    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(square_with_backward(lambda x, g: x * g), [x], seed=seed)  # forgot the factor 2


@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds)
def test_gradcheck_message_names_the_input_the_index_and_both_values(data, shape, seed):
    a = data.draw(arrays(shape), label="a")
    b = data.draw(arrays(shape), label="b")
    index = tuple(data.draw(st.integers(0, n - 1), label=f"index[{i}]") for i, n in enumerate(shape))
    with pytest.raises(GradcheckError) as info:
        gradcheck(product_with_wrong_b_gradient_at(index), [a, b], seed=seed)
    message = str(info.value)
    assert "input 1" in message and str(shape) in message
    assert str(index) in message, f"expected index {index} in: {message}"
    analytic, numerical = _reported_values(message)
    upstream = np.random.default_rng(seed).standard_normal(shape)  # the weights gradcheck documents
    np.testing.assert_allclose(numerical, upstream[index] * a[index], atol=1e-6)
    np.testing.assert_allclose(analytic - numerical, 1.0, atol=1e-6)


def test_gradcheck_fails_a_missing_gradient():
    def fn(a: Tensor, b: Tensor) -> Tensor:
        return Tensor._result(a.data * b.data, (a, b), lambda g: (g * b.data, None))

    with pytest.raises(GradcheckError, match="input 1"):
        gradcheck(fn, [np.array([1.0, 2.0]), np.array([3.0, -1.0])])


def test_gradcheck_fails_a_gradient_of_the_wrong_shape():
    """sum over axis 0 whose backward forgets to broadcast g back to (3, 4): the (4,) gradient it returns
    happens to broadcast against the input, but it is not the input's gradient."""

    def forgot_to_broadcast(x: Tensor) -> Tensor:
        return Tensor._result(x.data.sum(axis=0), (x,), lambda g: (g,))

    with pytest.raises(GradcheckError, match="input 0"):
        gradcheck(forgot_to_broadcast, [np.ones((3, 4))])


def test_gradcheck_passes_an_input_the_output_ignores():
    def first(a: Tensor, b: Tensor) -> Tensor:
        return a * 2.0

    assert gradcheck(first, [np.array([1.0, 2.0]), np.array([3.0])]) is True


@pytest.mark.parametrize("as_tensor", [False, True])
@given(x=arrays(shapes(min_dims=1)))
def test_gradcheck_leaves_the_callers_data_alone(as_tensor, x):
    x32 = x.astype(np.float32)
    before = x32.copy()
    arg = Tensor(x32) if as_tensor else x32
    gradcheck(lambda t: (t * t).sum(), [arg])
    np.testing.assert_array_equal(x32, before)
    if as_tensor:
        assert arg.grad is None and arg.dtype == np.float32


def test_gradcheck_works_in_float64_even_for_float32_inputs():
    """In float32 the finite difference of x^3 at 1e-6 would be noise; in float64 it passes."""
    x = np.array([0.3, 1.7, -2.2], dtype=np.float32)
    assert gradcheck(lambda t: t**3, [x]) is True
