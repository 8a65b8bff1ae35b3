"""The learner-facing API under misuse: a wrong call gets a clear error naming what is wrong, never a silent
wrong result or a NumPy error from deep inside (compared with what PyTorch does for the same mistake)."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt.autograd import Tensor
from microgpt.autograd import functional as F
from microgpt.nn import (
    GPT,
    Embedding,
    GPTConfig,
    Module,
    Parameter,
    SamplingSettings,
    generate,
    learning_rate,
)

TINY = GPTConfig(vocab_size=20, n_layer=1, n_embd=8, n_head=2, block_size=8, zero_init=False)


@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_a_numpy_integer_axis_reduces_like_a_python_one(reduce: str) -> None:
    data = np.arange(6.0).reshape(2, 3)
    grads = []
    for axis in (1, np.int64(1), np.int32(1)):
        x = Tensor(data)
        getattr(x, reduce)(axis=axis).sum().backward()
        grads.append(x.grad)
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_array_equal(grads[0], grads[2])


def test_the_zeroth_power_has_a_zero_gradient_at_zero() -> None:
    x = Tensor([0.0, 2.0])
    y = x**0
    y.sum().backward()
    np.testing.assert_array_equal(y.data, [1.0, 1.0])
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


@pytest.mark.parametrize(("p", "slope"), [(1, [1.0, 1.0, 1.0]), (2, [0.0, 2.0, 4.0]), (3, [0.0, 3.0, 12.0])])
def test_whole_powers_have_their_slope_at_zero_not_nan(p: int, slope: list) -> None:
    """p x^(p-1) at x = 0 is 0 (or 1 for p = 1): a form that divides by x would give NaN there."""
    x = Tensor([0.0, 1.0, 2.0])
    (x**p).sum().backward()
    np.testing.assert_array_equal(x.grad, slope)


def test_small_tensor_semantics_follow_numpy() -> None:
    assert np.isnan(Tensor(np.zeros((0, 3))).mean().item())  # the mean of nothing is NaN, as NumPy's
    assert not Tensor([0.0]) and Tensor([2.0])
    with pytest.raises(ValueError):
        bool(Tensor([1.0, 2.0]))  # ambiguous, as an array's
    with pytest.raises(TypeError, match="None"):
        Tensor(None)
    with pytest.raises(np.exceptions.AxisError):
        Tensor(np.ones((2, 3))).transpose(0, 5)
    assert Tensor(np.ones((2, 3, 4))).transpose(-1, 0, 1).shape == (4, 2, 3)


@pytest.mark.parametrize("idx", [[[-1, 2]], [[20, 2]]])
def test_token_ids_outside_the_vocabulary_are_refused(idx: list) -> None:
    model = GPT(TINY, seed=0)
    with pytest.raises(ValueError, match=f"token id {idx[0][0]} is outside the vocabulary"):
        model(np.array(idx))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Embedding(5, 3, rng=np.random.default_rng(0))(np.array([-1]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        list(generate(model, idx[0], SamplingSettings(max_new_tokens=2)))


def test_odd_sequences_and_stop_ids_are_refused() -> None:
    model = GPT(TINY, seed=0)
    with pytest.raises(ValueError, match="empty sequence"):
        model(np.zeros((1, 0), dtype=int))
    with pytest.raises(ValueError, match="integers"):
        model(np.array([[1.5]]))
    with pytest.raises(ValueError, match="token id 100"):
        list(generate(model, [1], SamplingSettings(stop_token_ids=(100,))))


@pytest.mark.parametrize("setting", [{"top_k": -1}, {"temperature": float("nan")}, {"temperature": -1.0},
                                     {"top_p": 2.0}, {"top_p": 0.0}, {"repetition_penalty": 0.0}, {"max_new_tokens": -1}])
def test_sampling_settings_outside_their_meaning_are_refused(setting: dict) -> None:
    name = next(iter(setting))
    with pytest.raises(ValueError, match=f"SamplingSettings.{name}="):
        SamplingSettings(**setting)


class Two(Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = Parameter(np.ones(2))
        self.same = self.w  # one weight under two names


def test_a_parameter_under_two_names_counts_once() -> None:
    model = Two()
    assert model.num_parameters() == 2 and list(model.state_dict()) == ["w"]


def test_reassigning_or_deleting_a_parameter_updates_the_registry() -> None:
    model = Two()
    model.w = None
    assert list(model.state_dict()) == ["same"]
    with pytest.raises(TypeError, match="holds a Parameter"):
        model.same = Tensor(np.zeros(2))  # a plain Tensor would not be trained, saved or loaded
    del model.same
    assert model.parameters() == []


def test_a_module_that_forgets_super_init_is_told_so() -> None:
    class Forgetful(Module):
        def __init__(self) -> None:
            self.w = Parameter(np.ones(2))

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Forgetful()


def test_load_state_dict_takes_tensors_too() -> None:
    model, other = GPT(TINY, seed=0), GPT(TINY, seed=1)
    model.load_state_dict({name: Tensor(value) for name, value in other.state_dict().items()})
    assert all(np.array_equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_shape_mistakes_in_the_fused_ops_are_named() -> None:
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        F.linear(x, Tensor(np.ones(3)))
    with pytest.raises(TypeError, match="Tensors"):
        F.linear(np.ones((2, 3)), np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"gain has shape \(4,\)"):
        F.rms_norm(x, Tensor(np.ones(4)))
    q = Tensor(np.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="do not fit"):
        F.scaled_dot_product_attention(q, Tensor(np.ones((2, 5, 4))), Tensor(np.ones((2, 5, 3))))
    with pytest.raises(ValueError, match="do not fit"):
        F.scaled_dot_product_attention(q, q, Tensor(np.ones((2, 4, 3))))
    with pytest.raises(ValueError, match="5 queries over 3 keys"):
        F.scaled_dot_product_attention(q, Tensor(np.ones((2, 3, 3))), Tensor(np.ones((2, 3, 3))))


def test_a_single_sequence_and_its_targets_may_be_one_dimensional() -> None:
    """The model takes idx of shape (T,) as a batch of one: its targets may be (T,) too, as before."""
    model = GPT(TINY, seed=0)
    x, y = np.array([1, 2, 3]), np.array([2, 3, 4])
    fused, public = model.loss(x, y).item(), F.cross_entropy(model(x), y).item()
    assert np.isclose(fused, public) and np.isclose(fused, model.loss(x[None], y[None]).item())


def test_a_go_vocabulary_entry_that_is_no_text_streams_as_a_question_mark() -> None:
    from microgpt.chat.session import ReplyText
    from microgpt.data.go_tokenizer import GoCharTokenizer

    reply = ReplyText(GoCharTokenizer(["a", "b", "\ud800"]), stops=(), strip=False)
    for token in (0, 2, 1):
        reply.add(token)
    assert reply.certain() + reply.rest() == "a?b"


_MODEL = GPT(TINY, seed=0)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: F.softmax(np.zeros((2, 3))), TypeError, "softmax takes a Tensor, not ndarray"),
    (lambda: F.log_softmax(np.zeros((2, 3))), TypeError, "log_softmax takes a Tensor"),
    (lambda: F.rms_norm(np.zeros((2, 3))), TypeError, "rms_norm takes a Tensor"),
    (lambda: F.relu(np.zeros(3)), TypeError, "relu takes a Tensor"),
    (lambda: F.cross_entropy(np.zeros((2, 3)), [0, 1]), TypeError, "cross_entropy takes a Tensor"),
    (lambda: F.cross_entropy(Tensor(np.zeros((2, 3))), np.array(["a", "b"])), ValueError, "not <U1 values"),
    (lambda: F.causal_self_attention(Tensor(np.zeros((4, 6))), 2), ValueError, "not shape \\(4, 6\\)"),
    (lambda: F.scaled_dot_product_attention(*[Tensor(np.zeros((1, 0, 4)))] * 3), ValueError, "empty sequence"),
    (lambda: _MODEL(Tensor([[1.0, 2.0]])), TypeError, "not a Tensor"),
    (lambda: _MODEL(np.array(3)), ValueError, r"shape \(\): give one sequence"),
    (lambda: _MODEL(np.zeros((1, 2, 3), dtype=int)), ValueError, r"shape \(1, 2, 3\)"),
    (lambda: GPTConfig(n_head=0), ValueError, "n_head must be a whole number >= 1, not 0"),
    (lambda: GPT(TINY, dtype=np.float16), ValueError, "float32 or float64, not float16"),
    (lambda: Tensor([1, 2, 3], dtype=np.int64), TypeError, "only float Tensors can require gradients"),
    (lambda: list(Tensor(2.0)), TypeError, "iteration over a 0-d Tensor"),
    (lambda: float(Tensor([1.0, 2.0])), TypeError, r"shape \(2,\)"),
    (lambda: learning_rate("linear", -1, 10, 0.1), ValueError, r"step \(-1\)"),
    (lambda: learning_rate("cosine", 3, 10, 0.1, warmup_steps=-2), ValueError, r"warmup_steps \(-2\)"),
], ids=lambda value: "" if callable(value) else str(value)[:24])
def test_misuse_gets_an_error_that_names_it(call, error, message) -> None:
    """Each of these was a NumPy error from inside, or a silent wrong result (integer gradients cut to 0)."""
    with pytest.raises(error, match=message):
        call()


def test_the_safe_forms_of_those_calls_work() -> None:
    assert float(Tensor([2.0])) == 2.0
    assert [t.item() for t in Tensor([1.0, 2.0])] == [1.0, 2.0]
    ids = Tensor([1, 2], dtype=np.int64, requires_grad=False)  # an integer Tensor without a gradient is fine
    assert Tensor(np.arange(6.0).reshape(3, 2))[ids].shape == (2, 2)
    empty = Tensor(np.zeros((3, 0)))
    empty.relu().sum().backward()
    assert empty.grad.shape == (3, 0)
