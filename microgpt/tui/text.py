"""Text for a terminal grid: make untrusted text safe, pad and wrap it (measured and clipped in cells by
microgpt.cells, which the trainer's progress line uses too).

A terminal cell is not a character: CJK and emoji take two cells, combining accents take none.
Every width in the TUI is counted in cells, so a line never spills past its box.
"""

from __future__ import annotations

import math
import re

from microgpt.cells import cell_width, char_width, clip

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ESC \), and two-byte escapes (ESC + one char).
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]?")
_CONTROLS = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def sanitize(text: str, keep_newlines: bool = False) -> str:
    """Drop escape sequences and control characters so text cannot move the cursor or change colours.

    Text from a subprocess or a model can hold anything. A carriage return means "overwrite this
    line", so only what follows the last one survives (what a terminal would have shown). Tabs
    become spaces; newlines become spaces unless `keep_newlines`.
    """
    text = _ESCAPES.sub("", text.replace("\r\n", "\n"))
    text = "\n".join(part.rsplit("\r", 1)[-1] for part in text.split("\n")).replace("\t", "    ")
    if not keep_newlines:
        text = text.replace("\n", " ")
    return _CONTROLS.sub("", text)


def pad(text: str, width: int, align: str = "left") -> str:
    """Clip, then fill with spaces to exactly `width` cells (align: left, right or center)."""
    text = clip(text, width)
    gap = width - cell_width(text)
    if align == "right":
        return " " * gap + text
    if align == "center":
        return " " * (gap // 2) + text + " " * (gap - gap // 2)
    return text + " " * gap


def _split_long(word: str, width: int) -> list[str]:
    """Break one word wider than the line into line-sized pieces."""
    pieces, current, used = [], "", 0
    for ch in word:
        w = char_width(ch)
        if used + w > width and current:
            pieces.append(current)
            current, used = "", 0
        current += ch
        used += w
    return pieces + [current] if current else pieces


def wrap(text: str, width: int) -> list[str]:
    """Word-wrap one paragraph (or several, split on newlines) into lines of at most `width` cells.

    Unlike `textwrap`, it counts cells and keeps runs of spaces inside a line; it never returns
    an empty list, so an empty message still takes one row.
    """
    width = max(1, width)
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current, used = "", 0
        for word in re.split(r"(\s+)", paragraph):
            if not word:
                continue
            w = cell_width(word)
            if used + w <= width:
                current += word
                used += w
            elif word.isspace():
                lines.append(current)
                current, used = "", 0
            else:
                if current.strip():
                    lines.append(current.rstrip())
                pieces = _split_long(word, width)
                lines.extend(pieces[:-1])
                current, used = pieces[-1], cell_width(pieces[-1])
        lines.append(current)
    return lines


def fmt_number(value: float | None) -> str:
    """A metric value in at most about 8 characters: 2.314, 0.4321, 3.0e-04, 12.3k, nan, or - for missing."""
    if value is None:
        return "-"
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):  # a damaged file's "n/a" or list: shown, never a crash
        return "?"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-3 or magnitude >= 1e7):
        return f"{value:.1e}"
    if magnitude >= 10_000:
        return f"{value / 1000:.1f}k"
    if magnitude >= 100:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude >= 1 else f"{value:.4g}"


def fmt_duration(seconds: float | None) -> str:
    """Seconds as 42s, 3m07s or 2h05m; '-' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


def fmt_bytes(size: float | None) -> str:
    """A size as 512 B, 12.3 KB, 4.5 MB or 1.2 GB."""
    if size is None:
        return "-"
    units = ("B", "KB", "MB", "GB")
    power = 0
    while abs(size) >= 1024 and power < len(units) - 1:
        size /= 1024
        power += 1
    return f"{size:.0f} B" if power == 0 else f"{size:.1f} {units[power]}"
