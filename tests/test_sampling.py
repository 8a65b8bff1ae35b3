"""Sampling: each control of next_token_distribution against its definition, and generate() against a
plain full-recomputation decoder (the KV cache must not change a single greedy token)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import seeds

from microgpt.autograd import no_grad
from microgpt.nn import GPT, GPTConfig, SamplingSettings, generate, next_token_distribution
from microgpt.nn.sampling import draw_tokens, next_token_distributions

TINY = GPTConfig(zero_init=False, vocab_size=13, n_layer=2, n_embd=8, n_head=2, block_size=10)


def settings(**overrides) -> SamplingSettings:
    """Plain softmax sampling: every control off unless named."""
    base = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0, "min_new_tokens": 0,
            "max_new_tokens": 8}
    return SamplingSettings(**{**base, **overrides})


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def distinct_logits(seed: int, vocab: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(vocab) * 3.0


class FixedLogits(GPT):
    """A GPT (real cache, real shapes) whose logits are always the given vector: a way to steer decoding."""

    def __init__(self, logits, block_size: int = 16) -> None:
        super().__init__(GPTConfig(zero_init=False, vocab_size=len(logits), n_layer=1, n_embd=4, n_head=1, block_size=block_size),
                         dtype=np.float64, seed=0)
        self.fixed = np.asarray(logits, dtype=np.float64)

    def forward(self, idx, cache=None):
        return super().forward(idx, cache) * 0.0 + self.fixed


class CountingGPT(GPT):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls = 0

    def forward(self, idx, cache=None):
        self.calls += 1
        return super().forward(idx, cache)


# ----- next_token_distribution ----------------------------------------------------------------------------------
@given(seed=seeds, vocab=st.integers(2, 40))
def test_temperature_zero_is_argmax(seed, vocab):
    z = distinct_logits(seed, vocab)
    p = next_token_distribution(z, [], settings(temperature=0.0), 0)
    expected = np.zeros(vocab)
    expected[np.argmax(z)] = 1.0
    np.testing.assert_array_equal(p, expected)


@given(seed=seeds, temperature=st.floats(0.1, 5.0))
def test_temperature_divides_the_logits(seed, temperature):
    z = distinct_logits(seed)
    p = next_token_distribution(z, [], settings(temperature=temperature), 0)
    np.testing.assert_allclose(p, softmax(z / temperature), rtol=1e-10, atol=1e-300)


@given(seed=seeds, k=st.integers(1, 20), temperature=st.floats(0.3, 2.0))
def test_top_k_keeps_exactly_the_k_most_likely(seed, k, temperature):
    z = distinct_logits(seed)
    p = next_token_distribution(z, [], settings(top_k=k, temperature=temperature), 0)
    kept = np.flatnonzero(p)
    assert len(kept) == k
    assert set(kept) == set(np.argsort(-z)[:k])
    np.testing.assert_allclose(p[kept], softmax(z[kept] / temperature), rtol=1e-10)
    assert p.sum() == pytest.approx(1.0)


@given(seed=seeds, top_p=st.floats(0.05, 0.99))
def test_top_p_keeps_the_smallest_most_likely_set_reaching_p(seed, top_p):
    z = distinct_logits(seed)
    full = softmax(z)
    p = next_token_distribution(z, [], settings(top_p=top_p), 0)
    kept = np.flatnonzero(p)
    ranked = np.argsort(-full)
    assert set(kept) == set(ranked[:len(kept)])  # the most likely ones
    mass = np.cumsum(full[ranked])  # mass[i]: the i + 1 most likely tokens together
    assert mass[len(kept) - 1] >= top_p  # reaches p
    assert len(kept) == 1 or mass[len(kept) - 2] < top_p  # one fewer would not
    np.testing.assert_allclose(p[kept], full[kept] / full[kept].sum(), rtol=1e-10)


def test_top_p_with_a_dominant_token_keeps_only_it_and_one_turns_it_off():
    z = np.log(np.array([0.05, 0.9, 0.05]))
    np.testing.assert_allclose(next_token_distribution(z, [], settings(top_p=0.5), 0), [0, 1, 0])
    np.testing.assert_allclose(next_token_distribution(z, [], settings(top_p=1.0), 0), [0.05, 0.9, 0.05])


def test_repetition_penalty_divides_recent_logits_whatever_their_sign():
    z = np.array([2.0, -1.0, 0.5, 1.0, -3.0])
    recent = [0, 1, 1, 4]  # 1 twice: still divided once
    p = next_token_distribution(z, recent, settings(repetition_penalty=2.0), 3)
    np.testing.assert_allclose(p, softmax(np.array([1.0, -0.5, 0.5, 1.0, -1.5])), rtol=1e-12)


def test_repetition_penalty_looks_only_at_the_last_n_tokens():
    z = np.array([2.0, -1.0, 0.5, 1.0])
    p = next_token_distribution(z, [0, 1, 3], settings(repetition_penalty=2.0, repeat_last_n=2), 3)
    np.testing.assert_allclose(p, softmax(np.array([2.0, -0.5, 0.5, 0.5])), rtol=1e-12)
    off = next_token_distribution(z, [0, 1, 3], settings(repetition_penalty=1.0), 3)
    np.testing.assert_allclose(off, softmax(z), rtol=1e-12)


def test_min_new_tokens_forbids_the_stop_ids_until_reached():
    z = np.array([5.0, 1.0, 0.0, 4.0])
    s = settings(min_new_tokens=3, stop_token_ids=(0, 3))
    for n in range(3):
        p = next_token_distribution(z, [], s, n)
        assert p[0] == 0 and p[3] == 0, n
        np.testing.assert_allclose(p[[1, 2]], softmax(np.array([1.0, 0.0])))
    np.testing.assert_allclose(next_token_distribution(z, [], s, 3), softmax(z))
    greedy = settings(temperature=0.0, min_new_tokens=1, stop_token_ids=(0, 3))
    assert np.argmax(next_token_distribution(z, [], greedy, 0)) == 1


def test_the_callers_logits_are_not_changed():
    z = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    next_token_distribution(z, [2], settings(repetition_penalty=2.0, top_k=2, top_p=0.5, temperature=0.5), 0)
    np.testing.assert_array_equal(z, [1.0, 2.0, 3.0])


# ----- a batch of rows, each with its own settings (the server's decoding loop) ----------------------------------
row_settings = st.builds(
    SamplingSettings, temperature=st.sampled_from([0.0, 1e-9, 0.3, 0.8, 1.0, 2.5]),
    top_k=st.sampled_from([0, 1, 3, 19, 20, 40]), top_p=st.sampled_from([1e-6, 0.5, 0.9, 1.0]),
    repetition_penalty=st.sampled_from([0.7, 1.0, 1.1, 2.0]), repeat_last_n=st.sampled_from([0, 1, 5, 64]),
    min_new_tokens=st.integers(0, 3), stop_token_ids=st.lists(st.integers(0, 19), max_size=2).map(tuple))


@given(seed=seeds, rows=st.lists(st.tuples(row_settings, st.lists(st.integers(0, 19), max_size=12),
                                           st.integers(0, 4)), min_size=1, max_size=8),
       ties=st.booleans())
def test_each_row_of_a_batch_is_exactly_what_it_gets_alone(seed, rows, ties):
    z = np.random.default_rng(seed).standard_normal((len(rows), 20)) * 3.0
    z = np.round(z) if ties else z  # equal logits: the sort and the top-p cut must break ties as alone
    batch = next_token_distributions(z, [r for _, r, _ in rows], [s for s, _, _ in rows], [n for _, _, n in rows])
    for i, (s, recent, n) in enumerate(rows):
        np.testing.assert_array_equal(batch[i], next_token_distribution(z[i], recent, s, n))


@given(seed=seeds, n=st.integers(1, 8))
def test_drawn_tokens_are_what_each_rows_generator_would_choose(seed, n):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(30, 0.3), size=n)
    greedy = rng.random(n) < 0.3
    p[greedy] = np.eye(30)[rng.integers(0, 30, size=greedy.sum())]  # a greedy row: one token, probability 1
    tokens = draw_tokens(p, [None if g else np.random.default_rng(seed + i) for i, g in enumerate(greedy)])
    expected = [int(np.argmax(p[i])) if g else int(np.random.default_rng(seed + i).choice(30, p=p[i]))
                for i, g in enumerate(greedy)]
    assert tokens == expected
    if greedy.any():  # a batch of greedy rows only takes a shorter way: the same tokens
        assert draw_tokens(p[greedy], [None] * int(greedy.sum())) == [e for e, g in zip(expected, greedy) if g]


# ----- generate: against full recomputation ---------------------------------------------------------------------
def reference_greedy(model: GPT, prompt: list[int], n: int) -> list[int]:
    """No cache: run the whole window every step; when it overflows keep its last half (at least one token),
    as generate() documents."""
    block = model.config.block_size
    window, out = list(prompt)[-block:], []
    with no_grad():
        for _ in range(n):
            token = int(np.argmax(model(np.asarray([window])).data[0, -1]))
            out.append(token)
            window.append(token)
            if len(window) > block:
                window = window[-max(1, block // 2):]
    return out


GREEDY = {"temperature": 0.0, "repetition_penalty": 1.0}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("prompt", [[1], [4, 2, 7], [3, 1, 4, 1, 5, 9, 2, 6]])
def test_cached_greedy_tokens_equal_full_recomputation_within_the_window(dtype, prompt):
    model = GPT(TINY, dtype=dtype, seed=11)
    n = TINY.block_size - len(prompt)
    tokens = list(generate(model, prompt, SamplingSettings(**GREEDY, max_new_tokens=n)))
    assert tokens == reference_greedy(model, prompt, n)
    assert len(tokens) == n


def test_generation_goes_on_past_the_window_by_re_encoding_its_last_half():
    model = GPT(TINY, dtype=np.float64, seed=11)
    prompt = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8]  # longer than the window: only its end is seen
    n = 3 * TINY.block_size
    tokens = list(generate(model, prompt, SamplingSettings(**GREEDY, max_new_tokens=n)))
    assert tokens == reference_greedy(model, prompt, n)


def test_generation_goes_on_past_a_one_token_window():
    model = GPT(GPTConfig(zero_init=False, vocab_size=13, n_layer=1, n_embd=8, n_head=2, block_size=1), dtype=np.float64, seed=0)
    tokens = list(generate(model, [5], SamplingSettings(**GREEDY, max_new_tokens=4)))
    assert tokens == reference_greedy(model, [5], 4)


def test_an_empty_prompt_starts_from_the_first_stop_id():
    model = GPT(TINY, dtype=np.float64, seed=11)
    s = SamplingSettings(**GREEDY, max_new_tokens=4, stop_token_ids=(12,), min_new_tokens=4)
    assert list(generate(model, [], s)) == list(generate(model, [12], s))


# ----- generate: when to stop ---------------------------------------------------------------------------------
def test_max_new_tokens_is_the_most_it_yields():
    model = GPT(TINY, seed=0)
    for n in (0, 1, 5):
        assert len(list(generate(model, [1, 2], settings(max_new_tokens=n, seed=0)))) == n


def test_a_stop_id_ends_generation_without_being_yielded():
    model = FixedLogits([0.0, 1.0, 2.0, 10.0])  # greedy would always say 3
    assert list(generate(model, [1], settings(temperature=0.0, stop_token_ids=(3,)))) == []


def test_min_new_tokens_holds_the_stop_id_back_until_reached():
    model = FixedLogits([0.0, 1.0, 2.0, 10.0])
    s = settings(temperature=0.0, stop_token_ids=(3,), min_new_tokens=3, max_new_tokens=10)
    assert list(generate(model, [1], s)) == [2, 2, 2]


def test_the_penalty_counts_generated_tokens_not_the_prompt():
    model = FixedLogits([3.0, 2.9, 2.8, 1.0])
    s = settings(temperature=0.0, repetition_penalty=1.1, max_new_tokens=6)
    assert list(generate(model, [0, 0, 0], s)) == [0, 1, 2, 0, 0, 0]  # 3 / 1.1 still beats 2.8 / 1.1
    windowed = settings(temperature=0.0, repetition_penalty=1.1, repeat_last_n=2, max_new_tokens=6)
    assert list(generate(model, [0], windowed)) == [0, 1, 2, 0, 1, 2]


# ----- generate: randomness and streaming -----------------------------------------------------------------------
def test_the_same_seed_gives_the_same_tokens_and_another_seed_others():
    model = GPT(TINY, seed=0)
    a = list(generate(model, [1, 2], settings(max_new_tokens=30, seed=7)))
    b = list(generate(model, [1, 2], settings(max_new_tokens=30, seed=7)))
    c = list(generate(model, [1, 2], settings(max_new_tokens=30, seed=8)))
    assert a == b and a != c


def test_sampled_tokens_follow_the_distribution():
    probabilities = np.array([0.5, 0.3, 0.2])
    model = FixedLogits(np.log(probabilities), block_size=64)
    tokens = list(generate(model, [0], settings(max_new_tokens=600, seed=0)))
    counts = np.bincount(tokens, minlength=3) / len(tokens)
    np.testing.assert_allclose(counts, probabilities, atol=0.06)


def test_generate_is_an_iterator_that_does_one_step_per_token():
    model = CountingGPT(TINY, seed=0)
    stream = generate(model, [1, 2, 3], settings(max_new_tokens=5, seed=0))
    assert isinstance(stream, Iterator) and iter(stream) is stream
    assert model.calls == 0  # nothing runs before the first token is asked for
    first = next(stream)
    assert isinstance(first, int) and model.calls == 1  # the prompt, in one pass
    next(stream)
    assert model.calls == 2  # one new position
    assert len(list(stream)) == 3
    assert model.calls == 5  # the prompt, then one per new token but the last: its logits would go unused


def test_repeat_last_n_zero_turns_the_penalty_off():
    logits = np.array([2.0, 1.0, -1.0])
    off = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=2.0, repeat_last_n=0)
    plain = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    np.testing.assert_allclose(next_token_distribution(logits, [0, 1], off, 2),
                               next_token_distribution(logits, [0, 1], plain, 2))
