"""The fused ops in microgpt.autograd.functional: forward against float64 reference formulas written
out plainly here, hand-written backward against gradcheck, and the numerical edge cases they exist for.
"""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import (
    arrays,
    check_gradients,
    nonzero_arrays,
    seeds,
    shapes,
    single_axis,
)

from microgpt.autograd import Tensor, functional, parallel

F = functional


# ----- float64 references --------------------------------------------------------------------------------
def softmax_reference(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def cross_entropy_reference(logits: np.ndarray, targets: np.ndarray, ignore_index=None) -> float:
    """Mean over kept positions of -log p[target], one position at a time."""
    flat = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    losses = []
    for row, t in zip(flat, np.asarray(targets).reshape(-1)):
        if ignore_index is not None and t == ignore_index:
            continue
        top = row.max()
        losses.append(top + math.log(np.exp(row - top).sum()) - row[t])
    return float(np.mean(losses))


def rms_norm_reference(x: np.ndarray, weight, eps: float) -> np.ndarray:
    y = x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps)
    return y if weight is None else y * weight


def attention_reference(q: np.ndarray, k: np.ndarray, v: np.ndarray, causal: bool) -> np.ndarray:
    """softmax(q k^T / sqrt(D)) v, query i at absolute position Tk - Tq + i seeing keys 0..that position."""
    tq, tk, d = q.shape[-2], k.shape[-2], q.shape[-1]
    scores = q @ np.swapaxes(k, -1, -2) / math.sqrt(d)
    if causal:
        for i in range(tq):
            scores[..., i, tk - tq + i + 1 :] = -np.inf
    return softmax_reference(scores, -1) @ v


# ----- linear ------------------------------------------------------------------------------------------------
@given(data=st.data(), lead=shapes(max_dims=2), n_in=st.integers(1, 4), n_out=st.integers(1, 4), seed=seeds)
def test_linear(data, lead, n_in, n_out, seed):
    x = data.draw(arrays(lead + (n_in,)), label="x")
    w = data.draw(arrays((n_out, n_in)), label="w")
    out = F.linear(Tensor(x), Tensor(w))
    assert out.shape == lead + (n_out,)
    np.testing.assert_allclose(out.data, x @ w.T, rtol=1e-12, atol=1e-12)
    check_gradients(F.linear, [x, w], seed=seed)


def test_linear_with_mismatched_shapes_names_both():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))))


@pytest.mark.parametrize("name", ["relu", "gelu"])
@given(x=arrays(shapes()))
def test_functional_relu_and_gelu_match_the_tensor_methods(name, x):
    np.testing.assert_array_equal(getattr(F, name)(Tensor(x)).data, getattr(Tensor(x), name)().data)


# ----- softmax / log_softmax ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(data=st.data(), shape=shapes(min_dims=1), seed=seeds)
def test_softmax_and_log_softmax(name, data, shape, seed):
    x = data.draw(arrays(shape, -5, 5), label="x")
    axis = data.draw(single_axis(len(shape)), label="axis")
    out = getattr(F, name)(Tensor(x), axis=axis)
    expected = softmax_reference(x, axis)
    if name == "log_softmax":
        expected = np.log(expected)
    else:
        np.testing.assert_allclose(out.data.sum(axis=axis), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out.data, expected, rtol=1e-10, atol=1e-12)
    check_gradients(lambda t: getattr(F, name)(t, axis=axis), [x], seed=seed)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(x=arrays(shapes(min_dims=1), -5, 5), shift=st.floats(-50, 50))
def test_softmax_ignores_a_constant_shift(name, x, shift):
    fn = getattr(F, name)
    np.testing.assert_allclose(fn(Tensor(x + shift)).data, fn(Tensor(x)).data, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@given(x=hnp.arrays(np.float32, shapes(min_dims=1), elements=st.sampled_from([-1e4, 0.0, 1e4])))
def test_softmax_stays_finite_at_extreme_logits(name, x):
    t = Tensor(x)
    out = getattr(F, name)(t)
    assert out.dtype == np.float32
    if name == "softmax":
        assert np.all(np.isfinite(out.data))
    else:  # log-probabilities are finite too: log_softmax never takes log(0)
        assert np.all(np.isfinite(out.data)), out.data
    out.backward(np.ones(x.shape, dtype=np.float32))
    assert np.all(np.isfinite(t.grad))


# ----- cross_entropy ---------------------------------------------------------------------------------------
@st.composite
def classification(draw, ignore_index):
    """(logits, targets) with logits (..., V) and at least one target not equal to ignore_index."""
    lead = draw(shapes(max_dims=2))
    vocab = draw(st.integers(1, 4))
    logits = draw(arrays(lead + (vocab,), -5, 5))
    targets = draw(hnp.arrays(np.int64, lead, elements=st.integers(0, vocab - 1)))
    if ignore_index is not None:
        ignored = draw(hnp.arrays(np.bool_, lead))
        keep = draw(st.integers(0, targets.size - 1))
        ignored.reshape(-1)[keep] = False
        targets = np.where(ignored, ignore_index, targets)
        if ignore_index != -100:  # a real class id: the kept position must not be that class
            targets.reshape(-1)[keep] = (ignore_index + 1) % vocab if vocab > 1 else 0
            if vocab == 1:
                return logits, targets, None
    return logits, targets, ignore_index


@pytest.mark.parametrize("ignore_index", [None, -100, 0])
@given(data=st.data(), seed=seeds)
def test_cross_entropy(ignore_index, data, seed):
    logits, targets, ignore_index = data.draw(classification(ignore_index), label="logits, targets")
    targets_before = targets.copy()
    loss = F.cross_entropy(Tensor(logits), targets, ignore_index=ignore_index)
    assert loss.shape == ()
    np.testing.assert_allclose(loss.data, cross_entropy_reference(logits, targets, ignore_index), rtol=1e-10)
    check_gradients(lambda t: F.cross_entropy(t, targets, ignore_index=ignore_index), [logits], seed=seed)
    np.testing.assert_array_equal(targets, targets_before)
    if ignore_index is not None:  # ignored positions receive exactly no gradient
        t = Tensor(logits)
        F.cross_entropy(t, targets, ignore_index=ignore_index).backward()
        assert np.all(t.grad[targets == ignore_index] == 0.0)


@given(data=st.data())
def test_cross_entropy_backward_twice_over_one_graph_doubles_the_gradient(data):
    """The first backward reuses saved memory for the gradient; a second one must still be right."""
    logits, targets, _ = data.draw(classification(None), label="logits, targets")
    t = Tensor(logits)
    loss = F.cross_entropy(t, targets)
    loss.backward()
    once = t.grad.copy()
    loss.backward()
    np.testing.assert_allclose(t.grad, 2 * once, rtol=1e-12, atol=1e-15)


def test_cross_entropy_accepts_targets_as_a_tensor():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    loss = F.cross_entropy(Tensor(logits), Tensor(np.array([0.0, 2.0]), requires_grad=False))
    np.testing.assert_allclose(loss.data, cross_entropy_reference(logits, np.array([0, 2])), rtol=1e-12)


@given(
    x=hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 4), st.integers(2, 4)),
        elements=st.one_of(st.sampled_from([-1e4, 1e4]), st.floats(-1e4, 1e4, width=32)),
    ),
    data=st.data(),
)
def test_cross_entropy_stays_finite_at_extreme_logits(x, data):
    targets = data.draw(hnp.arrays(np.int64, x.shape[0], elements=st.integers(0, x.shape[1] - 1)))
    t = Tensor(x)
    loss = F.cross_entropy(t, targets)
    assert loss.dtype == np.float32
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), cross_entropy_reference(x, targets), rtol=1e-5, atol=1e-2)
    loss.backward()
    assert np.all(np.isfinite(t.grad))
    np.testing.assert_allclose(t.grad.sum(axis=-1), 0.0, atol=1e-6)  # softmax minus one-hot, per row


def test_cross_entropy_extreme_known_values():
    logits = Tensor(np.array([[1e4, -1e4], [1e4, -1e4]], dtype=np.float32))
    loss = F.cross_entropy(logits, np.array([1, 0]))  # one position maximally wrong, one right
    np.testing.assert_allclose(loss.item(), (2e4 + 0.0) / 2, rtol=1e-6)
    loss.backward()
    np.testing.assert_allclose(logits.grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-6)


def test_cross_entropy_rejects_mismatched_targets_naming_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 3\)"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\(3, 2\).*\(2, 3, 5\)"):  # as many targets, in the wrong shape
        F.cross_entropy(Tensor(np.zeros((2, 3, 5))), np.zeros((3, 2), dtype=int))


def test_cross_entropy_refuses_fractional_targets():
    with pytest.raises(ValueError, match="whole numbers"):
        F.cross_entropy(Tensor(np.zeros((1, 5))), [2.7])
    assert np.isclose(F.cross_entropy(Tensor(np.zeros((1, 5))), [2.0]).item(), np.log(5))


@pytest.mark.parametrize("bad", [3, -1])
def test_cross_entropy_rejects_a_target_outside_the_vocabulary(bad):
    with pytest.raises(ValueError, match="outside"):
        F.cross_entropy(Tensor(np.zeros((2, 3))), np.array([0, bad]))


def test_cross_entropy_with_every_target_ignored_backpropagates_zero():
    """Nothing is left to average: the loss is nan by design, but backward must still run (a fully padded
    batch must not crash training) and send no gradient anywhere, as for any ignored position."""
    logits = Tensor(np.zeros((2, 3)))
    loss = F.cross_entropy(logits, np.array([-100, -100]), ignore_index=-100)
    assert np.isnan(loss.item())
    loss.backward()
    np.testing.assert_array_equal(logits.grad, np.zeros((2, 3)))


# ----- rms_norm ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("with_weight", [False, True])
@given(data=st.data(), shape=shapes(min_dims=1), eps=st.sampled_from([1e-5, 1e-2]), seed=seeds)
def test_rms_norm(with_weight, data, shape, eps, seed):
    x = data.draw(nonzero_arrays(shape, 0.2, 3.0), label="x")
    w = data.draw(arrays(shape[-1:]), label="weight") if with_weight else None
    out = F.rms_norm(Tensor(x), None if w is None else Tensor(w), eps=eps)
    np.testing.assert_allclose(out.data, rms_norm_reference(x, w, eps), rtol=1e-12, atol=1e-12)
    if with_weight:
        check_gradients(lambda t, tw: F.rms_norm(t, tw, eps=eps), [x, w], seed=seed)
    else:
        check_gradients(lambda t: F.rms_norm(t, eps=eps), [x], seed=seed)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("norm_first", [False, True])
def test_rms_norm_adds_in_the_gradient_its_input_already_has(threads, norm_first, split_every_op):
    """x feeds rms_norm and another op (a residual stream): rms_norm's backward takes what x has received so
    far out of the walk and adds it in its own pass. Either order of the two, split or not, gives the sum."""
    from microgpt.autograd import parallel

    rng = np.random.default_rng(3)
    data, upstream = rng.normal(size=(601, 64)), rng.normal(size=(601, 64))
    alone = Tensor(data)
    F.rms_norm(alone).backward(upstream)
    expected = alone.grad + 3.0 * upstream
    parallel.set_threads(threads)
    try:
        x = Tensor(data)
        out = F.rms_norm(x) + x * 3.0 if norm_first else x * 3.0 + F.rms_norm(x)
        out.backward(upstream)
        np.testing.assert_allclose(x.grad, expected, rtol=1e-12, atol=1e-12)
        out.backward(upstream)  # a second pass adds to the first
        np.testing.assert_allclose(x.grad, 2 * expected, rtol=1e-12, atol=1e-12)
    finally:
        parallel.set_threads(0)


def test_rms_norm_of_zeros_is_zero_with_a_finite_gradient():
    x = Tensor(np.zeros((2, 4)))
    out = F.rms_norm(x)
    np.testing.assert_array_equal(out.data, np.zeros((2, 4)))
    out.backward(np.ones((2, 4)))
    assert np.all(np.isfinite(x.grad))
    np.testing.assert_allclose(x.grad, 1.0 / math.sqrt(1e-5))


# ----- scaled_dot_product_attention --------------------------------------------------------------------
@st.composite
def attention_shapes(draw, shorter_queries: bool = False):
    """(q_shape, kv_shape): leading dims (B, H, or none) up to 2 each, Tq <= Tk <= 4, D <= 4."""
    lead = draw(shapes(max_dims=2, max_side=2))
    tk = draw(st.integers(2 if shorter_queries else 1, 4))
    tq = draw(st.integers(1, tk - 1 if shorter_queries else tk))
    d = draw(st.integers(1, 4))
    return lead + (tq, d), lead + (tk, d)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shorter_queries", [False, True], ids=["Tq<=Tk", "Tq<Tk"])
@given(data=st.data(), seed=seeds)
def test_attention(causal, shorter_queries, data, seed):
    q_shape, kv_shape = data.draw(attention_shapes(shorter_queries), label="shapes")
    q = data.draw(arrays(q_shape, -2, 2), label="q")
    k = data.draw(arrays(kv_shape, -2, 2), label="k")
    v = data.draw(arrays(kv_shape, -2, 2), label="v")
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
    assert out.shape == q_shape
    np.testing.assert_allclose(out.data, attention_reference(q, k, v, causal), rtol=1e-10, atol=1e-12)
    check_gradients(
        lambda tq, tk, tv: F.scaled_dot_product_attention(tq, tk, tv, causal=causal), [q, k, v], seed=seed
    )


@given(data=st.data())
def test_causal_attention_ignores_keys_and_values_from_the_future(data):
    q_shape, kv_shape = data.draw(attention_shapes(), label="shapes")
    q, k, v = (
        data.draw(arrays(s, -2, 2), label=n) for s, n in [(q_shape, "q"), (kv_shape, "k"), (kv_shape, "v")]
    )
    tq, tk = q_shape[-2], kv_shape[-2]
    query = data.draw(st.integers(0, tq - 1), label="query")
    position = tk - tq + query
    k2, v2 = k.copy(), v.copy()
    k2[..., position + 1 :, :] += 5.0
    v2[..., position + 1 :, :] -= 7.0
    before = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v)).data[..., query, :]
    after = F.scaled_dot_product_attention(Tensor(q), Tensor(k2), Tensor(v2)).data[..., query, :]
    np.testing.assert_allclose(after, before, rtol=1e-12, atol=1e-12)


@given(data=st.data(), tk=st.integers(1, 4), d=st.integers(1, 4))
def test_a_single_causal_query_sees_every_key(data, tk, d):
    """The KV-cached decoding step: one query at the last position attends to the whole cache."""
    q = data.draw(arrays((1, 1, 1, d), -2, 2), label="q")
    k = data.draw(arrays((1, 1, tk, d), -2, 2), label="k")
    v = data.draw(arrays((1, 1, tk, d), -2, 2), label="v")
    causal = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=True).data
    full = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=False).data
    np.testing.assert_allclose(causal, full, rtol=1e-12)


@pytest.mark.parametrize("causal", [True, False])
@given(
    data=st.data(),
    leads=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=2, max_side=2),
    tk=st.integers(1, 4),
    d=st.integers(1, 3),
    dv=st.integers(1, 3),
    seed=seeds,
)
def test_attention_broadcasts_batch_dims_and_allows_another_value_width(causal, data, leads, tk, d, dv, seed):
    """q, k and v may differ in leading dims that broadcast (e.g. one k, v shared by every head) and v's
    width may differ from q's and k's."""
    q_lead, k_lead, v_lead = leads.input_shapes
    tq = data.draw(st.integers(1, tk), label="tq")
    q = data.draw(arrays(q_lead + (tq, d), -2, 2), label="q")
    k = data.draw(arrays(k_lead + (tk, d), -2, 2), label="k")
    v = data.draw(arrays(v_lead + (tk, dv), -2, 2), label="v")
    out = F.scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal)
    assert out.shape == leads.result_shape + (tq, dv)
    np.testing.assert_allclose(out.data, attention_reference(q, k, v, causal), rtol=1e-10, atol=1e-12)
    check_gradients(
        lambda tq_, tk_, tv_: F.scaled_dot_product_attention(tq_, tk_, tv_, causal=causal),
        [q, k, v],
        seed=seed,
    )


# ----- big inputs: the ops split their rows over threads (microgpt.autograd.parallel) ----------------------
@pytest.fixture
def set_threads():
    """parallel.set_threads, with the default thread count restored after the test."""
    yield parallel.set_threads
    parallel.set_threads(0)


def _run(fn, arrays_in, upstream):
    tensors = [Tensor(a) for a in arrays_in]
    out = fn(*tensors)
    out.backward(upstream)
    return out.data, [t.grad for t in tensors]


def test_cross_entropy_split_over_threads_matches_the_reference(set_threads, split_every_op):
    set_threads(3)  # an uneven three-way split whatever the machine's core count
    rng = np.random.default_rng(0)
    n, vocab = 601, 512  # 601 rows split unevenly
    logits = rng.normal(0.0, 3.0, (n, vocab))
    targets = rng.integers(0, vocab, n)
    targets[::7] = -1
    t = Tensor(logits)
    loss = F.cross_entropy(t, targets, ignore_index=-1)
    np.testing.assert_allclose(loss.item(), cross_entropy_reference(logits, targets, -1), rtol=1e-10)
    loss.backward()
    kept = targets != -1
    probs = softmax_reference(logits, -1)
    expected = np.where(kept[:, None], probs, 0.0)
    expected[np.flatnonzero(kept), targets[kept]] -= 1.0
    np.testing.assert_allclose(t.grad, expected / kept.sum(), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_split_over_threads_matches_one_thread(causal, set_threads, split_every_op):
    rng = np.random.default_rng(1)
    b, h, tq, tk, d = 1, 7, 200, 229, 8  # 7 heads split over the threads; queries are the last 200 positions
    q, k, v = (rng.normal(0.0, 1.0, (b, h, n, d)) for n in (tq, tk, tk))
    upstream = rng.normal(0.0, 1.0, (b, h, tq, d))

    def attend(tq_, tk_, tv_):
        return F.scaled_dot_product_attention(tq_, tk_, tv_, causal=causal)

    set_threads(3)  # an uneven three-way split whatever the machine's core count
    split_out, split_grads = _run(attend, [q, k, v], upstream)
    set_threads(1)
    one_out, one_grads = _run(attend, [q, k, v], upstream)
    np.testing.assert_allclose(split_out, attention_reference(q, k, v, causal), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(split_out, one_out, rtol=1e-12, atol=1e-15)
    for name, split, one in zip("qkv", split_grads, one_grads):
        np.testing.assert_allclose(split, one, rtol=1e-12, atol=1e-15, err_msg=f"gradient of {name}")


# ----- rotary position embedding -------------------------------------------------------------------------
def rotary_reference(qkv: np.ndarray, n_head: int, positions: np.ndarray) -> np.ndarray:
    """RoPE written out in real arithmetic: in each head of q and k, dims (2j, 2j + 1) at position p turned by
    the angle p * 10000^(-2j/D); v untouched."""
    *lead, c3 = qkv.shape
    d = c3 // 3 // n_head
    heads = qkv.reshape(*lead, 3, n_head, d // 2, 2).copy()
    angle = np.asarray(positions, dtype=np.float64)[..., None] * 10000.0 ** (-np.arange(0, d, 2) / d)
    cos, sin = np.cos(angle)[..., None, None, :], np.sin(angle)[..., None, None, :]  # over (3, heads, pairs)
    a, b = heads[..., :2, :, :, 0].copy(), heads[..., :2, :, :, 1].copy()
    heads[..., :2, :, :, 0] = a * cos[..., 0:1, :, :] - b * sin[..., 0:1, :, :]
    heads[..., :2, :, :, 1] = a * sin[..., 0:1, :, :] + b * cos[..., 0:1, :, :]
    return heads.reshape(qkv.shape)


@st.composite
def rotary_inputs(draw):
    """qkv (B, T, 3C) with C = heads x an even head width, and positions (T,) or per row (B, T)."""
    b, t, heads, half = (draw(st.integers(1, n)) for n in (2, 3, 2, 2))
    qkv = draw(arrays((b, t, 3 * heads * 2 * half), -2, 2))
    per_row = draw(st.booleans())
    positions = draw(hnp.arrays(np.int64, (b, t) if per_row else (t,), elements=st.integers(0, 300)))
    return qkv, heads, positions


@given(inputs=rotary_inputs(), seed=seeds)
def test_rotary_turns_q_and_k_pairs_by_position_and_its_gradient_is_the_turn_back(inputs, seed):
    qkv, heads, positions = inputs
    turns = F.rotary_turns(positions, qkv.shape[-1] // 3 // heads, heads, qkv.dtype)
    np.testing.assert_allclose(F.rotary(Tensor(qkv), turns).data, rotary_reference(qkv, heads, positions),
                               rtol=1e-10, atol=1e-12)
    check_gradients(lambda t: F.rotary(t, turns), [qkv], seed=seed)


@given(q=arrays((1, 1, 6), -2, 2), k=arrays((1, 1, 6), -2, 2), p=st.integers(0, 200), s=st.integers(0, 200),
       shift=st.integers(0, 200))
def test_rotary_scores_depend_on_the_distance_between_positions_only(q, k, p, s, shift):
    """q at p against k at s scores the same as at p + shift and s + shift: attention sees offsets."""

    def score(at_q: int, at_k: int) -> float:
        qkv_q = np.concatenate([q, np.zeros((1, 1, 6)), np.zeros((1, 1, 6))], axis=-1)
        qkv_k = np.concatenate([np.zeros((1, 1, 6)), k, np.zeros((1, 1, 6))], axis=-1)
        turned_q = F.turn_qk(qkv_q, F.rotary_turns(np.array([at_q]), 6, 1, np.float64))[..., :6]
        turned_k = F.turn_qk(qkv_k, F.rotary_turns(np.array([at_k]), 6, 1, np.float64))[..., 6:12]
        return float((turned_q * turned_k).sum())

    assert score(p + shift, s + shift) == pytest.approx(score(p, s), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("x", [np.arange(12).reshape(3, 4), np.arange(1.0, 5.0, dtype=np.float32),
                               np.linspace(-2, 2, 24).reshape(2, 3, 4)])
def test_rms_rows_divides_each_row_by_its_root_mean_square(x):
    """Generation's plain-array RMSNorm, on any shape and dtype: integers come out as float64, floats keep theirs."""
    got = F.rms_rows(x)
    expected = x / np.sqrt((np.asarray(x, dtype=np.float64) ** 2).mean(axis=-1, keepdims=True) + F.RMS_EPS)
    assert got.dtype == (np.float64 if x.dtype.kind == "i" else x.dtype) and got.shape == x.shape
    np.testing.assert_allclose(got, expected, rtol=1e-6)
