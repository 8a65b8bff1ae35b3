"""SlotCache: sequences of different lengths decoded together give each sequence's own logits."""

from __future__ import annotations

import numpy as np
import pytest

from microgpt.autograd import no_grad
from microgpt.nn import GPT, GPTConfig
from microgpt.nn.slots import slot_cache_for


@pytest.fixture(scope="module")
def model() -> GPT:
    return GPT(GPTConfig(zero_init=False, vocab_size=50, n_layer=2, n_embd=16, n_head=2, block_size=24), dtype=np.float64, seed=0)


def _alone(model: GPT, ids: list[int]) -> np.ndarray:
    """Logits after each of the last tokens, computed by one full forward pass of the sequence alone."""
    with no_grad():
        return model(np.asarray([ids])).data[0]


def test_rows_of_different_lengths_match_their_own_full_forward(model: GPT) -> None:
    rng = np.random.default_rng(0)
    prompts = [list(rng.integers(0, 50, n)) for n in (3, 7, 1)]
    steps = 5
    futures = [list(rng.integers(0, 50, steps)) for _ in prompts]
    slots = slot_cache_for(model, 4)
    with no_grad():
        for prompt in prompts:
            cache = model.new_cache(1)
            model(np.asarray([prompt]), cache)
            slots.add(cache)
        for step in range(steps):
            logits = model(np.asarray([[f[step]] for f in futures]), slots).data[:, 0]
            for row, (prompt, future) in enumerate(zip(prompts, futures)):
                expected = _alone(model, prompt + future[:step + 1])[-1]
                np.testing.assert_allclose(logits[row], expected, atol=1e-10)


def test_removing_a_row_moves_the_last_one_into_its_slot(model: GPT) -> None:
    slots = slot_cache_for(model, 3)
    prompts = [[1, 2], [3, 4, 5], [6]]
    with no_grad():
        for prompt in prompts:
            cache = model.new_cache(1)
            model(np.asarray([prompt]), cache)
            slots.add(cache)
        assert slots.remove(0) == 2 and slots.n == 2 and slots.free == 1
        logits = model(np.asarray([[7], [8]]), slots).data[:, 0]
    np.testing.assert_allclose(logits[0], _alone(model, [6, 7])[-1], atol=1e-10)  # row 2 now lives in slot 0
    np.testing.assert_allclose(logits[1], _alone(model, [3, 4, 5, 8])[-1], atol=1e-10)


def test_a_full_row_is_refused(model: GPT) -> None:
    slots = slot_cache_for(model, 1)
    with no_grad():
        cache = model.new_cache(1)
        model(np.asarray([list(range(24))]), cache)
        slots.add(cache)
        with pytest.raises(ValueError, match="block_size"):
            model(np.asarray([[1]]), slots)
