"""The fast paths of the fused ops give what their plain definitions give: the fused output layer + loss
against linear then cross_entropy (with and without the skipped softmax shift, one block and many), and
cross_entropy in many small blocks. Gradients are checked against finite differences in float64.
"""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import pytest
from strategies import check_gradients

from microgpt.autograd import Tensor
from microgpt.autograd import attention as A
from microgpt.autograd import functional as F


def _unfused(x, w, targets, ignore_index=None):
    """The plain ops: logits from Tensor matmul (not F.linear, whose output cross_entropy would fuse with)."""
    return F.cross_entropy(x @ w.T, targets, ignore_index=ignore_index)


@pytest.mark.parametrize("vocab", [7, 25])  # 25 >= WIDE_OUTPUT * 3: the logits are Deferred until read
def test_linear_logits_used_twice_get_both_gradients(vocab):
    """The fused loss bypasses the logits node; another use of the same logits still sends its gradient."""
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(5, 3)), rng.normal(size=(vocab, 3))
    targets = rng.integers(0, vocab, 5)

    def both(xt, wt):
        logits = F.linear(xt, wt)
        return F.cross_entropy(logits, targets) + (logits * logits).mean() * 0.1

    def both_plain(xt, wt):
        logits = xt @ wt.T
        return F.cross_entropy(logits, targets) + (logits * logits).mean() * 0.1

    fused, plain = [Tensor(x), Tensor(w)], [Tensor(x), Tensor(w)]
    both(*fused).backward()
    both_plain(*plain).backward()
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-10)
    check_gradients(both, [x, w])


@pytest.mark.parametrize("route", ["linear_cross_entropy", "cross_entropy of linear"])
@pytest.mark.parametrize("block_rows", [128, 3])
@pytest.mark.parametrize("scale", [0.3, 30.0])  # small logits skip the shift by the max; big ones need it
@pytest.mark.parametrize("vocab", [9, 50])  # 50 >= WIDE_OUTPUT * 6: F.linear's logits are Deferred, never made
def test_fused_loss_equals_linear_then_cross_entropy(monkeypatch, route, block_rows, scale, vocab):
    """The fused op, and cross_entropy of F.linear's logits (which takes the fused route), match the plain ops."""
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", block_rows)
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, scale, (2, 5, 6))
    w = rng.normal(0.0, 1.0, (vocab, 6))
    targets = rng.integers(0, vocab, (2, 5))
    targets[0, 1] = -1

    def loss_of(xt, wt):
        if route == "linear_cross_entropy":
            return F.linear_cross_entropy(xt, wt, targets, ignore_index=-1)
        return F.cross_entropy(F.linear(xt, wt), targets, ignore_index=-1)

    fused = [Tensor(x), Tensor(w)]
    plain = [Tensor(x), Tensor(w)]
    loss = loss_of(*fused)
    assert loss._parents == tuple(fused)  # the gradient goes straight to x and W, past the (N, V) logits
    expected = _unfused(*plain, targets, ignore_index=-1)
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-12)
    loss.backward()
    expected.backward()
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-10, atol=1e-14)
    check_gradients(loss_of, [x, w])


def test_wide_logits_are_made_only_when_read_and_from_the_weights_of_their_forward():
    """An output layer's logits wait (Deferred): the loss never makes them; a later read, and a loss taken
    later, get the values of the forward that made them, even after in-place changes of W and x (an
    optimizer step); no_grad computes at once."""
    from microgpt.autograd import no_grad
    from microgpt.autograd.deferred import Deferred

    assert F.WIDE_OUTPUT * 3 <= 25
    rng = np.random.default_rng(5)
    x, w = Tensor(rng.normal(size=(2, 4, 3))), Tensor(rng.normal(size=(25, 3)))
    targets = rng.integers(0, 25, (2, 4))
    expected = x.data @ w.data.T
    expected_loss = _unfused(Tensor(x.data), Tensor(w.data), targets).item()
    logits = F.linear(x, w)
    assert logits.pending and logits.shape == (2, 4, 25) and logits.dtype == x.dtype and len(logits) == 2
    assert logits.ndim == 3 and logits.size == 200
    loss = F.cross_entropy(logits, targets)
    assert logits.pending  # the loss went the fused way, block by block, without them
    loss.backward()
    w.data -= 0.5 * w.grad  # a step, in place
    x.data *= 2.0
    later = F.cross_entropy(logits, targets)  # a loss taken after the step, from the forward's logits
    assert logits.pending
    np.testing.assert_allclose([loss.item(), later.item()], expected_loss, rtol=1e-6)
    np.testing.assert_allclose(logits.data, expected, rtol=1e-6)
    assert not logits.pending
    logits.data = logits.data.reshape(8, 25)  # a value set by hand: shape and dtype follow it
    assert logits.shape == (8, 25) and len(logits) == 8
    with no_grad():
        assert not isinstance(F.linear(x, w), Deferred)


def test_linear_cross_entropy_with_an_upstream_gradient_scales_both_gradients():
    rng = np.random.default_rng(1)
    x, w = Tensor(rng.normal(size=(4, 3))), Tensor(rng.normal(size=(5, 3)))
    targets = np.array([0, 4, 2, 1])
    (F.linear_cross_entropy(x, w, targets) * 2.5).backward()
    x2, w2 = Tensor(x.data), Tensor(w.data)
    (_unfused(x2, w2, targets) * 2.5).backward()
    np.testing.assert_allclose(x.grad, x2.grad, rtol=1e-12)
    np.testing.assert_allclose(w.grad, w2.grad, rtol=1e-12)


@pytest.mark.parametrize("block_rows", [1, 4])
def test_cross_entropy_in_small_blocks_matches_one_block(monkeypatch, block_rows):
    rng = np.random.default_rng(2)
    logits = rng.normal(0.0, 4.0, (11, 7))
    targets = rng.integers(0, 7, 11)
    whole = Tensor(logits)
    loss = F.cross_entropy(whole, targets)
    loss.backward()
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", block_rows)
    blocked = Tensor(logits)
    loss_blocked = F.cross_entropy(blocked, targets)
    loss_blocked.backward()
    np.testing.assert_allclose(loss_blocked.item(), loss.item(), rtol=1e-12)
    np.testing.assert_allclose(blocked.grad, whole.grad, rtol=1e-12, atol=1e-15)
    check_gradients(lambda t: F.cross_entropy(t, targets), [logits])


def _attention_plain(q, k, v):
    """softmax(q k^T / sqrt(D) + causal mask) v written out with the generic ops, shift by the max included."""
    tq, tk = q.shape[-2], k.shape[-2]
    scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / np.sqrt(q.shape[-1]))
    future = np.triu(np.ones((tq, tk), dtype=bool), k=tk - tq + 1)
    scores = scores.masked_fill(future, -np.inf)
    return F.softmax(scores, axis=-1) @ v


@pytest.mark.parametrize("chunk", [1 << 17, 1])  # many slices per cache chunk, or one
@pytest.mark.parametrize("scale", [0.5, 12.0])  # small scores skip the softmax shift; big ones need it
@pytest.mark.parametrize("tq", [9, 4, 1])  # 9: three blocks of 4; 4 or 1 new queries after cached keys
def test_attention_fast_paths_match_the_composed_ops(monkeypatch, chunk, scale, tq):
    monkeypatch.setattr(A, "ATTENTION_BLOCK", 4)
    monkeypatch.setattr(A, "ATTENTION_CHUNK", chunk)
    monkeypatch.setattr(A, "SHIFT_BOUND_MIN", 0)  # these few scores would otherwise always be shifted
    rng = np.random.default_rng(3)
    q = rng.normal(0.0, scale, (2, 3, tq, 5))
    k, v = rng.normal(0.0, scale, (2, 3, 9, 5)), rng.normal(size=(2, 3, 9, 5))
    assert (np.linalg.norm(q, axis=-1).max() * np.linalg.norm(k, axis=-1).max() / np.sqrt(5) > A.SOFTMAX_SAFE) == (
        scale > 1)
    fast = [Tensor(a) for a in (q, k, v)]
    plain = [Tensor(a) for a in (q, k, v)]
    out = F.scaled_dot_product_attention(*fast)
    expected = _attention_plain(*plain)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-10, atol=1e-12)
    upstream = rng.normal(size=out.shape)
    out.backward(upstream)
    expected.backward(upstream)
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-8, atol=1e-10)
    check_gradients(F.scaled_dot_product_attention, [q, k, v])


@pytest.mark.parametrize("scale", [0.5, 40.0])  # big scores: exp would overflow without the shift
def test_attend_newest_equals_causal_attention_of_the_last_query(scale):
    rng = np.random.default_rng(7)
    q, k, v = rng.normal(0.0, scale, (2, 3, 1, 5)), rng.normal(0.0, scale, (2, 3, 9, 5)), rng.normal(size=(2, 3, 9, 5))
    expected = _attention_plain(Tensor(q), Tensor(k), Tensor(v)).data
    np.testing.assert_allclose(F.attend_newest(q, k, v), expected, rtol=1e-10, atol=1e-12)
    unseen = np.arange(9)[None, :] > np.array([8, 4])[:, None]  # row 1 sees only its keys 0..4
    masked = F.attend_newest(q, k, v, unseen[:, None, None, :])
    np.testing.assert_allclose(masked[0], expected[0], rtol=1e-10, atol=1e-12)
    row1 = _attention_plain(Tensor(q[1:]), Tensor(k[1:, :, :5]), Tensor(v[1:, :, :5])).data
    np.testing.assert_allclose(masked[1:], row1, rtol=1e-10, atol=1e-12)


def test_a_product_with_no_rows_is_an_empty_result_however_many_threads():
    from microgpt.autograd import parallel

    parallel.set_threads(8)  # reading the weights alone is worth a split: no rows must still mean one part
    try:
        out = F.linear(Tensor(np.zeros((0, 768), dtype=np.float32)), Tensor(np.ones((1000, 768), dtype=np.float32)))
    finally:
        parallel.set_threads(0)
    assert out.shape == (0, 1000)


@pytest.mark.parametrize("threads, work, numpy_calls, parts", [
    (8, 1 << 24, 0, 8),  # big work: one part per thread, past 4
    (8, 1 << 24, 100, 4),  # the same work in parts of 100 NumPy calls each: a fifth part queues at the GIL more
    (8, 1 << 18, 0, 4),  # 262 us: a fifth part saves work/20 = 13 us, less than its 20 us (MORE_PART_WORK)
    (2, 1 << 18, 0, 2),
    (8, 235_000, 0, 3),  # under two first hand-offs (240 us), yet 3 parts end sooner: 78 us each + 140 of hand-offs
    (8, 200_000, 0, 1),  # no split saves more than its hand-offs cost (120 us for the first, 20 for each more)
    (8, 1 << 10, 0, 1),  # small work stays on the calling thread
    (1, 1 << 24, 0, 1),
])
def test_run_split_covers_the_range_once_in_as_many_parts_as_the_work_allows(threads, work, numpy_calls, parts):
    from microgpt.autograd import parallel

    calls: list[tuple[int, int]] = []
    again: list[tuple[int, int]] = []
    parallel.set_threads(threads)
    try:
        parallel.run_split(lambda lo, hi: calls.append((lo, hi)), 1000, work, numpy_calls)
        parallel.run_split(lambda lo, hi: again.append((lo, hi)), 1000, work, numpy_calls)
    finally:
        parallel.set_threads(0)
    assert len(calls) == parts
    ranges = sorted(calls)
    assert ranges[0][0] == 0 and ranges[-1][1] == 1000
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))  # consecutive, no gap, no overlap
    assert sorted(again) == ranges  # the same ranges every time: sums over parts are reproducible
    sizes = [hi - lo for lo, hi in ranges]
    assert sizes[0] == max(sizes)  # the calling thread starts at once: it takes the longest range
    if parts > 1:
        assert sizes[0] > sizes[1] and max(sizes[1:]) - min(sizes[1:]) <= 1  # helpers share the rest evenly


@pytest.mark.parametrize("threads, n, work, parts", [
    (8, 8, 6_000_000, 8),  # 7 parts would leave a part 2 units, as slow as 4 parts: 8 parts or none more
    (6, 8, 1 << 26, 4),  # 5 or 6 parts still leave a part 2 units: 4 parts do as well with fewer hand-offs
    (8, 3, 1 << 26, 3),  # never more parts than units
])
def test_run_split_counts_whole_units_when_there_are_few(threads, n, work, parts):
    from microgpt.autograd import parallel

    calls: list[tuple[int, int]] = []
    parallel.set_threads(threads)
    try:
        parallel.run_split(lambda lo, hi: calls.append((lo, hi)), n, work)
    finally:
        parallel.set_threads(0)
    assert len(calls) == parts
    assert min(calls)[0] == 0 and max(calls)[1] == n
    assert max(hi - lo for lo, hi in calls) == -(-n // parts)


@pytest.mark.parametrize("block", [64, 2])
def test_causal_self_attention_on_packed_qkv_equals_heads_through_the_plain_ops(monkeypatch, block):
    monkeypatch.setattr(A, "ATTENTION_BLOCK", block)
    rng = np.random.default_rng(4)
    B, T, H, D = 2, 5, 3, 2
    packed = rng.normal(size=(B, T, 3 * H * D))
    fast = Tensor(packed)
    out = F.causal_self_attention(fast, H)
    plain = Tensor(packed)
    q, k, v = (plain[:, :, i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3) for i in range(3))
    expected = _attention_plain(q, k, v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-10, atol=1e-12)
    upstream = rng.normal(size=out.shape)
    out.backward(upstream)
    expected.backward(upstream)
    np.testing.assert_allclose(fast.grad, plain.grad, rtol=1e-8, atol=1e-10)
    check_gradients(lambda t: F.causal_self_attention(t, H), [packed])


def test_causal_self_attention_split_over_threads_in_small_chunks_matches_one_thread(monkeypatch, split_every_op):
    """Big enough to split: 7 sequences over three threads, a few per chunk, in blocks of 8 queries; the
    heads are read from and the gradients written into the packed arrays in place."""
    from microgpt.autograd import parallel

    monkeypatch.setattr(A, "ATTENTION_BLOCK", 8)
    monkeypatch.setattr(A, "ATTENTION_CHUNK", 2 * 3 * 40 * 40)  # about two sequences' scores per chunk
    rng = np.random.default_rng(6)
    B, T, H, D = 7, 40, 3, 4
    packed = rng.normal(size=(B, T, 3 * H * D))
    upstream = rng.normal(size=(B, T, H * D))
    results = []
    for threads in (1, 3):
        parallel.set_threads(threads)
        try:
            t = Tensor(packed)
            out = F.causal_self_attention(t, H)
            out.backward(upstream)
            results.append((out.data, t.grad))
        finally:
            parallel.set_threads(0)
    plain = Tensor(packed)
    q, k, v = (plain[:, :, i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3) for i in range(3))
    expected = _attention_plain(q, k, v).transpose(0, 2, 1, 3).reshape(B, T, H * D)
    expected.backward(upstream)
    np.testing.assert_allclose(results[1][0], expected.data, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(results[1][1], plain.grad, rtol=1e-8, atol=1e-10)
    for one, three in zip(*results):
        np.testing.assert_allclose(one, three, rtol=1e-12, atol=1e-14)


def test_run_split_reraises_a_helpers_error_after_every_part_is_done_and_keeps_working():
    """A part that fails must not leave the others running on shared arrays, nor break the next split."""
    from microgpt.autograd import parallel

    finished: list[int] = []

    def last_range_fails(lo: int, hi: int) -> None:
        if hi == 1000:  # a helper's range
            raise ValueError(f"range {lo}:{hi}")
        time.sleep(0.05)  # the others end later: the error must wait for them
        finished.append(lo)

    parallel.set_threads(3)
    try:
        with pytest.raises(ValueError, match="range"):
            parallel.run_split(last_range_fails, 1000, 1 << 24)
        assert len(finished) == 2 and 0 in finished  # the caller's and the other helper's ranges ran to their end
        calls: list[tuple[int, int]] = []
        parallel.run_split(lambda lo, hi: calls.append((lo, hi)), 1000, 1 << 24)
        assert len(calls) == 3 and sum(hi - lo for lo, hi in calls) == 1000
    finally:
        parallel.set_threads(0)


def test_a_split_inside_a_split_or_beside_one_runs_whole_on_its_caller():
    """Only one split has the helpers at a time: a nested one (from a part) and one started by another thread
    meanwhile run on their own caller, so neither waits for helpers that are busy."""
    from microgpt.autograd import parallel

    inner: list[tuple[int, int]] = []
    beside: list[tuple[int, int]] = []
    other = threading.Thread(target=lambda: parallel.run_split(lambda lo, hi: beside.append((lo, hi)), 100, 1 << 24))

    def outer(lo: int, hi: int) -> None:
        if lo == 0:
            parallel.run_split(lambda a, b: inner.append((a, b)), 100, 1 << 24)
            other.start()
            other.join(timeout=10)

    parallel.set_threads(2)
    try:
        parallel.run_split(outer, 1000, 1 << 24)
    finally:
        parallel.set_threads(0)
    assert not other.is_alive()
    assert inner == [(0, 100)] and beside == [(0, 100)]


@pytest.mark.parametrize("rows", [1, 2, 8, F.SKINNY_ROWS, F.SKINNY_ROWS + 1])
@pytest.mark.parametrize("threads", [1, 3])
def test_matmul_rows_few_rows_times_a_wide_matrix_equals_the_plain_product(rows, threads, split_every_op):
    """Few rows through a wide weight are split by columns (one row directly, more by the transposed route);
    the result is the same."""
    from microgpt.autograd import parallel

    rng = np.random.default_rng(rows)
    a, w = rng.normal(size=(rows, 24)), rng.normal(size=(301, 24))  # 301 output columns split unevenly
    parallel.set_threads(threads)
    try:
        np.testing.assert_allclose(F._matmul_rows(a, w.T), a @ w.T, rtol=1e-12, atol=1e-12)
        check_gradients(lambda t, u: F.linear(t, u), [a[:, None, :], w])  # a token per sequence, through linear
    finally:
        parallel.set_threads(0)


@pytest.mark.parametrize("tokens,outputs", [(301, 7), (5, 40)], ids=["tokens-split", "output-rows-split"])
@pytest.mark.parametrize("threads", [1, 3])
def test_weight_gradient_summed_over_token_parts_equals_the_plain_product(tokens, outputs, threads, split_every_op):
    from microgpt.autograd import parallel

    rng = np.random.default_rng(tokens)
    g, x = rng.normal(size=(tokens, outputs)), rng.normal(size=(tokens, 6))
    parallel.set_threads(threads)
    try:
        np.testing.assert_allclose(F._weight_gradient(g, x), g.T @ x, rtol=1e-12, atol=1e-12)
    finally:
        parallel.set_threads(0)


def test_causal_self_attention_refuses_a_width_the_heads_do_not_divide():
    with pytest.raises(ValueError, match="not 3 x n_embd"):
        F.causal_self_attention(Tensor(np.zeros((1, 2, 9))), 2)


def test_relu_rms_norm_and_adam_split_over_threads_match_one_thread(split_every_op):
    from microgpt.autograd import parallel
    from microgpt.nn import Adam, Parameter


    rng = np.random.default_rng(5)
    x = rng.normal(size=(601, 1031))  # 619,631 elements: split unevenly over three threads
    upstream = rng.normal(size=x.shape)
    results = []
    for threads in (1, 3):
        parallel.set_threads(threads)
        try:
            a, b = Tensor(x), Tensor(x)
            relu_out, norm_out = a.relu(), F.rms_norm(b, Tensor(np.linspace(0.5, 1.5, x.shape[1])))
            relu_out.backward(upstream)
            norm_out.backward(upstream)
            p = Parameter(x.copy())
            adam = Adam([p], lr=0.1)
            p.grad = upstream.copy()
            adam.step()
            results.append((relu_out.data, a.grad, norm_out.data, b.grad, p.data.copy()))
        finally:
            parallel.set_threads(0)
    for one, three in zip(*results):
        np.testing.assert_array_equal(one, three)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_partial_sums_add_in_token_order_however_their_rows_are_split(threads, split_every_op):
    from microgpt.autograd import parallel
    from microgpt.autograd.functional import _sum_parts

    rng = np.random.default_rng(8)
    # float32 parts whose sum depends on the order: big terms that cancel, small ones lost beside them
    parts = {lo: (rng.normal(size=(37, 5)) * 10.0 ** rng.integers(-4, 8, size=(37, 5))).astype(np.float32)
             for lo in (0, 96, 512, 300)}
    in_order = parts[0] + parts[96]
    in_order += parts[300]
    in_order += parts[512]
    parallel.set_threads(threads)
    try:
        into = _sum_parts(dict(parts), np.full((37, 5), np.nan, dtype=np.float32))
        first = {lo: a.copy() for lo, a in parts.items()}
        in_place = _sum_parts(first)
        alone = _sum_parts({7: parts[96]}, np.zeros((37, 5), dtype=np.float32))
    finally:
        parallel.set_threads(0)
    np.testing.assert_array_equal(into, in_order)
    assert in_place is first[0]
    np.testing.assert_array_equal(in_place, in_order)
    np.testing.assert_array_equal(alone, parts[96])


@pytest.mark.parametrize("threads", [1, 3])
def test_relu_mlp_equals_linear_relu_linear(threads, split_every_op):
    from microgpt.autograd import parallel


    rng = np.random.default_rng(6)
    shape, hidden = ((2, 3, 4), 6) if threads == 1 else ((601, 64), 600)  # the big one: split over 3 threads
    x, w1, w2 = rng.normal(size=shape), rng.normal(size=(hidden, shape[-1])), rng.normal(size=(5, hidden))
    parallel.set_threads(threads)
    try:
        fused = [Tensor(a) for a in (x, w1, w2)]
        plain = [Tensor(a) for a in (x, w1, w2)]
        out = F.relu_mlp(*fused)
        expected = ((plain[0] @ plain[1].T).relu()) @ plain[2].T  # the plain ops, not F.linear
        upstream = rng.normal(size=out.shape)
        out.backward(upstream)
        expected.backward(upstream)
    finally:
        parallel.set_threads(0)
    np.testing.assert_allclose(out.data, expected.data, rtol=1e-12)
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    if threads == 1:
        check_gradients(F.relu_mlp, [x, w1, w2])


@pytest.mark.parametrize("threads", [1, 3])
def test_relu_mlp_and_linear_gradients_when_each_thread_runs_whole_rows(threads, split_every_op):
    """Past SKINNY_ROWS tokens, relu_mlp's forward and both ops' backwards run every step of a token on one
    thread (one hand-off), adding the weight gradients per thread: checked by finite differences."""
    from microgpt.autograd import parallel

    rng = np.random.default_rng(7)
    x = rng.normal(size=(3, F.SKINNY_ROWS // 3 + 2, 4))  # more tokens than SKINNY_ROWS
    w1, w2 = rng.normal(size=(6, 4)), rng.normal(size=(5, 6))
    parallel.set_threads(threads)
    try:
        check_gradients(F.relu_mlp, [x, w1, w2])
        check_gradients(F.linear, [x, w1])
    finally:
        parallel.set_threads(0)


def test_relu_mlp_names_mismatched_shapes():
    with pytest.raises(ValueError, match="relu_mlp: input shape"):
        F.relu_mlp(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 5))), Tensor(np.ones((3, 4))))
    with pytest.raises(ValueError, match="hidden width 4"):
        F.relu_mlp(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3))), Tensor(np.ones((3, 7))))
