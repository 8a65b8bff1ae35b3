"""The TUI's non-visual parts: the trainer runner, the log view, settings persistence, the chat worker."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from test_tui_fakes import FakeSession, FakeSettings, fake_trainer_command, wait_until

from microgpt.tui import disk
from microgpt.tui.chat_worker import ChatWorker
from microgpt.tui.logs_tab import LogsTab
from microgpt.tui.persist import config_path, load_state, save_state
from microgpt.tui.runner import TrainerRunner
from microgpt.tui.widgets import plain


# ---- runner --------------------------------------------------------------------------
def follow(runner: TrainerRunner, timeout: float = 10.0) -> tuple[list, list]:
    """Poll until the run ends; returns every (line, from_stderr) and every event."""
    lines, events = [], []

    def tick() -> None:
        update = runner.poll()
        lines.extend(update.lines)
        events.extend(update.events)

    assert wait_until(lambda: not runner.live, tick, timeout)
    return lines, events


def test_runner_reads_the_run_id_events_and_console(tmp_path: Path) -> None:
    runner = TrainerRunner(tmp_path, fake_trainer_command(tmp_path))
    runner.start({"NUM_STEPS": 30, "LOG_DIR": "out"}, tmp_path / "cfg" / "train.json")
    assert runner.live
    assert runner.poll() is not None  # never blocks, even before the child printed anything
    lines, events = follow(runner)
    assert runner.run_id == "20250101-120000_fake" and runner.returncode == 0 and runner.error == ""
    assert json.loads((tmp_path / "cfg" / "train.json").read_text()) == {"NUM_STEPS": 30, "LOG_DIR": "out"}
    assert [e["type"] for e in events].count("step") == 30
    assert events[0]["type"] == "start" and events[-1]["type"] == "stop"
    assert ("run_id: 20250101-120000_fake", False) in lines and ("done", False) in lines


def test_runner_drops_knob_variables_from_the_childs_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NUM_STEPS", "99999")  # would outrank the config file in the real trainer
    script = tmp_path / "env_probe.py"
    script.write_text("import os\nprint('run_id: x')\nprint('NUM_STEPS' in os.environ)\n")
    runner = TrainerRunner(tmp_path, [sys.executable, str(script)])
    runner.start({"NUM_STEPS": 5}, tmp_path / "c.json")
    lines, _ = follow(runner)
    assert ("False", False) in lines


def test_runner_reports_a_crash_with_the_last_stderr_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "crash")
    runner = TrainerRunner(tmp_path, fake_trainer_command(tmp_path))
    runner.start({}, tmp_path / "c.json")
    lines, events = follow(runner)
    assert runner.returncode == 1 and events == []
    assert runner.error == "ValueError: the dataset is empty"
    assert ("ValueError: the dataset is empty", True) in lines


def test_runner_stops_with_sigint_then_sigterm(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    runner = TrainerRunner(tmp_path, fake_trainer_command(tmp_path))
    assert runner.stop() == "no training run to stop"
    runner.start({"NUM_STEPS": 1000}, tmp_path / "c.json")
    assert wait_until(lambda: runner.run_id != "", runner.poll)
    assert "stopping" in runner.stop()
    _, events = follow(runner)
    assert events[-1] == {**events[-1], "type": "stop", "reason": "interrupted"}
    assert runner.error == "" and runner.returncode == 0


def test_runner_shutdown_ends_a_run_it_leaves_behind(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_TRAINER", "slow")
    runner = TrainerRunner(tmp_path, fake_trainer_command(tmp_path))
    runner.start({"NUM_STEPS": 1000}, tmp_path / "c.json")
    assert wait_until(lambda: runner.run_id != "", runner.poll)
    runner.shutdown(grace_s=5)
    assert runner.process.poll() is not None
    assert runner.process.returncode not in (-signal.SIGTERM, -signal.SIGKILL)  # it stopped on the polite SIGINT


# ---- logs ----------------------------------------------------------------------------
def rendered(tab: LogsTab, width: int = 40, height: int = 6) -> list[str]:
    return [plain(line) for line in tab.render(width, height)]


def test_logs_follow_the_end_until_you_scroll_back() -> None:
    tab = LogsTab()
    tab.add([(f"line {i}", False) for i in range(50)])
    assert rendered(tab)[-1].startswith("line 49") and "following" in rendered(tab)[0]
    tab.handle_key("pgup")
    view = rendered(tab)
    assert "paused" in view[0] and "line 49" not in "\n".join(view)
    tab.add([(f"new {i}", False) for i in range(10)])
    assert rendered(tab)[1:] == view[1:] and "of 60" in rendered(tab)[0]  # the view stays put
    tab.handle_key("home")
    assert rendered(tab)[1].startswith("line 0")
    tab.handle_key("end")
    assert rendered(tab)[-1].startswith("new 9")
    for _ in range(30):
        tab.handle_key("pgup")
    for _ in range(30):
        tab.handle_key("pgdn")
    assert "following" in rendered(tab)[0]  # paging down to the end follows again


def test_logs_wrap_sanitise_and_clear() -> None:
    tab = LogsTab()
    tab.add([("\x1b[31merror\x1b[0m: " + "word " * 20, True), ("bell\x07 and\rover", False)])
    view = rendered(tab, 30, 10)
    assert all(len(row) <= 30 for row in view[1:])
    assert view[1].startswith("error: word") and view[2].startswith("  word")
    assert "\x1b" not in "".join(view) and "\x07" not in "".join(view)
    assert any(row.startswith("over") for row in view)
    assert tab.clear() and tab.lines == [] and "nothing logged" in "".join(rendered(tab))


# ---- persistence ---------------------------------------------------------------------
def test_config_path_honours_the_environment(tmp_path: Path) -> None:
    assert config_path({"MICROGPT_TUI_CONFIG": str(tmp_path / "x.json")}) == tmp_path / "x.json"
    assert config_path({}) == Path.home() / ".config" / "microgpt" / "tui.json"


def test_state_round_trips_and_bad_files_mean_defaults(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "tui.json"
    assert load_state(target) == ({}, None)
    save_state(target, {"knobs": {"N_EMBD": 64}})
    assert load_state(target) == ({"knobs": {"N_EMBD": 64}}, None)
    assert [p.name for p in target.parent.iterdir()] == ["tui.json"]  # no temporary file left behind
    target.write_text("{broken")
    assert load_state(target)[0] == {} and "not readable JSON" in load_state(target)[1]
    target.write_text("[1, 2]")
    assert load_state(target)[0] == {} and "not a JSON object" in load_state(target)[1]


# ---- chat worker ---------------------------------------------------------------------
def test_chat_worker_streams_pieces_off_the_ui_thread() -> None:
    worker = ChatWorker(FakeSession.open)
    results: list[tuple[str, str]] = []
    worker.load("model.npz")
    worker.send("hi", FakeSettings())
    assert worker.busy
    assert wait_until(lambda: not worker.busy, lambda: results.extend(worker.poll()))
    kinds = [kind for kind, _ in results]
    assert kinds[0] == "loaded" and kinds.count("piece") == 4 and "done" in kinds
    assert "".join(text for kind, text in results if kind == "piece") == "echo: hi (t=0.80)"


def test_chat_worker_reports_errors_and_keeps_serving() -> None:
    worker = ChatWorker(FakeSession.open)
    results: list[tuple[str, str]] = []
    worker.send("hi", FakeSettings())
    worker.load("missing.npz")
    worker.load("ok.npz")
    assert wait_until(lambda: not worker.busy, lambda: results.extend(worker.poll()))
    errors = [text for kind, text in results if kind == "error"]
    assert "no model loaded" in errors[0] and "no such checkpoint" in errors[1]
    assert ("loaded", "ok.npz") in results


def test_a_run_whose_process_is_gone_is_shown_killed_not_running() -> None:
    """A manifest left at "running" by a run killed outright names that; a live one still says running."""
    import subprocess

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert disk.run_state({"status": "running", "stop_reason": None, "pid": gone.pid}) == "killed"
    assert disk.run_state({"status": "running", "stop_reason": None, "pid": os.getpid()}) == "running"
    assert disk.run_state({"status": "finished", "stop_reason": "completed", "pid": gone.pid}) == "completed"
    assert disk.run_state({"status": "running", "pid": "1"}) == "running"  # a pid that is not a number is not read


def test_out_of_range_numbers_in_a_manifest_are_damaged_not_a_crash() -> None:
    assert disk.run_state({"status": "running", "pid": 2**31}) == "damaged"
    assert disk.run_state({"status": "running", "pid": 10**400}) == "damaged"
    assert disk.duration_s({"duration_s": 10**400}) is None
    assert disk.duration_s({"start_time": 10**400, "end_time": 5}) is None
    assert disk.duration_s({"start_time": 100, "end_time": 160}) == 60.0


def test_a_manifest_is_listed_as_the_file_it_was_read_from_even_with_a_wrong_run_id(tmp_path: Path) -> None:
    from microgpt.train.artifacts import list_runs

    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run_20260101-000000_x.json").write_text('{"run_id": 5}', encoding="utf-8")
    [manifest] = list_runs(tmp_path)
    listed = {label: (path, size) for label, path, size in disk.artifacts(manifest, tmp_path, tmp_path)}
    assert listed["manifest"] == (tmp_path / "runs" / "run_20260101-000000_x.json", 13)


def test_the_dataset_summary_judges_a_key_twice_as_validate_dataset_does(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": "a", "record_type": "knowledge", "text": "x", "text": "y"}\n'
                    '{"id": "b", "record_type": "knowledge", "text": "fine"}\n', encoding="utf-8")
    summary = disk.summarize_dataset(path)
    assert (summary.records, summary.invalid) == (1, 1)


def test_an_empty_home_or_settings_variable_counts_as_unset() -> None:
    import pwd

    from microgpt.tui.persist import config_path

    home = pwd.getpwuid(os.getuid()).pw_dir
    assert config_path({"HOME": ""}) == Path(home) / ".config" / "microgpt" / "tui.json"  # not /.config
    assert config_path({"HOME": "/h", "MICROGPT_TUI_CONFIG": "   "}) == Path("/h/.config/microgpt/tui.json")
    assert config_path({"HOME": "/h", "MICROGPT_TUI_CONFIG": "/s/t.json"}) == Path("/s/t.json")


def test_an_empty_home_for_a_user_the_system_does_not_know_falls_back_to_the_working_folder(monkeypatch) -> None:
    from microgpt.tui.persist import config_path

    monkeypatch.setattr(os, "getuid", lambda: 987654)  # a container's --user without a passwd entry
    assert config_path({"HOME": ""}) == Path.cwd() / ".config" / "microgpt" / "tui.json"
