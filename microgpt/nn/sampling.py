"""Turning logits into tokens: temperature, top-k, top-p, repetition penalty, and KV-cached generation."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from microgpt.autograd import no_grad
from microgpt.nn.gpt import GPT
from microgpt.nn.layers import check_ids


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
    repetition_penalty: float = 1.1  # divide the logit of a recently generated token by this (1.0: off; see below)
    repeat_last_n: int = 64  # how many recent generated tokens the penalty looks at (0: none)
    min_new_tokens: int = 1  # end-of-text is forbidden until this many tokens were generated
    max_new_tokens: int = 128
    stop_token_ids: tuple[int, ...] = ()  # e.g. the BOS / end-of-text id
    seed: int | None = 42  # None: fresh randomness every time

    def __post_init__(self) -> None:
        """Refuse values outside each control's meaning (the knobs in microgpt.config set narrower limits)."""
        checks = (("temperature", self.temperature >= 0), ("top_k", self.top_k >= 0), ("top_p", 0 < self.top_p <= 1),
                  ("repetition_penalty", self.repetition_penalty > 0), ("repeat_last_n", self.repeat_last_n >= 0),
                  ("min_new_tokens", self.min_new_tokens >= 0), ("max_new_tokens", self.max_new_tokens >= 0))
        for name, ok in checks:
            value = getattr(self, name)
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"SamplingSettings.{name}={value!r}: temperature, top_k, repeat_last_n and the "
                                 "token counts must be >= 0, top_p in (0, 1], repetition_penalty > 0")


def next_token_distribution(logits: np.ndarray, recent: Sequence[int], settings: SamplingSettings,
                            n_generated: int) -> np.ndarray:
    """Probabilities over the vocabulary for one position, after every control is applied."""
    return next_token_distributions(logits[None], [recent], [settings], [n_generated])[0]


def next_token_distributions(logits: np.ndarray, recents: Sequence[Sequence[int]],
                             settings: Sequence[SamplingSettings], n_generated: Sequence[int]) -> np.ndarray:
    """(rows, vocab) probabilities for a batch of sequences, each row with its own settings.

    Every step works on whole rows (a row's max, sum, k-th largest value, sort and cumulative sum are the
    ones it would get alone), so row i is exactly what next_token_distribution gives for it alone: a reply
    does not depend on the sequences decoded beside it.
    """
    z = np.array(logits, dtype=np.float64, ndmin=2)  # a copy: the caller's logits are never changed
    n, vocab = z.shape
    windows = [recent[-s.repeat_last_n:] if s.repetition_penalty != 1.0 and s.repeat_last_n > 0 else ()
               for s, recent in zip(settings, recents)]
    counts = [len(window) for window in windows]
    if any(counts):  # a token twice in a window is divided once: fancy indexing writes each place once
        at = (np.repeat(np.arange(n), counts),
              np.fromiter(itertools.chain.from_iterable(windows), dtype=np.intp, count=sum(counts)))
        penalties = {s.repetition_penalty for s in settings}  # usually one for the whole batch
        divisor = penalties.pop() if len(penalties) == 1 else np.repeat([s.repetition_penalty for s in settings], counts)
        z[at] = z[at] / divisor  # as the original, whatever its sign: a negative logit rises (a token already
        # unlikely gets a little likelier); the tokens a reply repeats are the likely ones, with positive logits
    masked_rows, masked_cols = [], []
    for i, (s, count) in enumerate(zip(settings, n_generated)):
        if count < s.min_new_tokens:  # end-of-text is forbidden until enough tokens were generated
            masked_rows += [i] * len(s.stop_token_ids)
            masked_cols += s.stop_token_ids
    if masked_rows:
        z[masked_rows, masked_cols] = -np.inf
    greedy = [i for i, s in enumerate(settings) if s.temperature <= 0]
    best = z[greedy].argmax(axis=1) if greedy else None  # taken before a shift could round two logits together
    if len(greedy) == n:  # every row greedy: all its probability on that token, nothing else to compute
        p = np.zeros_like(z)
        p[np.arange(n), best] = 1.0
        return p
    with np.errstate(over="ignore"):  # shift first, so a tiny temperature gives -inf (never inf - inf = NaN)
        z -= z.max(axis=1, keepdims=True)
        z /= np.array([[s.temperature if s.temperature > 0 else 1.0] for s in settings])
    top_k = [s.top_k for s in settings]
    for k in set(top_k) - {0}:  # usually one k for the whole batch: one partition
        if k < vocab:
            same = [i for i, row_k in enumerate(top_k) if row_k == k]
            block = z if len(same) == n else z[same]
            kth = np.partition(block, vocab - k, axis=1)[:, vocab - k, None]  # each row's k-th largest
            block[block < kth] = -np.inf
            if block is not z:
                z[same] = block
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    nucleus = [i for i, s in enumerate(settings) if 0 < s.top_p < 1.0 and s.temperature > 0]
    if nucleus:  # keep each row's smallest most-likely set whose probability reaches its p
        q = p if len(nucleus) == n else p[nucleus]
        order = np.argsort(-q, axis=1)
        row = np.arange(len(nucleus))[:, None]
        ranked = q[row, order]  # each row, most likely first
        kept = (np.cumsum(ranked, axis=1) < np.array([[settings[i].top_p] for i in nucleus])).sum(axis=1)
        ranked[np.arange(vocab) > kept[:, None]] = 0.0  # the set reaching p, with the token that crosses it
        q = np.empty_like(q)
        q[row, order] = ranked
        q /= q.sum(axis=1, keepdims=True)
        if len(nucleus) == n:
            p = q
        else:
            p[nucleus] = q
    if greedy:
        p[greedy] = 0.0
        p[greedy, best] = 1.0
    return p


def draw_tokens(p: np.ndarray, rngs: Sequence[np.random.Generator | None]) -> list[int]:
    """One token per row of p, drawn with one uniform number from that row's own generator, exactly as
    rng.choice(vocab, p=row) draws it (the same cumulative sum, the same number), without its argument
    checks, which cost more than the draw. A row without a generator takes its first token of nonzero
    probability: a greedy row's only one."""
    if all(rng is None for rng in rngs):  # greedy rows only: no cumulative sum needed to find that token
        return (p > 0).argmax(axis=1).tolist()
    cdf = np.cumsum(p, axis=1)
    u = np.array([[0.0 if rng is None else rng.random()] for rng in rngs])
    return (cdf / cdf[:, -1:] <= u).sum(axis=1).tolist()  # each row's searchsorted(row, u, side="right")


def kept_after_slide(block: int) -> int:
    """Tokens of the context kept when generation fills the window: the last half, re-encoded into a fresh
    cache (chat, chat-once and the server all slide by this, so their replies agree)."""
    return max(1, block // 2)


def generate(model: GPT, prompt_ids: Sequence[int], settings: SamplingSettings) -> Iterator[int]:
    """Yield new token ids one at a time (for streaming), using a KV cache.

    Each step feeds only the newest token; the cache holds every earlier key and value. When the context
    window is full, the last half of it is re-encoded into a fresh cache and generation goes on.
    """
    rng = np.random.default_rng(settings.seed)
    block = model.config.block_size
    check_ids(np.asarray(settings.stop_token_ids, dtype=np.intp), model.config.vocab_size)
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
            if len(generated) == settings.max_new_tokens:  # done: the next position's logits would go unused
                return
            if cache.length >= block:
                context = context[-kept_after_slide(block):]
                cache = model.new_cache(1)
                logits = model(np.asarray([context]), cache).data[0, -1]
            else:
                logits = model(np.asarray([[token]]), cache).data[0, -1]
