"""Chatting with a model: the prompt template from training, KV-cached sampling, streamed text.

`ChatSession` sits below training and every interface: the trainer's samples, `chat`, `chat-once` and the
TUI's chat tab all reply through it, with one `SamplingSettings`. The conversation is rendered with
`templates.chat_prompt`, the same template the `chat` records were trained on, so the model continues after
"Assistant:" the way it learned to. A reply ends at end-of-text (BOS), at the token limit, or where the model
starts a new turn ("\\nUser:" and the other template labels).
"""

from __future__ import annotations

import codecs
from collections.abc import Iterator, Sequence
from dataclasses import replace

from microgpt.data.templates import OPENING_LABELS, chat_prompt
from microgpt.data.tokenizer import TokenCodec
from microgpt.nn import GPT, SamplingSettings, generate
from microgpt.storage import load_checkpoint

STOP_MARKERS = tuple(f"\n{label}" for label in OPENING_LABELS)  # a new line opening a new turn ends a reply


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


class ReplyText:
    """A reply's text as its tokens arrive, for every streaming reply (chat and the server alike).

    Each token's bytes are decoded as they come (a character split over tokens waits for its last byte), so a
    long reply is never decoded again from its start. The text is cut where a stop string first appears;
    `certain` hands out what no stop string or unfinished character can take back, `rest` what is left at
    the end. With `strip` the reply's leading spaces are dropped and its trailing ones wait: it ends stripped.
    """

    def __init__(self, tokenizer: TokenCodec, stops: Sequence[str] = STOP_MARKERS, strip: bool = True,
                 labels: Sequence[str] = STOP_MARKERS) -> None:
        """`labels` are the turn labels of the template this reply follows (none for a plain completion): their
        start is not kept at the end of a reply the token limit cut (see rest)."""
        self.tokenizer, self.stops, self.strip = tokenizer, tuple(stops), strip
        self.labels = tuple(label for label in labels if label in self.stops)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._longest = max((len(stop) for stop in self.stops), default=0)
        self.text = ""  # the reply so far, cut before a stop string
        self.sent = 0  # characters of `text` handed out
        self.stopped = False

    def add(self, token: int) -> bool:
        """Append one token's text; True once a stop string appeared (the text then ends before it)."""
        piece = self._decoder.decode(self.tokenizer.decode_bytes([token]))
        if self.strip and not self.text:
            piece = piece.lstrip()
        start = max(0, len(self.text) - self._longest + 1)  # a stop ending in the new piece starts here or later
        self.text += piece
        cut = min((i for i in (self.text.find(stop, start) for stop in self.stops if stop) if i >= 0), default=-1)
        if cut >= 0:
            self.text, self.stopped = self.text[:cut], True
        return self.stopped

    def certain(self) -> str:
        """The text not handed out yet that no stop string or character still arriving can change."""
        pending = "\ufffd" if self._decoder.getstate()[0] else ""  # bytes of a character not complete yet
        ready = min(len(self.text), len(self.text) + len(pending) - held_back(self.text + pending, self.stops))
        if self.strip:  # trailing spaces wait: if the reply ends here they are stripped
            ready = len(self.text[:ready].rstrip())
        return self._hand_out(ready)

    def rest(self) -> str:
        """At the end: what was not handed out. The bytes of a last character cut short (the token limit came
        mid-character) are dropped: a reply never ends in a broken glyph (U+FFFD). So is a last line that is
        the start of a turn's label ("\nUs" of "\nUser:"): the token limit came as the model began the next
        turn, which is not the reply's text (a caller's own stop strings keep theirs: only the template's labels,
        and none in a plain completion)."""
        self._decoder.reset()
        label_start = held_back(self.text, self.labels) if self.labels and not self.stopped else 0
        if label_start > 1:  # more than the newline
            self.text = self.text[:max(self.sent, len(self.text) - label_start)]
        if self.strip:
            self.text = self.text.rstrip()
        return self._hand_out(len(self.text))

    def _hand_out(self, ready: int) -> str:
        piece = self.text[self.sent:ready]
        self.sent = max(self.sent, ready)
        return piece


class ChatSession:
    """A multi-turn conversation with one model; `stream_reply` yields the reply piece by piece."""

    def __init__(self, model: GPT, tokenizer: TokenCodec) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.history: list[tuple[str, str]] = []

    @classmethod
    def from_checkpoint(cls, path: str) -> ChatSession:
        """Load any checkpoint the project reads (ours or the original's JSON); CheckpointError if unusable."""
        checkpoint = load_checkpoint(path)
        return cls(checkpoint.model, checkpoint.tokenizer)

    def reset(self) -> None:
        """Forget the conversation: the next message starts a new one."""
        self.history = []

    def prompt_ids(self, user_text: str) -> list[int]:
        """BOS, then the conversation so far and `user_text` rendered as training renders a chat, up to
        "Assistant:": the ids the model continues."""
        tok = self.tokenizer
        return [tok.bos_id, *tok.encode(chat_prompt(self.history, user_text))]

    def stream_reply(self, user_text: str, settings: SamplingSettings | None = None) -> Iterator[str]:
        """Generate the assistant's answer to `user_text`, yielding new text as soon as it is certain.

        A reply ends at end-of-text (BOS): that is its one stop token, in place of any `settings` names."""
        sampling = replace(settings or SamplingSettings(), stop_token_ids=(self.tokenizer.bos_id,))
        reply = ReplyText(self.tokenizer)
        try:
            for token in generate(self.model, self.prompt_ids(user_text), sampling):
                if reply.add(token):
                    break
                piece = reply.certain()
                if piece:
                    yield piece
            piece = reply.rest()
            if piece:
                yield piece
        finally:
            self.history.append((user_text, reply.text.strip()))

    def reply(self, user_text: str, settings: SamplingSettings | None = None) -> str:
        """The whole reply to `user_text` at once (stream_reply's pieces joined)."""
        return "".join(self.stream_reply(user_text, settings)).strip()
