"""The only module that talks to curses: key codes in, styled lines out.

`key_name` turns what `get_wch` returns into a readable name ("up", "pgdn", "esc", "a"); `Painter`
turns the pure `Line`s of the app into characters and attributes. Style names map to colours
when the terminal has them and NO_COLOR is not set, otherwise to bold / reverse / dim, so the
screen stays readable on a monochrome terminal.
"""

from __future__ import annotations

import contextlib
import curses
import locale
import os
import signal
import sys
import unicodedata
from collections.abc import Iterator

from microgpt.cells import cell_width, char_width
from microgpt.tui.widgets import Line

_KEY_CODES: dict[int, str] = {
    curses.KEY_UP: "up", curses.KEY_DOWN: "down", curses.KEY_LEFT: "left", curses.KEY_RIGHT: "right",
    curses.KEY_PPAGE: "pgup", curses.KEY_NPAGE: "pgdn", curses.KEY_HOME: "home", curses.KEY_END: "end",
    curses.KEY_FIND: "home", curses.KEY_SELECT: "end", curses.KEY_BTAB: "btab",
    curses.KEY_BACKSPACE: "backspace",
    curses.KEY_DC: "delete", curses.KEY_ENTER: "enter", curses.KEY_RESIZE: "resize",
}
_CHARS: dict[str, str] = {
    "\n": "enter", "\r": "enter", "\t": "tab", "\x1b": "esc", "\x7f": "backspace", "\x08": "backspace",
    "\x15": "ctrl-u",
}
# what a UTF-8 glyph becomes on a terminal that cannot show it
ASCII_GLYPHS: dict[str, str] = {
    "›": ">", "─": "-", "│": "|", "┌": "+", "┐": "+", "└": "+", "┘": "+", "✓": "v", "✗": "x", "●": "*",
    "…": ".", "≈": "~", "▌": "|", "←": "<", "→": ">", "↑": "^", "↓": "v", "⣿": "*", "•": "o", "·": ".", "○": "o",
}
# what curses cannot draw in one cell (a NUL raises, a newline or an escape garbles the row; a lone surrogate
# from JSON cannot be encoded; an unassigned or private code point has no width a terminal agrees on): each
# becomes one visible replacement character, so widths stay as measured
_UNDRAWABLE = {"Cc", "Cs", "Cn", "Co", "Zl", "Zp"}

# style -> (foreground colour, attributes with colour, attributes without colour)
_STYLES: dict[str, tuple[int, int, int]] = {
    "normal": (-1, curses.A_NORMAL, curses.A_NORMAL),
    "title": (curses.COLOR_CYAN, curses.A_BOLD, curses.A_BOLD),
    "dim": (-1, curses.A_DIM, curses.A_DIM),
    "sel": (-1, curses.A_REVERSE | curses.A_BOLD, curses.A_REVERSE),
    "key": (curses.COLOR_YELLOW, curses.A_BOLD, curses.A_BOLD),
    "good": (curses.COLOR_GREEN, curses.A_NORMAL, curses.A_NORMAL),
    "bad": (curses.COLOR_RED, curses.A_BOLD, curses.A_BOLD),
    "warn": (curses.COLOR_YELLOW, curses.A_NORMAL, curses.A_BOLD),
    "accent": (curses.COLOR_CYAN, curses.A_NORMAL, curses.A_NORMAL),
    "cursor": (-1, curses.A_REVERSE, curses.A_REVERSE),
    "graph": (curses.COLOR_GREEN, curses.A_NORMAL, curses.A_NORMAL),
    "graph2": (curses.COLOR_MAGENTA, curses.A_BOLD, curses.A_BOLD),
}


def key_name(key: int | str) -> str | None:
    """A readable name for one key from `get_wch`, or None for keys the TUI ignores."""
    if isinstance(key, int):
        return _KEY_CODES.get(key)
    if key in _CHARS:
        return _CHARS[key]
    return key if key.isprintable() else None


def colours_wanted(env: dict[str, str] | None = None) -> bool:
    """False when the user asked for no colour (https://no-color.org: NO_COLOR set and non-empty)."""
    env = os.environ if env is None else env
    return not env.get("NO_COLOR")


@contextlib.contextmanager
def ctrl_c_as_key() -> Iterator[list[str]]:
    """While inside, Ctrl-C (SIGINT) adds "ctrl-c" to the yielded list instead of raising KeyboardInterrupt: the
    main loop hands it on as a key (it stops a chat reply, or asks like q), whatever the loop was doing."""
    pressed: list[str] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: pressed.append("ctrl-c"))
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def terminal_speaks_utf8() -> bool:
    """Whether the C library's locale (set from LANG/LC_ALL by setlocale) encodes UTF-8, as curses needs to draw
    the glyphs. Python's own preferred encoding says UTF-8 under the C locale too (its UTF-8 mode), while
    curses there can draw ASCII only."""
    codeset = locale.nl_langinfo(locale.CODESET) if hasattr(locale, "nl_langinfo") else \
        locale.getpreferredencoding(False)
    return "utf" in codeset.lower().replace("-", "")


def drawable(text: str) -> str:
    """Text with every control character, lone surrogate and unassigned code point replaced by one visible
    U+FFFD, one cell wide (almost every string is printable: checked at C speed first)."""
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(c) in _UNDRAWABLE else c for c in text)


def to_ascii(text: str) -> str:
    """Replace what an ASCII-only terminal cannot show, keeping the width in cells the same."""
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
        else:
            out.append(ASCII_GLYPHS.get(ch, "?" * max(char_width(ch), 0)))
    return "".join(out)


class Painter:
    """Paints lines onto a curses window with the attributes their style names ask for."""

    def __init__(self, window: curses.window, colour: bool, unicode: bool) -> None:
        self.window = window
        self.unicode = unicode
        self.attrs: dict[str, int] = {}
        try:
            can_colour = curses.has_colors()
        except curses.error:  # no screen (a stand-in window): nothing to colour
            can_colour = False
        colour = colour and can_colour
        background = -1  # the terminal's own background, where it lets us keep it
        if can_colour:  # even without our colours (NO_COLOR): once colour is started, as curses.wrapper
            curses.start_color()  # does, cells are white on black unless the terminal's own colours are asked for
            try:
                curses.use_default_colors()
            except curses.error:
                background = curses.COLOR_BLACK
        for number, (name, (fg, with_colour, without)) in enumerate(_STYLES.items(), start=1):
            if colour and fg != -1:
                curses.init_pair(number, fg, background)
                self.attrs[name] = curses.color_pair(number) | with_colour
            else:
                self.attrs[name] = with_colour if colour else without

    def paint(self, lines: list[Line]) -> None:
        """Erase, draw every line from the top-left, refresh. curses only sends the cells that changed.

        Every string goes through `drawable` here, the one way onto the screen, so no untrusted text
        (a file name, a run id, a setting) can crash the dashboard or move the cursor."""
        self.window.erase()
        height, width = self.window.getmaxyx()
        for y, line in enumerate(lines[:height]):
            x = 0
            for text, style in line:
                if x >= width:
                    break
                shown = drawable(text) if self.unicode else to_ascii(drawable(text))
                try:
                    self.window.addstr(y, x, shown, self.attrs.get(style, curses.A_NORMAL))
                except curses.error:
                    pass  # writing the bottom-right cell moves the cursor off-screen: harmless
                x += cell_width(shown)
        self.window.refresh()


def terminal_size(window: curses.window) -> tuple[int, int]:
    """(height, width) the terminal has now, asked from the tty itself.

    ncurses learns of a resize through SIGWINCH, but only installs its handler when the signal is
    not ignored, and an ignored SIGWINCH is inherited from whatever started us. Asking the tty on
    every tick (one ioctl) notices a resize in any case.
    """
    try:
        size = os.get_terminal_size(sys.__stdout__.fileno())
    except (OSError, AttributeError, ValueError):
        return window.getmaxyx()
    if size.lines < 1 or size.columns < 1:  # a tty that reports no size (0x0): keep what curses assumed
        return window.getmaxyx()
    return size.lines, size.columns


PASTE_MAX = 100_000  # keys read at once at most: a paste bigger than this goes on at the next tick


def keys_waiting(window: curses.window, tick_ms: int) -> list[str]:
    """The next key (waiting up to tick_ms for it), then every key already waiting behind it without waiting
    again: a paste arrives as one such burst, typing as single keys."""
    keys: list[str] = []
    try:
        raw = window.get_wch()
        window.nodelay(True)
        while True:
            key = key_name(raw)
            if key is not None:
                keys.append(key)
            if len(keys) >= PASTE_MAX:
                break
            raw = window.get_wch()
    except curses.error:  # the timeout passed, or nothing more is waiting
        pass
    finally:
        window.timeout(tick_ms)
    return keys
