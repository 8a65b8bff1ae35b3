"""A live progress line for a terminal: one line that rewrites itself (carriage return, erase to the end)
between the regular log lines, as the original's VERBOSE=false counter did.

`ProgressLine` is also the console the run's log echoes to: `write` lifts the bar, prints the log text and
puts the bar back, so the two never garble each other. When the output is not a terminal (a pipe, a file,
the TUI reading the trainer) the bar is off and only the plain log lines are printed. No dependency: a
bar is a dozen characters of `#` and `.`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from typing import TextIO

from microgpt.cells import clip

ERASE = "\r\x1b[K"  # back to column 0, erase to the end of the line


def perplexity(loss: float) -> float:
    """exp(loss): the number of equally likely tokens the model is as unsure as (capped: exp(709) overflows)."""
    return math.exp(min(loss, 700.0))


def shown_perplexity(ppl: float) -> str:
    """A perplexity for a log line or a table: 72.02, or 1.01e+304 when a diverged model's is huge."""
    return f"{ppl:.2f}" if ppl < 1e6 else f"{ppl:.3g}"


def clock(seconds: float) -> str:
    """Seconds as H:MM:SS."""
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def bar_text(step: int, total: int, loss: float, tokens_per_sec: float, eta_s: float, width: int = 20) -> str:
    """`[#######.............] 120/1000  12% | loss 2.3456 | 1,234 tok/s | eta 0:01:23`."""
    done = min(1.0, step / total) if total > 0 else 0.0
    filled = int(done * width)
    return (f"[{'#' * filled}{'.' * (width - filled)}] {step}/{total} {done:4.0%} | loss {loss:.4f} | "
            f"{tokens_per_sec:,.0f} tok/s | eta {clock(eta_s)}")


class ProgressLine:
    """The console of a run: plain writes pass through, `show` keeps one status line at the bottom."""

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None, min_interval_s: float = 0.1) -> None:
        self.stream = stream or sys.stdout
        if enabled is None:  # a terminal that can move the cursor (TERM=dumb, e.g. Emacs' shell, cannot)
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        self.enabled = enabled
        self.min_interval_s = min_interval_s
        self.text = ""
        self._drawn_at = -float("inf")

    def show(self, text: str, force: bool = False) -> None:
        """Replace the status line (at most every `min_interval_s`, unless `force`); nothing when disabled."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn_at < self.min_interval_s:
            return
        self.text, self._drawn_at = clip(text, self._columns() - 1, ""), now  # a wrapped line would not be erased
        self.stream.write(ERASE + self.text)
        self.stream.flush()

    def _columns(self) -> int:
        """The terminal's width (80 when it cannot be asked)."""
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return shutil.get_terminal_size().columns

    def write(self, text: str) -> None:
        """Print log text above the status line."""
        if self.enabled and self.text:
            self.stream.write(ERASE + text + self.text)
        else:
            self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    def clear(self) -> None:
        """Remove the status line for good (the end of a run)."""
        if self.enabled and self.text:
            self.stream.write(ERASE)
            self.stream.flush()
        self.text = ""
