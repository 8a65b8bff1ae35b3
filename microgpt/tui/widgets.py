"""Pure drawing blocks: everything on screen is a list of `Line`s, and a `Line` is styled text segments.

No curses here. A tab's `render` returns lines of exactly the width it was given; the terminal
layer only paints them. That is what lets the tests check a whole screen as plain strings.

Styles are names, not colours ("sel", "dim", "bad"...); `terminal.py` maps each name to colours
when the terminal has them and to bold / reverse / plain when it does not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from microgpt.cells import cell_width, clip
from microgpt.tui.text import pad, wrap

Segment = tuple[str, str]  # (text, style name)
Line = list[Segment]


def text_line(text: str, style: str = "normal") -> Line:
    """A line of one segment."""
    return [(text, style)]


def plain(line: Line) -> str:
    """The characters of a line without their styles (what a test or `capture-pane` sees)."""
    return "".join(text for text, _ in line)


def fit(line: Line, width: int, fill_style: str = "normal") -> Line:
    """Clip or pad a line to exactly `width` cells, keeping each segment's style."""
    out: Line = []
    used = 0
    for text, style in line:
        if used >= width:
            break
        room = width - used
        if cell_width(text) > room:
            text = clip(text, room, ellipsis="")
        if text:
            out.append((text, style))
            used += cell_width(text)
    if used < width:
        out.append((" " * (width - used), fill_style))
    return out


def restyle(line: Line, style: str) -> Line:
    """The same text in one style (used to paint a selected row)."""
    return [(text, style) for text, _ in line]


def blank(width: int) -> Line:
    """An empty row."""
    return [(" " * width, "normal")]


def fill_height(lines: list[Line], width: int, height: int) -> list[Line]:
    """Cut or pad a block to exactly `height` rows of `width` cells."""
    rows = [fit(line, width) for line in lines[:height]]
    return rows + [blank(width) for _ in range(height - len(rows))]


def hstack(blocks: Sequence[tuple[list[Line], int]], height: int, gap: int = 1) -> list[Line]:
    """Put blocks side by side: each (lines, width) pair becomes a column, `gap` spaces between them."""
    columns = [fill_height(lines, width, height) for lines, width in blocks]
    rows: list[Line] = []
    for y in range(height):
        row: Line = []
        for i, column in enumerate(columns):
            if i:
                row.append((" " * gap, "normal"))
            row.extend(column[y])
        rows.append(row)
    return rows


def panel(title: str, body: list[Line], width: int, height: int, style: str = "dim") -> list[Line]:
    """A box with a title in its top border; `body` is clipped to the inside (width-4, height-2)."""
    if height < 2 or width < 4:
        return fill_height(body, width, height)
    inner_w = width - 4
    head = f"─ {clip(title, max(0, width - 6))} "
    top: Line = [("┌", style), (head, "title"), ("─" * max(0, width - 2 - cell_width(head)) + "┐", style)]
    rows = [top]
    for line in fill_height(body, inner_w, height - 2):
        rows.append([("│ ", style), *line, (" │", style)])
    rows.append([("└" + "─" * (width - 2) + "┘", style)])
    return rows


def wrapped(text: str, width: int, style: str = "normal", indent: str = "") -> list[Line]:
    """A paragraph wrapped to `width`; continuation lines start with `indent` and wrap a little shorter."""
    first = wrap(text, width)[0]
    rest = text[len(first):].lstrip(" ")
    lines = [text_line(first, style)]
    if rest:
        lines.extend(text_line(indent + part, style) for part in wrap(rest, width - cell_width(indent)))
    return lines


def key_hints(label: str, pairs: Iterable[tuple[str, str]], width: int) -> Line:
    """One key-bar row: `label:` then `key action` pairs, keys highlighted. Where the row does not fit, the
    actions are cut to their first word, then left out from the last pair back, as few as need be, so that every
    key stays on screen; only then is the row clipped."""
    pairs = list(pairs)
    short = [(key, action.split(" ")[0]) for key, action in pairs if key]  # a note with no key goes first
    tries = [pairs] + [short[:len(short) - n] + [(key, "") for key, _ in short[len(short) - n:]]
                       for n in range(len(short) + 1)]
    for shown_pairs in tries:
        line: Line = [(f" {label} ", "title")]
        for key, action in shown_pairs:
            line.append((f" {key}", "key"))
            if action:
                line.append((f" {action} ", "normal"))
        if sum(len(text) for text, _ in line) <= width:
            break
    return fit(line, width)


def scroll_top(selected: int, top: int, visible: int, count: int) -> int:
    """The first visible row after moving the cursor to `selected`: scroll only as far as needed."""
    if visible <= 0 or count <= visible:
        return 0
    if selected < top:
        top = selected
    elif selected >= top + visible:
        top = selected - visible + 1
    return max(0, min(top, count - visible))


def table_row(cells: Sequence[tuple[str, int, str]], style: str = "normal") -> Line:
    """A row of fixed-width cells: each (text, width, align) is padded and separated by one space."""
    return [(" ".join(pad(text, width, align) for text, width, align in cells), style)]


def bar(fraction: float, width: int) -> str:
    """A progress bar such as `[#####-----]`, `fraction` clamped to 0..1."""
    inner = max(0, width - 2)
    done = round(max(0.0, min(1.0, fraction)) * inner)
    return "[" + "#" * done + "-" * (inner - done) + "]"


def center_block(lines: list[Line], width: int, height: int) -> list[Line]:
    """Center a small block (a splash, a message) in a width x height area."""
    block_w = max((cell_width(plain(line)) for line in lines), default=0)
    left = max(0, (width - block_w) // 2)
    top = max(0, (height - len(lines)) // 2)
    rows = [blank(width) for _ in range(top)]
    rows.extend(fit([(" " * left, "normal"), *line], width) for line in lines)
    return fill_height(rows, width, height)
