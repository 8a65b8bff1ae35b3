"""Logs tab: the trainer's console output, sanitised and wrapped, with a view that stays put.

The view is either following the end (new lines scroll in) or anchored at one log line (new
lines arrive below without moving what you read); `end` returns to following. The header says
which of the two it is, so the mode is never hidden.
"""

from __future__ import annotations

from microgpt.tui.base import Tab
from microgpt.tui.text import sanitize, wrap
from microgpt.tui.widgets import Line, text_line

MAX_LINES = 20_000
INDENT = "  "


class LogsTab(Tab):
    """Holds the log lines (text, from_stderr); `anchor` is the first shown line, None = follow the end."""

    title = "Logs"

    def __init__(self) -> None:
        self.lines: list[tuple[str, bool]] = []
        self.anchor: int | None = None
        self.width, self.page = 80, 10  # updated by each render

    def add(self, lines: list[tuple[str, bool]]) -> None:
        """Append console lines (made safe here); the oldest go once there are more than MAX_LINES."""
        self.lines.extend((sanitize(text), err) for text, err in lines)
        overflow = len(self.lines) - MAX_LINES
        if overflow > 0:
            del self.lines[:overflow]
            if self.anchor is not None:
                self.anchor = max(0, self.anchor - overflow)

    def clear(self) -> bool:
        self.lines.clear()
        self.anchor = None
        return True

    def keys(self) -> list[tuple[str, str]]:
        return [("pgup/pgdn", "scroll"), ("home", "top"), ("end", "follow end"), ("c", "clear")]

    def _rows(self, index: int, width: int) -> list[Line]:
        """One log line as wrapped screen rows; stderr lines are highlighted."""
        text, err = self.lines[index]
        parts = wrap(text, width - len(INDENT))
        style = "warn" if err else "normal"
        return [text_line(parts[0], style), *(text_line(INDENT + p, style) for p in parts[1:])]

    def _back(self, start: int, rows: int, width: int) -> int:
        """The log line to show first so that lines start.. fill `rows` rows ending at the bottom."""
        used = 0
        index = start
        while index > 0:
            used += len(self._rows(index - 1, width))
            if used > rows:
                break
            index -= 1
        return index

    def _forward(self, start: int, rows: int, width: int) -> int:
        """The first log line below a page of `rows` rows that begins at line `start`."""
        used = 0
        index = start
        while index < len(self.lines):
            used += len(self._rows(index, width))
            if used > rows:
                break
            index += 1
        return max(index, start + 1)

    def handle_key(self, key: str) -> bool:
        width = self.width
        if key == "pgup":
            first = self.anchor if self.anchor is not None else self._back(len(self.lines), self.page, width)
            self.anchor = self._back(first, self.page, width)
        elif key == "pgdn":
            if self.anchor is None:
                return True
            self.anchor = self._forward(self.anchor, self.page, width)
            if self.anchor >= self._back(len(self.lines), self.page, width):
                self.anchor = None
        elif key == "home":
            self.anchor = 0
        elif key == "end":
            self.anchor = None
        else:
            return False
        return True

    def render(self, width: int, height: int) -> list[Line]:
        self.width, self.page = width, max(1, height - 1)
        rows_h = height - 1
        first = self.anchor if self.anchor is not None else self._back(len(self.lines), rows_h, width)
        rows: list[Line] = []
        index = first
        while index < len(self.lines) and len(rows) < rows_h:
            rows.extend(self._rows(index, width))
            index += 1
        if self.anchor is None:
            state: Line = [(" following the end ", "good")]
        else:
            where = f" paused at line {first + 1} of {len(self.lines)} "
            state = [(where, "warn"), ("end follows again ", "dim")]
        header: Line = [(f" log · {len(self.lines)} lines · ", "dim"), *state]
        if not self.lines:
            rows = [text_line(" nothing logged yet: the trainer's output shows up here during a run", "dim")]
        return [header, *rows[:rows_h]]
