"""The dashboard's cost: its CPU while idle and while following a run, and the trainer's throughput with the
dashboard following it against the plain CLI. Run with `python -m microgpt bench --tui` (needs tmux).

The TUI is driven in a private tmux server (its own socket, so a user's tmux is never touched): keys go in
with `send-keys`, the screen comes back with `capture-pane`. The end-to-end tests use the same driver.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

from microgpt.config import TrainConfig
from microgpt.errors import ConfigError, clipped

REPO = Path(__file__).resolve().parents[2]
BENCH_KNOBS = {
    "DATASET_PATH": "data.jsonl", "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": 300, "N_LAYER": 2, "N_EMBD": 64,
    "N_HEAD": 4, "BLOCK_SIZE": 64, "BATCH_SIZE": 8, "NUM_STEPS": 300, "EVAL_INTERVAL": 100, "EVAL_STEPS": 4,
    "SAMPLE_COUNT": 0, "EARLY_STOP_PATIENCE": 1000, "METRIC_INTERVAL": 10, "LOG_DIR": TrainConfig.log_dir,
    "MODEL_DIR": TrainConfig.model_dir,
}


class TmuxTUI:
    """One TUI process (or another command of `python ARGS`) in a private tmux server; `screen()` returns what the
    terminal shows."""

    def __init__(self, cwd: Path, width: int, height: int, env: dict[str, str],
                 args: tuple[str, ...] = ("-m", "microgpt.tui")) -> None:
        self.socket = f"microgpt-tui-test-{uuid.uuid4().hex[:8]}"
        variables = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = f"cd {shlex.quote(str(cwd))} && exec env {variables} {sys.executable} {shlex.join(args)}"
        size = ("-x", str(width), "-y", str(height))
        self.tmux("-f", "/dev/null", "new-session", "-d", "-s", "tui", *size, command)
        self.tmux("set-option", "-t", "tui", "remain-on-exit", "on")
        self.resize(width, height)

    def resize(self, width: int, height: int) -> None:
        """Set the terminal size (a detached tmux session otherwise keeps its default 80x24)."""
        self.tmux("resize-window", "-t", "tui", "-x", str(width), "-y", str(height))

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args], check=False, capture_output=True, text=True, timeout=10
        )
        return done.stdout

    def keys(self, *keys: str, pause: float = 0.15) -> None:
        """Send keys one at a time (tmux key names such as Enter, Escape, Tab, BTab, PageUp)."""
        for key in keys:
            self.tmux("send-keys", "-t", "tui", key)
            time.sleep(pause)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", "tui", "-l", text)
        time.sleep(0.2)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "tui")

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Wait until the screen matches the regular expression `pattern`; fail with the screen shown."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.screen())
            if match:
                return match
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {pattern!r}; the screen was:\n{self.screen()}")

    def pid(self) -> int:
        return int(self.tmux("display-message", "-p", "-t", "tui", "#{pane_pid}").strip())

    def dead(self) -> bool:
        return self.tmux("display-message", "-p", "-t", "tui", "#{pane_dead}").strip() == "1"

    def close(self) -> None:
        self.tmux("kill-server")



def _project(folder: Path, knobs: dict) -> dict[str, str]:
    """A throwaway project: the starter dataset, a config file and a TUI settings file; returns the TUI's env."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy(REPO / TrainConfig.dataset_path, folder / "data.jsonl")
    (folder / "cfg.json").write_text(json.dumps(knobs))
    (folder / "tui.json").write_text(json.dumps({"knobs": knobs}))
    return {"PYTHONPATH": str(REPO), "MICROGPT_TUI_CONFIG": str(folder / "tui.json"), "LANG": "C.UTF-8",
            "MICROGPT_CACHE_DIR": str(folder / "cache")}


def _steps_per_sec(log_dir: Path) -> float:
    path = max(glob.glob(f"{log_dir}/events/*.jsonl"))
    steps = [e for e in map(json.loads, Path(path).read_text().splitlines()) if e["type"] == "step"]
    return statistics.median(e["steps_per_sec"] for e in steps[1:])


def _cpu_percent(pid: int, seconds: float) -> float:
    process = psutil.Process(pid)
    before = process.cpu_times()
    time.sleep(seconds)
    after = process.cpu_times()
    return ((after.user - before.user) + (after.system - before.system)) / seconds * 100


def run_tui_bench(rounds: int = 2) -> dict[str, float]:
    """Idle CPU, CPU while following, and the followed run's steps/s as a share of the CLI's (median)."""
    root = Path(tempfile.mkdtemp(prefix="microgpt-tui-bench-"))
    try:
        return _measure(root, rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _measure(root: Path, rounds: int) -> dict[str, float]:
    result: dict[str, float] = {}
    env = _project(root / "idle", BENCH_KNOBS)
    tui = TmuxTUI(root / "idle", 120, 36, env)
    try:
        tui.wait_for("press any key")
        tui.keys("Enter", "l")  # the Monitor tab (on the Train tab, 1-3 pick the original's presets)
        tui.wait_for("Metric Explorer")
        time.sleep(1.0)
        result["idle_cpu_percent"] = _cpu_percent(tui.pid(), 10.0)
    finally:
        tui.close()
    ratios, follow = [], []
    for i in range(rounds):
        folder = root / f"cli{i}"
        _project(folder, BENCH_KNOBS)
        done = subprocess.run([sys.executable, "-m", "microgpt", "train", "--config", "cfg.json"], cwd=folder,
                              env={**os.environ, "PYTHONPATH": str(REPO), "MICROGPT_CACHE_DIR": str(folder / "cache")},
                              capture_output=True, text=True, check=False)
        if done.returncode:  # a bad knob variable in this environment, say: the trainer's own line says which
            said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit code {done.returncode}"
            raise ConfigError(f"--tui: its reference `microgpt train` run failed: {clipped(said, 300)}")
        cli = _steps_per_sec(folder / TrainConfig.log_dir)
        folder = root / f"tui{i}"
        tui = TmuxTUI(folder, 120, 36, _project(folder, BENCH_KNOBS))
        try:
            tui.wait_for("press any key")
            tui.keys("Enter", "s", "l")
            tui.wait_for(r"step \d+/", 60)
            follow.append(_cpu_percent(tui.pid(), 5.0))
            tui.wait_for(r"finished \(", 600)
        finally:
            tui.close()
        ratios.append(_steps_per_sec(folder / TrainConfig.log_dir) / cli)
    result["follow_cpu_percent"] = statistics.median(follow)
    result["tui_over_cli_throughput"] = statistics.median(ratios)
    return result
