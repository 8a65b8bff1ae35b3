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
    z = logits.astype(np.float64, copy=True)
    if settings.repetition_penalty != 1.0 and recent and settings.repeat_last_n > 0:
        window = np.unique(np.asarray(recent[-settings.repeat_last_n:], dtype=np.intp))
        z[window] /= settings.repetition_penalty  # as the original: the logit is divided, whatever its sign
    if n_generated < settings.min_new_tokens:
        z[list(settings.stop_token_ids)] = -np.inf
    if settings.temperature <= 0:
        p = np.zeros_like(z)
        p[int(np.argmax(z))] = 1.0
        return p
    z /= settings.temperature
    if 0 < settings.top_k < z.size:
        kth = np.partition(z, -settings.top_k)[-settings.top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if 0 < settings.top_p < 1.0:
        order = np.argsort(-p)
        cumulative = np.cumsum(p[order])
        cut = int(np.searchsorted(cumulative, settings.top_p)) + 1  # include the token that crosses p
        keep = np.zeros_like(p, dtype=bool)
        keep[order[:cut]] = True
        p = np.where(keep, p, 0.0)
        p /= p.sum()
    return p


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
            token = int(np.argmax(p)) if settings.temperature <= 0 else int(rng.choice(p.size, p=p))
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
