"""What the Monitor shows: the catalogue of metrics, and a tracker that turns trainer events into series.

The trainer writes one JSON event per line (see `microgpt.train.artifacts`). `RunTracker.feed`
files every number into a growing `Series`, keeping the whole history of the run; the charts
downsample it when they draw. Nothing here touches the screen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from microgpt.tui.text import fmt_bytes, fmt_number


@dataclass(frozen=True)
class MetricInfo:
    """One chartable number: where it comes from, how to print it, and the Metric Explorer's three answers."""

    key: str
    label: str
    event: str  # event type that carries it
    field: str  # field of that event
    categories: tuple[str, ...]
    what: str
    why: str
    read: str
    unit: str = ""

    def format(self, value: float | None) -> str:
        """The value with its unit, as the list and the focus view print it."""
        if value is None:
            return "-"
        if self.unit == "MB":
            return fmt_bytes(value * 1024 * 1024)
        if self.unit == "%":
            return f"{value:.0f}%"
        return fmt_number(value)


CATEGORIES: tuple[str, ...] = ("All", "Core", "Eval", "System")

METRICS: tuple[MetricInfo, ...] = (
    MetricInfo(
        "train_loss", "train loss", "step", "loss", ("Core",),
        "Cross-entropy of the model's next-token guesses on the batch it just trained on.",
        "It is the number the optimizer pushes down; if it stalls, the model has stopped learning.",
        "Expect a fast drop, then a slow slope. Spikes mean the learning rate may be too high; "
        "a flat line from the start means it may be too low.",
    ),
    MetricInfo(
        "val_loss", "val loss", "eval", "val_loss", ("Core", "Eval"),
        "The same loss measured on held-out text the model never trains on.",
        "It tells how well the model generalises; the best checkpoint and early stopping are decided by it.",
        "Lower is better. When it turns up while train loss keeps falling, the model is memorising.",
    ),
    MetricInfo(
        "gap", "generalization gap", "eval", "gap", ("Eval",),
        "Validation loss minus training loss at the same evaluation.",
        "A growing gap is the clearest sign of overfitting: the model learns the training set, not language.",
        "Near zero is healthy. A gap that keeps widening asks for more data, dropout, or an earlier stop.",
    ),
    MetricInfo(
        "steps_per_sec", "steps/s", "step", "steps_per_sec", ("System",),
        "Optimizer steps completed per second.",
        "It sets how long the run takes: total steps divided by this is the ETA.",
        "Should stay flat. A drop mid-run points at something else competing for the CPU.",
    ),
    MetricInfo(
        "tokens_per_sec", "tokens/s", "step", "tokens_per_sec", ("Core", "System"),
        "Tokens processed per second (batch size x block size x steps/s).",
        "The fair way to compare speed across model shapes and batch sizes.",
        "Bigger models and longer blocks lower it; compare it with `python -m microgpt bench`.",
    ),
    MetricInfo(
        "lr", "learning rate", "step", "lr", ("Core",),
        "How far each optimizer step moves the weights.",
        "Too high and training diverges; too low and it crawls. The schedule warms up, then decays.",
        "Read it beside the loss: loss spikes while the rate is high are the schedule talking.",
    ),
    MetricInfo(
        "val_ppl", "val perplexity", "eval", "val_ppl", ("Eval",),
        "exp(val loss): the number of tokens the model is, in effect, choosing between.",
        "It turns loss into something you can picture; a perplexity of 5 is like a fair 5-sided die.",
        "Falls with val loss. Compare only between runs with the same tokenizer and vocabulary.",
    ),
    MetricInfo(
        "cpu_percent", "CPU %", "system", "cpu_percent", ("System",),
        "How busy the machine's processors are, averaged over all cores.",
        "NumPy training should keep the cores busy; low CPU means time goes to waiting, not computing.",
        "Near 100% is good. Much lower during training suggests I/O or a too-small model.",
        "%",
    ),
    MetricInfo(
        "ram_used_mb", "RAM used", "system", "ram_used_mb", ("System",),
        "Memory in use on the whole machine.",
        "If it reaches the machine's total, the system starts swapping and training slows to a crawl.",
        "Should rise once at start and then stay level.",
        "MB",
    ),
    MetricInfo(
        "rss_mb", "process RSS", "system", "rss_mb", ("System",),
        "Memory the trainer process itself holds (resident set size).",
        "Weights, optimizer state, activations and data live here; it grows with model and batch size.",
        "Flat after the first steps. Steady growth would be a leak worth reporting.",
        "MB",
    ),
)


# event type -> the metrics it carries, so filing an event touches only its own metrics
METRICS_BY_EVENT: dict[str, list[MetricInfo]] = {}
for _metric in METRICS:
    METRICS_BY_EVENT.setdefault(_metric.event, []).append(_metric)


def metrics_in(category: str) -> list[MetricInfo]:
    """The metrics listed under a category tab ("All" lists every one)."""
    return [m for m in METRICS if category == "All" or category in m.categories]


class Series:
    """A growing float array (amortised doubling) with the step each value was logged at."""

    def __init__(self) -> None:
        self._values = np.empty(256)
        self._steps = np.empty(256, dtype=np.int64)
        self.size = 0

    def append(self, step: int, value: float) -> None:
        """Add one point; the buffer doubles when full, so appending stays O(1) on average."""
        if self.size == self._values.size:
            self._values = np.concatenate([self._values, np.empty(self.size)])
            self._steps = np.concatenate([self._steps, np.empty(self.size, dtype=np.int64)])
        self._values[self.size] = value
        self._steps[self.size] = step
        self.size += 1

    @property
    def values(self) -> np.ndarray:
        """Every value so far (a view, not a copy)."""
        return self._values[: self.size]

    @property
    def steps(self) -> np.ndarray:
        """The step of every value."""
        return self._steps[: self.size]

    def last(self) -> float | None:
        """The newest value, or None before the first."""
        return float(self._values[self.size - 1]) if self.size else None

    def finite_min_max(self) -> tuple[float | None, float | None]:
        """The smallest and largest finite values, or (None, None)."""
        data = self.values[np.isfinite(self.values)]
        return (float(data.min()), float(data.max())) if data.size else (None, None)


def _number(value: Any) -> float | None:
    """A JSON field as a float; strings, None and garbage become None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None


@dataclass
class RunTracker:
    """Everything the Monitor and the header know about one run, rebuilt from its events."""

    run: str = ""
    total_steps: int | None = None
    parameters: int | None = None
    step: int = 0
    elapsed_s: float | None = None
    eta_s: float | None = None
    best_val_loss: float | None = None
    patience_used: int | None = None
    patience: int | None = None
    stop_reason: str = ""
    error: str = ""
    checkpoints: list[str] = field(default_factory=list)
    series: dict[str, Series] = field(default_factory=lambda: {m.key: Series() for m in METRICS})

    def feed(self, events: list[dict[str, Any]]) -> bool:
        """Take new events in order; returns True when anything changed."""
        for event in events:
            self._feed_one(event)
        return bool(events)

    def _feed_one(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        step = event.get("step")
        if step is not None:
            if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step < 2**62:
                return  # a step no run reaches (a damaged file): the event is left out
            self.step = max(self.step, step)
        if kind == "start":
            self.run = str(event.get("run", self.run))
            self.total_steps = event.get("total_steps") if isinstance(event.get("total_steps"), int) else None
            self.parameters = event.get("parameters") if isinstance(event.get("parameters"), int) else None
        elif kind == "step":
            self.elapsed_s = _number(event.get("elapsed_s"))
            self.eta_s = _number(event.get("eta_s"))
        elif kind == "eval":
            self.best_val_loss = _number(event.get("best_val_loss"))
            used, limit = event.get("patience_used"), event.get("patience")
            self.patience_used = used if isinstance(used, int) else None
            self.patience = limit if isinstance(limit, int) else None
        elif kind == "checkpoint":
            self.checkpoints.append(str(event.get("path", "")))
        elif kind == "stop":
            self.stop_reason = str(event.get("reason", "stopped"))
            self.error = str(event.get("error") or "")
            best = _number(event.get("best_val_loss"))
            self.best_val_loss = best if best is not None else self.best_val_loss
        for metric in METRICS_BY_EVENT.get(str(kind), ()):
            value = _number(event.get(metric.field))
            if value is not None:
                self.series[metric.key].append(self.step, value)

    def progress(self) -> float:
        """Fraction of the planned steps done (0 when the total is unknown)."""
        if not self.total_steps:
            return 0.0
        return min(1.0, self.step / self.total_steps)
