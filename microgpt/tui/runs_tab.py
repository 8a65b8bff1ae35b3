"""Runs tab: every past run from its manifest, its files grouped, and its loss curves on demand.

The list shows the key figures (steps, best val loss, duration, stop reason); the panel below
groups the run's artifacts. `enter` draws the run's train and val loss over its whole history;
a run marked with `space` is overlaid on the same axes for comparison.
"""

from __future__ import annotations

from typing import Any

from microgpt.train.artifacts import list_runs, run_file
from microgpt.tui import disk, graphs
from microgpt.tui.base import Context, Tab
from microgpt.tui.metrics import RunTracker
from microgpt.tui.text import fmt_bytes, fmt_duration, fmt_number
from microgpt.tui.widgets import Line, hstack, panel, restyle, scroll_top, table_row, text_line

# (title, width, align); the stop reason takes what is left of the row
COLUMNS = (("  run", 30, "left"), ("steps", 6, "right"), ("best val", 9, "right"), ("time", 7, "right"),
           ("stop reason", 0, "left"))


def columns(width: int) -> list[tuple[str, int, str]]:
    """The columns sized for a screen `width` cells wide."""
    used = sum(w for _, w, _ in COLUMNS[:-1]) + len(COLUMNS)
    return [*COLUMNS[:-1], (COLUMNS[-1][0], max(4, width - used), "left")]


class RunsTab(Tab):
    """Manifests of past runs; `marked` is the run overlaid on the curves of the selected one."""

    title = "Runs"
    auto_refresh_s = 2.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runs: list[dict[str, Any]] = []
        self.index = 0
        self.top = 0
        self.marked = ""
        self.curves: list[tuple[str, RunTracker]] | None = None
        self._trackers: dict[str, tuple[int, RunTracker]] = {}

    def refresh(self) -> None:
        """Re-read the runs; the cursor stays on the run it was on (a new run comes in at the top), and curves
        on screen take the events written since (a live run's grow)."""
        chosen = disk.run_id(self.selected) if self.selected is not None else None
        self.runs = list_runs(self.ctx.log_dir)
        ids = [disk.run_id(manifest) for manifest in self.runs]
        self.index = ids.index(chosen) if chosen in ids else min(self.index, max(0, len(self.runs) - 1))
        if self.curves is not None and self.selected is not None:
            self.show_curves()

    def on_show(self) -> None:
        self.refresh()

    @property
    def selected(self) -> dict[str, Any] | None:
        return self.runs[self.index] if self.runs else None

    def tracker(self, rid: str) -> RunTracker:
        """The run's events replayed into a tracker; cached until its events file grows."""
        path = run_file(self.ctx.log_dir, rid, "events")
        size = path.stat().st_size if disk.is_file(path) else 0
        if self._trackers.get(rid, (-1,))[0] != size:
            tracker = RunTracker()
            tracker.feed(disk.load_events(self.ctx.log_dir, rid))
            self._trackers[rid] = (size, tracker)
        return self._trackers[rid][1]

    def keys(self) -> list[tuple[str, str]]:
        if self.curves is not None:
            return [("esc", "back to list"), ("space", "mark/unmark for overlay")]
        return [("j/k ↑/↓", "move"), ("enter", "loss curves"), ("space", "mark to compare")]

    def handle_key(self, key: str) -> bool:
        if key == "esc" and self.curves is not None:
            self.curves = None
        elif key in ("j", "down", "k", "up") and self.runs:
            self.index = max(0, min(len(self.runs) - 1, self.index + (1 if key in ("j", "down") else -1)))
            if self.curves is not None:
                self.show_curves()
        elif key == " " and self.selected is not None:
            rid = disk.run_id(self.selected)
            self.marked = "" if self.marked == rid else rid
            if self.curves is not None:
                self.show_curves()
        elif key == "enter" and self.selected is not None:
            self.show_curves()
        else:
            return False
        return True

    def show_curves(self) -> None:
        """Curves of the selected run, plus the marked one when it is a different run."""
        assert self.selected is not None
        rid = disk.run_id(self.selected)
        self.curves = [(rid, self.tracker(rid))]
        if self.marked and self.marked != rid:
            self.curves.append((self.marked, self.tracker(self.marked)))

    def run_row(self, i: int, manifest: dict[str, Any], width: int) -> Line:
        rid = disk.run_id(manifest)
        cursor = "›" if i == self.index else " "
        mark = "*" if rid == self.marked else " "
        texts = (cursor + mark + rid, str(manifest.get("steps", "-")),
                 fmt_number(manifest.get("best_val_loss")), fmt_duration(disk.duration_s(manifest)),
                 disk.run_state(manifest))
        line = table_row([(text, w, align) for text, (_, w, align) in zip(texts, columns(width))])
        return restyle(line, "sel") if i == self.index else line

    def details(self, manifest: dict[str, Any], width: int, height: int) -> list[Line]:
        """Key figures on the left, artifacts grouped on the right."""
        half = (width - 1) // 2
        dataset = manifest.get("dataset")
        records = ""
        if isinstance(dataset, dict):
            records = f" ({dataset['records']} records)" if "records" in dataset else ""
            dataset = dataset.get("path", "-")
        steps = str(manifest.get("steps", "-"))
        if "total_steps" in manifest:
            steps += f"/{manifest['total_steps']}"
        figures: list[Line] = [
            text_line(f"dataset   {dataset or '-'}{records}"),
            text_line(f"steps     {steps}"),
            text_line(f"best val  {fmt_number(manifest.get('best_val_loss'))}"),
            text_line(f"duration  {fmt_duration(disk.duration_s(manifest))}"),
            text_line(f"stopped   {disk.run_state(manifest)}"),
        ]
        if isinstance(manifest.get("parameters"), int):
            figures.append(text_line(f"params    {manifest['parameters']:,}"))
        final = manifest.get("final")
        if isinstance(final, dict):
            figures += [text_line(f"final {k:<12} {fmt_number(v) if v is None or isinstance(v, float) else v}",
                                  "dim") for k, v in final.items()]  # a loss not measured: "-"
        files: list[Line] = []
        for label, path, size in disk.artifacts(manifest, self.ctx.cwd, self.ctx.log_dir):
            state = fmt_bytes(size) if size is not None else "missing"
            files.append([(f"{label:<11}", "dim"), (f"{state:>9} ", "bad" if size is None else "accent"),
                          (path.name, "normal")])
        checkpoints = manifest.get("checkpoints") or {}
        if isinstance(checkpoints, dict):
            files += [text_line(f"{k:<11}{v}", "dim") for k, v in checkpoints.items() if v]
        return hstack([(panel("key figures", figures, half, height), half),
                       (panel("artifacts", files, width - half - 1, height), width - half - 1)], height)

    def curves_view(self, width: int, height: int) -> list[Line]:
        """Train loss and val loss, each over the whole run, a marked run overlaid."""
        assert self.curves is not None
        marks = ("⣿", graphs.SECOND_MARK_UNICODE) if self.ctx.unicode else graphs.SERIES_MARKS_ASCII
        legend: Line = [(" ", "normal")]
        for (rid, _), mark, style in zip(self.curves, marks, graphs.SERIES_STYLES):
            legend += [(f"{mark} ", style), (f"{rid}   ", "normal")]
        if len(self.curves) == 1:
            legend.append(("(space on another run overlays it)", "dim"))
        rows = [legend]
        chart_h = (height - 1) // 2 - 1
        for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
            series = [tracker.series[key] for _, tracker in self.curves]
            rows.append(text_line(f" {label}", "title"))
            if not any(s.size for s in series):
                rows += [text_line("   no values recorded", "dim")] + [text_line("")] * (chart_h - 1)
                continue
            rows += graphs.chart([(s.steps, s.values) for s in series], width - 1, chart_h, self.ctx.unicode)
        return rows

    def render(self, width: int, height: int) -> list[Line]:
        if self.curves is not None:
            return self.curves_view(width, height)
        if not self.runs:
            folder = self.ctx.relative(self.ctx.log_dir)
            hint = f" no runs under {folder} yet: press s to train one, r to refresh"
            return [text_line(hint, "dim")]
        header = table_row(columns(width), "title")
        list_h = max(3, min(len(self.runs), height // 2 - 1))
        self.top = scroll_top(self.index, self.top, list_h, len(self.runs))
        shown = range(self.top, min(len(self.runs), self.top + list_h))
        rows = [header] + [self.run_row(i, self.runs[i], width) for i in shown]
        rows += [text_line("")] * (list_h + 1 - len(rows))
        return rows + self.details(self.runs[self.index], width, height - len(rows))
