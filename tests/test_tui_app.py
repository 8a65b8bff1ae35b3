"""The whole dashboard driven without a terminal: keys in, screens (lists of lines) out.

The trainer is a tiny fake script that follows the real event contract and the chat model is a
fake session, so these tests check the TUI's own logic in a few seconds.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_tui_fakes import FakeSession, FakeSettings, fake_trainer_command, wait_until

from microgpt.cells import cell_width
from microgpt.tui.app import App
from microgpt.tui.chat_worker import ChatWorker
from microgpt.tui.runner import TrainerRunner
from microgpt.tui.system import SystemSampler, project_root
from microgpt.tui.widgets import plain

TAB_NAMES = ("Train", "Monitor", "Logs", "Runs", "Models", "Chat")
SIZES = [(80, 24), (120, 36)]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder with small datasets; the test runs inside it, as the TUI does."""
    (tmp_path / "datasets" / "more").mkdir(parents=True)
    (tmp_path / "datasets" / "starter").mkdir()
    (tmp_path / "datasets" / "starter" / "starter.jsonl").write_text(
        '{"id": "s1", "record_type": "knowledge", "text": "the default DATASET_PATH"}\n'
    )
    qa = '{"id": "q%d", "record_type": "qa", "question": "why?", "answer": "because."}\n'
    note = '{"id": "k1", "record_type": "knowledge", "text": "water boils at 100 C"}\n'
    (tmp_path / "datasets" / "tiny.jsonl").write_text(qa % 1 + qa % 2 + note + "\nnot json\n{}\n")
    dolly = '{"instruction": "a", "context": "", "response": "b"}\n'
    (tmp_path / "datasets" / "more" / "other.jsonl").write_text(dolly)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_app(project: Path) -> App:
    return App(
        project, project / "tui.json",
        runner=TrainerRunner(project, fake_trainer_command(project)),
        chat_worker=ChatWorker(FakeSession.open), make_settings=FakeSettings, splash_s=0,
    )


def screen(app: App, width: int = 120, height: int = 36) -> str:
    lines = app.render(width, height)
    assert len(lines) == height
    for line in lines:
        assert cell_width(plain(line)) == width, plain(line)
    return "\n".join(plain(line) for line in lines)


def press(app: App, *keys: str) -> None:
    for key in keys:
        app.handle_key(key)
        app.tick()


def select_knob(app: App, name: str) -> None:
    """Move the Train tab's cursor onto a knob, with j/k as a user would."""
    press(app, "home")
    for _ in range(60):
        if app.tab.knob.name == name:
            return
        press(app, "j")
    raise AssertionError(f"knob {name} not reachable")


def start_run(app: App) -> None:
    """Press s with a valid dataset and a short fake run."""
    app.ctx.values.update(DATASET_PATH="datasets/tiny.jsonl", NUM_STEPS=100, WARMUP_STEPS=10)
    press(app, "s")


def run_to_end(app: App, timeout: float = 30.0) -> None:
    assert wait_until(lambda: not app.live, app.tick, timeout)


# ---- frame ---------------------------------------------------------------------------
@pytest.mark.parametrize("size", SIZES)
def test_every_tab_fills_the_frame_exactly(project: Path, size: tuple[int, int]) -> None:
    app = make_app(project)
    for index, name in enumerate(TAB_NAMES):
        app.switch(index)
        text = screen(app, *size)
        rows = text.splitlines()
        assert all(tab in rows[0] for tab in TAB_NAMES)
        assert rows[-2].lstrip().startswith(name)  # the current tab's keys
        assert "s start" in rows[-1] and "q quit" in rows[-1] and "x stop" in rows[-1]
        assert ("4-6 tabs" if name == "Train" else "1-6 tabs") in rows[-1]  # 1/2/3 apply presets on Train


@pytest.mark.parametrize("size", SIZES)
def test_train_tab_knobs_and_monitor_metric_explorer(project: Path, size: tuple[int, int]) -> None:
    app = make_app(project)
    text = screen(app, *size)
    for knob in ("DATASET_PATH", "N_EMBD", "BATCH_SIZE", "Dataset & tokenizer", "Model shape"):
        assert knob in text
    assert "params ≈" in text and "memory ≈" in text and "config ✓ valid" in text
    assert "about this knob" in text and "JSONL training file" in text
    press(app, "l")
    text = screen(app, *size)
    assert "Metric Explorer" in text and "What it is" in text
    assert "best val loss" in text and "patience used" in text and "ETA" in text


def test_small_terminal_gets_a_message_and_never_crashes(project: Path) -> None:
    app = make_app(project)
    for width, height in [(79, 24), (80, 23), (20, 5), (1, 1)]:
        lines = app.render(width, height)
        assert len(lines) == height
        assert all(cell_width(plain(line)) == width for line in lines)
    assert "terminal too small" in "\n".join(plain(line) for line in app.render(60, 20))


def test_splash_is_skipped_by_any_key_or_time(project: Path) -> None:
    now = [0.0]
    app = App(project, project / "tui.json", splash_s=1.5, clock=lambda: now[0])
    assert "press any key" in screen(app)
    press(app, "x")  # skipping the splash does not also run the key's action
    assert "Train" in screen(app).splitlines()[1] or "preset" in screen(app)
    app = App(project, project / "tui.json", splash_s=1.5, clock=lambda: now[0])
    now[0] = 2.0
    assert app.tick() is True and "press any key" not in screen(app)


def test_an_enter_just_after_the_splash_closed_only_skips_it(project: Path) -> None:
    now = [0.0]
    app = App(project, project / "tui.json", splash_s=1.5, clock=lambda: now[0])
    now[0] = 1.6
    app.tick()
    now[0] = 2.0
    press(app, "enter")  # a late "skip the splash" key must not open the selected knob for editing
    assert not app.tab.captures_keys()
    now[0] = 4.0
    press(app, "enter")
    assert app.tab.captures_keys()


def test_the_enter_grace_after_the_splash_ends_at_the_first_key(project: Path) -> None:
    now = [0.0]
    app = App(project, project / "tui.json", splash_s=1.5, clock=lambda: now[0])
    now[0] = 1.6
    app.tick()
    press(app, "j", "enter")  # the user is already working: this enter edits the knob
    assert app.tab.captures_keys()


def test_global_keys_switch_tabs_both_ways(project: Path) -> None:
    app = make_app(project)
    press(app, "tab")
    assert app.tab.title == "Monitor"
    press(app, "l", "l")
    assert app.tab.title == "Runs"
    press(app, "btab", "h")
    assert app.tab.title == "Monitor"
    press(app, "h", "h")
    assert app.tab.title == "Chat"  # wraps around
    press(app, "3")
    assert app.tab.title == "Logs"
    press(app, "c")
    assert "log · 0 lines" in screen(app)


# ---- Train tab -----------------------------------------------------------------------
def test_editing_a_knob_validates_as_you_type(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "N_EMBD")
    press(app, "enter", "ctrl-u", "4", "x")
    text = screen(app)
    assert "✗" in text and "not a whole number" in text and "hotkeys locked" in text
    press(app, "enter")  # an invalid value is not applied
    assert app.tab.editor is not None
    press(app, "q", "s")  # hotkeys are locked: these are text
    assert not app.quit_requested and app.tab.editor.text == "4xqs"
    press(app, "ctrl-u", "6", "4")
    assert "✓ valid" in screen(app)
    press(app, "enter")
    assert app.ctx.values["N_EMBD"] == 64 and app.tab.editor is None
    saved = json.loads((project / "tui.json").read_text())
    assert saved["knobs"]["N_EMBD"] == 64


def test_tab_leaves_an_edit_but_l_and_h_are_text(project: Path) -> None:
    app = make_app(project)
    press(app, "enter", "l", "h")
    assert app.tab.title == "Train" and app.tab.editor.text.endswith("lh")
    press(app, "tab")
    assert app.tab.title == "Monitor"
    press(app, "btab")
    assert app.tab.editor is None and app.ctx.values["DATASET_PATH"] == "datasets/starter/starter.jsonl"


def test_a_missing_dataset_file_shows_before_start(project: Path) -> None:
    app = make_app(project)
    press(app, "enter", "x", "enter")
    assert "config ✗ invalid" in screen(app)
    assert "DATASET_PATH='datasets/starter/starter.jsonlx'" in screen(app)
    assert "file not found" in screen(app, 80, 24)


def test_cross_knob_problems_show_in_the_header(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "N_HEAD")
    press(app, "enter", "ctrl-u", "5", "enter")
    assert "config ✗ invalid" in screen(app) and "must be divisible by N_HEAD" in screen(app)
    press(app, "d")
    assert "config ✓ valid" in screen(app)


def test_choices_cycle_with_arrows_and_esc_cancels_an_edit(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "TOKENIZER")
    press(app, "right")
    assert app.ctx.values["TOKENIZER"] == "char"
    press(app, "enter", "ctrl-u", "z", "esc")
    assert app.ctx.values["TOKENIZER"] == "char"
    select_knob(app, "VERBOSE")
    before = app.ctx.values["VERBOSE"]
    press(app, "right")
    assert app.ctx.values["VERBOSE"] is (not before)


def test_presets_apply_and_persist(project: Path) -> None:
    app = make_app(project)
    app.ctx.values["DATASET_PATH"] = "datasets/tiny.jsonl"
    press(app, "p")
    assert "presets" in screen(app) and "coherent-fast" in screen(app)
    press(app, "down", "enter")
    assert app.ctx.state["preset"] == "seed" and app.ctx.values["N_EMBD"] == 48
    assert app.ctx.values["DATASET_PATH"] == "datasets/tiny.jsonl"  # file locations survive a preset
    assert "preset seed " in screen(app)
    again = make_app(project)
    assert again.ctx.values["N_EMBD"] == 48 and "preset seed" in screen(again)


def test_dataset_picker_filters_counts_and_applies(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "DATASET_PATH")
    press(app, "f")
    text = screen(app)
    assert "datasets/tiny.jsonl" in text and "datasets/more/other.jsonl" in text
    press(app, "t", "i", "n")  # typing filters
    text = screen(app)
    assert "1 of 3" in text and "other.jsonl" not in text
    assert "records       3" in text and "invalid lines 2" in text and "blank lines   1" in text
    assert "qa          2" in text and "knowledge   1" in text
    press(app, "enter")
    assert app.ctx.values["DATASET_PATH"] == "datasets/tiny.jsonl"
    press(app, "f", "down", "esc")
    assert app.ctx.values["DATASET_PATH"] == "datasets/tiny.jsonl"
    (project / "datasets" / "jokes.jsonl").write_text("")
    press(app, "f", "j", "o", "k")  # j and k are filter text, as the key bar says ("type filter")
    assert app.tab.picker.filter.text == "jok" and "1 of 4" in screen(app)
    press(app, "enter")
    assert app.ctx.values["DATASET_PATH"] == "datasets/jokes.jsonl"


def test_dataset_picker_searches_configured_folders(project: Path, tmp_path_factory) -> None:
    extra = tmp_path_factory.mktemp("corpora")
    (extra / "notes.jsonl").write_text('{"id": "n", "record_type": "memory", "text": "x"}\n')
    (project / "tui.json").write_text(json.dumps({"dataset_dirs": [str(extra)]}))
    app = make_app(project)
    select_knob(app, "DATASET_PATH")
    assert str(extra) in screen(app)
    press(app, "f", *"notes", "enter")
    assert app.ctx.values["DATASET_PATH"] == str(extra / "notes.jsonl")


def test_a_picked_file_name_the_knob_refuses_is_a_message_not_a_crash(project: Path) -> None:
    (project / "datasets" / "tab\there.jsonl").write_text('{"id": "n", "record_type": "memory", "text": "x"}\n')
    app = make_app(project)
    select_knob(app, "DATASET_PATH")
    press(app, "f", *"here", "enter")
    assert app.ctx.values["DATASET_PATH"] != "datasets/tab\there.jsonl"
    assert "cannot use that file, rename it: DATASET_PATH=" in screen(app)


def test_leaving_the_tab_mid_edit_says_the_value_was_not_applied(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "N_LAYER")
    press(app, "e", "ctrl-u", "7", "tab")
    assert app.ctx.values["N_LAYER"] != 7 and "N_LAYER not changed: enter applies a value typed" in screen(app)


def test_f_elsewhere_explains_itself(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "N_LAYER")
    press(app, "f")
    assert "select DATASET_PATH first" in screen(app)


# ---- training ------------------------------------------------------------------------
def test_start_follow_and_finish_a_run(project: Path) -> None:
    app = make_app(project)
    start_run(app)
    assert app.tab.title == "Monitor" and app.live
    run_to_end(app)
    tracker = app.ctx.tracker
    assert tracker.run == "20250101-120000_fake" and tracker.stop_reason == "completed"
    assert tracker.series["train_loss"].size == app.ctx.values["NUM_STEPS"]
    text = screen(app)
    assert "finished (completed)" in text and "100/100" in text
    written = json.loads((project / "tui_train_config.json").read_text())  # not a train_config.json of yours
    assert written["DATASET_PATH"] == "datasets/tiny.jsonl" and "N_EMBD" in written
    press(app, "3")
    logs = screen(app)
    assert "step 100/100 loss" in logs and "red" in logs and "\x1b" not in logs
    assert "training finished" in logs
    press(app, "4")
    assert "20250101-120000_fake" in screen(app) and "completed" in screen(app)


def test_x_stops_a_run_gracefully(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    app = make_app(project)
    start_run(app)
    assert wait_until(lambda: app.ctx.tracker.step >= 3, app.tick)
    press(app, "x")
    assert "stopping" in screen(app)
    run_to_end(app)
    assert app.ctx.tracker.stop_reason == "interrupted" and not app.ctx.runner.error
    assert "finished (interrupted)" in screen(app)


def test_x_before_the_trainer_began_is_a_stop_not_a_failure(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "starting")
    app = make_app(project)
    (project / "train_config.json").write_text('{"num_steps": 5000}')  # the user's own, beside tui.json
    start_run(app)
    assert wait_until(lambda: "ready" in "".join(app.ctx.runner.stderr_tail), app.tick)
    press(app, "x")  # its run id not printed yet
    run_to_end(app)
    text = screen(app)
    assert "training stopped before it began" in text and "failed" not in text, text
    assert (project / "train_config.json").read_text() == '{"num_steps": 5000}'


def test_a_crash_shows_the_trainers_error(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "crash")
    app = make_app(project)
    start_run(app)
    run_to_end(app)
    text = screen(app)
    assert "training failed: ValueError: the dataset is empty" in text
    assert "failed: ValueError" in text


def test_start_refuses_an_invalid_configuration(project: Path) -> None:
    app = make_app(project)
    app.ctx.values["DATASET_PATH"] = "datasets/nope.jsonl"
    press(app, "s")
    assert not app.live and "cannot start: DATASET_PATH" in screen(app)
    app.ctx.values["DATASET_PATH"] = "datasets/" + "d" * 250 + ".jsonl"  # the reason would be cut off the row
    press(app, "s")
    assert "(whole in Logs)" in screen(app, 80, 24)
    app.switch(2)  # Logs (on the Train tab, 3 is a preset)
    assert "file name too long" in screen(app, 80, 24)  # the end of the message, wrapped in Logs


def test_quit_asks_while_a_run_is_going(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    app = make_app(project)
    start_run(app)
    press(app, "q")
    assert app.confirm_quit and not app.quit_requested and "quit and stop it?" in screen(app)
    press(app, "n")
    assert not app.confirm_quit
    press(app, "q", "y")
    assert app.quit_requested and "stopping the training run" in screen(app)
    app.shutdown()
    assert app.ctx.runner.process.poll() is not None


def test_q_quits_at_once_when_idle(project: Path) -> None:
    app = make_app(project)
    press(app, "q")
    assert app.quit_requested


# ---- Monitor -------------------------------------------------------------------------
def test_monitor_categories_selection_and_focus(project: Path) -> None:
    app = make_app(project)
    start_run(app)
    run_to_end(app)
    text = screen(app, 80, 24)
    assert "train loss" in text and "process RSS" in text
    press(app, "right")
    assert "Core" in app.tab.metrics[0].categories and "CPU %" not in screen(app)
    press(app, "left", "left")
    labels = [metric.label for metric in app.tab.metrics]
    assert "CPU %" in labels and "val loss" not in labels and "CPU %" in screen(app)
    press(app, "right", "down", "enter")
    focused = screen(app)
    assert "min " in focused and "max " in focused and "last " in focused and "whole run" in focused
    assert "step 10" in focused and "step 100" in focused
    press(app, "esc")
    assert "Metric Explorer" in screen(app)


# ---- Runs and Models -----------------------------------------------------------------
def test_runs_curves_and_overlay(project: Path) -> None:
    app = make_app(project)
    start_run(app)
    run_to_end(app)
    second = project / "logs" / "runs" / "run_20250102-090000_other.json"
    second.write_text(json.dumps({"run_id": "20250102-090000_other", "steps": 5,
                                  "stop_reason": "early_stop"}))
    events = project / "logs" / "events" / "events_20250102-090000_other.jsonl"
    steps = [{"type": "step", "step": s, "loss": 2.0} for s in range(1, 6)]
    events.write_text("".join(json.dumps(event) + "\n" for event in steps))
    press(app, "4", "r")
    text = screen(app)
    assert "20250102-090000_other" in text and "early_stop" in text
    assert "train log" in text and "system CSV" in text and "eval CSV" in text and "manifest" in text
    assert "missing" in text  # the fake trainer writes no CSVs
    assert app.tab.selected["run_id"] == "20250101-120000_fake"  # the cursor stayed on its run, now second
    press(app, " ", "k", "enter")
    curves = screen(app)
    assert "train loss" in curves and "val loss" in curves
    assert "20250102-090000_other" in curves and "20250101-120000_fake" in curves
    press(app, "esc")
    assert "key figures" in screen(app)


def test_models_list_select_for_chat_and_delete(project: Path) -> None:
    models = project / "models"
    models.mkdir()
    (models / "ckpt_20250101-120000_fake_step0060_valloss2.3456.npz").write_bytes(b"x" * 2048)
    (models / "latest_checkpoint.npz").write_bytes(b"y")
    (models / "notes.txt").write_text("not a checkpoint")
    app = make_app(project)
    press(app, "5")
    text = screen(app, 80, 24)
    assert "20250101-120000_fake" in text and "60" in text and "2.346" in text and "2.0 KB" in text
    assert "latest_checkpoint.npz" in text and "notes.txt" not in text
    target = app.tab.selected.path
    newer = models / "ckpt_20250102-090000_new_step0010.npz"  # a run saves one: it lists first, above the cursor
    newer.write_bytes(b"z")
    os.utime(newer, (target.stat().st_mtime + 60,) * 2)
    press(app, "r")
    assert app.tab.selected.path == target and app.tab.rows[0].path == newer  # d still means the file you chose
    press(app, "d")
    assert "Delete" in screen(app) and "y deletes" in screen(app)
    press(app, "n")
    assert target.exists()
    press(app, "d", "y")
    assert not target.exists() and "deleted" in screen(app)
    press(app, "enter")
    assert app.tab.title == "Chat"
    assert wait_until(lambda: app.chat.loaded, app.tick)


# ---- Chat ----------------------------------------------------------------------------
def test_chat_loads_streams_and_adjusts_settings(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    assert app.chat.loaded.endswith("models/latest_checkpoint.npz")
    press(app, "]", "]", "[", "=", "-", "-")
    assert app.chat.settings() == FakeSettings(temperature=0.85, max_new_tokens=80)
    assert "temperature 0.85" in screen(app) and "max new tokens 80" in screen(app)
    press(app, "enter", "h", "i", "q")
    assert app.tab.title == "Chat" and not app.quit_requested  # typing locks h and q
    press(app, "enter")
    assert wait_until(lambda: not app.chat.streaming, app.tick)
    assert "echo: hiq (t=0.85)" in screen(app)
    press(app, "esc", "c")
    assert "echo" not in screen(app)
    saved = json.loads((project / "tui.json").read_text())
    assert saved["chat"]["temperature"] == 0.85 and saved["chat"]["max_new_tokens"] == 80


def test_an_out_of_range_chat_setting_in_the_settings_file_is_ignored_with_a_message(project: Path) -> None:
    (project / "tui.json").write_text(json.dumps({"chat": {"max_new_tokens": -5, "temperature": 0.7}}))
    app = make_app(project)
    assert app.chat.overrides == {"temperature": 0.7}  # the good one stays, the bad one is not used
    assert "chat max_new_tokens=-5: must be >= 1" in screen(app) and "ignored" in screen(app)
    press(app, "6", "=")  # and the keys work again
    assert app.chat.overrides["max_new_tokens"] > 0


def test_two_bad_chat_settings_in_the_settings_file_are_both_named(project: Path) -> None:
    (project / "tui.json").write_text(json.dumps({"chat": {"max_new_tokens": -5, "temperature": "hot"}}))
    app = make_app(project)
    text = screen(app, 240, 30)
    assert app.chat.overrides == {}
    assert "chat temperature='hot': not a number" in text and "chat max_new_tokens=-5" in text, text
    assert "the defaults are used ([ ] - = change them)" in text


def test_a_bad_knob_and_a_bad_chat_setting_in_the_settings_file_are_both_named(project: Path) -> None:
    (project / "tui.json").write_text(json.dumps({"knobs": {"NUM_STEPS": "abc"}, "chat": {"max_new_tokens": "many"}}))
    text = screen(make_app(project), 200, 30)
    assert "NUM_STEPS='abc'" in text and "max_new_tokens='many'" in text, text


def test_a_chat_minimum_above_the_length_can_be_put_right_with_the_length_keys(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from microgpt.tui.chat_tab import default_settings

    monkeypatch.setenv("CHAT_MIN_NEW_TOKENS", "200")  # above the default length (128)
    app = App(project, project / "tui.json", runner=TrainerRunner(project, fake_trainer_command(project)),
              chat_worker=ChatWorker(FakeSession.open), make_settings=default_settings, splash_s=0)
    press(app, "6")
    assert "min_new_tokens=200: must not exceed" in screen(app, 120, 30)
    for _ in range(8):  # = lengthens the reply by 16 tokens a press
        press(app, "=")
    assert app.chat.settings().max_new_tokens >= 200 and "unavailable" not in screen(app, 120, 30)


def test_ctrl_c_stops_a_streaming_reply_and_otherwise_asks_like_q(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    press(app, "enter", *"endless", "enter", "esc")
    assert wait_until(lambda: "la la" in screen(app), app.tick)
    assert "ctrl-c stop reply" in screen(app)
    press(app, "ctrl-c")
    assert wait_until(lambda: not app.chat.streaming, app.tick)
    assert "reply stopped (Ctrl-C)" in screen(app) and not app.quit_requested
    log = next((project / "logs" / "chat").glob("tui_chat_*.log")).read_text(encoding="utf-8")
    assert "] assistant: la la" in log and "# the reply above was stopped (Ctrl-C)" in log
    press(app, "enter", *"hi", "ctrl-c")  # no reply streams: as q, even while typing (no run: it quits)
    assert app.quit_requested and app.chat.draft.text == "hi"


def test_ctrl_c_in_a_burst_of_typing_still_stops_the_reply(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    press(app, "enter", *"endless", "enter")  # still typing the next message while the reply streams
    assert wait_until(lambda: "la la" in screen(app), app.tick)
    app.handle_keys(["x", "ctrl-c", "y"])  # typed fast: one burst
    assert wait_until(lambda: not app.chat.streaming, app.tick) and not app.quit_requested
    assert "reply stopped (Ctrl-C)" in screen(app) and app.chat.draft.text == "xy"


def test_j_and_k_held_down_move_as_often_as_the_arrows(project: Path) -> None:
    app = make_app(project)
    press(app, "home")
    app.handle_keys(["j"] * 5)
    by_j = app.tab.index
    press(app, "home")
    app.handle_keys(["down"] * 5)
    assert by_j == app.tab.index == 5


def test_chat_paths_are_asked_for_when_empty_and_shown_on_one_short_line(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "p", "ctrl-u", "enter")
    assert app.chat.mode == "path" and "type the path of a checkpoint" in screen(app)  # not "could not load ."
    press(app, *("a" * 3000), *"/missing.npz", "enter")
    assert wait_until(lambda: "could not load" in screen(app), app.tick)
    assert max(len(text) for _, text in app.chat.messages) < 700  # not the whole path, twice
    press(app, "p", "ctrl-u")
    app.chat.path.set("models/new\nline.npz")
    press(app, "enter")
    assert "loading models/new\\nline.npz" in screen(app)  # the newline as an escape, on one line


def test_chat_path_editing_and_load_errors(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "p", "ctrl-u", *"missing.npz", "enter")
    assert wait_until(lambda: "no such checkpoint" in screen(app), app.tick)
    assert app.chat.checkpoint == "missing.npz" and not app.chat.loaded
    press(app, "enter", "h", "enter")
    assert "no model loaded" in screen(app)


def test_chat_scrolls_long_conversations(project: Path) -> None:
    app = make_app(project)
    press(app, "6")
    app.chat.messages = [("gpt", f"line {i}") for i in range(100)]
    assert "line 99" in screen(app, 80, 24)
    press(app, "pgup")
    assert "line 99" not in screen(app, 80, 24) and "scrolled up" in screen(app, 80, 24)
    press(app, "home")
    assert "line 0" in screen(app, 80, 24)
    press(app, "end")
    assert "line 99" in screen(app, 80, 24)


def test_digits_apply_the_original_presets_on_the_train_tab_and_switch_tabs_elsewhere(project: Path) -> None:
    app = make_app(project)
    app.ctx.values["BATCH_SIZE"] = 5  # a knob no preset names keeps its value
    press(app, "1")
    assert app.tab.title == "Train" and app.ctx.state["preset"] == "fast"
    assert (app.ctx.values["N_EMBD"], app.ctx.values["NUM_STEPS"], app.ctx.values["BATCH_SIZE"]) == (32, 400, 5)
    assert "preset fast " in screen(app)
    press(app, "3")
    assert app.ctx.values["N_LAYER"] == 2 and app.ctx.values["BATCH_SIZE"] == 5
    press(app, "2")
    assert app.ctx.state["preset"] == "balanced" and app.ctx.values["N_EMBD"] == 48
    press(app, "6")
    assert app.tab.title == "Chat"
    press(app, "2")
    assert app.tab.title == "Monitor"  # elsewhere the digits still switch tabs


def test_u_undoes_a_preset_a_digit_applied_on_the_train_tab(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "NUM_STEPS")
    press(app, "e", "ctrl-u", *"30", "enter")
    before = dict(app.ctx.values)
    press(app, "2")  # meant as "go to Monitor": on the Train tab it is the balanced preset
    assert app.ctx.values["NUM_STEPS"] != 30 and "(u undoes)" in screen(app)
    press(app, "u")
    assert app.ctx.values == before and app.ctx.state["preset"] == "default"
    assert json.loads((project / "tui.json").read_text())["knobs"]["NUM_STEPS"] == 30  # saved as it was
    press(app, "u")
    assert "no preset to undo" in screen(app)
    press(app, "2", "e", "ctrl-u", *"77", "enter")  # a preset, then an edit of one's own
    press(app, "u")  # would throw the edit away too: refused
    assert app.ctx.values["NUM_STEPS"] == 77 and "no preset to undo" in screen(app)


@pytest.mark.parametrize("width", [80, 100, 120])
def test_every_key_of_every_tab_is_on_the_bottom_bar_from_80_columns(project: Path, width: int) -> None:
    app = make_app(project)
    select_knob(app, "DATASET_PATH")  # the knob that adds f (pick dataset)
    for index in range(len(TAB_NAMES)):
        app.switch(index)
        bar = "\n".join(screen(app, width, 24).splitlines()[-2:])
        hints = app.tab.keys()  # the tab's (key, action) pairs, not a dict
        missing = [key for key, _ in hints if key and key not in bar]
        assert not missing, f"{app.tab.title} at {width} columns: {missing} not on the bar:\n{bar}"


def test_e_edits_space_cycles_and_the_picker_has_home_and_end(project: Path) -> None:
    app = make_app(project)
    select_knob(app, "TOKENIZER")
    press(app, " ")
    assert app.ctx.values["TOKENIZER"] == "char"
    press(app, "e", "ctrl-u", *"bpe", "enter")
    assert app.ctx.values["TOKENIZER"] == "bpe"
    press(app, "p", "end")
    assert app.tab.picker.selected() == list(app.ctx.catalog.preset_names())[-1]
    press(app, "home")
    assert app.tab.picker.selected() == "default"


def test_chat_starts_with_the_latest_checkpoint_and_logs_the_conversation(project: Path) -> None:
    (project / "models").mkdir()
    (project / "models" / "latest_checkpoint.npz").write_bytes(b"the fake session does not read it")
    app = make_app(project)
    assert wait_until(lambda: app.chat.loaded, app.tick)  # loaded at start, no key pressed
    press(app, "6", "enter", *"hello", "enter")
    assert wait_until(lambda: not app.chat.streaming, app.tick)
    [session] = (project / "logs" / "chat").glob("tui_chat_*.log")
    text = session.read_text(encoding="utf-8")
    assert "# checkpoint models/latest_checkpoint.npz | temperature=" in text
    assert "] user: hello\n" in text and "] assistant: echo: hello (t=" in text
    assert text == (project / "logs" / "chat" / "chat_latest.log").read_text(encoding="utf-8")


def test_no_checkpoint_no_load_and_no_log_until_a_turn(project: Path) -> None:
    app = make_app(project)
    assert not app.chat.loading and not app.chat.loaded
    assert not (project / "logs" / "chat").exists()


# ---- at a glance -------------------------------------------------------------------------
def test_train_tab_shows_the_runtime_summary_and_recent_activity(project: Path) -> None:
    app = make_app(project)
    app.ctx.system = SystemSampler(gpu_probe=lambda: ["0: Fake GPU, driver 1.0, memory 80 MiB (0 MiB used)"])
    app.tick()
    assert wait_until(lambda: "Fake GPU" in app.ctx.system.gpu)
    text = screen(app)
    assert "Runtime Summary" in text and "Recent Activity" in text and "no run yet" in text
    assert re.search(r"cpu \d+%  ram \d+\.\d/\d+\.\d GB", text) and "gpu 0: Fake GPU" in text
    start_run(app)
    run_to_end(app)
    press(app, "h")  # from Monitor back to Train
    text = screen(app)
    assert "step  100/100" in text and "finished (completed)" in text and "best val" in text
    assert "training finished" in text  # the newest log line, in Recent Activity
    assert "about this knob" in screen(app, 80, 24)  # a small terminal keeps the knob's explanation


def test_monitor_header_names_the_machine_the_trainer_the_model_and_the_log(project: Path) -> None:
    app = make_app(project)
    start_run(app)
    assert wait_until(lambda: app.ctx.system.latest.trainer_pid == app.ctx.runner.process.pid, app.tick)
    text = screen(app)
    assert f"pid {app.ctx.runner.process.pid}" in text and "rss " in text
    run_to_end(app)
    text = screen(app)
    assert "log logs/train/train_20250101-120000_fake.log" in text and "model models/" in text


def test_system_metrics_are_sampled_every_second_even_when_idle() -> None:
    now = [0.0]
    sampler = SystemSampler(clock=lambda: now[0], gpu_probe=list)
    assert sampler.tick(None) and sampler.latest.ram_total_mb > 0 and sampler.latest.trainer_pid is None
    now[0] = 0.5
    assert not sampler.tick(None)
    now[0] = 1.0
    assert sampler.tick(os.getpid()) and sampler.latest.trainer_rss_mb > 0
    assert wait_until(lambda: sampler.gpu.startswith("none found"))


def test_runs_and_models_refresh_themselves_every_two_seconds(project: Path) -> None:
    now = [0.0]
    app = App(project, project / "tui.json", runner=TrainerRunner(project, fake_trainer_command(project)),
              chat_worker=ChatWorker(FakeSession.open), make_settings=FakeSettings, splash_s=0,
              clock=lambda: now[0])
    press(app, "5")
    assert "no checkpoints" in screen(app)
    (project / "models").mkdir()
    (project / "models" / "latest_checkpoint.npz").write_bytes(b"y")
    app.tick()
    assert "no checkpoints" in screen(app)  # not yet: two seconds have not passed
    now[0] = 2.0
    app.tick()
    assert "latest_checkpoint.npz" in screen(app)


def test_the_project_root_is_found_from_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "datasets").mkdir()
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    assert project_root(tmp_path / "notebooks" / "deep") == tmp_path.resolve()
    lone = tmp_path.parent / f"{tmp_path.name}-lone"
    lone.mkdir()
    assert project_root(lone) == lone.resolve()  # no marker above: the folder itself


# ---- pasted text and damaged files ------------------------------------------------------
def test_a_paste_while_typing_is_text_even_where_it_holds_tabs_escapes_and_hotkeys(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "enter")  # the Chat tab, typing a message
    app.handle_keys([*"name", "tab", *"docs", "esc", *"[31ms", "enter", *"qx"])  # pasted: one burst
    app.tick()
    assert app.tab.title == "Chat" and app.chat.captures_keys() and not app.quit_requested
    assert app.chat.draft.text == "namedocs[31ms qx" and app.ctx.runner.process is None  # no run was started
    app.handle_keys(["esc"])  # a key alone is a key: esc leaves typing
    app.handle_keys(["2"])
    assert app.tab.title == "Monitor"


def test_a_few_keys_read_at_once_act_in_turn_until_one_asks(project: Path) -> None:
    """A slow frame (the trainer has the cores) or ssh delivers fast typing together: it still acts, but a
    question is answered only by a key pressed after it appeared."""
    models = project / "models"
    models.mkdir()
    (models / "latest_checkpoint.npz").write_bytes(b"y")
    app = make_app(project)
    start = app.tab.index
    app.handle_keys(["down", "enter"])  # move to the next knob and open its editor
    assert app.tab.index == start + 1 and app.tab.captures_keys()
    app.handle_keys(["esc"])
    app.handle_keys(["down"] * 4 + ["enter"])  # a held arrow, released, then enter: five keys, all typing
    assert app.tab.index == start + 5 and app.tab.captures_keys()
    app.handle_keys(["esc"])
    press(app, "5")
    app.handle_keys(["d", "y"])  # d asks; the y that came with it does not answer
    assert (models / "latest_checkpoint.npz").exists() and app.tab.confirming
    app.handle_keys(["y", "x"])  # keys that came together never answer a question, even one already shown
    assert (models / "latest_checkpoint.npz").exists() and app.tab.confirming
    assert "answer it with one key" in screen(app)


def test_a_paste_outside_a_text_field_runs_no_hotkeys_and_answers_no_question(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = project / "models"
    models.mkdir()
    (models / "latest_checkpoint.npz").write_bytes(b"y")
    app = make_app(project)
    press(app, "5")
    app.handle_keys([*"daily"])  # d would ask, y would answer: nothing happens at all
    assert (models / "latest_checkpoint.npz").exists() and not app.tab.confirming
    assert "ignored 5 keys" in screen(app)
    app.handle_keys(["d"])
    app.handle_keys([*"yes"])  # a paste does not answer the question either
    assert (models / "latest_checkpoint.npz").exists() and app.tab.confirming
    app.handle_keys(["n"])
    app.handle_keys(["j", "j", "j"])  # a held key acts (once)
    assert not app.tab.confirming
    press(app, "1")
    start = app.tab.index
    app.handle_keys(["down", "down", "down"])  # a held arrow moves as often as it repeated
    assert app.tab.index == start + 3
    press(app, "5")
    refreshes = []
    monkeypatch.setattr(app.tabs[3], "refresh", lambda: refreshes.append(1))
    press(app, "6")
    app.handle_keys([*("lorem ipsum dolor " * 3000)])  # 54 KB on the Chat tab while not typing: no r re-reads
    assert not refreshes and app.tab.title == "Chat" and not app.chat.captures_keys()
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    start_run(app)
    app.handle_keys([*"query"])  # q would ask, y would answer: the run goes on
    app.handle_keys(["q", "y"])  # q asks; the y that came with it does not answer
    assert app.live and not app.quit_requested and app.confirm_quit
    app.handle_keys(["n"])
    app.handle_keys(["q", "q"])  # held: asks once
    assert app.confirm_quit and not app.quit_requested
    app.handle_keys(["y"])
    assert app.quit_requested
    app.shutdown()


def test_keys_typed_fast_enough_to_arrive_together_still_edit_and_send(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    press(app, "enter")
    app.handle_keys([*"hix", "backspace", "left", "!", "end", "enter"])  # one read: a held key, ssh, a busy loop
    assert wait_until(lambda: "echo: h!i" in screen(app), app.tick)


def test_keys_waiting_takes_a_burst_at_once_and_ignores_unknown_keys() -> None:
    import curses

    from microgpt.tui.terminal import keys_waiting

    class Window:
        def __init__(self, queued: list) -> None:
            self.queued, self.modes = queued, []

        def get_wch(self):
            if not self.queued:
                raise curses.error("no input")
            return self.queued.pop(0)

        def nodelay(self, flag: bool) -> None:
            self.modes.append(("nodelay", flag))

        def timeout(self, ms: int) -> None:
            self.modes.append(("timeout", ms))

    window = Window(["a", "\t", "\x00", "b"])
    assert keys_waiting(window, 150) == ["a", "tab", "b"] and window.modes[-1][0] == "timeout"
    assert keys_waiting(Window([]), 150) == []


def test_damaged_run_files_and_checkpoints_are_shown_not_crashed_on(project: Path) -> None:
    runs, events = project / "logs" / "runs", project / "logs" / "events"
    runs.mkdir(parents=True)
    events.mkdir(parents=True)
    (runs / "run_20240101-000000-a.json").write_text(json.dumps(
        {"run_id": "20240101-000000-a", "steps": 10, "best_val_loss": "n/a", "duration_s": [1],
         "paths": {"train_log": None}}))
    (runs / "run_20240101-000000-b.json").write_text("[" * 100_000)
    (runs / "run_20240101-000000-c.json").write_text(json.dumps({"run_id": "a\u0000b"}))
    (events / "events_20240101-000000-a.jsonl").write_text(
        json.dumps({"type": "step", "step": 10**20, "loss": 1.0}) + "\n" + "[" * 100_000 + "\n"
        + json.dumps({"type": "step", "step": 3, "loss": 10**400}) + "\n")
    if hasattr(os, "mkfifo"):  # a FIFO named like a manifest must not block the listing
        os.mkfifo(runs / "run_20240101-000000-fifo.json")
    models = project / "models"
    models.mkdir(exist_ok=True)
    np.savez(models / "odd_checkpoint.npz", meta=np.frombuffer(b'{"val_loss": "n/a"}', dtype=np.uint8))
    app = make_app(project)
    for keys in (("4",), ("enter",), ("esc", "j", "enter"), ("esc", "5")):
        press(app, *keys)
        screen(app)  # renders without an exception
    assert app.tab.title == "Models" and "odd_checkpoint" in screen(app)


def test_a_dataset_nested_too_deep_and_unusable_paths_in_the_settings_are_messages(project: Path) -> None:
    (project / "datasets" / "aa_broken.jsonl").write_text("[" * 100_000 + "\n")
    (project / "tui.json").write_text(json.dumps({"chat": {"checkpoint": "a" * 300},
                                                  "dataset_dirs": ["b" * 5000]}))
    app = make_app(project)  # starts: the chat checkpoint named is simply not loaded
    select_knob(app, "DATASET_PATH")
    press(app, "f")
    assert "aa_broken.jsonl" in screen(app)
    for _ in range(3):
        press(app, "down")
        screen(app)


class PaintedWindow:
    """A stand-in for a curses window that records what is drawn and, like curses, refuses a NUL."""

    def __init__(self, width: int = 120, height: int = 36) -> None:
        self.size, self.drawn = (height, width), []

    def erase(self) -> None:
        self.drawn.clear()

    def getmaxyx(self) -> tuple[int, int]:
        return self.size

    def addstr(self, y: int, x: int, text: str, attr: int) -> None:
        if "\0" in text:
            raise ValueError("embedded null character")
        text.encode("utf-8")  # a lone surrogate cannot be sent to the terminal
        self.drawn.append(text)

    def refresh(self) -> None:
        pass


def test_control_characters_in_untrusted_text_are_drawn_visibly_and_never_crash(project: Path) -> None:
    from microgpt.tui.terminal import Painter

    (project / "tui.json").write_text(json.dumps(
        {"preset": "x\u0000", "dataset_dirs": ["x\u0000"], "chat": {"checkpoint": "a\u0000b\ud800"}}))
    runs = project / "logs" / "runs"
    runs.mkdir(parents=True)
    (runs / "run_1.json").write_text(json.dumps({"run_id": "2026\u0000x\ny", "status": "fini\nshed"}))
    (project / "datasets" / "new\nline.jsonl").write_text("")
    (project / "datasets" / "esc\x1b[31mred.jsonl").write_text("")
    (project / "models").mkdir()
    np.savez(project / "models" / "m.npz", meta=np.frombuffer(b'{"run_id": "r\\u0000\\u001bun"}', dtype=np.uint8))
    app = make_app(project)
    for unicode in (True, False):
        window = PaintedWindow()
        painter = Painter(window, colour=False, unicode=unicode)
        for keys in (("1", "home", "f"), ("esc", "4"), ("5",), ("6",)):
            press(app, *keys)
            painter.paint(app.render(120, 36))
            drawn = "".join(window.drawn)
            assert not re.search("[\x00-\x1f\x7f-\x9f\ud800-\udfff]", drawn), keys
        press(app, "1", "home", "f")
        painter.paint(app.render(120, 36))
        shown = "?" if not unicode else "\ufffd"
        assert f"datasets/new{shown}line.jsonl" in "".join(window.drawn)
        assert f"datasets/esc{shown}[31mred.jsonl" in "".join(window.drawn)
        press(app, "esc")


# ---- launching: python -m microgpt.tui ---------------------------------------------------
@pytest.fixture
def launch(project: Path, monkeypatch: pytest.MonkeyPatch):
    """`run` from tui/__main__ as a terminal would start it, with curses.wrapper replaced by `body`."""
    import argparse
    import io
    import locale
    import sys

    from microgpt.tui import __main__ as tui_main

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setenv("MICROGPT_TUI_CONFIG", str(project / "tui.json"))
    monkeypatch.setenv("TERM", "xterm")
    saved_locale = locale.setlocale(locale.LC_ALL)
    apps: list[App] = []

    def start(body) -> int:
        def wrapper(main, app: App, colour: bool) -> None:
            apps.append(app)
            body(app)

        monkeypatch.setattr(tui_main.curses, "wrapper", wrapper)
        monkeypatch.setattr(sys, "stdout", Terminal())  # here: pytest sets its own between setup and the test
        return tui_main.run(argparse.Namespace(no_splash=True, ascii=False))

    yield start, apps
    locale.setlocale(locale.LC_ALL, saved_locale)


def test_a_crash_stops_the_trainer_and_says_so_in_one_line(project: Path, launch, monkeypatch, capsys) -> None:
    start, apps = launch
    monkeypatch.setenv("FAKE_TRAINER", "slow")

    def crash(app: App) -> None:
        app.ctx.runner = TrainerRunner(project, fake_trainer_command(project))
        start_run(app)
        assert app.live
        raise RuntimeError("boom")

    assert start(crash) == 1
    assert apps[0].ctx.runner.process.poll() is not None  # stopped, not left running as an orphan
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: boom" in err and "Traceback" not in err


def test_an_unknown_locale_falls_back_to_ascii(project: Path, launch, monkeypatch) -> None:
    start, apps = launch
    monkeypatch.setenv("LC_ALL", "bogus")
    assert start(lambda app: None) == 0
    assert apps[0].ctx.unicode is False


def test_an_unusable_terminal_names_the_real_minimum_size(project: Path, launch, capsys) -> None:
    import curses

    from microgpt.tui.app import MIN_HEIGHT, MIN_WIDTH

    start, _ = launch

    def unusable(app: App) -> None:
        raise curses.error("setupterm: could not find terminal")

    assert start(unusable) == 2
    assert f"at least {MIN_WIDTH}x{MIN_HEIGHT}" in capsys.readouterr().err


def test_an_unreadable_settings_file_is_kept_and_rejected_knobs_are_named(project: Path) -> None:
    bad = '{"knobs": {"N_EMBD": 32,}}'
    (project / "tui.json").write_text(bad)
    app = make_app(project)
    assert "not readable JSON" in screen(app, 400) and "kept it as tui.json.bad" in screen(app, 400)
    app.shutdown()  # saving afresh never overwrites what the user wrote
    assert (project / "tui.json.bad").read_text() == bad and json.loads((project / "tui.json").read_text())
    (project / "tui.json").write_text(bad)
    make_app(project).shutdown()
    assert (project / "tui.json.bad").read_text() == bad and (project / "tui.json.bad2").read_text() == bad
    (project / "tui.json").write_text(json.dumps({"knobs": {"N_EMBD": "32x", "N_LAYER": 3}}))
    app = make_app(project)
    assert "N_EMBD='32x'" in screen(app, 400) and app.ctx.values["N_LAYER"] == 3


def test_a_failed_load_keeps_showing_and_saving_the_model_that_replies(project: Path) -> None:
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    good = app.chat.loaded
    press(app, "p", "ctrl-u", *"models/missing.npz", "enter")
    assert wait_until(lambda: "no such checkpoint" in screen(app), app.tick)
    head = screen(app).splitlines()[1]
    assert f"loaded ✓ {good}" in head and "missing" not in head
    assert f"still talking to {good}" in screen(app, 300)
    assert json.loads((project / "tui.json").read_text())["chat"]["checkpoint"] == good


def test_two_loads_asked_at_once_are_answered_in_turn(project: Path) -> None:
    """A failed load is blamed on the path that failed, not on the one asked for after it."""
    app = make_app(project)
    press(app, "6", "L")
    assert wait_until(lambda: app.chat.loaded, app.tick)
    good = app.chat.loaded
    app.chat.load("models/missing_a.npz")
    app.chat.load(good)
    assert wait_until(lambda: not app.chat.loading, app.tick)
    assert "could not load models/missing_a.npz" in screen(app, 300)
    assert f"could not load {good}" not in screen(app, 300) and app.chat.loaded == good


def test_on_a_too_small_terminal_only_q_acts_and_its_question_is_shown(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(project)
    app.ctx.values.update(DATASET_PATH="datasets/tiny.jsonl", NUM_STEPS=100, WARMUP_STEPS=10)
    screen(app, 40, 10)
    press(app, "s", "l", "enter")  # unseen: nothing happens
    assert not app.live and app.tab.title == "Train" and not app.tab.captures_keys()
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    screen(app)
    press(app, "s")
    assert app.live
    screen(app, 40, 10)
    press(app, "q")
    assert "y stops it and quits" in screen(app, 40, 10) and not app.quit_requested
    press(app, "y")
    assert app.quit_requested
    app.shutdown()


def test_an_unwritable_settings_folder_neither_blocks_a_run_nor_hides_that_saving_failed(project: Path) -> None:
    (project / "not_a_folder").write_text("")
    app = App(project, project / "not_a_folder" / "tui.json",
              runner=TrainerRunner(project, fake_trainer_command(project)), splash_s=0)
    start_run(app)  # the trainer's config goes to LOG_DIR instead of the settings folder
    assert app.live, screen(app)
    run_to_end(app)
    assert json.loads((project / "logs" / "tui_train_config.json").read_text())["NUM_STEPS"] == 100
    (project / "tui.json").mkdir()
    app = make_app(project)
    select_knob(app, "N_EMBD")
    press(app, "enter", "ctrl-u", "6", "4", "enter")
    assert app.ctx.values["N_EMBD"] == 64 and "could not save settings" in screen(app)


def test_a_shutdown_cut_short_still_saved_and_can_finish(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl-C while the trainer is being stopped: the settings were saved first, and the shutdown that
    __main__ calls again then finishes stopping the trainer."""
    app = make_app(project)
    calls = []

    def interrupted_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(app.ctx.runner, "shutdown", interrupted_once)
    with pytest.raises(KeyboardInterrupt):
        app.shutdown()
    assert (project / "tui.json").is_file()
    app.shutdown()
    app.shutdown()
    assert len(calls) == 2
