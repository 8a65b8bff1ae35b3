"""Pure rendering pieces of the TUI: text safety and width, widgets, charts, metrics, key names."""

from __future__ import annotations

import curses
import math

import numpy as np
import pytest

from microgpt.cells import cell_width, clip
from microgpt.tui import graphs
from microgpt.tui.metrics import CATEGORIES, METRICS, RunTracker, Series, metrics_in
from microgpt.tui.terminal import colours_wanted, key_name, to_ascii
from microgpt.tui.text import fmt_bytes, fmt_duration, fmt_number, pad, sanitize, wrap
from microgpt.tui.textinput import LineEditor
from microgpt.tui.widgets import fit, hstack, panel, plain, scroll_top, text_line, wrapped


# ---- text ----------------------------------------------------------------------------
def test_sanitize_strips_escapes_controls_and_overwritten_text() -> None:
    raw = "a\x1b[31mred\x1b[0m b\x1b]0;title\x07c\x07\x00d\x9b"
    assert sanitize(raw) == "ared bcd"
    assert sanitize("progress 10%\rprogress 20%") == "progress 20%"
    assert sanitize("x\ty") == "x    y"
    assert sanitize("one\ntwo") == "one two"
    assert sanitize("one\ntwo", keep_newlines=True) == "one\ntwo"


def test_widths_count_cells_not_characters() -> None:
    assert cell_width("abc") == 3
    assert cell_width("日本") == 4
    assert cell_width("e\u0301") == 1
    assert clip("日本語テキスト", 5) == "日本…"
    assert cell_width(pad("日本", 7, "center")) == 7


@pytest.mark.parametrize("width", [5, 12, 30])
def test_wrap_never_exceeds_width_and_keeps_every_word(width: int) -> None:
    text = "the quick brown fox jumps over a supercalifragilisticexpialidocious 日本語の文章 dog"
    lines = wrap(text, width)
    assert all(cell_width(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    assert wrap("", 10) == [""]


def test_number_duration_and_size_formats() -> None:
    assert fmt_number(None) == "-"
    assert fmt_number(float("nan")) == "nan"
    assert fmt_number(2.31415) == "2.314"
    assert fmt_number(0.43214) == "0.4321"
    assert fmt_number(0.0003) == "3.0e-04"
    assert fmt_number(12345) == "12.3k"
    assert fmt_duration(42) == "42s" and fmt_duration(187) == "3m07s" and fmt_duration(7500) == "2h05m"
    assert fmt_duration(None) == "-"
    assert fmt_bytes(512) == "512 B" and fmt_bytes(5 * 1024 * 1024) == "5.0 MB"


def test_line_editor_edits_at_the_cursor() -> None:
    editor = LineEditor("helo")
    editor.handle_key("left")
    editor.handle_key("l")
    assert editor.text == "hello" and editor.cursor == 4
    editor.handle_key("backspace")
    editor.handle_key("home")
    editor.handle_key("delete")
    assert editor.text == "elo"
    assert editor.handle_key("enter") is False
    editor.handle_key("ctrl-u")
    assert editor.text == ""
    rendered = editor.render(10)
    assert ("", "normal") in rendered and (" ", "cursor") in rendered


def test_line_editor_scrolls_to_the_cursor_looking_only_at_what_fits(monkeypatch) -> None:
    from microgpt.tui import text, textinput

    real, seen = text.char_width, []
    def counted(ch: str) -> int:
        seen.append(ch)
        return real(ch)

    monkeypatch.setattr(text, "char_width", counted)
    monkeypatch.setattr(textinput, "char_width", counted, raising=False)
    editor = LineEditor("日本語" * 700)  # 2100 characters, 4200 cells, the cursor at the end
    before, under, _ = editor.render(41)
    assert before == (("日本語" * 7)[1:], "normal") and cell_width(before[0]) == 40 and under == (" ", "cursor")
    editor.cursor = 3
    assert editor.render(41) == [("日本語", "normal"), ("日", "cursor"), (("本語日" * 14)[:41], "normal")]
    assert len(seen) < 200  # not once per character of the text, let alone per character squared


# ---- widgets -------------------------------------------------------------------------
def test_fit_panel_and_hstack_produce_exact_sizes() -> None:
    assert cell_width(plain(fit(text_line("x" * 100), 40))) == 40
    assert plain(fit([("ab", "a"), ("cd", "b")], 3)) == "abc"
    box = panel("Metric Explorer", [text_line("a very long line " * 5)], 30, 6)
    assert len(box) == 6 and all(cell_width(plain(row)) == 30 for row in box)
    assert "Metric Explorer" in plain(box[0])
    rows = hstack([([text_line("left")], 10), (box, 30)], 6)
    assert len(rows) == 6 and all(cell_width(plain(row)) == 41 for row in rows)


def test_wrapped_indents_continuation_lines_only() -> None:
    text = "value    datasets/starter/starter.jsonl and more words"
    rows = [plain(line) for line in wrapped(text, 40, indent="  ")]
    assert rows[0] == "value    datasets/starter/starter.jsonl"
    assert rows[1] == "  and more words"
    assert [plain(line) for line in wrapped("short", 40, indent="  ")] == ["short"]


def test_scroll_top_moves_only_as_far_as_needed() -> None:
    assert scroll_top(0, 0, 5, 20) == 0
    assert scroll_top(7, 0, 5, 20) == 3
    assert scroll_top(4, 3, 5, 20) == 3
    assert scroll_top(1, 3, 5, 20) == 1
    assert scroll_top(19, 0, 5, 3) == 0


# ---- graphs --------------------------------------------------------------------------
def test_downsample_covers_the_whole_history() -> None:
    values = np.arange(1000, dtype=float)
    points = graphs.downsample(values, 10)
    assert points.size == 10
    assert points[0] == pytest.approx(values[:100].mean())  # the first step is still there
    assert points[-1] == pytest.approx(values[900:].mean())  # and the last one
    assert graphs.downsample(values[:5], 10).size == 5


def test_downsample_ignores_non_finite_values_and_keeps_gaps() -> None:
    values = np.array([1.0, np.nan, 3.0, np.inf, np.nan, np.nan])
    points = graphs.downsample(values, 3)
    assert points[0] == 1.0 and points[1] == 3.0 and math.isnan(points[2])


def test_sparkline_and_chart_shapes() -> None:
    history = np.exp(-np.linspace(0, 4, 5000))
    line = graphs.sparkline(history, 40)
    assert len(line) == 40 and line[0] == "█" and line[-1] == "▁"
    assert set(graphs.sparkline(history, 20, unicode=False)) <= set(graphs.SPARK_ASCII)
    steps = np.arange(1, 5001)
    chart = graphs.chart([(steps, history)], 60, 10)
    assert len(chart) == 10 and all(cell_width(plain(row)) <= 60 for row in chart)
    assert "step 1" in plain(chart[-1]) and "step 5000" in plain(chart[-1])
    assert any("\u2800" < ch <= "\u28ff" for row in chart for ch in plain(row))  # braille dots
    ascii_chart = graphs.chart([(steps, history)], 60, 10, unicode=False)
    assert all(plain(row).isascii() for row in ascii_chart)


def test_overlay_draws_the_second_series_with_its_own_mark_and_style() -> None:
    a = np.linspace(3, 1, 200)
    b = np.linspace(1, 3, 100)
    rows = graphs.plot([(np.arange(200), a), (np.arange(100), b)], 30, 8)
    styles = {style for row in rows for _, style in row}
    assert {"graph", "graph2"} <= styles
    assert any(graphs.SECOND_MARK_UNICODE in plain(row) for row in rows)
    # the shorter run ends halfway along the shared step axis
    assert all(graphs.SECOND_MARK_UNICODE not in plain(row)[16:] for row in rows)


def test_resample_places_points_by_step_and_joins_sparse_ones() -> None:
    points = graphs.resample(np.array([0, 50, 100]), np.array([3.0, 2.0, 1.0]), 11, (0, 200))
    assert points[0] == 3.0 and points[2] == 2.0 and points[5] == 1.0 and points[1] == pytest.approx(2.5)
    assert np.isnan(points[6:]).all()  # nothing after the last step yet


# ---- metrics -------------------------------------------------------------------------
def test_series_grows_past_its_first_buffer() -> None:
    series = Series()
    for step in range(1000):
        series.append(step, float(step))
    assert series.size == 1000 and series.last() == 999.0 and series.steps[-1] == 999
    assert series.finite_min_max() == (0.0, 999.0)


def test_tracker_files_events_into_series_and_status() -> None:
    tracker = RunTracker()
    tracker.feed([
        {"type": "start", "run": "r1", "total_steps": 100, "parameters": 10},
        {"type": "step", "step": 1, "loss": 3.0, "lr": 0.01, "tokens_per_sec": 900.0, "steps_per_sec": 9.0,
         "elapsed_s": 1.0, "eta_s": 99.0},
        {"type": "eval", "step": 1, "train_loss": 3.0, "val_loss": 3.2, "val_ppl": 24.5, "gap": 0.2,
         "best_val_loss": 3.2, "patience_used": 1, "patience": 8},
        {"type": "system", "step": 1, "cpu_percent": 50.0, "ram_used_mb": 1000.0, "rss_mb": 100.0},
        {"type": "step", "step": 2, "loss": "NaN?", "lr": 0.01},
        {"type": "stop", "step": 2, "reason": "interrupted", "best_val_loss": 3.1},
    ])
    assert tracker.run == "r1" and tracker.total_steps == 100 and tracker.step == 2
    assert tracker.series["train_loss"].size == 1  # a non-number is skipped, not a crash
    assert tracker.series["val_ppl"].last() == 24.5 and tracker.series["rss_mb"].last() == 100.0
    assert tracker.patience_used == 1 and tracker.patience == 8
    assert tracker.stop_reason == "interrupted" and tracker.best_val_loss == 3.1
    assert tracker.progress() == pytest.approx(0.02)


def test_every_metric_is_explained_and_categorised() -> None:
    assert {m.key for m in metrics_in("All")} == {m.key for m in METRICS}
    for category in CATEGORIES[1:]:
        assert metrics_in(category)
    for metric in METRICS:
        assert metric.what and metric.why and metric.read


# ---- terminal ------------------------------------------------------------------------
def test_key_names() -> None:
    assert key_name(curses.KEY_UP) == "up"
    assert key_name(curses.KEY_NPAGE) == "pgdn"
    assert key_name(curses.KEY_BTAB) == "btab"
    assert key_name("\n") == "enter" and key_name("\x1b") == "esc" and key_name("\t") == "tab"
    assert key_name("\x7f") == "backspace"
    assert key_name("é") == "é" and key_name(" ") == " "
    assert key_name("\x03") is None and key_name(9999) is None


def test_ascii_fallback_keeps_widths_and_no_color_is_respected() -> None:
    text = "› ─│✓ 日"
    assert to_ascii(text).isascii() and len(to_ascii(text)) == cell_width(text)
    assert colours_wanted({}) is True
    assert colours_wanted({"NO_COLOR": "1"}) is False
    assert colours_wanted({"NO_COLOR": ""}) is True


def test_invisible_and_unassigned_characters_keep_columns_aligned() -> None:
    """A zero-width space, a joiner or a variation selector takes no cell; an unassigned code point, whose
    width terminals disagree on, is drawn as one replacement character."""
    from microgpt.cells import cell_width
    from microgpt.tui.terminal import drawable

    assert cell_width("a\u200bb") == cell_width("a\u200db\ufe0f") == 2
    assert drawable("a\u0378b") == "a\ufffdb" and cell_width(drawable("a\u0378b")) == 3
