"""Train tab: every trainer knob, grouped, edited in place and checked by the trainer's own rules.

Left: the knobs under their group headings. Right, as room allows: the Runtime Summary (state,
step/total, loss, best val, tokens/s, ETA, CPU/RAM/RSS, the GPU), Recent Activity (the last 8 log
lines), and the selected knob explained (what it does, typical values, the trade-off). Top line: the
preset, the estimated size of the model, and whether the whole configuration is valid. Every change is
saved at once, so the next launch starts where this one left off.
"""

from __future__ import annotations

import os
from typing import Any

from microgpt.cells import clip
from microgpt.config import Knob
from microgpt.errors import MicrogptError, counted
from microgpt.tui import disk
from microgpt.tui.base import Context, Tab
from microgpt.tui.knobs import is_dataset_knob
from microgpt.tui.monitor_tab import run_state
from microgpt.tui.picker import CANCEL, PICK, Picker
from microgpt.tui.text import fmt_bytes, fmt_duration, fmt_number, pad
from microgpt.tui.textinput import LineEditor
from microgpt.tui.widgets import Line, hstack, panel, restyle, scroll_top, text_line, wrapped

NAME_WIDTH = 22
SUMMARY_ROWS, ACTIVITY_ROWS = 6, 8  # inside their panels (each panel adds 2 rows of border)


def fmt_count(n: int) -> str:
    """A parameter count as 812, 45.3k, 1.21M or 3.4B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


class TrainTab(Tab):
    """The knob editor; `ctx.values` is the configuration that `s` starts."""

    title = "Train"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.editor: LineEditor | None = None
        self.edit_error = ""
        self.picker: Picker | None = None
        self.picker_kind = ""
        self.index = 0
        self.top = 0
        self.config_error: str | None = None
        self.estimate: tuple[int, float] | None = None
        self._summaries: dict[tuple[str, float], disk.DatasetSummary | str] = {}
        self.order = [k for g in ctx.catalog.groups for k in ctx.catalog.knobs if k.group == g]
        self.undo: tuple[dict[str, Any], str] | None = None  # the values and preset the last preset replaced
        self.recheck()

    # ---- state changes -------------------------------------------------------------------
    @property
    def knob(self) -> Knob:
        """The selected knob."""
        return self.order[self.index]

    @property
    def preset(self) -> str:
        """The preset the values started from (saved with them)."""
        return str(self.ctx.state.get("preset", "default"))

    def recheck(self) -> None:
        """Validate the whole set and re-estimate the size; done after each change, never per frame."""
        self.config_error = self.ctx.catalog.check(self.ctx.values, check_paths=True)
        self.estimate = self.ctx.catalog.estimate(self.ctx.values)

    def set_value(self, name: str, value: Any) -> None:
        """Apply one knob value, re-validate, and save; a preset can no longer be undone (u would throw away
        this edit too)."""
        self.undo = None
        self.ctx.values[name] = value
        self.recheck()
        self.ctx.save()

    def apply_preset(self, name: str) -> None:
        """Set the knobs the preset names (the rest keep their values), and remember which preset it was;
        `u` puts back what they were (a digit key is easy to press meaning another tab)."""
        values = self.ctx.catalog.preset_values(name, self.ctx.values)
        changed = [k for k in values if values[k] != self.ctx.values.get(k)]
        self.undo = (dict(self.ctx.values), self.preset) if changed else self.undo
        self._replace_values(values, name)
        self.ctx.notify(f"preset {name} applied: {counted(len(changed), 'knob')} changed"
                        f"{' (u undoes)' if changed else ''}", "good")

    def undo_preset(self) -> None:
        """Back to the values the last preset replaced."""
        if self.undo is None:
            self.ctx.notify("no preset to undo", "warn")
            return
        (values, preset), self.undo = self.undo, None
        self._replace_values(values, preset)
        self.ctx.notify(f"values before the preset are back (preset {preset})", "good")

    def _replace_values(self, values: dict[str, Any], preset: str) -> None:
        self.ctx.values.clear()
        self.ctx.values.update(values)
        self.ctx.state["preset"] = preset
        self.recheck()
        self.ctx.save()

    def cycle_choice(self, step: int) -> None:
        """left/right on a knob with choices (or a boolean) moves to the neighbouring choice."""
        knob = self.knob
        choices = list(knob.choices) if knob.choices else None
        if choices is None and knob.type is bool:
            choices = [False, True]
        if not choices:
            self.ctx.notify(f"{knob.name} has no list of choices: press enter to type a value", "warn")
            return
        current = self.ctx.values.get(knob.name)
        position = choices.index(current) if current in choices else -step
        self.set_value(knob.name, choices[(position + step) % len(choices)])

    # ---- pickers -----------------------------------------------------------------------
    def dataset_folders(self) -> list[str]:
        """datasets/ plus the folders listed under "dataset_dirs" in the TUI settings."""
        extra = self.ctx.state.get("dataset_dirs") or []
        return ["datasets", *[str(d) for d in extra if isinstance(d, str)]]

    def summary(self, path: str) -> disk.DatasetSummary | str:
        """Record counts of a dataset file, cached until the file changes."""
        full = self.ctx.cwd / path
        try:
            key = (str(full), full.stat().st_mtime)
        except OSError as exc:
            return f"cannot read: {exc.strerror}"
        if key not in self._summaries:
            try:
                self._summaries[key] = disk.summarize_dataset(full)
            except OSError as exc:
                self._summaries[key] = f"cannot read: {exc.strerror}"
        return self._summaries[key]

    def dataset_detail(self, path: str) -> list[Line]:
        """Picker detail: the highlighted file's record counts, in total and by record type."""
        info = self.summary(path)
        lines = [text_line(os.path.basename(path), "title")]
        if isinstance(info, str):
            return [*lines, text_line(info, "bad")]
        lines += [
            text_line(f"records       {info.records}"),
            text_line(f"invalid lines {info.invalid}", "bad" if info.invalid else "normal"),
            text_line(f"blank lines   {info.blank}"),
            text_line(f"size          {fmt_bytes(info.size_bytes)}"),
            text_line(""),
            text_line("by record type", "dim"),
            *(text_line(f"  {kind:<12}{count}") for kind, count in sorted(info.by_type.items())),
        ]
        if info.truncated:
            lines.append(text_line("(counted the first 16 MB)", "dim"))
        return lines

    def preset_detail(self, name: str) -> list[Line]:
        """Picker detail: the knobs the preset sets (the others keep their values)."""
        changes = self.ctx.catalog.preset_keys(name)
        about = wrapped(self.ctx.catalog.preset_help(name), 40, "dim")
        if not changes:
            keeps = wrapped("every knob back to its default; file locations (…_PATH, …_DIR, …_FILE) are kept",
                            40, "dim")
            return [text_line(f"preset {name}", "title"), *about, *keeps]
        keeps = wrapped("sets only these knobs; the others keep their values", 40, "dim")
        lines = [text_line(f"preset {name}", "title"), *about, *keeps, text_line("")]
        fmt = self.ctx.catalog.format
        return lines + [text_line(f"{key} = {fmt(value)}") for key, value in changes.items()]

    def open_dataset_picker(self) -> None:
        files = disk.dataset_files(self.dataset_folders(), self.ctx.cwd)
        current = self.ctx.catalog.format(self.ctx.values.get(self.knob.name))
        hint = "no .jsonl files under " + ", ".join(self.dataset_folders())
        self.picker = Picker(f"{self.knob.name}: pick a dataset", files, self.dataset_detail, current, hint)
        self.picker_kind = "dataset"

    def open_preset_picker(self) -> None:
        names = self.ctx.catalog.preset_names()
        self.picker = Picker("presets", names, self.preset_detail, self.preset)
        self.picker_kind = "preset"

    # ---- keys --------------------------------------------------------------------------
    def captures_keys(self) -> bool:
        return self.editor is not None or self.picker is not None

    def takes_digit(self, key: str) -> bool:
        """1, 2, 3 apply the original's presets here (fast, balanced, max); other digits still switch tabs."""
        return self.ctx.catalog.numbered_preset(key) is not None

    def on_hide(self) -> None:
        if self.editor is not None:  # tab left mid-edit: the value typed is not applied, and that is said
            self.ctx.notify(f"{self.knob.name} not changed: enter applies a value typed", "warn")
        self.editor = self.picker = None

    def keys(self) -> list[tuple[str, str]]:
        if self.picker is not None:
            return self.picker.keys()
        if self.editor is not None:
            return [("type", "value"), ("enter", "apply"), ("esc", "cancel"), ("", "(hotkeys locked)")]
        numbered = "/".join(str(i + 1) for i in range(3) if self.ctx.catalog.numbered_preset(str(i + 1)))
        hints = [("j/k ↑/↓", "move"), ("enter/e", "edit"), ("←/→ space", "choice"), ("d", "default"),
                 ("p", "preset"), (numbered, "fast/balanced/max"), ("u", "undo preset")]
        if is_dataset_knob(self.knob.name):
            hints.append(("f", "pick dataset"))
        return hints

    def handle_key(self, key: str) -> bool:
        if self.picker is not None:
            return self._picker_key(key)
        if self.editor is not None:
            return self._edit_key(key)
        moves = {"j": 1, "down": 1, "k": -1, "up": -1, "pgdn": 10, "pgup": -10}
        if key in moves:
            self.index = max(0, min(len(self.order) - 1, self.index + moves[key]))
        elif key == "home":
            self.index = 0
        elif key == "end":
            self.index = len(self.order) - 1
        elif key in ("enter", "e"):
            self.editor = LineEditor(self.ctx.catalog.format(self.ctx.values.get(self.knob.name)))
            self.edit_error = ""
        elif key in ("left", "right", " "):
            self.cycle_choice(-1 if key == "left" else 1)
        elif self.takes_digit(key):
            self.apply_preset(str(self.ctx.catalog.numbered_preset(key)))
        elif key == "d":
            self.set_value(self.knob.name, self.knob.default)
        elif key == "p":
            self.open_preset_picker()
        elif key == "u":
            self.undo_preset()
        elif key == "f":
            if is_dataset_knob(self.knob.name):
                self.open_dataset_picker()
            else:
                self.ctx.notify("f picks a dataset file: select DATASET_PATH first", "warn")
        else:
            return False
        return True

    def _edit_key(self, key: str) -> bool:
        assert self.editor is not None
        name = self.knob.name
        if key == "esc":
            self.editor = None
            return True
        if key == "enter":
            try:
                value = self.ctx.catalog.parse(name, self.editor.text)
            except MicrogptError as exc:
                self.edit_error = str(exc)
                return True
            self.editor = None
            self.set_value(name, value)
            self.ctx.notify(f"{name} = {self.ctx.catalog.format(value)}", "good")
            return True
        self.editor.handle_key(key)
        try:
            self.ctx.catalog.parse(name, self.editor.text)
            self.edit_error = ""
        except MicrogptError as exc:
            self.edit_error = str(exc)
        return True

    def _picker_key(self, key: str) -> bool:
        assert self.picker is not None
        result = self.picker.handle_key(key)
        if result == PICK:
            choice = self.picker.selected()
            if self.picker_kind == "preset":
                self.apply_preset(str(choice))
            else:
                try:  # a file name the knob refuses (a control character in it) is a message, not a crash
                    self.set_value(self.knob.name, self.ctx.catalog.parse(self.knob.name, str(choice)))
                    self.ctx.notify(f"{self.knob.name} = {choice}", "good")
                except MicrogptError as exc:
                    self.ctx.notify(f"cannot use that file, rename it: {exc}", "bad")
        if result in (PICK, CANCEL):
            self.picker = None
        return True

    # ---- drawing -----------------------------------------------------------------------
    def header(self, width: int) -> list[Line]:
        """Preset, size estimate and validity of the whole configuration; the trainer's complaint below."""
        catalog = self.ctx.catalog
        known = self.preset in catalog.preset_names()
        modified = not known or self.ctx.values != catalog.preset_values(self.preset, self.ctx.values)
        line: Line = [(" preset ", "dim"), (self.preset + (" (modified)" if modified else ""), "accent")]
        if self.estimate is not None:
            params, memory = self.estimate
            line += [("   params ≈ ", "dim"), (fmt_count(params), "accent"),
                     ("   memory ≈ ", "dim"), (fmt_bytes(memory * 1024 * 1024), "accent")]
        if not self.config_error:
            return [[*line, ("   config ✓ valid", "good")]]
        return [[*line, ("   config ✗ invalid: s will not start", "bad")], [(" " + self.config_error, "bad")]]

    def knob_rows(self, width: int, height: int) -> list[Line]:
        """Group headings and `NAME  value` rows, scrolled so the selection stays visible."""
        rows: list[tuple[Line, int | None]] = []
        group = None
        for i, knob in enumerate(self.order):
            if knob.group != group:
                group = knob.group
                rows.append(([("── " + str(group) + " ", "title"), ("─" * width, "dim")], None))
            rows.append((self._knob_line(i, knob, width), i))
        selected_row = next(r for r, (_, i) in enumerate(rows) if i == self.index)
        self.top = scroll_top(selected_row, self.top, height, len(rows))
        if selected_row == self.top > 0 and rows[selected_row - 1][1] is None:
            self.top -= 1  # show the group heading above its first knob
        return [line for line, _ in rows[self.top : self.top + height]]

    def _knob_line(self, i: int, knob: Knob, width: int) -> Line:
        value_w = max(4, width - NAME_WIDTH - 3)
        selected = i == self.index
        name = ("› " if selected else "  ") + pad(knob.name, NAME_WIDTH)
        if selected and self.editor is not None:
            mark = (" ✗", "bad") if self.edit_error else (" ✓", "good")
            return [(name, "sel"), (" ", "normal"), *self.editor.render(value_w - 2, "accent"), mark]
        value = self.ctx.catalog.format(self.ctx.values.get(knob.name))
        changed = self.ctx.values.get(knob.name) != knob.default
        shown = " " + clip(value or '""', value_w)
        line: Line = [(name, "normal"), (shown, "accent" if changed else "normal")]
        return restyle(line, "sel") if selected else line

    def detail(self, width: int) -> list[Line]:
        """The selected knob in plain language: value, default, range, what it does and the trade-off."""
        knob = self.knob
        inner = width - 4
        fmt = self.ctx.catalog.format
        indent = " " * 9
        value = fmt(self.ctx.values.get(knob.name)) or "(empty)"
        lines: list[Line] = [text_line(knob.name, "title"),
                             text_line(f"{knob.group} · {knob.type.__name__}", "dim")]
        lines += wrapped(f"value    {value}", inner, indent=indent)
        lines += wrapped(f"default  {fmt(knob.default) or '(empty)'}", inner, "dim", indent)
        if knob.choices:
            lines += wrapped("choices  " + " | ".join(fmt(c) for c in knob.choices), inner, "dim", indent)
        elif knob.min is not None or knob.max is not None:
            lines.append(text_line("range    " + knob.limits, "dim"))
        if self.editor is not None:
            lines.append(text_line(""))
            if self.edit_error:
                lines += wrapped("✗ " + self.edit_error, inner, "bad", "  ")
            else:
                lines.append(text_line("✓ valid: enter applies it", "good"))
        lines.append(text_line(""))
        lines += wrapped(knob.help, inner, "accent")
        lines.append(text_line(""))
        lines += wrapped(knob.explain, inner)
        if is_dataset_knob(knob.name):
            folders = ", ".join(self.dataset_folders())
            lines += [text_line("")]
            hint = f'f: pick a .jsonl file under {folders} (more: a "dataset_dirs" list in the TUI settings)'
            lines += wrapped(hint, inner, "dim")
        return lines

    def runtime_summary(self) -> list[Line]:
        """The run at a glance: state, progress, loss, best val, speed, ETA, the machine and the GPU."""
        ctx, t = self.ctx, self.ctx.tracker
        words, style = run_state(ctx)
        total = t.total_steps or "?"
        loss = t.series["train_loss"].last()
        speed = t.series["tokens_per_sec"].last()
        eta = fmt_duration(t.eta_s) if ctx.runner.live else "-"
        return [
            [("state ", "dim"), (words, style)],
            [("step  ", "dim"), (f"{t.step}/{total}", "accent"), ("  loss ", "dim"), (fmt_number(loss), "accent")],
            [("best val ", "dim"), (fmt_number(t.best_val_loss), "accent"), ("  tok/s ", "dim"),
             (fmt_number(speed), "normal")],
            [("ETA   ", "dim"), (eta, "normal")],
            text_line(ctx.system.summary()),
            text_line("gpu " + ctx.system.gpu, "dim"),
        ]

    def recent_activity(self, width: int) -> list[Line]:
        """The last log lines, newest at the bottom, one row each."""
        lines = list(self.ctx.recent)[-ACTIVITY_ROWS:]
        return [text_line(clip(line, width), "dim") for line in lines] or [text_line("no log lines yet", "dim")]

    def render(self, width: int, height: int) -> list[Line]:
        head = self.header(width)
        body_h = height - len(head)
        if self.picker is not None:
            return [*head, *self.picker.render(width, body_h)]
        list_w = max(44, width * 11 // 20)
        detail_w = width - list_w - 1
        activity: list[Line] = []
        if body_h >= ACTIVITY_ROWS + 2 + 20:  # under the knobs when they keep 20 rows
            activity = panel("Recent Activity", self.recent_activity(list_w - 4), list_w, ACTIVITY_ROWS + 2)
        knobs = self.knob_rows(list_w, body_h - len(activity)) + activity
        right: list[Line] = []
        if body_h >= SUMMARY_ROWS + 2 + 14:  # the summary, and room for the knob's explanation below it
            right += panel("Runtime Summary", self.runtime_summary(), detail_w, SUMMARY_ROWS + 2)
        right += panel("about this knob", self.detail(detail_w), detail_w, body_h - len(right))
        return [*head, *hstack([(knobs, list_w), (right, detail_w)], body_h)]

