"""The hand-written NumPy step that `bench` times must compute what the autograd step computes."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt.autograd import functional as F
from microgpt.bench.reference import ReferenceStep
from microgpt.nn import GPT, Adam, GPTConfig


@pytest.mark.parametrize("n_layer", [1, 2])
def test_reference_step_matches_the_autograd_step_in_float64(n_layer):
    config = GPTConfig(zero_init=False, vocab_size=29, n_layer=n_layer, n_embd=12, n_head=3, block_size=7)
    model = GPT(config, dtype=np.float64, seed=1)
    reference = ReferenceStep(model, lr=1e-2)
    optimizer = Adam(model.parameters(), lr=1e-2)
    tokens = np.random.default_rng(2).integers(0, config.vocab_size, (2, config.block_size + 1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    for _ in range(2):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        assert reference(x, y) == pytest.approx(loss.item(), rel=1e-10)
    ours = model.state_dict()
    for name, value in reference.model.state_dict().items():
        np.testing.assert_allclose(value, ours[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_reference_step_refuses_an_architecture_it_does_not_cover():
    with pytest.raises(ValueError, match="relu"):
        ReferenceStep(GPT(GPTConfig(zero_init=False, vocab_size=11, n_embd=8, n_head=2, block_size=4, activation="gelu")))
