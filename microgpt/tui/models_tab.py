"""Models tab: the checkpoints under MODEL_DIR, with the run, step and val loss each was saved at.

`enter` hands the selected checkpoint to the Chat tab. `d` deletes it, after a y/n question that
stays on screen until answered.
"""

from __future__ import annotations

from datetime import datetime

from microgpt.tui import disk
from microgpt.tui.base import Context, Tab
from microgpt.tui.text import fmt_bytes, fmt_number
from microgpt.tui.widgets import Line, panel, restyle, scroll_top, table_row, text_line

# (title, width, align); the file column takes whatever width the others leave
COLUMNS = (("file", 0, "left"), ("run", 20, "left"), ("step", 5, "right"), ("val loss", 8, "right"),
           ("size", 8, "right"), ("saved", 11, "left"))


def columns(width: int) -> list[tuple[str, int, str]]:
    """The columns sized for a screen `width` cells wide (below 100 cells the date moves to the panel)."""
    others = COLUMNS[1:] if width >= 100 else COLUMNS[1:-1]
    fixed = sum(w for _, w, _ in others) + len(others) + 1
    return [("  " + COLUMNS[0][0], max(12, width - fixed), "left"), *others]


class ModelsTab(Tab):
    """Checkpoint files; `confirming` is True while the delete question is open."""

    title = "Models"
    auto_refresh_s = 2.0

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.rows: list[disk.CheckpointRow] = []
        self.index = 0
        self.top = 0
        self.confirming = False

    def refresh(self) -> None:
        """Re-read the folder; the cursor stays on the file it was on (new ones come in at the top), so d and
        enter act on what is highlighted."""
        chosen = self.selected.path if self.selected is not None else None
        self.rows = disk.checkpoints(self.ctx.model_dir)
        paths = [row.path for row in self.rows]
        self.index = paths.index(chosen) if chosen in paths else min(self.index, max(0, len(self.rows) - 1))

    def on_show(self) -> None:
        self.refresh()

    @property
    def selected(self) -> disk.CheckpointRow | None:
        return self.rows[self.index] if self.rows else None

    def captures_keys(self) -> bool:
        return self.confirming

    def takes_paste(self) -> bool:
        return False  # the only mode that captures keys is the delete question: a paste must not answer it

    def on_hide(self) -> None:
        self.confirming = False

    def keys(self) -> list[tuple[str, str]]:
        if self.confirming:
            return [("y", "delete it"), ("n/esc", "keep it")]
        return [("j/k ↑/↓", "move"), ("enter", "use in Chat"), ("d", "delete")]

    def handle_key(self, key: str) -> bool:
        if self.confirming:
            if key == "y" and self.selected is not None:
                self.delete(self.selected)
            if key in ("y", "n", "esc"):
                self.confirming = False
            return True
        if key in ("j", "down", "k", "up") and self.rows:
            self.index = max(0, min(len(self.rows) - 1, self.index + (1 if key in ("j", "down") else -1)))
        elif key == "enter" and self.selected is not None:
            self.ctx.open_in_chat(self.selected.path)
        elif key == "d" and self.selected is not None:
            self.confirming = True
        else:
            return False
        return True

    def delete(self, row: disk.CheckpointRow) -> None:
        """Remove one checkpoint file and re-read the folder."""
        try:
            row.path.unlink()
            self.ctx.notify(f"deleted {row.path.name}", "good")
        except OSError as exc:
            self.ctx.notify(f"could not delete {row.path.name}: {exc.strerror}", "bad")
        self.refresh()

    def row_line(self, i: int, row: disk.CheckpointRow, width: int) -> Line:
        date = datetime.fromtimestamp(row.modified).strftime("%m-%d %H:%M")
        marker = "› " if i == self.index else "  "
        step = "-" if row.step is None else str(row.step)
        texts = (marker + row.path.name, row.run or f"({row.kind})", step, fmt_number(row.val_loss),
                 fmt_bytes(row.size_bytes), date)
        line = table_row([(text, w, align) for text, (_, w, align) in zip(texts, columns(width))])
        return restyle(line, "sel") if i == self.index else line

    def render(self, width: int, height: int) -> list[Line]:
        if not self.rows:
            folder = self.ctx.relative(self.ctx.model_dir)
            hint = f" no checkpoints in {folder}: train a run (s), then r to refresh"
            return [text_line(hint, "dim")]
        header = table_row(columns(width), "title")
        list_h = max(3, height - 7)
        self.top = scroll_top(self.index, self.top, list_h, len(self.rows))
        shown = range(self.top, min(len(self.rows), self.top + list_h))
        rows = [header] + [self.row_line(i, self.rows[i], width) for i in shown]
        rows += [text_line("")] * (list_h + 1 - len(rows))
        row = self.rows[self.index]
        if self.confirming:
            body = [text_line(f"Delete {row.path.name}?", "bad"),
                    text_line("y deletes the file, n or esc keeps it")]
            return rows + panel("confirm delete", body, width, height - len(rows), style="bad")
        saved = datetime.fromtimestamp(row.modified).strftime("%Y-%m-%d %H:%M:%S")
        body = [text_line(f"path  {self.ctx.relative(row.path)}"),
                text_line(f"kind  {row.kind or '-'}   saved {saved}", "dim"),
                text_line("enter: chat with this checkpoint", "dim")]
        return rows + panel("checkpoint", body, width, height - len(rows))
