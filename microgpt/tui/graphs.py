"""Charts made of characters: sparklines and braille line charts of a metric's WHOLE history.

A run may log 100,000 steps and a chart is 70 cells wide, so the history is downsampled: the
points are split into as many equal buckets as there are columns and each bucket becomes its
mean. Nothing is dropped, nothing is cut to a recent window: the left edge is always step one.

Braille characters (U+2800..U+28FF) hold a 2 x 4 grid of dots per cell, so a chart of W x H cells
plots 2W x 4H points: eight times finer than one character per point. Where the terminal cannot
show them (no UTF-8), `unicode=False` draws with ASCII instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from microgpt.tui.text import fmt_number, pad
from microgpt.tui.widgets import Line

SPARK_UNICODE = "▁▂▃▄▅▆▇█"
SPARK_ASCII = "_.-~=+*#"
# bit of each dot in a braille cell, indexed [column][row]
_BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))
SERIES_STYLES = ("graph", "graph2")
SERIES_MARKS_ASCII = ("*", "o")
SECOND_MARK_UNICODE = "•"


def downsample(values: Sequence[float] | np.ndarray, buckets: int) -> np.ndarray:
    """Average `values` into at most `buckets` equal slices of the whole history; NaN/inf are ignored.

    A bucket with no finite value stays NaN (a gap in the chart, e.g. a loss that diverged).
    """
    data = np.asarray(values, dtype=np.float64)
    n = data.size
    if buckets <= 0 or n == 0:
        return np.empty(0)
    finite = np.isfinite(data)
    if n <= buckets:
        return np.where(finite, data, np.nan)
    starts = (np.arange(buckets) * n) // buckets
    sums = np.add.reduceat(np.where(finite, data, 0.0), starts)
    counts = np.add.reduceat(finite.astype(np.int64), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def value_range(series: Sequence[np.ndarray]) -> tuple[float, float]:
    """The min and max over every finite value; a flat or empty range is widened so it can be drawn."""
    finite = [s[np.isfinite(s)] for s in series if s.size]
    finite = [f for f in finite if f.size]
    if not finite:
        return 0.0, 1.0
    lo = float(min(f.min() for f in finite))
    hi = float(max(f.max() for f in finite))
    if hi - lo < 1e-12:
        margin = abs(hi) * 0.05 or 1.0
        lo, hi = lo - margin, hi + margin
    return lo, hi


def sparkline(values: Sequence[float] | np.ndarray, width: int, unicode: bool = True) -> str:
    """One row of bars for the whole history, exactly `width` cells (shorter histories are left-aligned)."""
    points = downsample(values, width)
    ramp = SPARK_UNICODE if unicode else SPARK_ASCII
    if points.size == 0:
        return " " * width
    lo, hi = value_range([points])
    levels = len(ramp) - 1
    chars = []
    for v in points:
        chars.append(" " if not np.isfinite(v) else ramp[round((v - lo) / (hi - lo) * levels)])
    return "".join(chars).ljust(width)


def resample(steps: np.ndarray, values: np.ndarray, buckets: int, x_range: tuple[float, float]) -> np.ndarray:
    """Average the points into `buckets` equal slices of the step axis `x_range` (the whole run).

    Unlike `downsample`, position comes from the step, so two runs of different length share
    one axis, and sparse points (an eval every 50 steps) are joined by straight lines.
    """
    steps = np.asarray(steps, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    out = np.full(buckets, np.nan)
    finite = np.isfinite(values)
    if buckets <= 0 or not finite.any():
        return out
    x0, x1 = x_range
    index = np.clip(np.round((steps[finite] - x0) / max(x1 - x0, 1e-12) * (buckets - 1)), 0, buckets - 1)
    index = index.astype(np.int64)
    sums = np.bincount(index, weights=values[finite], minlength=buckets)
    counts = np.bincount(index, minlength=buckets)
    known = np.flatnonzero(counts)
    out[known] = sums[known] / counts[known]
    inner = np.arange(known[0], known[-1] + 1)
    out[inner] = np.interp(inner, known, out[known])
    return out


def _rows_for(points: np.ndarray, rows: int, lo: float, hi: float) -> list[int | None]:
    """Map values to row indexes, 0 at the top; NaN becomes None."""
    out: list[int | None] = []
    for v in points:
        if not np.isfinite(v):
            out.append(None)
            continue
        frac = (float(v) - lo) / (hi - lo)
        out.append(round((1.0 - min(1.0, max(0.0, frac))) * (rows - 1)))
    return out


def _braille(points: np.ndarray, width: int, height: int, lo: float, hi: float) -> list[list[int]]:
    """Dot masks of a connected line through `points` (one point per dot column, 2 per cell)."""
    cells = [[0] * width for _ in range(height)]
    previous: int | None = None
    for x, y in enumerate(_rows_for(points, height * 4, lo, hi)):
        if y is None:
            previous = None
            continue
        top, bottom = (y, y) if previous is None else (min(y, previous), max(y, previous))
        for dot_y in range(top, bottom + 1):
            cells[dot_y // 4][x // 2] |= _BRAILLE_BITS[x % 2][dot_y % 4]
        previous = y
    return cells


XY = tuple[np.ndarray, np.ndarray]  # (steps, values) of one series


def step_range(series: Sequence[XY]) -> tuple[int, int]:
    """The first and last step over every series (0, 1 when there are none)."""
    firsts = [int(steps[0]) for steps, _ in series if len(steps)]
    lasts = [int(steps[-1]) for steps, _ in series if len(steps)]
    return (min(firsts), max(lasts)) if firsts else (0, 1)


def plot(
    series: Sequence[XY],
    width: int,
    height: int,
    unicode: bool = True,
    bounds: tuple[float, float] | None = None,
    x_range: tuple[int, int] | None = None,
) -> list[Line]:
    """Draw one or two (steps, values) series over shared axes into `height` lines of `width` cells.

    The first series is a braille line (or `*` in ASCII); a second one is drawn with its own mark
    where the first does not pass, and its own style, so the two stay apart even without colour.
    """
    x_range = x_range or step_range(series)
    sampled = [resample(steps, values, width * 2 if unicode and i == 0 else width, x_range)
               for i, (steps, values) in enumerate(series)]
    lo, hi = bounds or value_range(sampled)
    grid: list[list[tuple[str, str]]] = [[(" ", "normal")] * width for _ in range(height)]
    for index, points in enumerate(sampled):
        style = SERIES_STYLES[min(index, len(SERIES_STYLES) - 1)]
        if unicode and index == 0:
            masks = _braille(points, width, height, lo, hi)
            for y in range(height):
                for x in range(width):
                    if masks[y][x]:
                        grid[y][x] = (chr(0x2800 + masks[y][x]), style)
            continue
        mark = SECOND_MARK_UNICODE if unicode else SERIES_MARKS_ASCII[min(index, 1)]
        for x, y in enumerate(_rows_for(points, height, lo, hi)):
            if y is not None and grid[y][x][0] == " ":
                grid[y][x] = (mark, style)
    return [_merge(row) for row in grid]


def _merge(cells: list[tuple[str, str]]) -> Line:
    """Join neighbouring cells of the same style into one segment (fewer curses calls)."""
    line: Line = []
    for ch, style in cells:
        if line and line[-1][1] == style:
            line[-1] = (line[-1][0] + ch, style)
        else:
            line.append((ch, style))
    return line


def chart(
    series: Sequence[XY],
    width: int,
    height: int,
    unicode: bool = True,
    fmt: Callable[[float], str] = fmt_number,
) -> list[Line]:
    """A plot with a y axis (max at the top, min at the bottom) and an x axis from first to last step."""
    label_w = 9
    plot_w = max(1, width - label_w - 1)
    plot_h = max(1, height - 1)
    lo, hi = value_range([np.asarray(values, dtype=np.float64) for _, values in series])
    first, last = step_range(series)
    body = plot(series, plot_w, plot_h, unicode=unicode, bounds=(lo, hi), x_range=(first, last))
    axis = "│" if unicode else "|"
    lines: list[Line] = []
    for y, row in enumerate(body):
        if y == 0:
            label = fmt(hi)
        elif y == plot_h - 1:
            label = fmt(lo)
        elif y == plot_h // 2 and plot_h >= 5:
            label = fmt((hi + lo) / 2)
        else:
            label = ""
        lines.append([(pad(label, label_w, "right"), "dim"), (axis, "dim"), *row])
    left, right = f"step {first}", f"step {last}"
    corner = "└" if unicode else "+"
    rule = "─" if unicode else "-"
    gap = max(1, plot_w - len(left) - len(right))
    lines.append([(" " * label_w + corner, "dim"), (left + rule * gap + right, "dim")])
    return lines[:height]
