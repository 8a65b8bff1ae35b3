"""End to end: the real TUI in a real terminal (tmux), driven by keys and read back from the screen.

Each test starts `python -m microgpt.tui` inside a private tmux server (its own socket, so a
user's tmux is never touched) in a project folder under tmp_path with a tiny dataset and a
tiny model, then sends keys with `send-keys` and reads the screen with `capture-pane`.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from microgpt.bench.tui import TmuxTUI

REPO = Path(__file__).resolve().parents[1]
TINY_KNOBS = {
    "DATASET_PATH": "datasets/tiny.jsonl", "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": 300,
    "N_LAYER": 1, "N_EMBD": 16, "N_HEAD": 2, "BLOCK_SIZE": 16, "BATCH_SIZE": 2,
    "NUM_STEPS": 60, "EVAL_INTERVAL": 20, "EVAL_STEPS": 2, "WARMUP_STEPS": 5,
    "SAMPLE_COUNT": 1, "SAMPLE_MAX_NEW_TOKENS": 24, "MIN_NEW_TOKENS": 1, "METRIC_INTERVAL": 5,
    "LOG_DIR": "logs", "MODEL_DIR": "models",
}

if shutil.which("tmux") is None:
    pytest.skip("tmux is not installed: the end-to-end TUI tests drive the TUI inside tmux",
                allow_module_level=True)


def tiny_dataset(folder: Path) -> None:
    rows = [{"id": f"t-{i}", "record_type": "qa", "question": f"what is {i} plus one?",
             "answer": f"{i} plus one is {i + 1}."} for i in range(40)]
    (folder / "datasets").mkdir(parents=True, exist_ok=True)
    (folder / "datasets" / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def launch(tmp_path: Path):
    """Start the TUI on a tiny project; yields a function (width, height, knobs) -> TmuxTUI."""
    sessions: list[TmuxTUI] = []

    def start(width: int = 120, height: int = 36, knobs: dict | None = None, env: dict | None = None) -> TmuxTUI:
        tiny_dataset(tmp_path)
        state = tmp_path / "state" / "tui.json"
        state.parent.mkdir(exist_ok=True)
        state.write_text(json.dumps({"knobs": {**TINY_KNOBS, **(knobs or {})}}))
        variables = {"PYTHONPATH": str(REPO), "MICROGPT_TUI_CONFIG": str(state),
                     "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **(env or {})}
        session = TmuxTUI(tmp_path, width, height, variables)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def test_full_tour_train_monitor_stop_runs_models_chat_quit(launch, tmp_path: Path) -> None:
    # a long run that only x ends: many steps, patience that never runs out
    tui = launch(120, 36, {"NUM_STEPS": 200_000, "EARLY_STOP_PATIENCE": 100_000})
    tui.wait_for("press any key")
    tui.keys("Space")
    tui.wait_for(r"DATASET_PATH")
    screen = tui.screen()
    for name in ("Train", "Monitor", "Logs", "Runs", "Models", "Chat", "N_EMBD", "NUM_STEPS", "q quit"):
        assert name in screen

    # visit every tab, forwards with Tab / l and backwards with BTab / h
    for title, key in (("Metric Explorer", "Tab"), ("log ·", "l"), ("no runs", "l"), ("no checkpoints", "l"),
                       ("no conversation yet", "l")):
        tui.keys(key)
        tui.wait_for(title)
    tui.keys("BTab", "h", "h", "h", "h")
    tui.wait_for(r"› DATASET_PATH")

    # edit a knob in place: EVAL_INTERVAL 20 -> 25, validated while typing
    for _ in range(30):
        if "› EVAL_INTERVAL" in tui.screen():
            break
        tui.keys("j", pause=0.05)
    tui.keys("Enter", "BSpace", "BSpace")
    tui.type("2x")
    tui.wait_for("✗ EVAL_INTERVAL='2x'")
    tui.keys("BSpace")
    tui.type("5")
    tui.wait_for("✓ valid")
    tui.keys("Enter")
    tui.wait_for(r"EVAL_INTERVAL = 25")
    assert json.loads((tmp_path / "state" / "tui.json").read_text())["knobs"]["EVAL_INTERVAL"] == 25

    # start training with s: the Monitor follows and its values move
    tui.keys("s")
    tui.wait_for("Metric Explorer")
    first = int(tui.wait_for(r"step (\d+)/200000", 30).group(1))
    time.sleep(1.5)
    second = int(tui.wait_for(r"step (\d+)/200000").group(1))
    assert second > first
    tui.wait_for(r"train loss\s+\d+\.\d+")
    run_id = tui.wait_for(r"run (\d{8}-\d{6}_\S+)").group(1)
    tui.wait_for(r"trainer pid \d+  rss \d+ MB")  # the Monitor header names the trainer process

    # stop gracefully with x
    tui.keys("x")
    tui.wait_for(r"finished \(interrupted\)", 30)
    assert (tmp_path / "models" / "latest_checkpoint.npz").exists()

    # the run is listed in Runs with its artifacts, and its curves draw
    tui.keys("4")
    tui.wait_for(run_id)
    tui.wait_for("interrupted")
    screen = tui.screen()
    assert "train log" in screen and "eval CSV" in screen and "manifest" in screen
    tui.keys("Enter")
    tui.wait_for("train loss")
    tui.keys("Escape")

    # its checkpoint is in Models; enter on it opens it in Chat, where it answers
    tui.keys("5")
    tui.wait_for("latest_checkpoint.npz")
    tui.wait_for(run_id)
    for _ in range(5):
        if "› latest_checkpoint.npz" in tui.screen():
            break
        tui.keys("j")
    tui.keys("Enter")
    tui.wait_for(r"loaded ✓ models/latest_checkpoint\.npz", 30)
    tui.keys("Enter")
    tui.type("what is 3 plus one?")
    tui.keys("Enter")
    tui.wait_for(r"gpt › \S")
    tui.wait_for(r"gpt › [^\n▌]*\n(?![^\n]*▌)", 30)
    tui.keys("Escape")
    assert "] user: what is 3 plus one?" in (tmp_path / "logs" / "chat" / "chat_latest.log").read_text()

    # back on Train: the run at a glance, and 1 applies the original's fast preset
    tui.keys("1")
    tui.wait_for("Runtime Summary")
    tui.wait_for(r"\[system\] pid \d+|training finished")  # Recent Activity: the run's last lines
    tui.keys("1")
    tui.wait_for("preset fast")

    # q quits (no run is going, so there is no question)
    tui.keys("q")
    deadline = time.monotonic() + 10
    while not tui.dead() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tui.dead()


def test_quit_during_a_run_asks_and_stops_the_trainer(launch) -> None:
    tui = launch(80, 24, {"NUM_STEPS": 200_000, "EARLY_STOP_PATIENCE": 100_000})
    tui.wait_for("press any key")
    tui.keys("Enter")
    tui.keys("s")
    tui.wait_for(r"step \d+/200000", 30)
    tui.keys("q")
    tui.wait_for("quit and stop it")
    tui.keys("n")
    tui.wait_for("quit cancelled")
    tui.keys("C-c")  # Ctrl-C asks as q does (the terminal's SIGINT, not a KeyboardInterrupt that quits at once)
    tui.wait_for("quit and stop it")
    tui.keys("n")
    tui.wait_for("quit cancelled")
    trainer = [p for p in psutil.Process(tui.pid()).children() if "microgpt" in " ".join(p.cmdline())]
    assert trainer
    tui.keys("q", "y")
    deadline = time.monotonic() + 20
    while not tui.dead() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tui.dead()
    assert not trainer[0].is_running() or trainer[0].status() == psutil.STATUS_ZOMBIE


def test_a_closed_terminal_stops_the_trainer_as_quit_does(launch, tmp_path: Path) -> None:
    """The terminal going away (SIGHUP to the dashboard, as closing its window sends) stops the run politely:
    its latest checkpoint saved and its manifest finished, not an orphan trainer nobody can stop."""
    tui = launch(80, 24, {"NUM_STEPS": 200_000, "EARLY_STOP_PATIENCE": 100_000})
    tui.wait_for("press any key")
    tui.keys("Enter")
    tui.keys("s")
    tui.wait_for(r"step \d+/200000", 30)
    dashboard = psutil.Process(tui.pid())
    trainer = [p for p in dashboard.children() if "microgpt" in " ".join(p.cmdline())]
    assert trainer
    dashboard.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while trainer[0].is_running() and trainer[0].status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not trainer[0].is_running() or trainer[0].status() == psutil.STATUS_ZOMBIE
    manifest = json.loads(next((tmp_path / "logs" / "runs").glob("run_*.json")).read_text())
    assert (manifest["status"], manifest["stop_reason"]) == ("finished", "interrupted")
    assert (tmp_path / "models" / "latest_checkpoint.npz").is_file()


def test_resizing_and_a_small_terminal(launch) -> None:
    tui = launch(120, 36)
    tui.wait_for("press any key")
    tui.keys("Enter", "Tab")
    tui.wait_for("Metric Explorer")
    tui.resize(60, 20)
    tui.wait_for("terminal too small")
    tui.resize(80, 24)
    tui.wait_for("Metric Explorer")
    assert not tui.dead()


def test_no_color_keeps_the_terminals_own_colours_and_a_c_locale_draws_ascii(launch) -> None:
    tui = launch(100, 30, env={"NO_COLOR": "1", "LANG": "C", "LC_ALL": "C"})
    tui.wait_for("press any key")
    tui.keys("Space")
    tui.wait_for(r"DATASET_PATH")
    painted = tui.tmux("capture-pane", "-e", "-p", "-t", "tui")  # with the escape codes that paint the cells
    assert "\x1b[40m" not in painted and "\x1b[37m" not in painted  # no forced white on black
    assert re.search(r"params ~ \S", tui.screen())  # the ASCII stand-in for a glyph curses cannot draw in C
