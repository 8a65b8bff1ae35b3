"""Chat tab: talk to a checkpoint; the reply streams in token by token from a worker thread.

Three modes, always named on screen: browsing (hotkeys work), typing a message, and typing a
checkpoint path. While typing, every key goes into the text: hotkeys are locked until `esc`.
The tab opens with the saved checkpoint (or MODEL_DIR/latest_checkpoint.npz) loaded when the file exists,
and writes every conversation to LOG_DIR/chat/tui_chat_<session>.log and chat_latest.log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from microgpt.chat.log import ChatLog
from microgpt.config import SAMPLING_KNOBS, parse_sampling_value, sampling_from_env, sampling_from_mapping
from microgpt.errors import MicrogptError, clipped
from microgpt.storage import checkpoint_name
from microgpt.tui import disk
from microgpt.tui.base import Context, Tab
from microgpt.tui.chat_worker import ChatWorker
from microgpt.tui.text import cell_width, sanitize, wrap
from microgpt.tui.textinput import LineEditor
from microgpt.tui.widgets import Line, text_line, wrapped

BROWSE, TYPING, PATH = "browse", "typing", "path"
# key -> (sampling setting, step); the limits are the setting's knob's
ADJUST: dict[str, tuple[str, float]] = {
    "[": ("temperature", -0.05), "]": ("temperature", 0.05), "-": ("max_new_tokens", -16), "=": ("max_new_tokens", 16),
}
UNAVAILABLE = (TypeError, ValueError, AttributeError, MicrogptError)  # a settings value rejected
PREFIX = {"you": "you › ", "gpt": "gpt › ", "info": "  · ", "error": "  ✗ "}
STYLE = {"you": "accent", "gpt": "normal", "info": "dim", "error": "bad"}


def default_settings() -> Any:
    """The sampling settings every chat entry point starts from: the defaults, then CHAT_* variables (a minimum
    above the maximum is left for the tab's own values to put right: - and = change the length)."""
    return sampling_from_env(check_order=False)


def describe(settings: Any) -> str:
    """Every sampling setting as `name value` pairs, for the settings line (stop tokens left out)."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(vars(settings))
    parts = []
    for name, value in fields.items():
        if isinstance(value, (tuple, list)):
            continue
        shown = "random" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)
        parts.append(f"{name.replace('_', ' ')} {shown}")
    return " · ".join(parts)


class ChatTab(Tab):
    """The conversation, the input line and the decoding settings; the model lives in `worker`."""

    title = "Chat"

    def __init__(
        self,
        ctx: Context,
        worker: ChatWorker | None = None,
        make_settings: Callable[..., Any] = default_settings,
    ) -> None:
        self.ctx = ctx
        self.worker = worker or ChatWorker()
        self.make_settings = make_settings
        saved = ctx.state.get("chat") or {}
        self.checkpoint = str(saved.get("checkpoint") or "")
        self.overrides: dict[str, float] = {}
        problems = []
        for name in ("temperature", "max_new_tokens"):  # the saved values come from a file: each is checked
            if saved.get(name) is None:
                continue
            try:
                self.overrides[name] = parse_sampling_value(name, saved[name], f"chat {name}", None)
            except MicrogptError as exc:
                problems.append(str(exc))
        if problems:  # one message: a second would replace the first
            many = len(problems) > 1
            ctx.notify(f"{'; '.join(problems)} in the TUI settings: ignored, "
                       f"{'the defaults are' if many else 'the default is'} used ([ ] - = change {'them' if many else 'it'})",
                       "warn")
        self.messages: list[tuple[str, str]] = []
        self.mode = BROWSE
        self.draft = LineEditor()  # the message being typed (kept when you leave typing)
        self.path = LineEditor()  # the checkpoint path being typed
        self.loaded = ""
        self.pending_loads: list[str] = []  # paths asked of the worker, in order: it answers each in turn
        self.streaming = False
        self.stopped = False  # the reply streaming was stopped (Ctrl-C)
        self.scroll = 0  # rows above the bottom; 0 follows the newest text
        self.page = 10
        self.log = ChatLog(ctx.log_dir, "tui_chat", warn=lambda text: ctx.notify(text, "warn"))
        start = ctx.cwd / self.checkpoint if self.checkpoint else ctx.model_dir / checkpoint_name("latest")
        if disk.is_file(start):  # tui.json may name a path no file system takes: then nothing is loaded
            self.load(ctx.relative(start))

    # ---- actions -----------------------------------------------------------------------
    def remember(self) -> None:
        """Save the checkpoint path and the decoding knobs with the TUI settings."""
        self.ctx.state["chat"] = {"checkpoint": self.checkpoint, **self.overrides}
        self.ctx.save()

    @property
    def loading(self) -> str:
        """The checkpoint last asked for while the worker is still loading ("" when none is)."""
        return self.pending_loads[-1] if self.pending_loads else ""

    def load(self, path: str) -> None:
        """Ask the worker to open a checkpoint; it is shown and saved as the model once it has loaded."""
        self.pending_loads.append(path)
        self.messages.append(("info", f"loading {clipped(path, 160)} …"))  # a newline or 5,000 characters
        self.worker.load(path)

    def settings(self) -> Any:
        """The sampling settings a reply is generated with: the defaults plus what [ ] - = changed, checked
        by the knobs (the saved values come from a file, so they are checked too)."""
        return sampling_from_mapping(self.overrides, base=self.make_settings(), source="TUI chat settings")

    def adjust(self, key: str) -> None:
        """[ ] move the temperature, - = the reply length, within the setting's knob's limits."""
        name, step = ADJUST[key]
        knob = SAMPLING_KNOBS[name]
        try:
            current = getattr(self.settings(), name)
        except UNAVAILABLE:  # out of order (CHAT_MIN_NEW_TOKENS above the length): this key is how to fix it
            try:
                current = self.overrides.get(name, getattr(self.make_settings(), name))
            except UNAVAILABLE as exc:
                self.ctx.notify(f"sampling settings unavailable: {exc}", "bad")
                return
        value = current + step
        value = value if knob.min is None else max(knob.min, value)
        value = value if knob.max is None else min(knob.max, value)
        self.overrides[name] = round(value, 2) if isinstance(step, float) else int(value)
        self.remember()

    def send(self) -> None:
        text = self.draft.text.strip()
        if not text:
            return
        if self.streaming:
            self.ctx.notify("wait for the reply to finish", "warn")
            return
        if not self.loaded:
            self.ctx.notify("no model loaded: L loads the latest checkpoint, p types a path", "warn")
            return
        try:
            settings = self.settings()
        except UNAVAILABLE as exc:
            self.messages.append(("error", f"cannot build sampling settings: {exc}"))
            return
        self.messages += [("you", text), ("gpt", "")]
        self.log.context(self.loaded, settings)
        self.log.turn("user", text)
        self.draft.set("")
        self.streaming = True
        self.scroll = 0
        self.worker.send(text, settings)

    def stop_reply(self) -> bool:
        """Ctrl-C: stop the reply being written, kept as far as it got; False when none is."""
        if not self.streaming:
            return False
        self.worker.stop()
        return True

    def clear(self) -> bool:
        self.log.note("conversation cleared")
        self.messages.clear()
        self.scroll = 0
        if self.loaded:
            self.worker.reset()
        return True

    def tick(self) -> bool:
        results = self.worker.poll()
        for kind, payload in results:
            if kind == "loaded":
                self.loaded = self.checkpoint = payload
                self.pending_loads = self.pending_loads[1:]
                self.messages.append(("info", f"loaded {clipped(payload, 160)}: enter to type a message"))
                self.remember()
            elif kind == "piece" and self.messages and self.messages[-1][0] == "gpt":
                self.messages[-1] = ("gpt", self.messages[-1][1] + sanitize(payload, keep_newlines=True))
            elif kind == "stopped":
                self.stopped = True
            elif kind == "done":
                self.streaming = False
                self.log.turn("assistant", self.messages[-1][1] if self.messages else "")
                if self.stopped:
                    self.stopped = False
                    self.messages.append(("info", "reply stopped (Ctrl-C)"))
                    self.log.note("the reply above was stopped (Ctrl-C)")
            elif kind == "error":
                if self.pending_loads and not self.streaming:  # the first load asked failed (a reply's error
                    failed = self.pending_loads.pop(0)  # comes while it streams): say which model replies now
                    kept = f"; still talking to {clipped(self.loaded, 160)}" if self.loaded else ""
                    payload = f"could not load {clipped(failed, 160)}: {clipped(payload, 400)}{kept}"
                    self.checkpoint = self.loaded or failed
                self.streaming = False
                self.messages.append(("error", payload))
                self.log.note(f"error: {payload}")
        return bool(results)

    # ---- keys --------------------------------------------------------------------------
    def captures_keys(self) -> bool:
        return self.mode != BROWSE

    def on_hide(self) -> None:
        self.mode = BROWSE  # a half-typed message stays in the field for later

    def keys(self) -> list[tuple[str, str]]:
        stop = [("ctrl-c", "stop reply")] if self.streaming else []  # in every mode: it works in every mode
        if self.mode == TYPING:
            return [*stop, ("type", "message"), ("enter", "send"), ("esc", "done typing"), ("", "(hotkeys locked)")]
        if self.mode == PATH:
            return [("type", "path"), ("enter", "load"), ("esc", "cancel"), ("", "(hotkeys locked)")]
        return [*stop, ("enter", "type"), ("p", "path"), ("L", "load latest"), ("[ ]", "temperature"),
                ("- =", "max tokens"), ("pgup/pgdn home/end", "scroll")]

    def handle_key(self, key: str) -> bool:
        if self.mode != BROWSE:
            if key == "esc":
                self.mode = BROWSE
            elif key == "enter" and self.mode == TYPING:
                self.send()
            elif key == "enter" and not self.path.text.strip():
                self.ctx.notify("type the path of a checkpoint (.npz, a Go .json or an export folder)", "warn")
            elif key == "enter":
                self.mode = BROWSE
                self.load(self.path.text.strip())
            else:
                (self.draft if self.mode == TYPING else self.path).handle_key(key)
            return True
        return self._browse_key(key)

    def _browse_key(self, key: str) -> bool:
        if key == "enter":
            self.mode = TYPING
        elif key == "p":
            self.mode = PATH
            self.path.set(self.checkpoint)
        elif key == "L":
            self.load(self.ctx.relative(self.ctx.model_dir / checkpoint_name("latest")))
        elif key in ADJUST:
            self.adjust(key)
        elif key in ("pgup", "pgdn"):
            self.scroll = max(0, self.scroll + (self.page if key == "pgup" else -self.page))
        elif key == "home":
            self.scroll = 10**9
        elif key == "end":
            self.scroll = 0
        else:
            return False
        return True

    # ---- drawing -----------------------------------------------------------------------
    def transcript(self, width: int) -> list[Line]:
        """Every message wrapped under its speaker's prefix."""
        rows: list[Line] = []
        for index, (role, text) in enumerate(self.messages):
            prefix = PREFIX[role]
            body = text + ("▌" if self.streaming and index == len(self.messages) - 1 else "")
            parts = wrap(body or " ", width - cell_width(prefix))
            prefix_style = "title" if role in ("you", "gpt") else STYLE[role]
            rows.append([(prefix, prefix_style), (parts[0], STYLE[role])])
            rows += [text_line(" " * cell_width(prefix) + part, STYLE[role]) for part in parts[1:]]
        return rows

    def settings_lines(self, width: int) -> list[Line]:
        try:
            text = describe(self.settings())
        except UNAVAILABLE as exc:
            text = f"sampling settings unavailable: {exc}"
        return wrapped(text, width - 1, "dim", "  ")[:2]

    def render(self, width: int, height: int) -> list[Line]:
        if self.loading:
            state: Line = [("loading… ", "warn")]
        elif self.loaded:
            state = [("loaded ✓ ", "good")]
        else:
            state = [("not loaded ", "bad")]
        shown = self.loading or self.checkpoint or "(none: L or p)"
        head: list[Line] = [[(" model ", "dim"), *state, (shown, "accent")]]
        head += self.settings_lines(width)
        if self.mode == PATH:
            prompt: Line = [(" path › ", "title"), *self.path.render(width - 9, "accent")]
        elif self.mode == TYPING:
            prompt = [(" you › ", "title"), *self.draft.render(width - 8, "accent")]
        else:
            prompt = [(" enter: type a message   (browsing: hotkeys active)", "dim")]
        rows_h = height - len(head) - 2
        self.page = max(1, rows_h - 1)
        rows = self.transcript(width)
        self.scroll = min(self.scroll, max(0, len(rows) - rows_h))
        end = len(rows) - self.scroll
        shown = rows[max(0, end - rows_h) : end]
        if not rows:
            shown = [text_line(" no conversation yet: load a checkpoint (L or p), then enter to type", "dim")]
        shown += [text_line("")] * (rows_h - len(shown))
        rule = "─" * width
        if self.scroll:
            rule = f"── scrolled up {self.scroll} rows · end returns ".ljust(width, "─")
        return [*head, *shown, text_line(rule, "dim"), prompt]
