"""Chatting with a model: the prompt template from training, KV-cached sampling, streamed text.

`ChatSession` sits below training and every interface: the trainer's samples, `chat`, `chat-once` and the
TUI's chat tab all reply through it, with one `SamplingSettings`. The conversation is rendered with
`templates.chat_prompt`, the same template the `chat` records were trained on, so the model continues after
"Assistant:" the way it learned to. A reply ends at end-of-text (BOS), at the token limit, or where the model
starts a new turn ("\\nUser:" and the other template labels).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

from microgpt.data.templates import chat_prompt
from microgpt.nn import GPT, SamplingSettings, generate
from microgpt.storage import load_checkpoint

STOP_MARKERS = ("\nUser:", "\nAssistant:", "\nSystem:", "\nQuestion:", "\nPrompt:", "\nTask:", "\nContext:")


def held_back(text: str, stops: Sequence[str] = STOP_MARKERS) -> int:
    """How many trailing characters might still grow into one of `stops` (or finish a multi-byte character):
    a streamed reply holds them back until it is sure they are text.

    A character still arriving (its bytes so far decode as U+FFFD) is held back, and so is the text before it
    that a stop could continue with that character, whatever it turns out to be."""
    pending = 1 if text.endswith("\ufffd") else 0
    known = text[:len(text) - pending]
    longest = max((len(s) for s in stops), default=0)
    starts = {s[0] for s in stops if s}
    for j in range(max(0, len(known) - longest), len(known)):  # the earliest start that a stop could continue
        tail = known[j:]
        if tail[0] in starts and any(stop.startswith(tail) and len(stop) > len(tail) - 1 + pending
                                     for stop in stops):
            return len(text) - j
    return pending


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

    def stream_reply(self, user_text: str, settings: SamplingSettings | None = None) -> Iterator[str]:
        """Generate the assistant's answer to `user_text`, yielding new text as soon as it is certain.

        A reply also ends at end-of-text (BOS), whatever stop tokens `settings` names."""
        sampling = replace(settings or SamplingSettings(), stop_token_ids=(self.tokenizer.bos_id,))
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
                ready = text[:len(text) - held_back(text)].rstrip()
                if len(ready) > len(emitted):
                    yield ready[len(emitted):]
                    emitted = ready
            text = text.rstrip()
            if len(text) > len(emitted) and text.startswith(emitted):
                yield text[len(emitted):]
        finally:
            self.history.append((user_text, text.strip()))

    def reply(self, user_text: str, settings: SamplingSettings | None = None) -> str:
        return "".join(self.stream_reply(user_text, settings)).strip()
