"""Chatting with a checkpoint: the prompt template from training, KV-cached sampling, streamed text.

The conversation is rendered with `templates.chat_prompt`, the same template the `chat` records were trained
on, so the model continues after "Assistant:" the way it learned to. A reply ends at end-of-text (BOS), at the
token limit, or where the model starts a new turn ("\\nUser:" and the other template labels).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from dataclasses import dataclass

from microgpt.data.templates import chat_prompt
from microgpt.nn import GPT, SamplingSettings, generate
from microgpt.storage import load_checkpoint

STOP_MARKERS = ("\nUser:", "\nAssistant:", "\nSystem:", "\nQuestion:", "\nPrompt:", "\nTask:", "\nContext:")


@dataclass
class DecodeSettings:
    """The knobs of one reply (defaults follow the original's chat settings, with a gentler minimum length)."""

    temperature: float = 0.35
    top_k: int = 20
    top_p: float = 0.92
    repetition_penalty: float = 1.15
    repeat_last_n: int = 64
    min_new_tokens: int = 1
    max_new_tokens: int = 180
    seed: int | None = None


def _held_back(text: str) -> int:
    """How many trailing characters might still turn into a stop marker or finish a character."""
    if text.endswith("\ufffd"):
        return 1
    for n in range(min(len(text), max(map(len, STOP_MARKERS))), 0, -1):
        if any(marker.startswith(text[-n:]) for marker in STOP_MARKERS):
            return n
    return 0


class ChatSession:
    """A multi-turn conversation with one model; `stream_reply` yields the reply piece by piece."""

    def __init__(self, model: GPT, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.history: list[tuple[str, str]] = []

    @classmethod
    def from_checkpoint(cls, path: str) -> ChatSession:
        """Load any checkpoint the project reads (ours or the original's JSON); CheckpointError if unusable."""
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.tokenizer)

    def reset(self) -> None:
        self.history = []

    def prompt_ids(self, user_text: str) -> list[int]:
        tok = self.tokenizer
        return [tok.bos_id, *tok.encode(chat_prompt(self.history, user_text))]

    def stream_reply(self, user_text: str, settings: DecodeSettings | None = None) -> Iterator[str]:
        """Generate the assistant's answer to `user_text`, yielding new text as soon as it is certain."""
        s = settings or DecodeSettings()
        sampling = SamplingSettings(temperature=s.temperature, top_k=s.top_k, top_p=s.top_p,
                                    repetition_penalty=s.repetition_penalty, repeat_last_n=s.repeat_last_n,
                                    min_new_tokens=s.min_new_tokens, max_new_tokens=s.max_new_tokens,
                                    stop_token_ids=(self.tokenizer.bos_id,), seed=s.seed)
        ids: list[int] = []
        emitted = ""
        text = ""
        try:
            for token in generate(self.model, self.prompt_ids(user_text), sampling):
                ids.append(token)
                text = self.tokenizer.decode(ids).lstrip()
                cut = min((i for i in (text.find(m) for m in STOP_MARKERS) if i >= 0), default=-1)
                if cut >= 0:
                    text = text[:cut]
                    break
                # trailing spaces wait too: if the reply ends here they are stripped, so the pieces add up to it
                ready = text[:len(text) - _held_back(text)].rstrip()
                if len(ready) > len(emitted):
                    yield ready[len(emitted):]
                    emitted = ready
            text = text.rstrip()
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
        finally:
            self.history.append((user_text, text.strip()))

    def reply(self, user_text: str, settings: DecodeSettings | None = None) -> str:
        return "".join(self.stream_reply(user_text, settings)).strip()


def add_decoding_arguments(parser: argparse.ArgumentParser) -> None:
    """--temperature, --top-k, ... for chat-once and chat."""
    d = DecodeSettings()
    parser.add_argument("--temperature", type=float, default=d.temperature, help="0 = greedy; higher = more varied")
    parser.add_argument("--top-k", type=int, default=d.top_k, help="sample among the k most likely tokens (0 = off)")
    parser.add_argument("--top-p", type=float, default=d.top_p, help="nucleus: smallest set reaching p (1 = off)")
    parser.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty,
                        help="divide recent tokens' logits by this (1 = off)")
    parser.add_argument("--repeat-last-n", type=int, default=d.repeat_last_n, help="tokens the penalty looks back")
    parser.add_argument("--min-new-tokens", type=int, default=d.min_new_tokens, help="no end-of-text before this")
    parser.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="longest reply in tokens")
    parser.add_argument("--seed", type=int, default=None, help="fix the sampling randomness")


def settings_from_args(args: argparse.Namespace) -> DecodeSettings:
    from microgpt.errors import ConfigError

    if args.temperature < 0 or not 0 < args.top_p <= 1 or args.top_k < 0 or args.max_new_tokens < 1 \
            or args.repetition_penalty <= 0 or args.min_new_tokens < 0 or args.repeat_last_n < 0:
        raise ConfigError("decoding flags out of range: temperature >= 0, 0 < top-p <= 1, top-k >= 0, "
                          "max-new-tokens >= 1, repetition-penalty > 0, min-new-tokens >= 0, repeat-last-n >= 0")
    return DecodeSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                          repetition_penalty=args.repetition_penalty, repeat_last_n=args.repeat_last_n,
                          min_new_tokens=args.min_new_tokens, max_new_tokens=args.max_new_tokens, seed=args.seed)
