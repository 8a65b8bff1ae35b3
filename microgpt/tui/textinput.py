"""A one-line text field: the state behind every place you type (knob values, chat, paths, filters)."""

from __future__ import annotations

from microgpt.cells import char_width
from microgpt.tui.widgets import Line

# keys a field consumes; everything else (enter, esc, tab...) is left to its owner
EDIT_KEYS = ("backspace", "delete", "left", "right", "home", "end", "ctrl-u")


class LineEditor:
    """Text plus a cursor position; `handle_key` edits, `render` draws it with a visible cursor."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.cursor = len(text)

    def set(self, text: str) -> None:
        """Replace the text and put the cursor at its end."""
        self.text = text
        self.cursor = len(text)

    def handle_key(self, key: str) -> bool:
        """Apply one key; True if it was an editing key (a printable character or one of EDIT_KEYS)."""
        if len(key) == 1 and key.isprintable():
            self.text = self.text[: self.cursor] + key + self.text[self.cursor :]
            self.cursor += 1
        elif key == "backspace" and self.cursor > 0:
            self.text = self.text[: self.cursor - 1] + self.text[self.cursor :]
            self.cursor -= 1
        elif key == "delete":
            self.text = self.text[: self.cursor] + self.text[self.cursor + 1 :]
        elif key == "left":
            self.cursor = max(0, self.cursor - 1)
        elif key == "right":
            self.cursor = min(len(self.text), self.cursor + 1)
        elif key == "home":
            self.cursor = 0
        elif key == "end":
            self.cursor = len(self.text)
        elif key == "ctrl-u":
            self.set("")
        else:
            return key in EDIT_KEYS
        return True

    def render(self, width: int, style: str = "normal") -> Line:
        """The visible part of the text (scrolled so the cursor shows) with the cursor cell highlighted.

        It walks back from the cursor only as far as fits in `width`, so a redraw costs the same however long
        the text is."""
        start, used = self.cursor, 0
        while start > 0 and used + char_width(self.text[start - 1]) < width:
            start -= 1
            used += char_width(self.text[start])
        before = self.text[start : self.cursor]
        under = self.text[self.cursor : self.cursor + 1] or " "
        after = self.text[self.cursor + 1 : self.cursor + 1 + width]  # more never fits
        return [(before, style), (under, "cursor"), (after, style)]
