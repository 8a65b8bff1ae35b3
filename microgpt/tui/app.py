"""The dashboard: six tabs in a fixed frame, global keys, and a main loop that never blocks.

Frame (top to bottom): the tab bar with the run state, the current tab's body, a message line,
and two key-bar rows (this tab's keys, then the global ones). `App` is pure: it takes key names,
`tick`s background work and `render`s lines, so tests drive it without a terminal. `main_loop`
is the thin curses part: wait up to TICK_MS for a key, tick, and repaint only when something
changed (at most every REDRAW_LIVE_S while a run streams events), which keeps an idle TUI
near 0% CPU and leaves the cores to the trainer.

It is long because the key routing (held keys, fast typing, pastes that must never run as hotkeys, questions
answered only by a key pressed alone) and the callbacks every tab shares (messages, logs, starting and
finishing a run) meet here; each tab's own keys and drawing live in its module.
"""

from __future__ import annotations

import contextlib
import curses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from microgpt.cells import clip
from microgpt.tui.base import Context, Tab
from microgpt.tui.chat_tab import ChatTab, default_settings
from microgpt.tui.chat_worker import ChatWorker
from microgpt.tui.knobs import KnobCatalog
from microgpt.tui.logs_tab import LogsTab
from microgpt.tui.metrics import RunTracker
from microgpt.tui.models_tab import ModelsTab
from microgpt.tui.monitor_tab import MonitorTab
from microgpt.tui.persist import load_state, save_state, set_aside
from microgpt.tui.runner import ConfigNotWritten, TrainerRunner, train_config_paths
from microgpt.tui.runs_tab import RunsTab
from microgpt.tui.terminal import Painter, ctrl_c_as_key, keys_waiting, terminal_size
from microgpt.tui.textinput import EDIT_KEYS
from microgpt.tui.train_tab import TrainTab
from microgpt.tui.widgets import Line, center_block, fill_height, fit, key_hints, text_line

MIN_WIDTH, MIN_HEIGHT = 80, 24
TICK_MS = 150
REDRAW_LIVE_S = 0.5
GLOBAL_KEYS: list[tuple[str, str]] = [("s", "start"), ("x", "stop"), ("r", "refresh"), ("c", "clear"), ("q", "quit")]
TYPING_KEYS: list[tuple[str, str]] = [("tab/S-tab", "tabs"), ("", "other hotkeys locked while typing: esc")]
LOGO = (
    "           _                             _   ",
    " _ __ ___ (_) ___ _ __ ___   __ _ _ __ | |_ ",
    "| '_ ` _ \\| |/ __| '__/ _ \\ / _` | '_ \\| __|",
    "| | | | | | | (__| | | (_) | (_| | |_) | |_ ",
    "|_| |_| |_|_|\\___|_|  \\___/ \\__, | .__/ \\__|",
    "                            |___/|_|        ",
)


FAST_KEYS = 3  # different keys read at once that are typing, not a paste (a paste of more is ignored)
LOGGED_MESSAGE = 78  # a warning or error longer than this also goes to the Logs tab, where it wraps whole
MOVE_KEYS = ("up", "down", "left", "right", "pgup", "pgdn", "home", "end", "j", "k")  # held down, each repeat moves
SPLASH_GRACE_S = 1.5  # a first key this soon after the splash closed by itself, if enter or space, only skips it

class App:
    """All tabs plus the global keys; no curses in here."""

    def __init__(
        self,
        cwd: str | Path,
        state_file: str | Path,
        catalog: KnobCatalog | None = None,
        runner: TrainerRunner | None = None,
        chat_worker: ChatWorker | None = None,
        make_settings: Callable[..., Any] = default_settings,
        splash_s: float = 1.5,
        unicode: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state_file = Path(state_file)
        self.clock = clock
        self.message: tuple[str, str] = ("", "normal")
        self.key_problem = False  # the key being handled reported a problem: keep it on screen
        state, state_problem = load_state(self.state_file)
        problems = [state_problem] if state_problem else []
        if state_problem and not state:  # nothing in the file was usable: keep it for the user, save afresh
            aside = set_aside(self.state_file)
            problems += [f"kept it as {aside.name}"] if aside else []
        catalog = catalog or KnobCatalog()
        values, rejected = catalog.restore(state.get("knobs") if isinstance(state.get("knobs"), dict) else {})
        if rejected:
            problems.append(f"ignored knob values that do not parse: {', '.join(rejected)}")
        self.ctx = Context(
            cwd=Path(cwd), catalog=catalog, values=values, state=state,
            runner=runner or TrainerRunner(cwd), unicode=unicode,
            notify=self.notify, save=self.save, open_in_chat=self.open_in_chat,
        )
        self.logs = LogsTab()
        self.chat = ChatTab(self.ctx, chat_worker, make_settings)
        self.tabs: list[Tab] = [TrainTab(self.ctx), MonitorTab(self.ctx), self.logs, RunsTab(self.ctx),
                                ModelsTab(self.ctx), self.chat]
        self.current, self.confirm_quit, self.quit_requested = 0, False, False
        self.closed = False  # shutdown() has run
        self.too_small = False  # the last frame drawn had no room for the dashboard: only q acts
        self.splash_until = clock() + splash_s if splash_s > 0 else 0.0
        self.splash_ended_at = -SPLASH_GRACE_S
        self.refreshed_at = clock()
        self.tabs[self.current].on_show()
        said = self.message[0]  # the chat tab's word on its saved settings, if it had one
        if problems:
            self.notify("; ".join([*problems, *([said] if said else [])]), "warn")

    # ---- shared callbacks ---------------------------------------------------------------
    @property
    def tab(self) -> Tab:
        return self.tabs[self.current]

    @property
    def live(self) -> bool:
        """True while a trainer process is running."""
        return self.ctx.runner.live

    def notify(self, text: str, level: str = "info", logged: bool = False) -> None:
        """Show one line in the message row (styles: info, good, warn, bad); one too long for it goes whole to
        Logs too, unless the caller `logged` it there itself."""
        if self.key_problem and level != "bad":
            return
        self.key_problem = level == "bad"
        self.message = (text, "normal" if level == "info" else level)
        if level in ("warn", "bad") and len(text) > LOGGED_MESSAGE and hasattr(self, "logs") and not logged:
            self.add_log([(f"── {text} ──", level == "bad")])

    def save(self) -> None:
        """Persist the knob values (those that differ from the defaults), the preset and the chat settings."""
        self.ctx.state["knobs"] = self.ctx.catalog.overrides(self.ctx.values)
        try:
            save_state(self.state_file, self.ctx.state)
        except OSError as exc:
            self.notify(f"could not save settings to {self.state_file}: {exc.strerror}", "bad")

    def switch(self, index: int) -> None:
        """Show another tab; the one left drops whatever mode it was in."""
        self.tab.on_hide()
        self.current = index % len(self.tabs)
        self.tab.on_show()

    def open_in_chat(self, path: Path) -> None:
        """Models tab -> Chat tab: load the checkpoint and show the conversation."""
        self.chat.load(self.ctx.relative(path))
        self.switch(self.tabs.index(self.chat))

    def add_log(self, lines: list[tuple[str, bool]]) -> None:
        """Console lines (text, from_stderr) to the Logs tab and to the Train tab's Recent Activity."""
        self.logs.add(lines)
        self.ctx.recent.extend(text for text, _ in lines)

    # ---- global actions ----------------------------------------------------------------
    def start_training(self) -> None:
        """`s`: check the whole configuration (files included), then launch the trainer."""
        ctx = self.ctx
        if self.live:
            self.notify("a run is already going: x stops it", "warn")
            return
        problem = ctx.catalog.check(ctx.values, check_paths=True)
        if problem:
            self.notify(f"cannot start: {problem}", "bad")
            return
        unwritable = []
        for config_file in train_config_paths(self.state_file, ctx.log_dir):
            try:
                ctx.runner.start(dict(ctx.values), config_file)
                break
            except ConfigNotWritten as exc:
                unwritable.append(f"{exc.filename} ({exc.strerror})")
            except OSError as exc:
                self.notify(f"cannot start the trainer: {exc}", "bad")
                return
        else:
            self.notify(f"cannot start the trainer: cannot write its config to {' or '.join(unwritable)}; "
                        "make one of those folders writable", "bad")
            return
        ctx.tracker = RunTracker()
        self.add_log([("── training started ──", False)])
        self.notify("training started: x stops it (the latest checkpoint is saved)", "good")
        self.switch(1)

    def finish_run(self) -> None:
        """The trainer exited: say how, and re-read the lists that changed."""
        runner, tracker = self.ctx.runner, self.ctx.tracker
        if runner.error:
            self.notify(f"training failed: {runner.error}", "bad", logged=True)
            self.add_log([(f"── trainer failed: {runner.error} ──", True)])
        elif not runner.run_id:  # x came before the trainer had begun: nothing ran, nothing to see
            self.notify("training stopped before it began", "warn")
            self.add_log([("── training stopped before it began ──", False)])
        else:
            reason = tracker.stop_reason or f"exit code {runner.returncode}"
            self.notify(f"training finished ({reason}): see Runs and Models", "good")
            self.add_log([(f"── training finished ({reason}) ──", False)])
        for tab in self.tabs:
            tab.refresh()

    def handle_keys(self, keys: list[str]) -> None:
        """Keys that arrived at once: a paste, a held key, or fast typing.

        While a tab is typing, a burst is text: the keys that would leave the field (tab, esc) are dropped and
        an enter inside it is a space (a last one still sends); characters and editing keys act as typed. Anywhere
        else a paste is never run as hotkeys: pasted "daily" on the Models tab would delete a checkpoint (d asks,
        y answers) and "query" would quit. A burst of one key repeated (held down) acts once, an arrow or page key
        as often as it came; up to FAST_KEYS other keys (fast typing) act in turn until a question is on screen;
        a longer burst is ignored. A question is answered only by a key pressed alone, after it appeared.
        """
        if len(keys) <= 1 or self.splash_until:  # during the splash a burst only closes it
            for key in keys[:1]:
                self.handle_key(key)
        elif self.tab.takes_paste() and not self.confirm_quit:
            for i, key in enumerate(keys):
                if key == "enter" and i < len(keys) - 1:
                    self.tab.handle_key(" ")
                elif len(key) == 1 or key in (*EDIT_KEYS, "enter"):  # key_name passes only printable characters
                    self.tab.handle_key(key)
                elif key == "ctrl-c":  # typed beside other keys, it still stops a reply being written
                    self.handle_key(key)
        elif len(set(keys)) == 1:  # a held key: an arrow moves as often as it came, anything else acts once
            for key in keys if keys[0] in MOVE_KEYS else keys[:1]:
                self.handle_key(key)
        elif len([k for i, k in enumerate(keys) if k not in MOVE_KEYS or i == 0 or keys[i - 1] != k]) <= FAST_KEYS:
            for key in keys:  # fast typing (ssh, a slow frame; a held arrow counts once): each acts in turn...
                if self.asking():  # ...while no question is on screen: only a key pressed alone answers one
                    self.notify("a question is waiting: answer it with one key", "warn")
                    break
                self.handle_key(key)
        else:
            self.notify(f"ignored {len(keys)} keys that arrived at once (a paste?): hotkeys act one at a time, "
                        "a paste only in a text field", "warn")

    def asking(self) -> bool:
        """A y/n question is on screen (quit during a run, a tab's own): only a key pressed after it answers."""
        return self.confirm_quit or (self.tab.captures_keys() and not self.tab.takes_paste())

    def handle_key(self, key: str) -> None:
        """Route one key; a problem it reported stays on the message line over any lesser news it brings
        after (the echo of a knob's new value must not hide that saving it failed)."""
        self.key_problem = False
        self.route(key)
        self.key_problem = False

    def route(self, key: str) -> None:
        """One key to where it belongs: splash, quit question, a tab that is typing, global keys, then the tab."""
        if self.splash_until:
            self.splash_until = 0.0
            return
        if key == "ctrl-c":  # stops a streaming reply, as in `chat`; else q, even mid-typing (a second one: yes)
            if not self.chat.stop_reply():
                self.quit_requested, self.confirm_quit = self.confirm_quit or not self.live, self.live
            return
        if self.clock() - self.splash_ended_at < SPLASH_GRACE_S:
            self.splash_ended_at = -SPLASH_GRACE_S  # the grace covers the first key only
            if key in ("enter", " "):
                return  # meant to skip the splash that had just closed by itself, not to edit a knob
        if self.too_small and not self.confirm_quit and key != "q":
            return  # nothing else is on screen: a key must not act where it cannot be seen
        if self.confirm_quit:
            if key == "y":
                self.quit_requested = True
            elif key in ("n", "esc"):
                self.confirm_quit = False
                self.notify("quit cancelled", "info")
            return
        if key in ("tab", "btab"):  # never text, so they switch tabs even while typing
            self.switch(self.current + (1 if key == "tab" else -1))
        elif self.tab.captures_keys():
            self.tab.handle_key(key)
        elif key == "l":
            self.switch(self.current + 1)
        elif key == "h":
            self.switch(self.current - 1)
        elif key.isdigit() and self.tab.takes_digit(key):
            self.tab.handle_key(key)
        elif key.isdigit() and 1 <= int(key) <= len(self.tabs):
            self.switch(int(key) - 1)
        elif key == "s":
            self.start_training()
        elif key == "x":
            self.notify(self.ctx.runner.stop(), "warn")
        elif key == "r":
            for tab in self.tabs:
                tab.refresh()
            self.notify("lists refreshed", "info")
        elif key == "c":
            if not self.tab.clear():
                self.notify("c clears the Logs or the Chat tab", "info")
        elif key == "q":
            if self.live:
                self.confirm_quit = True
            else:
                self.quit_requested = True
        elif not self.tab.handle_key(key):
            self.notify(f"{key!r} does nothing here: the keys are listed below", "info")

    def tick(self) -> bool:
        """Collect the trainer's output and the chat worker's pieces; True if the screen must change."""
        changed = False
        if self.splash_until and self.clock() >= self.splash_until:
            self.splash_until = 0.0
            self.splash_ended_at = self.clock()
            changed = True
        update = self.ctx.runner.poll()
        if update.lines:
            self.add_log(update.lines)
        if update.events:
            self.ctx.tracker.feed(update.events)
        if update.finished:
            self.finish_run()
        changed |= bool(update)
        process = self.ctx.runner.process
        changed |= self.ctx.system.tick(process.pid if process is not None and self.live else None)
        every = self.tab.auto_refresh_s
        if every is not None and self.clock() - self.refreshed_at >= every and not self.tab.captures_keys():
            self.tab.refresh()
            self.refreshed_at, changed = self.clock(), True
        for tab in self.tabs:  # every tab, so a reply keeps streaming while another tab is shown
            changed |= tab.tick()
        return changed

    # ---- drawing -----------------------------------------------------------------------
    def global_keys(self) -> list[tuple[str, str]]:
        """The global keys as they work on this tab: the digits it uses itself (1-3 on Train) are not "tabs"."""
        digits = [str(i) for i in range(1, len(self.tabs) + 1) if not self.tab.takes_digit(str(i))]
        contiguous = len(digits) > 1 and int(digits[-1]) - int(digits[0]) == len(digits) - 1
        switch = f"{digits[0]}-{digits[-1]}" if contiguous else "/".join(digits)
        return [(f"tab/S-tab h/l {switch}".rstrip(), "tabs"), *GLOBAL_KEYS]

    def tab_bar(self, width: int) -> Line:
        line: Line = [(" microgpt ", "title")]
        for i, tab in enumerate(self.tabs):
            line.append((f" {i + 1} {tab.title} ", "sel" if i == self.current else "normal"))
        runner, tracker = self.ctx.runner, self.ctx.tracker
        if runner.live:
            total = tracker.total_steps or "?"
            state = [("● ", "good"), (f"{tracker.step}/{total} ", "normal")]
        else:
            state = [("○ ", "dim"), ("idle ", "dim")]
        used = sum(len(text) for text, _ in line) + sum(len(text) for text, _ in state)
        return fit([*line, (" " * max(1, width - used), "normal"), *state], width)

    def splash(self, width: int, height: int) -> list[Line]:
        block = [text_line(row, "title") for row in LOGO]
        block += [text_line(""), text_line("a from-scratch GPT you can read, train and talk to", "accent"),
                  text_line(""), text_line("press any key", "dim")]
        return center_block(block, width, height)

    def render(self, width: int, height: int) -> list[Line]:
        """The whole screen as `height` lines of `width` cells."""
        self.too_small = width < MIN_WIDTH or height < MIN_HEIGHT
        if self.too_small:
            hint = ("a run is going: y stops it and quits, n stays" if self.confirm_quit
                    else "enlarge the window (q quits)")
            message = [text_line("terminal too small", "bad"),  # short lines: a 20-column window shows them
                       text_line(f"need {MIN_WIDTH}x{MIN_HEIGHT}", "normal"), text_line(f"have {width}x{height}"),
                       text_line(hint, "warn" if self.confirm_quit else "dim")]
            return center_block(message, width, height)
        if self.splash_until:
            return self.splash(width, height)
        if self.quit_requested and self.live:
            message = [text_line("stopping the training run…", "warn"),
                       text_line("the trainer finishes its step and saves the latest checkpoint", "dim")]
            return center_block(message, width, height)
        body = fill_height(self.tab.render(width, height - 4), width, height - 4)
        text, style = self.message
        if self.confirm_quit:
            text, style = "a training run is going: quit and stop it? y = quit, n = stay", "bad"
            answers = [("y", "stop the run and quit"), ("n/esc", "stay")]
            rows = [key_hints("quit?", answers, width), fit([], width)]
        else:
            shared = TYPING_KEYS if self.tab.captures_keys() else self.global_keys()
            rows = [key_hints(self.tab.title, self.tab.keys(), width), key_hints("global", shared, width)]
        if len(text) > width - 1 and len(text) > LOGGED_MESSAGE and style in ("warn", "bad"):
            text = clip(text, width - 1 - len(" (whole in Logs)")) + " (whole in Logs)"
        return [self.tab_bar(width), *body, fit([(" " + clip(text, width - 1), style)], width), *rows]

    def shutdown(self) -> None:
        """On quit: save the settings, then stop a running trainer politely (it saves its latest checkpoint). Done
        once; a shutdown cut short (a second Ctrl-C while the trainer stops) may be called again and finishes."""
        if self.closed:
            return
        self.save()
        self.ctx.runner.shutdown()
        self.closed = True


def main_loop(window: curses.window, app: App, colour: bool) -> None:
    """Wait for a key at most TICK_MS, tick, repaint when needed; resize and too-small are just repaints."""
    with contextlib.suppress(curses.error):  # some terminals (vt100) cannot hide the cursor
        curses.curs_set(0)
    window.keypad(True)
    window.timeout(TICK_MS)
    painter = Painter(window, colour, app.ctx.unicode)
    dirty, pressed, last_paint = True, False, 0.0
    with ctrl_c_as_key() as interrupts:
        while not app.quit_requested:
            now = time.monotonic()
            size = terminal_size(window)
            if size != window.getmaxyx():
                curses.resizeterm(*size)
                window.clear()
                dirty = pressed = True
            if dirty and (not app.live or now - last_paint >= REDRAW_LIVE_S or pressed):
                height, width = window.getmaxyx()
                painter.paint(app.render(width, height))
                dirty, last_paint = False, now
            keys, interrupts[:] = keys_waiting(window, TICK_MS) + interrupts, []
            pressed = bool(keys)
            if "resize" in keys:
                window.clear()
            app.handle_keys([key for key in keys if key != "resize"])
            dirty |= app.tick() or pressed
    height, width = window.getmaxyx()
    painter.paint(app.render(width, height))  # says so if a run is being stopped
    app.shutdown()
