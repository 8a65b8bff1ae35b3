"""Adam against a plain per-parameter NumPy Adam, Muon against a plain per-matrix Muon, exact resume from a
saved state, gradient clipping, and the learning-rate schedules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from microgpt.autograd import Tensor, no_grad
from microgpt.autograd import functional as F
from microgpt.autograd.parallel import set_threads
from microgpt.nn import GPT, Adam, GPTConfig, OptimSettings, Parameter, clip_grad_norm, learning_rate
from microgpt.nn.optim import FLUSH_EVERY, MIN_EPS, Muon, orthogonalise

TINY = GPTConfig(zero_init=False, vocab_size=9, n_layer=1, n_embd=8, n_head=2, block_size=6)


def reference_adam(params, grads_per_step, lr, betas, eps, weight_decay):
    """Textbook AdamW, one parameter at a time, written for reading, not speed: a gradient of None skips that
    parameter, whose own step count t then stays behind (as PyTorch's). Returns the params after each step."""
    b1, b2 = betas
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    steps = [0] * len(params)
    history = []
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            if g is None:
                continue
            steps[i] += 1
            t = steps[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1**t)
            v_hat = v[i] / (1 - b2**t)
            params[i] = params[i] - lr * weight_decay * params[i]  # decoupled: not through m and v
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
        history.append([p.copy() for p in params])
    return history


def make_params(seed: int = 0, dtype=np.float64) -> list[Parameter]:
    rng = np.random.default_rng(seed)
    return [Parameter(rng.standard_normal((3, 4)), dtype=dtype), Parameter(rng.standard_normal(5), dtype=dtype)]


def batch(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.random.default_rng(seed).integers(0, TINY.vocab_size, (2, TINY.block_size + 1))
    return tokens[:, :-1], tokens[:, 1:]


# ----- Adam ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_matches_a_numpy_reference_step_by_step(weight_decay):
    params = make_params()
    start = [p.data.copy() for p in params]
    rng = np.random.default_rng(1)
    grads_per_step = [[rng.standard_normal(p.shape) * 10.0**-k for p in params] for k in range(5)]
    expected = reference_adam(start, grads_per_step, lr=0.01, betas=(0.9, 0.95), eps=1e-8,
                              weight_decay=weight_decay)
    opt = Adam(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    assert_steps_match(opt, params, grads_per_step, expected, rtol=1e-12, atol=1e-15)


def assert_steps_match(opt: Adam, params, grads_per_step, expected, rtol: float, atol: float) -> None:
    """Feed each step's gradients to `opt`, step, and compare every parameter with the reference's."""
    for step, grads in enumerate(grads_per_step):
        for p, g in zip(params, grads):
            p.grad = None if g is None else g.copy()
        opt.step()
        for p, e in zip(params, expected[step]):
            np.testing.assert_allclose(p.data, e, rtol=rtol, atol=atol, err_msg=f"step {step + 1}")


def test_bias_correction_makes_the_first_step_lr_whatever_the_gradient_scale():
    for scale in (1e-3, 1.0, 1e3):
        params = make_params()
        start = [p.data.copy() for p in params]
        opt = Adam(params, lr=0.05)
        for p in params:
            p.grad = np.sign(np.random.default_rng(2).standard_normal(p.shape)) * scale
        opt.step()
        for p, s in zip(params, start):
            np.testing.assert_allclose(np.abs(p.data - s), 0.05, rtol=1e-4, err_msg=f"scale {scale}")
            np.testing.assert_array_equal(np.sign(s - p.data), np.sign(p.grad))


def test_weight_decay_is_decoupled_from_the_gradient():
    """With a zero gradient Adam moves nothing, so only the decay acts: p <- p (1 - lr wd), exactly."""
    params = make_params()
    start = [p.data.copy() for p in params]
    opt = Adam(params, lr=0.1, weight_decay=0.5)
    for _ in range(3):
        for p in params:
            p.grad = np.zeros(p.shape)
        opt.step()
    for p, s in zip(params, start):
        np.testing.assert_allclose(p.data, s * (1 - 0.1 * 0.5) ** 3, rtol=1e-12)


def test_parameter_data_become_views_of_one_flat_buffer():
    model = GPT(TINY, seed=0)
    before = model.state_dict()
    opt = Adam(model.parameters())
    assert opt.flat.size == model.num_parameters() and opt.flat.dtype == np.float32
    for name, p in model.named_parameters():
        assert np.shares_memory(p.data, opt.flat), name
        np.testing.assert_array_equal(p.data, before[name])
    opt.flat[:] = 0.0
    assert all(not p.data.any() for p in model.parameters())


def test_zero_grad_forgets_gradients_that_backward_then_writes_into_the_flat_buffer():
    model = GPT(TINY, seed=0)
    x, y = batch()
    opt = Adam(model.parameters())
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x), y).backward()
    once = opt.flat_grad.copy()
    assert np.abs(once).sum() > 0
    for p in model.parameters():
        assert np.shares_memory(p.grad, opt.flat_grad)
    F.cross_entropy(model(x), y).backward()  # without zero_grad, gradients add up
    np.testing.assert_allclose(opt.flat_grad, 2 * once, rtol=1e-6)
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x), y).backward()  # written over the old values, not added to them
    np.testing.assert_allclose(opt.flat_grad, once, rtol=1e-6)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("tie, positions", [(False, "learned"), (True, "rope")])
def test_gradients_written_straight_into_the_optimizers_buffer_equal_those_made_without_one(
        threads, tie, positions, split_every_op):
    """Ops write a weight's gradient into Adam's buffer (gradient_home) instead of handing the walk a copy to
    make: the embedding, the fused loss, linear and the MLP, split or not; with tied embeddings two of them
    want the same buffer. Gradients must equal a model's without an optimizer, and add up on a second pass."""

    config = GPTConfig(zero_init=False, vocab_size=9, n_layer=1, n_embd=8, n_head=2, block_size=6,
                       tie_embeddings=tie, positions=positions)
    x, y = batch()
    set_threads(threads)
    try:
        for fused in (True, False):
            plain, homed = GPT(config, seed=0), GPT(config, seed=0)
            Adam(homed.parameters())  # its flat buffers become every parameter's grad_home
            for model in (plain, homed):
                for _ in range(2):  # the second pass adds to the first
                    (model.loss(x, y) if fused else F.cross_entropy(model(x), y)).backward()
            for (name, a), b in zip(plain.named_parameters(), homed.parameters()):
                assert b.grad is b.grad_home, name
                np.testing.assert_allclose(b.grad, a.grad, rtol=1e-5, atol=1e-7, err_msg=name)
    finally:
        set_threads(0)


def test_gradient_home_is_handed_out_once_per_backward_and_only_during_one():
    w = Parameter(np.zeros(3))
    Adam([w])
    assert w.gradient_home() is None  # no backward running
    asked: list = []

    def backward(g):
        home, again = w.gradient_home(), w.gradient_home()
        asked.append((home, again))
        if home is None:
            return (g * 2.0,)
        np.multiply(g, 2.0, out=home)
        return (home,)

    for _ in range(2):
        out = Tensor._result(w.data * 2.0, (w,), backward)
        out.backward(np.ones(3))
    (first, again), (second, _) = asked
    assert first is w.grad_home and again is None  # once per pass
    assert second is None  # w holds a gradient now: the next pass adds to it
    np.testing.assert_array_equal(w.grad, [4.0, 4.0, 4.0])
    w.zero_grad()
    assert w.gradient_home() is None  # no backward running, though w holds no gradient


def test_a_parameter_left_out_of_backward_after_zero_grad_is_not_moved():
    """Its stale values in the flat gradient must not reach the step, and neither must weight decay or its
    momentum: its weights and moments stay as they were (as PyTorch's Adam), and so does its step count."""
    model = GPT(TINY, seed=0)
    x, y = batch()
    opt = Adam(model.parameters(), lr=0.1, weight_decay=0.1)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    opt.zero_grad()
    head = model.lm_head.weight
    index = [id(p) for p in opt.params].index(id(head))
    start = sum(p.size for p in opt.params[:index])
    where = slice(start, start + head.size)
    weights, m, v = head.data.copy(), opt.m[where].copy(), opt.v[where].copy()
    assert m.any()
    frozen = Parameter(head.data.copy())  # the same weights, but not the optimizer's parameter
    F.cross_entropy(F.linear(model.hidden(x), frozen), y).backward()
    assert head.grad is None
    opt.step()
    np.testing.assert_array_equal(head.data, weights)
    np.testing.assert_array_equal(opt.m[where], m)
    np.testing.assert_array_equal(opt.v[where], v)
    assert opt.steps[index] == 1 and opt.t == 2 and model.wte.weight.grad is not None


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_a_parameter_that_skips_steps_gets_its_own_bias_correction(weight_decay):
    """A frozen parameter (requires_grad False: backward never reaches it) keeps its values whatever the
    decay; one that misses some steps resumes with its own step count, as the per-parameter reference."""
    params = make_params()
    params.append(Parameter(np.ones(2)))
    params[2].requires_grad = False
    start = [p.data.copy() for p in params]
    rng = np.random.default_rng(3)
    grads_per_step = [[None if (k in (1, 2) and i == 0) else rng.standard_normal(p.shape)
                       for i, p in enumerate(params[:2])] + [None] for k in range(5)]
    expected = reference_adam(start, grads_per_step, lr=0.01, betas=(0.9, 0.95), eps=1e-8,
                              weight_decay=weight_decay)
    opt = Adam(params, lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    assert_steps_match(opt, params, grads_per_step, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(params[2].data, [1.0, 1.0])
    assert opt.steps.tolist() == [3, 5, 0]
    resumed = Adam(make_params() + [Parameter(np.ones(2))], lr=0.01, betas=(0.9, 0.95), eps=1e-8,
                   weight_decay=weight_decay)
    resumed.load_state_dict(opt.state_dict())
    assert resumed.steps.tolist() == [3, 5, 0] and resumed.t == 5


def test_a_gradient_kept_from_one_step_is_not_written_over_by_the_next_backward():
    """As in PyTorch: after step() and zero_grad(), backward gives each parameter a new gradient array."""
    model = GPT(TINY, seed=0)
    opt = Adam(model.parameters())
    kept = []
    for seed in (0, 1):
        x, y = batch(seed)
        opt.zero_grad()
        model.loss(x, y).backward()
        kept.append((model.lm_head.weight.grad, model.lm_head.weight.grad.copy()))
        opt.step()
    (first, first_values), (second, _) = kept
    assert first is not second
    np.testing.assert_array_equal(first, first_values)
    assert not np.array_equal(first, second)


def test_a_parameter_without_gradient_is_left_alone():
    params = make_params()
    opt = Adam(params, lr=0.1)
    before = params[1].data.copy()
    params[0].grad = np.ones(params[0].shape)
    params[1].grad = None
    opt.step()
    np.testing.assert_array_equal(params[1].data, before)
    assert np.abs(params[0].data - make_params()[0].data).min() > 0.09


def train_steps(model: GPT, opt: Adam, steps: range) -> list[float]:
    losses = []
    for step in steps:
        x, y = batch(seed=step)
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_state_dict_resume_gives_exactly_the_same_trajectory():
    straight = GPT(TINY, seed=0)
    straight_opt = Adam(straight.parameters(), lr=3e-2, weight_decay=0.01)
    straight_losses = train_steps(straight, straight_opt, range(10))

    first = GPT(TINY, seed=0)
    first_opt = Adam(first.parameters(), lr=3e-2, weight_decay=0.01)
    losses = train_steps(first, first_opt, range(5))
    model_state, opt_state = first.state_dict(), first_opt.state_dict()
    first_opt.m[:] = 99.0  # the saved state is a copy
    resumed = GPT(TINY, seed=123)
    resumed.load_state_dict(model_state)
    resumed_opt = Adam(resumed.parameters(), lr=1.0)  # hyper-parameters come from the state too
    resumed_opt.load_state_dict(opt_state)
    assert resumed_opt.t == 5 and resumed_opt.lr == 3e-2 and resumed_opt.weight_decay == 0.01
    losses += train_steps(resumed, resumed_opt, range(5, 10))

    assert losses == straight_losses
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_adam_flushes_subnormal_moments_to_zero_without_moving_any_weight():
    """A moment below the smallest normal float is slow arithmetic on x86 and moves its weight by nothing."""
    p = Parameter(np.full(64, 0.05, dtype=np.float32), dtype=np.float32)
    opt = Adam([p], lr=1e-3)
    opt.m[:32], opt.v[:32] = 1e-39, 1e-41  # subnormal: a row whose token has not come up for a while
    opt.m[32:], opt.v[32:] = 1e-3, 1e-6
    for _ in range(FLUSH_EVERY - 1):
        p.grad = np.zeros(64, dtype=np.float32)
        opt.step()
    assert (opt.m[:32] != 0).all() and (opt.v[:32] != 0).all()  # decayed, still subnormal, not yet flushed
    np.testing.assert_array_equal(p.data[:32], np.float32(0.05))  # a subnormal moment never moved its weight
    p.grad = np.zeros(64, dtype=np.float32)
    opt.step()
    assert (opt.m[:32] == 0).all() and (opt.v[:32] == 0).all()
    assert (opt.m[32:] != 0).all() and (opt.v[32:] != 0).all()
    np.testing.assert_array_equal(p.data[:32], np.float32(0.05))


def test_adam_keeps_a_subnormal_second_moment_while_the_first_still_moves_the_weight():
    """With EPS_ADAM at its smallest, a steady gradient of 5e-20 makes v subnormal and m normal: Adam's
    step is still lr (m / sqrt(v) = 1), which zeroing v alone would multiply several times over."""
    p = Parameter(np.zeros(1, dtype=np.float32), dtype=np.float32)
    opt = Adam([p], lr=0.01, eps=MIN_EPS)
    for _ in range(3 * FLUSH_EVERY):
        before = float(p.data[0])
        p.grad = np.full(1, 5e-20, dtype=np.float32)
        opt.step()
        assert 0 < opt.v[0] < np.finfo(np.float32).tiny and float(before - p.data[0]) == pytest.approx(0.01, rel=1e-3)


# ----- Muon ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 20), (20, 6), (8, 8)])
def test_orthogonalise_sets_every_singular_value_near_one_and_keeps_the_singular_vectors(shape):
    rng = np.random.default_rng(0)
    u, _, vt = np.linalg.svd(rng.standard_normal(shape), full_matrices=False)
    k = min(shape)
    spread = np.logspace(0, -2.5, k)  # a lopsided gradient: singular values from 1 down to 0.003
    g = (u * spread) @ vt
    wide = g if shape[0] <= shape[1] else g.T
    o = orthogonalise(wide[None] * 7.0)[0]  # the overall scale does not matter
    o = o if shape[0] <= shape[1] else o.T
    x = wide * 7.0 / np.linalg.norm(wide * 7.0)  # the textbook iteration on X itself, for either path
    for _ in range(5):
        gram = x @ x.T
        x = 3.4445 * x + (-4.7750 * gram + 2.0315 * gram @ gram) @ x
    np.testing.assert_allclose(o, x if shape[0] <= shape[1] else x.T, rtol=0, atol=1e-6)
    inner = u.T @ o @ vt.T  # diagonal when o has g's singular vectors
    np.testing.assert_allclose(inner - np.diag(np.diag(inner)), 0, atol=1e-6)
    assert np.all((np.diag(inner) > 0.6) & (np.diag(inner) < 1.25)), np.diag(inner)


def reference_muon(matrices, others, grads_per_step, lr, weight_decay):
    """Muon written for reading: one matrix at a time; the other parameters follow reference_adam."""
    mats = [w.copy() for w in matrices]
    momenta = [np.zeros_like(w) for w in mats]
    rest = reference_adam(others, [g[len(mats):] for g in grads_per_step], lr, (0.9, 0.95), 1e-8, weight_decay)
    history = []
    for step, grads in enumerate(grads_per_step):
        for i, g in enumerate(grads[:len(mats)]):
            momenta[i] = Muon.MOMENTUM * momenta[i] + g
            update = g + Muon.MOMENTUM * momenta[i]  # Nesterov: look one momentum step ahead
            wide = update.shape[0] <= update.shape[1]
            o = orthogonalise((update if wide else update.T)[None])[0]
            o = o if wide else o.T
            mats[i] = mats[i] * (1 - lr * weight_decay) - lr * 0.2 * math.sqrt(max(update.shape)) * o
        history.append([w.copy() for w in mats] + rest[step])
    return history


SMALL = [(4, 12), (4, 12), (12, 4), (5, 5), (7,), (3, 4)]  # the last two stay with Adam
BIG = [(32, 128)] * 5 + [(128, 32)] * 3 + [(7,), (3, 4)]  # a stack big enough to be split over two threads


@pytest.mark.parametrize(("weight_decay", "shapes"), [(0.0, SMALL), (0.1, SMALL), (0.0, BIG)])
def test_muon_matches_a_per_matrix_reference_step_by_step(weight_decay, shapes):
    set_threads(2)
    rng = np.random.default_rng(2)
    params = [Parameter(rng.standard_normal(s), dtype=np.float64) for s in shapes]
    start = [p.data.copy() for p in params]
    grads_per_step = [[rng.standard_normal(p.shape) * 10.0**-k for p in params] for k in range(4)]
    n = len(shapes) - 2
    expected = reference_muon(start[:n], start[n:], grads_per_step, lr=0.01, weight_decay=weight_decay)
    opt = Muon(params[n:], params[:n], lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=weight_decay)
    try:
        assert_steps_match(opt, params, grads_per_step, expected, rtol=1e-10, atol=1e-12)
    finally:
        set_threads(0)


def test_optim_settings_build_muon_for_the_blocks_matrices_and_adam_for_the_rest():
    model = GPT(TINY, seed=0)
    opt = OptimSettings(optimizer="muon").build(model.parameters(), model.hidden_matrices(), lr=0.01)
    assert isinstance(opt, Muon) and len(opt.matrices) == 6 * TINY.n_layer
    assert {id(p) for p in opt.matrices} == {id(p) for b in model.blocks for p in b.parameters() if p.ndim == 2}
    assert opt.n_adam == model.wte.weight.size + model.lm_head.weight.size  # rope: no position table
    assert type(OptimSettings(optimizer="adam").build(model.parameters(), model.hidden_matrices(), lr=0.01)) is Adam
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        OptimSettings(optimizer="sgd").build(model.parameters(), [], lr=0.01)


def test_muon_state_dict_resume_gives_exactly_the_same_trajectory():
    def muon(model: GPT, lr: float) -> Muon:
        return OptimSettings(optimizer="muon").build(model.parameters(), model.hidden_matrices(), lr=lr)

    straight = GPT(TINY, seed=0)
    straight_losses = train_steps(straight, muon(straight, 3e-2), range(8))
    first = GPT(TINY, seed=0)
    first_opt = muon(first, 3e-2)
    losses = train_steps(first, first_opt, range(4))
    resumed = GPT(TINY, seed=5)
    resumed.load_state_dict(first.state_dict())
    resumed_opt = muon(resumed, 1.0)
    resumed_opt.load_state_dict(first_opt.state_dict())
    losses += train_steps(resumed, resumed_opt, range(4, 8))
    assert losses == straight_losses
    x, y = batch(seed=0)
    with no_grad():
        assert F.cross_entropy(resumed(x), y).item() < losses[0]  # it learned: step 0's batch costs less now


def test_muon_leaves_a_matrix_without_gradient_and_its_momentum_alone():
    rng = np.random.default_rng(4)
    mats = [Parameter(rng.standard_normal((4, 6))) for _ in range(2)]
    opt = Muon([Parameter(rng.standard_normal(3))], mats, lr=0.01, weight_decay=0.1)
    for p in opt.params:
        p.grad = rng.standard_normal(p.shape)
    opt.step()
    before, momentum = mats[1].data.copy(), opt.m[-mats[1].size:].copy()
    opt.zero_grad()
    mats[0].grad = rng.standard_normal(mats[0].shape)
    moved = mats[0].data.copy()
    opt.step()
    np.testing.assert_array_equal(mats[1].data, before)
    np.testing.assert_array_equal(opt.m[-mats[1].size:], momentum)
    assert not np.array_equal(mats[0].data, moved)
    opt.zero_grad()
    opt.step()  # nothing reached: nothing moves, no stack is split
    np.testing.assert_array_equal(mats[1].data, before)


def test_loading_optimizer_state_of_another_size_is_refused():
    opt = Adam(make_params())
    other = Adam([Parameter(np.zeros(3), dtype=np.float64)])
    with pytest.raises(ValueError, match=r"m has shape \(3,\), the parameters \(17,\)"):
        opt.load_state_dict(other.state_dict())


@pytest.mark.parametrize(("change", "message"), [
    ({"v": None}, "lacks v"), ({"v": np.zeros(2)}, "v has shape"), ({"t": np.asarray(-5)}, "step count"),
    ({"t": np.asarray(1.5)}, "step count"), ({"betas": np.asarray([1.0, 0.99])}, "beta1 is 1.0"),
    ({"lr": np.asarray(np.nan)}, "lr is nan"), ({"steps": np.asarray([1, 0])}, "steps must be 2 step counts"),
    ({"steps": np.asarray([0])}, "steps must be"), ({"steps": np.asarray([0.5, 0.0])}, "steps must be"),
])
def test_malformed_optimizer_state_is_refused_by_name(change: dict, message: str) -> None:
    """A state from a file names what is wrong with it, and the optimizer is left as it was."""
    opt = Adam(make_params())
    state = {**opt.state_dict(), **change}
    state = {key: value for key, value in state.items() if value is not None}
    before = opt.state_dict()
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    assert all(np.array_equal(before[key], value) for key, value in opt.state_dict().items())


@pytest.mark.parametrize("hyper", [{"lr": -1.0}, {"lr": float("nan")}, {"eps": -1.0}, {"betas": (1.0, 0.99)},
                                   {"betas": (0.9, 1.5)}, {"weight_decay": -0.1}, {"betas": 3}])
def test_adam_refuses_hyper_parameters_out_of_range(hyper: dict) -> None:
    with pytest.raises(ValueError, match="Adam's"):
        Adam(make_params(), **hyper)


def test_adam_refuses_arrays_and_mixed_dtypes() -> None:
    with pytest.raises(TypeError, match="Parameters"):
        Adam([np.ones(3)])
    with pytest.raises(ValueError, match="float32 and float64"):
        Adam([Parameter(np.ones(3, np.float32)), Parameter(np.ones(3))])


def test_a_replaced_parameter_is_still_trained() -> None:
    """p.data = ... (a PyTorch habit) after Adam was built: the new values are adopted and updated."""
    p = Parameter(np.ones(3))
    opt = Adam([p], lr=0.1)
    p.data = np.full(3, 2.0)
    (p * p).sum().backward()
    opt.step()
    np.testing.assert_allclose(p.data, 1.9)
    assert np.shares_memory(p.data, opt.flat)


def test_adam_needs_parameters():
    with pytest.raises(ValueError, match="no parameters"):
        Adam([])


# ----- clip_grad_norm -----------------------------------------------------------------------------------------
def test_clip_grad_norm_returns_the_norm_before_and_scales_down_to_max_norm():
    params = make_params()
    rng = np.random.default_rng(3)
    for p in params:
        p.grad = rng.standard_normal(p.shape) * 5.0
    before = [p.grad.copy() for p in params]
    norm = math.sqrt(sum(float((g * g).sum()) for g in before))
    assert clip_grad_norm(params, 1.0) == pytest.approx(norm, rel=1e-12)
    after = math.sqrt(sum(float((p.grad * p.grad).sum()) for p in params))
    assert after == pytest.approx(1.0, rel=1e-6)
    for p, g in zip(params, before):  # same direction
        np.testing.assert_allclose(p.grad, g * (after / norm), rtol=1e-12)


def test_clip_grad_norm_leaves_small_gradients_and_skips_missing_ones():
    params = make_params()
    params[0].grad = np.full(params[0].shape, 0.1)
    params[1].grad = None
    assert clip_grad_norm(params, 10.0) == pytest.approx(math.sqrt(12 * 0.01), rel=1e-12)
    np.testing.assert_array_equal(params[0].grad, 0.1)
    assert params[1].grad is None


def test_clip_grad_norm_of_adam_gradients_scales_the_flat_buffer():
    model = GPT(TINY, seed=0)
    opt = Adam(model.parameters())
    opt.zero_grad()
    x, y = batch()
    F.cross_entropy(model(x), y).backward()
    norm = clip_grad_norm(model.parameters(), 1e-3)
    assert norm > 1e-3
    assert float(np.linalg.norm(opt.flat_grad.astype(np.float64))) == pytest.approx(1e-3, rel=1e-4)


# ----- learning-rate schedules --------------------------------------------------------------------------------
def test_linear_decays_to_zero_as_the_original():
    for step in range(0, 101, 7):
        assert learning_rate("linear", step, 100, 0.01) == pytest.approx(0.01 * (1 - step / 100), abs=1e-15)
    assert learning_rate("linear", 100, 100, 0.01) == 0.0
    assert learning_rate("linear", 150, 100, 0.01) == 0.0  # never negative


def test_constant_is_constant():
    assert {learning_rate("constant", s, 50, 3e-4) for s in range(0, 60, 5)} == {3e-4}


def test_warmup_rises_linearly_then_cosine_falls_to_zero():
    base, warmup, total = 0.1, 10, 110
    lrs = [learning_rate("cosine", s, total, base, warmup_steps=warmup) for s in range(total + 1)]
    np.testing.assert_allclose(lrs[:warmup], base * np.arange(1, warmup + 1) / warmup, rtol=1e-12)
    assert lrs[warmup] == pytest.approx(base)
    assert lrs[warmup + 50] == pytest.approx(base / 2)  # halfway through the cosine
    assert lrs[warmup + 25] == pytest.approx(base * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lrs[total] == pytest.approx(0.0, abs=1e-15)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))  # never rises after warmup
    assert learning_rate("cosine", total + 20, total, base, warmup) == pytest.approx(0.0, abs=1e-15)


def test_wsd_holds_then_falls_in_a_straight_line_to_zero():
    base, warmup, total, fraction = 0.2, 10, 110, 0.25  # 100 steps after warmup: hold 75, decay 25
    lrs = [learning_rate("wsd", s, total, base, warmup_steps=warmup, decay_fraction=fraction)
           for s in range(total + 1)]
    np.testing.assert_allclose(lrs[:warmup], base * np.arange(1, warmup + 1) / warmup, rtol=1e-12)
    assert set(lrs[warmup:warmup + 76]) == {base}  # stable until a quarter of the steps is left
    np.testing.assert_allclose(lrs[warmup + 75:], base * np.arange(25, -1, -1) / 25, rtol=1e-12, atol=1e-15)
    for warmup in (0, 10):  # decaying over the whole run (after the warmup) is the linear schedule
        for step in (9, 10, 11, 50, 99):
            assert learning_rate("wsd", step, 100, base, warmup, decay_fraction=1.0) == pytest.approx(
                learning_rate("linear", step, 100, base, warmup))


def test_warmup_applies_to_every_schedule():
    for schedule in ("linear", "cosine", "wsd", "constant"):
        assert learning_rate(schedule, 0, 100, 1.0, warmup_steps=4) == 0.25
        assert learning_rate(schedule, 3, 100, 1.0, warmup_steps=4) == 1.0


def test_unknown_schedule_is_a_value_error():
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        learning_rate("step", 0, 10, 1.0)


def test_the_smallest_eps_the_knob_allows_keeps_zero_gradient_weights_finite() -> None:
    from microgpt.config import KNOB_BY_NAME

    smallest = KNOB_BY_NAME["EPS_ADAM"].min
    assert smallest == MIN_EPS > 0
    for beta2 in (0.999, 0.999999):  # eps is divided by up to 1 / sqrt(1 - beta2) in the update
        p = Parameter(np.ones((4, 3), dtype=np.float32))
        opt = Adam([p], lr=1e-3, betas=(0.9, beta2), eps=smallest)
        for _ in range(3):
            p.grad = np.zeros_like(p.data)  # a weight no gradient reaches yet, as under ZERO_INIT
            opt.step()
        np.testing.assert_array_equal(p.data, 1.0)
    assert np.float32(smallest / math.sqrt(1 / (1 - 0.999999))) > 0


def test_linear_after_a_warmup_falls_from_the_peak_in_even_steps() -> None:
    lrs = [learning_rate("linear", s, 20, 1.0, warmup_steps=5) for s in range(20)]
    assert lrs[4] == 1.0 and lrs[5] == 1.0  # the warmup's last step, then the decay's first, both at the peak
    drops = np.diff(lrs[5:])
    np.testing.assert_allclose(drops, -1 / 15)  # no cliff where the warmup ends
