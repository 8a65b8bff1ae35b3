"""Turning logits into tokens: temperature, top-k, top-p, repetition penalty, and KV-cached generation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from microgpt.autograd import no_grad
from microgpt.nn.gpt import GPT


@dataclass
class SamplingSettings:
    """How to pick each next token: the one settings type of the trainer's samples, chat, the TUI and eval.

    These defaults are the only ones: the knob table (microgpt.config) reads them from here and adds the
    limits and prose. temperature 0 means greedy (always the most likely token). The seed is fixed, as the
    original's rand.Seed(42), so the same prompt gives the same reply until you change it.
    """

    temperature: float = 0.5
    top_k: int = 40  # keep only the k most likely tokens (0: off)
    top_p: float = 0.9  # keep the smallest set whose probability reaches p (1.0: off)
    repetition_penalty: float = 1.1  # divide the logit of a recently generated token by this (1.0: off)
    repeat_last_n: int = 64  # how many recent generated tokens the penalty looks at (0: none)
    min_new_tokens: int = 1  # end-of-text is forbidden until this many tokens were generated
    max_new_tokens: int = 128
    stop_token_ids: tuple[int, ...] = ()  # e.g. the BOS / end-of-text id
    stop_sequences: list[list[int]] = field(default_factory=list)  # token sequences that end generation
    seed: int | None = 42  # None: fresh randomness every time


def next_token_distribution(logits: np.ndarray, recent: Sequence[int], settings: SamplingSettings,
                            n_generated: int) -> np.ndarray:
    """Probabilities over the vocabulary for one position, after every control is applied."""
    return next_token_distributions(logits[None], [recent], [settings], [n_generated])[0]


def next_token_distributions(logits: np.ndarray, recents: Sequence[Sequence[int]],
                             settings: Sequence[SamplingSettings], n_generated: Sequence[int]) -> np.ndarray:
    """(rows, vocab) probabilities for a batch of sequences, each row with its own settings.

    Every step works on whole rows (a row's max, sum, sort and cumulative sum are the ones it would get
    alone), so row i is exactly what next_token_distribution gives for it alone: a reply does not depend on
    the sequences decoded beside it.
    """
    z = np.array(logits, dtype=np.float64, ndmin=2)  # a copy: the caller's logits are never changed
    vocab = z.shape[1]
    rows, cols, penalties = [], [], []
    for i, (s, recent) in enumerate(zip(settings, recents)):
        if s.repetition_penalty != 1.0 and len(recent) and s.repeat_last_n > 0:
            window = list(recent[-s.repeat_last_n:])
            rows += [i] * len(window)
            cols += window
            penalties += [s.repetition_penalty] * len(window)
    if rows:  # a token twice in the window is divided once: fancy indexing writes each place once
        z[rows, cols] = z[rows, cols] / np.asarray(penalties)  # as the original: divided, whatever its sign
    for i, (s, count) in enumerate(zip(settings, n_generated)):
        if count < s.min_new_tokens and s.stop_token_ids:
            z[i, list(s.stop_token_ids)] = -np.inf
    temperature = np.array([s.temperature for s in settings], dtype=np.float64)
    greedy = temperature <= 0
    best = z.argmax(axis=1)  # a greedy row's token, taken before any shift could round two logits together
    with np.errstate(over="ignore"):  # shift first, so a tiny temperature gives -inf (never inf - inf = NaN)
        z = (z - z.max(axis=1, keepdims=True)) / np.where(greedy, 1.0, temperature)[:, None]
    top_k = np.array([s.top_k for s in settings])
    cut_k = (top_k > 0) & (top_k < vocab)
    if cut_k.any():  # the k-th largest value of each row (a row's own k) is its floor
        kth = np.sort(z[cut_k], axis=1)[np.arange(cut_k.sum()), vocab - top_k[cut_k]]
        z[cut_k] = np.where(z[cut_k] < kth[:, None], -np.inf, z[cut_k])
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top_p = np.array([s.top_p for s in settings], dtype=np.float64)
    cut_p = (top_p > 0) & (top_p < 1.0) & ~greedy
    if cut_p.any():
        q = p[cut_p]
        order = np.argsort(-q, axis=1)
        cumulative = np.cumsum(np.take_along_axis(q, order, axis=1), axis=1)
        cut = (cumulative < top_p[cut_p, None]).sum(axis=1) + 1  # include the token that crosses p
        keep = np.zeros_like(q, dtype=bool)
        np.put_along_axis(keep, order, np.arange(vocab)[None, :] < cut[:, None], axis=1)
        q = np.where(keep, q, 0.0)
        p[cut_p] = q / q.sum(axis=1, keepdims=True)
    if greedy.any():
        p[greedy] = 0.0
        p[greedy, best[greedy]] = 1.0
    return p


def draw_tokens(p: np.ndarray, rngs: Sequence[np.random.Generator | None]) -> list[int]:
    """One token per row of p: the row's argmax where its generator is None (greedy), else drawn with one
    uniform number from that row's own generator, exactly as rng.choice(vocab, p=row) draws it (the same
    cumulative sum, the same number), without its argument checks, which cost more than the draw."""
    cdf = np.cumsum(p, axis=1)
    u = np.array([0.0 if rng is None else rng.random() for rng in rngs])
    drawn = (cdf / cdf[:, -1:] <= u[:, None]).sum(axis=1)  # = searchsorted(row, u, side="right")
    return [int(np.argmax(row)) if rng is None else int(token) for row, rng, token in zip(p, rngs, drawn)]


def generate(model: GPT, prompt_ids: Sequence[int], settings: SamplingSettings) -> Iterator[int]:
    """Yield new token ids one at a time (for streaming), using a KV cache.

    Each step feeds only the newest token; the cache holds every earlier key and value. When the context
    window is full, the last half of it is re-encoded into a fresh cache and generation goes on.
    """
    rng = np.random.default_rng(settings.seed)
    block = model.config.block_size
    context = list(prompt_ids)[-block:] or list(settings.stop_token_ids[:1]) or [0]
    generated: list[int] = []
    with no_grad():
        cache = model.new_cache(1)
        logits = model(np.asarray([context]), cache).data[0, -1]
        for _ in range(settings.max_new_tokens):
            p = next_token_distribution(logits, generated, settings, len(generated))
            token = draw_tokens(p[None], [None if settings.temperature <= 0 else rng])[0]
            if token in settings.stop_token_ids:
                return
            generated.append(token)
            context.append(token)
            yield token
            if any(len(s) and generated[-len(s):] == list(s) for s in settings.stop_sequences):
                return
            if len(generated) == settings.max_new_tokens:  # done: the next position's logits would go unused
                return
            if cache.length >= block:
                context = context[-max(1, block // 2):]
                cache = model.new_cache(1)
                logits = model(np.asarray([context]), cache).data[0, -1]
            else:
                logits = model(np.asarray([[token]]), cache).data[0, -1]
