"""What every tab has in common: the `Tab` interface and the `Context` the tabs share.

A tab is a small state machine with three duties: say which keys it understands right now
(`keys`, shown in the key bar), react to one key (`handle_key`), and draw itself into a
width x height block of lines (`render`). `tick` lets it pick up background work (a streaming
chat reply, a refreshed list) and report whether the screen must be redrawn.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from microgpt.config import TrainConfig
from microgpt.tui.knobs import KnobCatalog
from microgpt.tui.metrics import RunTracker
from microgpt.tui.runner import TrainerRunner
from microgpt.tui.system import SystemSampler
from microgpt.tui.widgets import Line


@dataclass
class Context:
    """State that crosses tabs: the knob values, the trainer, the followed run, and a few callbacks.

    `cwd` is the project root (see tui.system.project_root): every relative path is taken from there.
    """

    cwd: Path
    catalog: KnobCatalog
    values: dict[str, Any]
    runner: TrainerRunner
    state: dict[str, Any] = field(default_factory=dict)
    tracker: RunTracker = field(default_factory=RunTracker)
    system: SystemSampler = field(default_factory=SystemSampler)
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=8))  # the last log lines, for the Train tab
    unicode: bool = True
    notify: Callable[[str, str], None] = lambda text, level="info": None
    save: Callable[[], None] = lambda: None
    open_in_chat: Callable[[Path], None] = lambda path: None

    def path_knob(self, name: str, default: str) -> Path:
        """A folder knob (LOG_DIR, MODEL_DIR) resolved against the project root."""
        return self.cwd / str(self.values.get(name) or default)

    def relative(self, path: Path) -> str:
        """A path as the user would type it: relative to the project root when it lies inside it."""
        return str(path.relative_to(self.cwd)) if path.is_relative_to(self.cwd) else str(path)

    @property
    def log_dir(self) -> Path:
        """Where runs leave their logs and manifests."""
        return self.path_knob("LOG_DIR", TrainConfig.log_dir)

    @property
    def model_dir(self) -> Path:
        """Where checkpoints are saved."""
        return self.path_knob("MODEL_DIR", TrainConfig.model_dir)


class Tab:
    """Base class: a tab that shows nothing and takes no keys. Subclasses override what they need."""

    title = "?"
    auto_refresh_s: float | None = None  # re-read the tab's list from disk this often while it is shown

    def keys(self) -> list[tuple[str, str]]:
        """(key, action) pairs for the key bar, for the tab's current mode."""
        return []

    def handle_key(self, key: str) -> bool:
        """React to a key; True if the tab used it."""
        return False

    def render(self, width: int, height: int) -> list[Line]:
        """Exactly `height` lines of `width` cells."""
        return []

    def tick(self) -> bool:
        """Pick up background work; True if the screen changed."""
        return False

    def captures_keys(self) -> bool:
        """True while the tab is in a typing or picking mode that takes every key (hotkeys locked)."""
        return False

    def takes_paste(self) -> bool:
        """True while the tab has a text field, where a paste is text (not while it asks a y/n question)."""
        return self.captures_keys()

    def takes_digit(self, key: str) -> bool:
        """True when this tab uses a digit key itself instead of letting it switch tabs."""
        return False

    def refresh(self) -> None:
        """Re-read whatever the tab lists from disk (`r`)."""

    def clear(self) -> bool:
        """Clear the tab's content (`c`); False when the tab has nothing to clear."""
        return False

    def on_show(self) -> None:
        """Called when the tab becomes the current one."""

    def on_hide(self) -> None:
        """Called when another tab is shown: leave any typing, picking or confirming mode."""
