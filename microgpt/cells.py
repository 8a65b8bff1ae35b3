"""Text measured in terminal cells: a cell is not a character (CJK and emoji take two, combining accents
none). The dashboard counts every width in cells so a line never spills past its box, and a run's progress
line so it never wraps (a wrapped line cannot be erased in place).
"""

from __future__ import annotations

import functools
import unicodedata


@functools.lru_cache(maxsize=4096)
def char_width(ch: str) -> int:
    """Cells one character takes: 0 for marks drawn on the one before and for invisible format characters (a
    zero-width space or joiner, a variation selector), 2 for wide East Asian forms, else 1.

    Cached: a screen repeats the same few hundred glyphs (braille dots, box lines) every frame.
    """
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def cell_width(text: str) -> int:
    """Cells a whole string takes on screen."""
    if text.isascii():
        return len(text)
    return sum(char_width(ch) for ch in text)


def clip(text: str, width: int, ellipsis: str = "…") -> str:
    """Cut `text` to at most `width` cells, ending in `ellipsis` when something was cut."""
    if width <= 0:
        return ""
    if cell_width(text) <= width:
        return text
    room = width - cell_width(ellipsis)
    out, used = [], 0
    for ch in text:
        w = char_width(ch)
        if used + w > room:
            break
        out.append(ch)
        used += w
    return "".join(out) + ellipsis[: max(0, width - used)]
