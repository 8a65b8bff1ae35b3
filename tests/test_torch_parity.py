"""The same model, batch and optimiser in PyTorch must give the same numbers: loss and every gradient,
an Adam trajectory, float32 logits, the KV-cached path, and the fused ops one by one.

PyTorch is never a dependency of microgpt. CI installs it (.ci/run), so under CI a missing torch fails this
file; elsewhere the file is skipped, with the reason shown by -rs.
"""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest

try:
    import torch
except ImportError:
    if os.environ.get("CI"):
        pytest.fail("CI is set but PyTorch is not installed: .ci/run installs torch==2.13.0 so that these "
                    "parity tests run in CI", pytrace=False)
    pytest.skip("PyTorch is not installed: the parity tests compare against it (it is never a dependency; "
                "`pip install torch==2.13.0` to run them)", allow_module_level=True)
TF = torch.nn.functional

from microgpt.autograd import Tensor, no_grad
from microgpt.autograd import attention as A
from microgpt.autograd import functional as F
from microgpt.bench.torch_gpt import TorchGPT
from microgpt.nn import GPT, Adam, GPTConfig

CONFIG = GPTConfig(vocab_size=23, n_layer=2, n_embd=16, n_head=4, block_size=8, zero_init=False)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are tiny: extra threads only add hand-offs (and contend with other test workers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def batch(seed: int = 0, size: int = 3) -> tuple[np.ndarray, np.ndarray]:
    tokens = np.random.default_rng(seed).integers(0, CONFIG.vocab_size, (size, CONFIG.block_size + 1))
    return tokens[:, :-1], tokens[:, 1:]


def torch_loss(model: TorchGPT, x: np.ndarray, y: np.ndarray):
    logits = model(torch.tensor(x))
    return TF.cross_entropy(logits.reshape(-1, CONFIG.vocab_size), torch.tensor(y).reshape(-1))


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / max(np.linalg.norm(theirs), 1e-300))


# ----- the whole model ------------------------------------------------------------------------------------------
def test_loss_and_every_parameter_gradient_match_torch_in_float64():
    ours = GPT(CONFIG, dtype=np.float64, seed=0)
    theirs = TorchGPT(CONFIG, ours.state_dict(), torch.float64)
    x, y = batch()
    loss = F.cross_entropy(ours(x), y)
    loss.backward()
    reference = torch_loss(theirs, x, y)
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-6)
    grads = theirs.named_grads()
    assert set(grads) == {name for name, _ in ours.named_parameters()}
    for name, p in ours.named_parameters():
        assert np.abs(grads[name]).max() > 0, name  # every weight takes part
        assert relative_error(p.grad, grads[name]) <= 1e-6, name
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-6, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("attention_block", [2, None], ids=["attention-block-patched-to-2", "shipped-block"])
def test_gpt_loss_and_gradients_match_torch_with_blocked_attention(attention_block, monkeypatch):
    """GPT.loss (fused head and loss, several row blocks) at a block size where attention runs in query
    blocks: three blocks of ATTENTION_BLOCK queries, the last one partial."""
    if attention_block is not None:
        monkeypatch.setattr(A, "ATTENTION_BLOCK", attention_block)
    monkeypatch.setattr(F, "LOSS_BLOCK_ROWS", 5)
    config = replace(CONFIG, block_size=2 * A.ATTENTION_BLOCK + 3)
    ours = GPT(config, dtype=np.float64, seed=7)
    theirs = TorchGPT(config, ours.state_dict(), torch.float64)
    tokens = np.random.default_rng(8).integers(0, config.vocab_size, (2, config.block_size + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    loss = ours.loss(x, y)
    loss.backward()
    reference = TF.cross_entropy(theirs(torch.tensor(x)).reshape(-1, config.vocab_size), torch.tensor(y).reshape(-1))
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-10)
    grads = theirs.named_grads()
    for name, p in ours.named_parameters():
        assert np.abs(grads[name]).max() > 0, name
        np.testing.assert_allclose(p.grad, grads[name], rtol=1e-8, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_twenty_adam_steps_follow_torch_in_float64(weight_decay):
    """weight decay 0: torch.optim.Adam; otherwise torch.optim.AdamW, whose decay is decoupled like ours."""
    ours = GPT(CONFIG, dtype=np.float64, seed=1)
    theirs = TorchGPT(CONFIG, ours.state_dict(), torch.float64)
    hyper = {"lr": 1e-2, "betas": (0.85, 0.99), "eps": 1e-8, "weight_decay": weight_decay}
    optimizer = Adam(ours.parameters(), **hyper)
    torch_optimizer = (torch.optim.AdamW if weight_decay else torch.optim.Adam)(theirs.parameters(), **hyper)
    our_losses, their_losses = [], []
    x, y = batch()
    for _ in range(20):
        optimizer.zero_grad()
        loss = ours.loss(x, y)  # the trainer's path: fused head and loss
        loss.backward()
        optimizer.step()
        torch_optimizer.zero_grad()
        reference = torch_loss(theirs, x, y)
        reference.backward()
        torch_optimizer.step()
        our_losses.append(loss.item())
        their_losses.append(reference.item())
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-6)
    assert their_losses[-1] < their_losses[0] - 0.5  # the trajectory went somewhere
    final = {name: p.detach().numpy() for name, p in theirs.weights.items()}
    for name, p in ours.named_parameters():
        assert relative_error(p.data, final[name.replace(".", "__")]) <= 1e-6, name


def test_float32_logits_agree_with_torch():
    ours = GPT(CONFIG, seed=2)
    theirs = TorchGPT(CONFIG, ours.state_dict(), torch.float32)
    x, y = batch(seed=3)
    with no_grad(), torch.no_grad():
        logits = ours(x)
        reference = theirs(torch.tensor(x))
        assert logits.dtype == np.float32 and reference.dtype == torch.float32
        np.testing.assert_allclose(logits.data, reference.numpy(), rtol=1e-4, atol=1e-4)
        loss = F.cross_entropy(logits, y).item()
        assert loss == pytest.approx(torch_loss(theirs, x, y).item(), rel=1e-4)


def test_kv_cached_steps_agree_with_torch_the_way_bench_runs_them():
    """Prefill the prompt, then one token at a time: both caches must give the full forward's logits."""
    ours = GPT(CONFIG, dtype=np.float64, seed=4)
    theirs = TorchGPT(CONFIG, ours.state_dict(), torch.float64)
    tokens, _ = batch(seed=5, size=1)
    with no_grad(), torch.no_grad():
        cache, torch_cache = ours.new_cache(), [None] * CONFIG.n_layer
        steps = [ours(tokens[:, :3], cache).data[:, -1]]
        torch_steps = [theirs(torch.tensor(tokens[:, :3]), torch_cache)[:, -1].numpy()]
        for t in range(3, CONFIG.block_size):
            steps.append(ours(tokens[:, t:t + 1], cache).data[:, -1])
            torch_steps.append(theirs(torch.tensor(tokens[:, t:t + 1]), torch_cache)[:, -1].numpy())
        full = theirs(torch.tensor(tokens)).numpy()[:, 2:]
    np.testing.assert_allclose(np.stack(steps, axis=1), full, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.stack(torch_steps, axis=1), full, rtol=1e-10, atol=1e-12)


def test_torch_cache_fed_several_tokens_after_a_prefix_matches_its_full_forward():
    ours = GPT(CONFIG, dtype=np.float64, seed=4)
    theirs = TorchGPT(CONFIG, ours.state_dict(), torch.float64)
    tokens, _ = batch(seed=5, size=1)
    with torch.no_grad():
        full = theirs(torch.tensor(tokens)).numpy()
        torch_cache = [None] * CONFIG.n_layer
        head = theirs(torch.tensor(tokens[:, :3]), torch_cache).numpy()
        tail = theirs(torch.tensor(tokens[:, 3:]), torch_cache).numpy()  # 5 new positions after 3 cached
    np.testing.assert_allclose(np.concatenate([head, tail], axis=1), full, rtol=1e-10, atol=1e-12)


# ----- the fused ops ------------------------------------------------------------------------------------------
def ours_and_torch(*arrays: np.ndarray) -> tuple[list[Tensor], list]:
    return ([Tensor(a.copy()) for a in arrays],
            [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays])


@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy_matches_torch(ignore):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((4, 5, 7)) * 3.0
    targets = rng.integers(0, 7, (4, 5))
    if ignore:
        targets[rng.random((4, 5)) < 0.4] = -1
    (x,), (tx,) = ours_and_torch(logits)
    loss = F.cross_entropy(x, targets, ignore_index=-1 if ignore else None)
    reference = TF.cross_entropy(tx.reshape(-1, 7), torch.tensor(targets).reshape(-1), ignore_index=-1)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    loss.backward(np.asarray(1.7))
    (reference * 1.7).backward()
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("gain", [False, True])
def test_rms_norm_matches_torch(gain):
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal((3, 4, 6)) * 2.0] + ([rng.standard_normal(6)] if gain else [])
    ours, theirs = ours_and_torch(*arrays)
    out = F.rms_norm(ours[0], ours[1] if gain else None, eps=1e-5)
    reference = TF.rms_norm(theirs[0], (6,), theirs[1] if gain else None, eps=1e-5)
    np.testing.assert_allclose(out.data, reference.detach().numpy(), rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    reference.backward(torch.tensor(g))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("tq,tk,causal", [(5, 5, True), (5, 5, False), (2, 6, True), (1, 4, True)],
                         ids=["causal", "full", "cached-causal", "one-query"])
def test_scaled_dot_product_attention_matches_torch(tq, tk, causal):
    """A query block shorter than the keys sits at the end (the cached case), so its mask is built
    explicitly for torch: query i sees keys up to tk - tq + i."""
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((2, 3, tq, 4)), rng.standard_normal((2, 3, tk, 4)),
              rng.standard_normal((2, 3, tk, 4))]
    (q, k, v), (tq_, tk_, tv_) = ours_and_torch(*arrays)
    out = F.scaled_dot_product_attention(q, k, v, causal=causal)
    mask = torch.tensor(np.tril(np.ones((tq, tk), dtype=bool), k=tk - tq)) if causal else None
    reference = TF.scaled_dot_product_attention(tq_, tk_, tv_, attn_mask=mask)
    np.testing.assert_allclose(out.data, reference.detach().numpy(), rtol=1e-10, atol=1e-13)
    g = rng.standard_normal(out.shape)
    out.backward(g)
    reference.backward(torch.tensor(g))
    for name, a, b in (("q", q, tq_), ("k", k, tk_), ("v", v, tv_)):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-10, atol=1e-13, err_msg=name)
