"""Dropout and tied embeddings: the options beyond the original that help a small model generalise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import arrays, check_gradients, shapes

from microgpt.autograd import Tensor, no_grad
from microgpt.autograd import functional as F
from microgpt.nn import GPT, GPTConfig
from microgpt.nn.layers import Dropout


@given(arrays(shapes(min_dims=1, max_dims=3)), st.floats(0.05, 0.9), st.integers(0, 2**31 - 1))
def test_dropout_gradient(x: np.ndarray, p: float, seed: int) -> None:
    # A fresh generator with the same seed per call: every evaluation in the check draws the same mask.
    check_gradients(lambda t: F.dropout(t, p, np.random.default_rng(seed)), [x])


def test_dropout_zeroes_about_p_and_keeps_the_mean() -> None:
    x = np.ones((200, 500))
    y = F.dropout(Tensor(x, requires_grad=False), 0.3, np.random.default_rng(0)).data
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    assert np.allclose(y[y != 0], 1 / 0.7)


def test_dropout_probability_zero_is_the_identity_and_bad_p_is_refused() -> None:
    t = Tensor(np.arange(6.0), requires_grad=False)
    assert F.dropout(t, 0.0, np.random.default_rng(0)) is t
    with pytest.raises(ValueError, match="dropout probability"):
        F.dropout(t, 1.0, np.random.default_rng(0))


def test_dropout_module_is_off_in_eval_mode_and_without_a_graph() -> None:
    drop = Dropout(0.5, seed=0)
    x = Tensor(np.ones((4, 4)), requires_grad=False)
    assert not np.array_equal(drop(x).data, x.data)
    with no_grad():
        assert drop(x) is x  # validation and sampling run under no_grad
    drop.eval()
    assert drop(x) is x


def _batch(vocab: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).integers(0, vocab, size=(2, 9))
    return idx[:, :-1], idx[:, 1:]


def test_gpt_dropout_changes_training_loss_only_and_reseeding_repeats_masks() -> None:
    config = GPTConfig(vocab_size=40, n_layer=2, n_embd=16, n_head=2, block_size=16, dropout=0.3, zero_init=False)
    model = GPT(config, seed=0)
    x, y = _batch(40)
    model.seed_dropout((7, 3))
    first = float(model.loss(x, y).data)
    model.seed_dropout((7, 3))
    assert float(model.loss(x, y).data) == first  # same seed, same masks: a resumed run is exact
    model.seed_dropout((7, 4))
    assert float(model.loss(x, y).data) != first
    model.eval()
    plain = GPT(GPTConfig(vocab_size=40, n_layer=2, n_embd=16, n_head=2, block_size=16, zero_init=False), seed=0)
    assert np.allclose(model(x).data, plain(x).data)  # in eval mode dropout is the identity


def test_tied_embeddings_share_one_matrix_and_train_it_from_both_ends() -> None:
    config = GPTConfig(zero_init=False, vocab_size=40, n_layer=1, n_embd=16, n_head=2, block_size=16, tie_embeddings=True)
    model = GPT(config, seed=0)
    names = [n for n, _ in model.named_parameters()]
    assert "lm_head" not in names and names.count("wte") == 1
    untied = GPT(GPTConfig(zero_init=False, vocab_size=40, n_layer=1, n_embd=16, n_head=2, block_size=16), seed=0)
    assert model.num_parameters() == untied.num_parameters() - 40 * 16
    x, y = _batch(40)
    assert np.allclose(model(x).data, model.hidden(x).data @ model.wte.weight.data.T, atol=1e-6)
    model.loss(x, y).backward()
    grad = model.wte.weight.grad
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert np.allclose(grad, model.wte.weight.grad, atol=1e-6)  # fused and unfused paths agree
    unused = np.setdiff1d(np.arange(40), x)
    assert np.abs(grad[unused]).sum() > 0  # rows never looked up still learn through the output layer


def test_a_run_with_dropout_resumes_exactly(tmp_path) -> None:
    from test_training import events_of, microgpt, write_dataset

    def losses(folder) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in events_of(folder) if e["type"] == "step"}

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    for folder in (whole, parts):
        folder.mkdir()
        write_dataset(folder)
    knobs = {"DROPOUT": "0.2", "TIE_EMBEDDINGS": "true", "NUM_STEPS": "8", "EVAL_INTERVAL": "4"}
    assert microgpt(whole, "train", **knobs).returncode == 0
    assert microgpt(parts, "train", "--stop-after", "5", **knobs).returncode == 0
    assert microgpt(parts, "train", "--resume", "models/latest_checkpoint.npz", **knobs).returncode == 0
    expected, got = losses(whole), losses(parts)
    assert sorted(got) == list(range(1, 9))
    np.testing.assert_allclose([got[s] for s in range(6, 9)], [expected[s] for s in range(6, 9)], atol=1e-6)
