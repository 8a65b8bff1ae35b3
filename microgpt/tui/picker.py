"""A pick-one list: type to filter, arrows to move, enter to choose, esc to cancel.

Used for the dataset file (DATASET_PATH, key `f`) and the presets (key `p`). While it is open it
takes every key, and the key bar says so: the mode is on screen, never hidden. Every letter is filter
text (a file name may hold a j or a k), so only the arrow and page keys move.
"""

from __future__ import annotations

from collections.abc import Callable

from microgpt.tui.textinput import LineEditor
from microgpt.tui.widgets import Line, hstack, panel, restyle, scroll_top, text_line

PICK, CANCEL = "pick", "cancel"


class Picker:
    """State of one open picker; `detail(item)` returns the lines describing the highlighted item."""

    def __init__(
        self,
        title: str,
        items: list[str],
        detail: Callable[[str], list[Line]],
        current: str | None = None,
        empty_hint: str = "nothing to pick",
    ) -> None:
        self.title = title
        self.items = items
        self.detail = detail
        self.empty_hint = empty_hint
        self.filter = LineEditor()
        self.index = items.index(current) if current in items else 0
        self.top = 0

    def visible(self) -> list[str]:
        """Items whose text contains the filter (case-insensitive)."""
        needle = self.filter.text.lower()
        return [item for item in self.items if needle in item.lower()]

    def selected(self) -> str | None:
        """The highlighted item, or None when the filter matches nothing."""
        shown = self.visible()
        return shown[min(self.index, len(shown) - 1)] if shown else None

    def handle_key(self, key: str) -> str | None:
        """Returns PICK or CANCEL when the picker should close, else None."""
        if key == "enter":
            return PICK if self.selected() is not None else None
        if key == "esc":
            return CANCEL
        count = len(self.visible())
        moves = {"down": 1, "up": -1, "pgdn": 10, "pgup": -10}
        if key in moves:
            self.index = max(0, min(count - 1, self.index + moves[key]))
        elif key in ("home", "end"):
            self.index = 0 if key == "home" else max(0, count - 1)
        elif key in ("backspace", "ctrl-u") or (len(key) == 1 and key.isprintable()):
            self.filter.handle_key(key)
            self.index = 0
        return None

    def keys(self) -> list[tuple[str, str]]:
        """Key-bar hints while the picker is open."""
        return [("type", "filter"), ("↑/↓ pgup/pgdn", "move"), ("home/end", "first/last"), ("enter", "choose"), ("esc", "cancel")]

    def render(self, width: int, height: int) -> list[Line]:
        """List on the left (filter line on top), the highlighted item's details on the right."""
        shown = self.visible()
        list_w = max(20, width * 3 // 5)
        detail_w = width - list_w - 1
        rows = height - 2 - 2  # panel borders, filter line, blank line
        self.index = max(0, min(self.index, len(shown) - 1))
        self.top = scroll_top(self.index, self.top, rows, len(shown))
        body: list[Line] = [
            [("filter: ", "dim"), *self.filter.render(list_w - 30),
             (f"  {len(shown)} of {len(self.items)}", "dim")],
            text_line(""),
        ]
        if not shown:
            body.append(text_line(self.empty_hint, "dim"))
        for i in range(self.top, min(len(shown), self.top + rows)):
            line = text_line(("› " if i == self.index else "  ") + shown[i])
            body.append(restyle(line, "sel") if i == self.index else line)
        choice = self.selected()
        info = self.detail(choice) if choice is not None else []
        left = panel(self.title, body, list_w, height)
        right = panel("details", info, detail_w, height)
        return hstack([(left, list_w), (right, detail_w)], height)
