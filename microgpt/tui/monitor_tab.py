"""Monitor tab: the followed run as live charts, each over its whole history, with a Metric Explorer.

Top: a status header (run, step/total, elapsed, ETA, best val loss, early-stop patience used; the
machine's CPU/RAM, the trainer's pid and RSS, the latest model and the run's log file).
Then the categories (All, Core, Eval, System), the metric list with a sparkline per metric and a
larger chart of the selected one, and the Metric Explorer explaining what you are looking at.
`enter` focuses the selected metric full-screen with axes and min / max / last.
"""

from __future__ import annotations

from pathlib import Path

from microgpt.tui import graphs
from microgpt.tui.base import Context, Tab
from microgpt.tui.metrics import CATEGORIES, MetricInfo, metrics_in
from microgpt.tui.text import fmt_duration, fmt_number, pad
from microgpt.tui.widgets import Line, bar, hstack, panel, restyle, scroll_top, text_line, wrapped

EXPLORER_TITLE = "Metric Explorer"


def run_state(ctx: Context) -> tuple[str, str]:
    """(words, style) for what the trainer is doing now."""
    runner, tracker = ctx.runner, ctx.tracker
    if runner.live:
        if runner.stop_requests:
            return "stopping…", "warn"
        return ("training", "good") if runner.run_id else ("starting…", "warn")
    if runner.error:
        return f"failed: {runner.error}", "bad"
    if tracker.stop_reason:
        return f"finished ({tracker.stop_reason})", "normal"
    if runner.process is not None:
        return f"exited (code {runner.returncode})", "normal"
    return "no run yet: press s to start training", "dim"


def status_header(ctx: Context, width: int) -> list[Line]:
    """Three lines: progress, elapsed and ETA; the run, best val loss, patience used and the state; the
    machine, the trainer process, the latest model and the log path."""
    t = ctx.tracker
    total = str(t.total_steps) if t.total_steps else "?"
    first: Line = [
        (" step ", "dim"), (f"{t.step}/{total} ", "accent"),
        (bar(t.progress(), 22 if width >= 100 else 12), "graph"),
        (f" {t.progress() * 100:3.0f}%", "normal"),
        ("   elapsed ", "dim"), (fmt_duration(t.elapsed_s), "normal"),
        ("   ETA ", "dim"), (fmt_duration(t.eta_s) if ctx.runner.live else "-", "normal"),
        ("   " + ctx.system.machine(), "dim"),
    ]
    patience = f"{t.patience_used}/{t.patience}" if t.patience is not None else "-"
    words, style = run_state(ctx)
    second: Line = [
        (" run ", "dim"), (t.run or ctx.runner.run_id or "-", "accent"),
        ("  best val loss ", "dim"), (fmt_number(t.best_val_loss), "accent"),
        ("  patience used ", "dim"), (patience, "warn" if t.patience and t.patience_used else "normal"),
        ("  ", "normal"), (words, style),
    ]
    run = t.run or ctx.runner.run_id
    log = ctx.relative(ctx.log_dir / "train" / f"train_{run}.log") if run else "-"
    third: Line = [
        (" trainer ", "dim"), (ctx.system.trainer(), "normal"),
        ("  model ", "dim"), (ctx.relative(Path(t.checkpoints[-1])) if t.checkpoints else "-", "accent"),
        ("  log ", "dim"), (log, "normal"),
    ]
    return [first, second, third]


class MonitorTab(Tab):
    """Charts of the run that `ctx.tracker` follows."""

    title = "Monitor"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.category = 0
        self.index = 0
        self.top = 0
        self.focused = False
        self.page = 5  # rows of the metric list, updated by render

    @property
    def metrics(self) -> list[MetricInfo]:
        """The metrics of the current category."""
        return metrics_in(CATEGORIES[self.category])

    @property
    def metric(self) -> MetricInfo:
        """The selected metric."""
        return self.metrics[min(self.index, len(self.metrics) - 1)]

    def keys(self) -> list[tuple[str, str]]:
        if self.focused:
            return [("↑/↓", "metric"), ("esc", "back to list")]
        return [("←/→", "category"), ("↑/↓ j/k", "metric"), ("enter", "focus"),
                ("pgup/pgdn home/end", "scroll")]

    def handle_key(self, key: str) -> bool:
        count = len(self.metrics)
        if key in ("left", "right"):
            if self.focused:
                return False
            self.category = (self.category + (1 if key == "right" else -1)) % len(CATEGORIES)
            self.index = self.top = 0
        elif key in ("up", "k"):
            self.index = (self.index - 1) % count
        elif key in ("down", "j"):
            self.index = (self.index + 1) % count
        elif key == "enter":
            self.focused = True
        elif key == "esc" and self.focused:
            self.focused = False
        elif key in ("pgup", "pgdn"):
            self.index = max(0, min(count - 1, self.index + (-self.page if key == "pgup" else self.page)))
        elif key == "home":
            self.index = 0
        elif key == "end":
            self.index = count - 1
        else:
            return False
        return True

    def category_bar(self, width: int) -> Line:
        line: Line = [(" ", "normal")]
        for i, name in enumerate(CATEGORIES):
            line.append((f" {name} ", "sel" if i == self.category else "dim"))
            line.append((" ", "normal"))
        return line

    def metric_row(self, i: int, metric: MetricInfo, width: int) -> Line:
        """`› train loss   2.3141 ▁▂▃▄▅` : label, last value, sparkline of the whole history."""
        series = self.ctx.tracker.series[metric.key]
        label_w, value_w = 19, 9
        spark_w = max(1, width - label_w - value_w - 4)
        selected = i == self.index
        line: Line = [
            (("› " if selected else "  ") + pad(metric.label, label_w), "normal"),
            (pad(metric.format(series.last()), value_w, "right") + " ", "accent"),
            (graphs.sparkline(series.values, spark_w, self.ctx.unicode), "graph"),
        ]
        return restyle(line, "sel") if selected else line

    def explorer(self, width: int, height: int) -> list[Line]:
        """The Metric Explorer panel: what the selected metric is, why it matters, how to read it."""
        m = self.metric
        series = self.ctx.tracker.series[m.key]
        low, high = series.finite_min_max()
        inner = width - 4
        body: list[Line] = [text_line(m.label, "title")]
        figures = f"last {m.format(series.last())}  min {m.format(low)}  max {m.format(high)}"
        body += wrapped(figures, inner, "accent")
        for heading, text in (("What it is", m.what), ("Why it matters", m.why), ("How to read it", m.read)):
            body.append(text_line(heading, "dim"))
            body += wrapped(text, inner)
        return panel(EXPLORER_TITLE, body, width, height)

    def focus_view(self, width: int, height: int) -> list[Line]:
        """One metric full-screen: a title with min / max / last, then the chart with its axes."""
        m = self.metric
        series = self.ctx.tracker.series[m.key]
        low, high = series.finite_min_max()
        title: Line = [
            (f" {m.label} ", "title"),
            (f"  min {m.format(low)}  max {m.format(high)}  last {m.format(series.last())}", "accent"),
            (f"  ({series.size} points, whole run)", "dim"),
        ]
        if series.size == 0:
            return [title, text_line(" no values yet", "dim")]
        xy = [(series.steps, series.values)]
        chart = graphs.chart(xy, width - 1, height - 1, self.ctx.unicode, m.format)
        return [title, *chart]

    def render(self, width: int, height: int) -> list[Line]:
        head = status_header(self.ctx, width)
        if self.focused:
            return [*head, *self.focus_view(width, height - len(head))]
        body_h = height - len(head) - 1
        explorer_w = max(34, width * 2 // 5)
        left_w = width - explorer_w - 1
        metrics = self.metrics
        list_h = min(len(metrics), max(3, body_h - 6))
        self.page = list_h
        self.top = scroll_top(self.index, self.top, list_h, len(metrics))
        shown = range(self.top, min(len(metrics), self.top + list_h))
        left = [self.metric_row(i, metrics[i], left_w) for i in shown]
        chart_h = body_h - len(left) - 1
        series = self.ctx.tracker.series[self.metric.key]
        if chart_h >= 3:
            left.append(text_line(f"  {self.metric.label}, whole run", "dim"))
            if series.size:
                xy = [(series.steps, series.values)]
                left += graphs.chart(xy, left_w, chart_h, self.ctx.unicode, self.metric.format)
            else:
                left.append(text_line("  no values yet", "dim"))
        body = hstack([(left, left_w), (self.explorer(explorer_w, body_h), explorer_w)], body_h)
        return [*head, self.category_bar(width), *body]
