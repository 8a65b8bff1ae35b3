"""The GPT: names and shapes that match the original checkpoints, initialisation, dtypes, a gradient
check of the whole model, that it can learn, and that the KV cache gives the full forward's logits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from microgpt.autograd import Tensor, gradcheck, no_grad
from microgpt.autograd import functional as F
from microgpt.nn import GPT, Adam, GPTConfig, Module

TINY = GPTConfig(vocab_size=11, n_layer=2, n_embd=8, n_head=2, block_size=6, zero_init=False)  # random everywhere


def random_batch(config: GPTConfig, batch: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (batch, length) and next-token targets from one random token array."""
    tokens = np.random.default_rng(seed).integers(0, config.vocab_size, (batch, length + 1))
    return tokens[:, :-1], tokens[:, 1:]


# ----- names and shapes --------------------------------------------------------------------------------------
def expected_shapes(c: GPTConfig) -> dict[str, tuple[int, ...]]:
    """The original checkpoint's `state`: every matrix (out, in); no wpe with rotary positions (nothing to learn)."""
    shapes = {"wte": (c.vocab_size, c.n_embd), "lm_head": (c.vocab_size, c.n_embd)}
    if c.positions == "learned":
        shapes["wpe"] = (c.block_size, c.n_embd)
    for i in range(c.n_layer):
        for w in ("wq", "wk", "wv", "wo"):
            shapes[f"layer{i}.attn_{w}"] = (c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc1"] = (4 * c.n_embd, c.n_embd)
        shapes[f"layer{i}.mlp_fc2"] = (c.n_embd, 4 * c.n_embd)
    return shapes


@pytest.mark.parametrize("config", [
    replace(TINY, positions="learned"), TINY,
    GPTConfig(zero_init=False, vocab_size=7, n_layer=3, n_embd=12, n_head=3, block_size=5, positions="learned")])
def test_parameter_names_and_shapes_are_the_original_checkpoints(config):
    model = GPT(config, seed=0)
    named = dict(model.named_parameters())
    assert {name: p.shape for name, p in named.items()} == expected_shapes(config)
    state = model.state_dict()
    assert list(state) == [name for name, _ in model.named_parameters()]
    assert {name: v.shape for name, v in state.items()} == expected_shapes(config)
    assert model.num_parameters() == sum(np.prod(s) for s in expected_shapes(config).values())


def test_a_learnable_norm_gain_adds_named_gains_beyond_the_original():
    config = GPTConfig(zero_init=False, vocab_size=5, n_layer=2, n_embd=4, n_head=2, block_size=3, norm_gain=True)
    names = {name for name, _ in GPT(config, seed=0).named_parameters()}
    assert names - set(expected_shapes(config)) == {"layer0.attn_norm", "layer0.mlp_norm", "layer1.attn_norm",
                                                    "layer1.mlp_norm"}


def test_a_state_dict_loads_into_a_fresh_model_and_gives_the_same_logits():
    source, target = GPT(TINY, seed=1), GPT(TINY, seed=2)
    x, _ = random_batch(TINY, 2, 5)
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(target(x).data, source(x).data)


def test_config_rejects_heads_that_do_not_divide_the_width_and_unknown_activations():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=4)
    with pytest.raises(ValueError, match="activation"):
        GPTConfig(activation="tanh")


# ----- forward -----------------------------------------------------------------------------------------------
def test_logits_are_batch_by_time_by_vocab():
    model = GPT(TINY, seed=0)
    x, _ = random_batch(TINY, 3, 4)
    assert model(x).shape == (3, 4, TINY.vocab_size)
    assert model(x[0]).shape == (1, 4, TINY.vocab_size)  # one unbatched sequence


def test_a_sequence_longer_than_block_size_is_a_clear_value_error():
    model = GPT(TINY, seed=0)
    x, _ = random_batch(TINY, 1, TINY.block_size + 1)
    with pytest.raises(ValueError, match=r"7 tokens is longer than block_size 6"):
        model(x)
    model(x[:, :TINY.block_size])  # exactly block_size is fine


@pytest.mark.parametrize("positions", ["learned", "rope"])
def test_positions_matter_and_the_future_does_not(positions: str):
    """Changing token t changes logits at t and later, never before (causality), and the same tokens in
    another order give different logits at the last position (attention alone would not see the order)."""
    model = GPT(replace(TINY, positions=positions), dtype=np.float64, seed=0)
    x = np.array([[3, 1, 4, 1, 5, 9]])
    base = model(x).data
    changed = x.copy()
    changed[0, 3] = 2
    out = model(changed).data
    np.testing.assert_array_equal(out[:, :3], base[:, :3])
    assert np.abs(out[:, 3:] - base[:, 3:]).min() > 0
    swapped = model(np.array([[1, 3, 4, 1, 5, 9]])).data
    assert np.abs(swapped[0, -1] - base[0, -1]).min() > 1e-6


# ----- initialisation and dtype ------------------------------------------------------------------------------
def test_every_weight_starts_near_n_0_008():
    model = GPT(GPTConfig(vocab_size=64, n_layer=2, n_embd=32, n_head=4, block_size=32, zero_init=False), seed=0)
    for name, p in model.named_parameters():
        assert abs(p.data.std() - 0.08) < 0.008, name
        assert abs(p.data.mean()) < 0.01, name


def test_config_init_std_sets_every_weights_spread():
    model = GPT(GPTConfig(vocab_size=64, n_layer=2, n_embd=32, n_head=4, block_size=32, init_std=0.02, zero_init=False), seed=0)
    spreads = {name: round(float(p.data.std()), 3) for name, p in model.named_parameters()}
    wrong = {name: s for name, s in spreads.items() if abs(s - 0.02) > 0.002}
    assert not wrong, f"init_std=0.02 but these weights have another std: {wrong}"


def test_zero_init_starts_every_residual_branch_and_the_head_at_zero_and_training_grows_them():
    config = GPTConfig(vocab_size=17, n_layer=2, n_embd=8, n_head=2, block_size=6)
    assert config.zero_init  # the default; the seed preset turns it off (tests/test_config.py)
    model = GPT(config, seed=0)
    zeroed = {n for n, p in model.named_parameters() if not p.data.any()}
    assert zeroed == {"layer0.attn_wo", "layer0.mlp_fc2", "layer1.attn_wo", "layer1.mlp_fc2", "lm_head"}
    x, y = random_batch(config, 2, 5)
    assert model.loss(x, y).item() == pytest.approx(np.log(17), abs=1e-6)  # uniform first prediction
    before = {n: p.data.copy() for n, p in model.named_parameters()}
    optimizer = Adam(model.parameters(), lr=0.01)
    for _ in range(3):  # lm_head moves first, then the branch outputs, then (through them) every other weight
        optimizer.zero_grad()
        model.loss(x, y).backward()
        optimizer.step()
    still = [n for n, p in model.named_parameters() if np.array_equal(p.data, before[n])]
    assert still == []


def test_zero_init_with_tied_embeddings_keeps_the_embedding_random():
    model = GPT(GPTConfig(vocab_size=17, n_layer=1, n_embd=8, n_head=2, block_size=6, tie_embeddings=True), seed=0)
    assert model.wte.weight.data.std() > 0.05


def test_the_same_seed_gives_the_same_model_and_another_seed_a_different_one():
    a, b, c = GPT(TINY, seed=5).state_dict(), GPT(TINY, seed=5).state_dict(), GPT(TINY, seed=6).state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        assert not np.array_equal(a[name], c[name]), name


def test_float32_by_default_float64_on_request_end_to_end():
    x, y = random_batch(TINY, 2, 4)
    for dtype in (np.float32, np.float64):
        model = GPT(TINY, seed=0) if dtype == np.float32 else GPT(TINY, dtype=np.float64, seed=0)
        assert {p.dtype for p in model.parameters()} == {np.dtype(dtype)}
        loss = F.cross_entropy(model(x), y)
        assert loss.dtype == dtype
        loss.backward()
        assert {p.grad.dtype for p in model.parameters()} == {np.dtype(dtype)}
        assert model.new_cache().keys[0].dtype == dtype


# ----- gradients and learning --------------------------------------------------------------------------------
def owners(model: GPT) -> list[tuple[Module, str]]:
    """(module, attribute) holding each parameter, in named_parameters() order."""
    found = []
    for path, _ in Module.named_parameters(model):  # module paths, before the renaming to checkpoint names
        *parents, attribute = path.split(".")
        module = model
        for part in parents:
            module = getattr(module, part)
        found.append((module, attribute))
    return found


@pytest.mark.parametrize("config", [
    GPTConfig(zero_init=False, vocab_size=5, n_layer=2, n_embd=4, n_head=2, block_size=4, positions="learned"),
    GPTConfig(zero_init=False, vocab_size=5, n_layer=2, n_embd=4, n_head=2, block_size=4),
    GPTConfig(zero_init=False, vocab_size=5, n_layer=1, n_embd=4, n_head=2, block_size=4, activation="gelu", norm_gain=True),
], ids=["original", "rope", "gelu-with-gain"])
def test_gpt_gradient_matches_finite_differences_for_every_weight(config):
    """gradcheck perturbs its own copies of the weights, so the function plugs those copies into the model."""
    model = GPT(config, dtype=np.float64, seed=1)
    slots = owners(model)
    assert len(slots) == len(model.parameters())
    x, y = random_batch(config, 2, 4, seed=2)

    def loss_with(*weights: Tensor) -> Tensor:
        for (module, attribute), w in zip(slots, weights):
            object.__setattr__(module, attribute, w)
        return F.cross_entropy(model(x), y)

    assert gradcheck(loss_with, [p.data for p in model.parameters()], atol=1e-9, rtol=1e-6)


@pytest.mark.parametrize("ignore", [False, True], ids=["all-kept", "some-ignored"])
def test_gpt_loss_matches_finite_differences_for_every_weight(ignore, monkeypatch):
    """GPT.loss is what the trainer differentiates: its fused head must pass the same check, over several
    row blocks of the fused loss (LOSS_BLOCK_ROWS patched down) and with ignored targets."""
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", 3)
    config = GPTConfig(zero_init=False, vocab_size=5, n_layer=1, n_embd=4, n_head=2, block_size=4, norm_gain=True)
    model = GPT(config, dtype=np.float64, seed=3)
    slots = owners(model)
    x, y = random_batch(config, 2, 4, seed=4)
    if ignore:
        y = np.where(np.arange(y.size).reshape(y.shape) % 3 == 1, -1, y)

    def loss_with(*weights: Tensor) -> Tensor:
        for (module, attribute), w in zip(slots, weights):
            object.__setattr__(module, attribute, w)
        if ignore:  # GPT.loss takes no ignore_index: its own fused call, given one
            return F.linear_cross_entropy(model.hidden(x), model.lm_head.weight, y, ignore_index=-1)
        return model.loss(x, y)

    assert gradcheck(loss_with, [p.data for p in model.parameters()], atol=1e-9, rtol=1e-6)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
@pytest.mark.parametrize("block_rows", [5, 128], ids=["several-row-blocks", "one-row-block"])
def test_gpt_loss_and_its_gradients_equal_the_unfused_path(dtype, rtol, block_rows, monkeypatch):
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", block_rows)
    config = GPTConfig(vocab_size=13, n_layer=2, n_embd=8, n_head=2, block_size=7, zero_init=False)
    x, y = random_batch(config, 3, 7, seed=5)
    results = []
    for fused in (True, False):
        model = GPT(config, dtype=dtype, seed=6)
        loss = model.loss(x, y) if fused else F.cross_entropy(model(x), y)
        loss.backward()
        results.append((loss.item(), {name: p.grad for name, p in model.named_parameters()}))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = results
    assert fused_loss == pytest.approx(plain_loss, rel=rtol)
    for name, grad in plain_grads.items():
        assert np.abs(grad).max() > 0, name
        scale = np.abs(grad).max()
        np.testing.assert_allclose(fused_grads[name], grad, rtol=rtol, atol=rtol * scale, err_msg=name)


def test_one_layer_model_memorises_two_sequences_with_adam():
    config = GPTConfig(zero_init=False, vocab_size=12, n_layer=1, n_embd=16, n_head=2, block_size=8)
    model = GPT(config, seed=0)
    x, y = random_batch(config, 2, 8, seed=0)
    optimizer = Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] < 0.05:
            break
    assert losses[0] > 2.0  # it started out guessing
    assert losses[-1] < 0.05, f"loss after {len(losses)} steps: {losses[-1]}"
    with no_grad():
        assert (model(x).data.argmax(axis=-1) == y).all()


# ----- KV cache ----------------------------------------------------------------------------------------------
VARIANT = replace(TINY, activation="gelu", norm_gain=True, tie_embeddings=True)
LEARNED = replace(TINY, positions="learned")


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-5), (np.float64, 1e-10)])
@pytest.mark.parametrize("config", [LEARNED, TINY, VARIANT], ids=["original", "rope", "gelu-gain-tied"])
def test_each_cached_step_gives_the_full_forwards_last_logits(dtype, tol, config):
    """A one-token step takes Block.step (plain arrays); it must give exactly what the full forward gives."""
    model = GPT(config, dtype=dtype, seed=3)
    for name, p in model.named_parameters():
        if name.endswith("norm"):  # learned gains away from their starting ones, so a step that skipped them fails
            p.data[...] = np.random.default_rng(len(name)).uniform(0.5, 1.5, p.shape)
    tokens, _ = random_batch(TINY, 2, TINY.block_size, seed=4)
    with no_grad():
        cache = model.new_cache(batch=2)
        prefill = model(tokens[:, :2], cache).data
        np.testing.assert_allclose(prefill, model(tokens[:, :2]).data, rtol=tol, atol=tol)
        for t in range(2, TINY.block_size):
            step = model(tokens[:, t:t + 1], cache).data
            assert step.shape == (2, 1, TINY.vocab_size) and cache.length == t + 1
            full = model(tokens[:, :t + 1]).data
            np.testing.assert_allclose(step[:, 0], full[:, -1], rtol=tol, atol=tol)


@pytest.mark.parametrize("config", [LEARNED, TINY], ids=["original", "rope"])
def test_a_cache_fed_in_chunks_gives_the_full_forward_at_every_position(config):
    model = GPT(config, dtype=np.float64, seed=3)
    tokens, _ = random_batch(TINY, 1, TINY.block_size, seed=5)
    with no_grad():
        full = model(tokens).data
        cache = model.new_cache()
        pieces = [model(tokens[:, a:b], cache).data for a, b in ((0, 1), (1, 4), (4, 6))]
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, rtol=1e-10, atol=1e-10)


def test_a_full_cache_refuses_another_token():
    model = GPT(TINY, seed=0)
    tokens, _ = random_batch(TINY, 1, TINY.block_size)
    with no_grad():
        cache = model.new_cache()
        model(tokens, cache)
        with pytest.raises(ValueError, match="longer than block_size"):
            model(tokens[:, :1], cache)
    assert cache.length == TINY.block_size
