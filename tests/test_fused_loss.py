"""F.linear_cross_entropy, the fused output layer + loss that GPT.loss and the trainer run: it must equal
cross_entropy(linear(x, W)) in value and in both gradients, block by block, with ignored targets too.

LOSS_BLOCK_ROWS is patched down so that a handful of rows already spans several row blocks (and a last,
partial one): the block loop is then exercised at gradcheck-sized inputs.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from strategies import check_gradients

from microgpt.autograd import Tensor, functional, no_grad

F = functional

ROWS, N_IN, VOCAB = (2, 5), 4, 6  # 10 rows of 4 features, 6 classes


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> int:
    """Three rows per block: the 10 rows above become blocks of 3 + 3 + 3 + 1."""
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", 3)
    return 3


def problem(seed: int, ignore_index: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, W, targets); with ignore_index, about a third of the targets are ignored (never all of them)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, (*ROWS, N_IN))
    weight = rng.normal(0.0, 1.0, (VOCAB, N_IN))
    targets = rng.integers(0, VOCAB, ROWS)
    if ignore_index is not None:
        ignored = rng.random(ROWS) < 0.35
        ignored[0, 0] = False
        ignored[1, -1] = True  # the last, partial block holds an ignored row
        targets[ignored] = ignore_index
    return x, weight, targets


def unfused(x: Tensor, weight: Tensor, targets: np.ndarray, ignore_index: int | None) -> Tensor:
    return F.cross_entropy(F.linear(x, weight), targets, ignore_index=ignore_index)


def forward_and_grads(fn, x: np.ndarray, weight: np.ndarray, upstream: float) -> tuple[float, np.ndarray, np.ndarray]:
    tx, tw = Tensor(x.copy()), Tensor(weight.copy())
    loss = fn(tx, tw)
    loss.backward(np.asarray(upstream, dtype=loss.dtype))
    return loss.item(), tx.grad, tw.grad


@pytest.mark.parametrize("ignore_index", [None, -1, 2], ids=["all-kept", "ignore=-1", "ignore=class-2"])
@pytest.mark.parametrize("seed", [0, 1])
def test_linear_cross_entropy_passes_gradcheck_across_row_blocks(small_blocks, ignore_index, seed):
    x, weight, targets = problem(seed, ignore_index)
    assert targets.size > 3 * small_blocks  # more than three blocks
    check_gradients(lambda tx, tw: F.linear_cross_entropy(tx, tw, targets, ignore_index=ignore_index),
                    [x, weight], seed=seed)


@pytest.mark.parametrize("block_rows", [1, 3, 4, 128], ids=lambda n: f"block{n}")
@pytest.mark.parametrize("ignore_index", [None, -1])
def test_linear_cross_entropy_equals_cross_entropy_of_linear(monkeypatch, block_rows, ignore_index):
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", block_rows)
    x, weight, targets = problem(7, ignore_index)
    fused = forward_and_grads(lambda a, b: F.linear_cross_entropy(a, b, targets, ignore_index), x, weight, 1.7)
    plain = forward_and_grads(lambda a, b: unfused(a, b, targets, ignore_index), x, weight, 1.7)
    assert fused[0] == pytest.approx(plain[0], rel=1e-12)
    np.testing.assert_allclose(fused[1], plain[1], rtol=1e-10, atol=1e-14, err_msg="dL/dx")
    np.testing.assert_allclose(fused[2], plain[2], rtol=1e-10, atol=1e-14, err_msg="dL/dW")
    if ignore_index is not None:  # an ignored row's input gets exactly no gradient
        assert np.all(fused[1][targets == ignore_index] == 0.0)


def test_linear_cross_entropy_without_grad_gives_the_same_loss(small_blocks):
    x, weight, targets = problem(3, -1)
    with no_grad():
        quiet = F.linear_cross_entropy(Tensor(x), Tensor(weight), targets, ignore_index=-1)
    assert quiet.item() == pytest.approx(unfused(Tensor(x), Tensor(weight), targets, -1).item(), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_stays_finite_at_huge_logits(small_blocks, dtype):
    """Logits near +-1e4 overflow exp() unless each row is shifted by its maximum first."""
    x, weight, targets = problem(4, None)
    x = (x * 2000.0).astype(dtype)
    weight = weight.astype(dtype)
    fused = forward_and_grads(lambda a, b: F.linear_cross_entropy(a, b, targets), x, weight, 1.0)
    plain = forward_and_grads(lambda a, b: unfused(a, b, targets, None), x, weight, 1.0)
    assert np.isfinite(fused[0]) and fused[0] > 0.0
    assert fused[0] == pytest.approx(plain[0], rel=1e-5)
    for ours, reference in zip(fused[1:], plain[1:]):
        assert np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_cross_entropy_shifts_the_blocks_far_from_zero_and_keeps_ignored_rows_out(small_blocks, dtype):
    """Rows whose every logit is about -100 make unshifted sums that underflow to 0 (log 0 = -inf), rows at
    about +100 overflow: with blocks of both kinds, some holding ignored rows, the loss and both gradients
    stay those of the unfused pair and no overflow warning escapes."""
    x, weight, targets = problem(6, -1)
    offset = np.zeros(ROWS)
    offset.reshape(-1)[:3], offset.reshape(-1)[6:9] = -100.0, 100.0  # first block far below zero, third far above
    x = np.concatenate([x, offset[..., None]], axis=-1).astype(dtype)  # a feature that adds `offset` to every logit
    weight = np.concatenate([weight, np.ones((VOCAB, 1))], axis=1).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fused = forward_and_grads(lambda a, b: F.linear_cross_entropy(a, b, targets, -1), x, weight, 1.0)
    plain = forward_and_grads(lambda a, b: unfused(a, b, targets, -1), x, weight, 1.0)
    assert np.isfinite(fused[0]) and fused[0] == pytest.approx(plain[0], rel=1e-5)
    for ours, reference in zip(fused[1:], plain[1:]):
        np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_linear_cross_entropy_with_every_target_ignored_is_nan_with_zero_gradients(small_blocks):
    x, weight, _ = problem(5, None)
    targets = np.full(ROWS, -1)
    loss, gx, gw = forward_and_grads(lambda a, b: F.linear_cross_entropy(a, b, targets, -1), x, weight, 1.0)
    assert np.isnan(loss)
    assert not np.any(gx) and not np.any(gw)
