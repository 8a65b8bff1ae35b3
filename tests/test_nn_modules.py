"""Module bookkeeping (registration, names, saving and loading weights, train/eval) and the small layers
a GPT is made of, each against a plain NumPy formula."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt.autograd import Tensor
from microgpt.nn import Adam, Embedding, Linear, Module, Parameter, RMSNorm


class Inner(Module):
    def __init__(self, rng: np.random.Generator) -> None:
        super().__init__()
        self.b = Parameter(rng.standard_normal(3), dtype=np.float32)
        self.a = Parameter(rng.standard_normal((2, 3)), dtype=np.float32)


class Outer(Module):
    """Parameters and children interleaved, on purpose: names follow depth-first registration order."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        rng = np.random.default_rng(seed)
        self.z = Parameter(rng.standard_normal(4), dtype=np.float32)
        self.first = Inner(rng)
        self.not_a_weight = np.ones(5)  # a plain array is an attribute, not a parameter
        self.y = Parameter(rng.standard_normal((4, 2)), dtype=np.float32)
        self.second = Inner(rng)


EXPECTED_NAMES = ["z", "y", "first.b", "first.a", "second.b", "second.a"]


# ----- registration and names --------------------------------------------------------------------------------
def test_assigning_parameters_and_modules_registers_them_in_order():
    m = Outer()
    assert [name for name, _ in m.named_parameters()] == EXPECTED_NAMES
    assert list(m._modules) == ["first", "second"]
    assert m.parameters()[2] is m.first.b and m.parameters()[-1] is m.second.a
    assert m.num_parameters() == 4 + 8 + 2 * (3 + 6)


def test_parameters_always_require_grad():
    p = Parameter(np.zeros(3), dtype=np.float64)
    assert p.requires_grad and p.dtype == np.float64


def test_reassigning_a_parameter_replaces_it_in_place_of_the_old_one():
    m = Outer()
    new = Parameter(np.zeros(4))
    m.z = new
    names = [name for name, _ in m.named_parameters()]
    assert names == EXPECTED_NAMES and m.parameters()[0] is new


# ----- state_dict / load_state_dict --------------------------------------------------------------------------
def test_state_dict_holds_copies_not_the_live_weights():
    m = Outer()
    state = m.state_dict()
    assert list(state) == EXPECTED_NAMES
    before = m.z.data.copy()
    state["z"][...] = 123.0
    np.testing.assert_array_equal(m.z.data, before)


def test_load_state_dict_round_trip_is_exact():
    source, target = Outer(seed=1), Outer(seed=2)
    target.load_state_dict(source.state_dict())
    for (name, p), (_, q) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data, err_msg=name)
    assert target.z is not source.z  # copied, not shared


def test_load_state_dict_writes_in_place_so_optimizer_views_stay_valid():
    m = Outer(seed=1)
    opt = Adam(m.parameters())
    m.load_state_dict(Outer(seed=2).state_dict())
    for p in m.parameters():
        assert np.shares_memory(p.data, opt.flat)
    np.testing.assert_array_equal(opt.flat[:4], Outer(seed=2).z.data)


def test_load_state_dict_names_every_missing_unexpected_and_misshapen_key():
    m = Outer()
    state = m.state_dict()
    del state["first.a"]
    del state["y"]
    state["extra.weight"] = np.zeros(2)
    state["second.b"] = np.zeros(7)
    before = m.state_dict()
    with pytest.raises(KeyError) as info:
        m.load_state_dict(state)
    message = str(info.value)
    assert "missing keys: y, first.a" in message
    assert "unexpected keys: extra.weight" in message
    assert "second.b: checkpoint (7,) vs model (3,)" in message
    for name, value in m.state_dict().items():  # a refused load changes nothing
        np.testing.assert_array_equal(value, before[name], err_msg=name)


def test_non_strict_load_tolerates_missing_and_unexpected_but_not_wrong_shapes():
    m, source = Outer(seed=1), Outer(seed=2)
    state = source.state_dict()
    del state["z"]
    state["extra"] = np.zeros(1)
    z_before = m.z.data.copy()
    m.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(m.z.data, z_before)  # missing: left alone
    np.testing.assert_array_equal(m.second.a.data, source.second.a.data)
    state["y"] = np.zeros((2, 4))
    with pytest.raises(KeyError, match=r"y: checkpoint \(2, 4\) vs model \(4, 2\)"):
        m.load_state_dict(state, strict=False)


def test_load_state_dict_casts_to_the_models_dtype():
    m = Outer()
    state = {name: value.astype(np.float64) for name, value in Outer(seed=3).state_dict().items()}
    m.load_state_dict(state)
    assert all(p.dtype == np.float32 for p in m.parameters())
    np.testing.assert_array_equal(m.y.data, state["y"].astype(np.float32))


# ----- train / eval / zero_grad ------------------------------------------------------------------------------
def test_train_and_eval_reach_every_child():
    m = Outer()
    assert m.training and m.first.training and m.second.training
    assert m.eval() is m
    assert not (m.training or m.first.training or m.second.training)
    m.train()
    assert m.training and m.first.training and m.second.training
    m.second.eval()  # a child alone
    assert m.training and m.first.training and not m.second.training


def test_module_zero_grad_clears_every_gradient():
    m = Outer()
    for p in m.parameters():
        p.grad = np.ones_like(p.data)
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


# ----- Linear ------------------------------------------------------------------------------------------------
def test_linear_stores_out_by_in_and_computes_x_times_w_transposed():
    rng = np.random.default_rng(0)
    layer = Linear(3, 5, rng=rng, dtype=np.float64)
    assert layer.weight.shape == (5, 3) and layer.bias is None
    assert [name for name, _ in layer.named_parameters()] == ["weight"]
    x = rng.standard_normal((2, 4, 3))
    out = layer(Tensor(x))
    assert out.shape == (2, 4, 5)
    np.testing.assert_allclose(out.data, x @ layer.weight.data.T, rtol=1e-12)


def test_linear_with_bias_adds_it_and_gets_both_gradients():
    rng = np.random.default_rng(1)
    layer = Linear(3, 2, bias=True, rng=rng, dtype=np.float64)
    layer.bias.data[...] = [0.5, -1.0]
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    x = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 2))
    out = layer(Tensor(x, requires_grad=False))
    np.testing.assert_allclose(out.data, x @ layer.weight.data.T + [0.5, -1.0], rtol=1e-12)
    out.backward(g)
    np.testing.assert_allclose(layer.weight.grad, g.T @ x, rtol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, g.sum(axis=0), rtol=1e-12)


def test_linear_init_std_and_dtype_follow_the_arguments():
    layer = Linear(200, 100, rng=np.random.default_rng(0), std=0.02)
    assert layer.weight.dtype == np.float32
    assert abs(layer.weight.data.std() - 0.02) < 0.001 and abs(layer.weight.data.mean()) < 0.001


# ----- Embedding ---------------------------------------------------------------------------------------------
def test_embedding_looks_up_rows_and_sums_gradients_of_repeated_ids():
    rng = np.random.default_rng(0)
    emb = Embedding(6, 4, rng=rng, dtype=np.float64)
    assert emb.weight.shape == (6, 4)
    idx = np.array([[1, 3, 1], [5, 1, 0]])
    out = emb(idx)
    assert out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out.data, emb.weight.data[idx])
    g = rng.standard_normal((2, 3, 4))
    out.backward(g)
    expected = np.zeros((6, 4))
    np.add.at(expected, idx.reshape(-1), g.reshape(-1, 4))
    np.testing.assert_allclose(emb.weight.grad, expected, rtol=1e-12)
    np.testing.assert_array_equal(emb.weight.grad[[2, 4]], 0.0)  # rows never looked up


# ----- RMSNorm -----------------------------------------------------------------------------------------------
def test_rmsnorm_has_no_gain_by_default_and_normalises_the_last_dim():
    norm = RMSNorm(8, dtype=np.float64)
    assert norm.parameters() == [] and norm.weight is None
    x = np.random.default_rng(0).standard_normal((3, 2, 8)) * 5.0
    y = norm(Tensor(x)).data
    np.testing.assert_allclose(y, x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-5), rtol=1e-12)
    np.testing.assert_allclose((y * y).mean(axis=-1), 1.0, rtol=1e-5)


def test_rmsnorm_with_learnable_gain_scales_and_learns_it():
    norm = RMSNorm(4, learnable=True, dtype=np.float64)
    assert [name for name, _ in norm.named_parameters()] == ["weight"]
    np.testing.assert_array_equal(norm.weight.data, np.ones(4))  # starts as the plain norm
    norm.weight.data[...] = [1.0, 2.0, -1.0, 0.5]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 4))
    g = rng.standard_normal((5, 4))
    plain = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + 1e-5)
    out = norm(Tensor(x))
    np.testing.assert_allclose(out.data, plain * [1.0, 2.0, -1.0, 0.5], rtol=1e-12)
    out.backward(g)
    np.testing.assert_allclose(norm.weight.grad, (g * plain).sum(axis=0), rtol=1e-10)
