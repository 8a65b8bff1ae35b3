"""Start the trainer as a child process and follow it, without ever making the UI wait.

    python -m microgpt train --config <file>      (cwd: the project root, i.e. the TUI's cwd)

Two daemon threads read the child's stdout and stderr in batches of lines into a queue, because a read
on a pipe blocks. The UI thread calls `poll()` on every tick: it drains the queue, then reads the
new complete lines of `LOG_DIR/events/events_<run_id>.jsonl` from the byte offset it reached last
time. The run id comes from the trainer's first stdout line, `run_id: <id>`.

Stopping is polite first: `x` sends SIGINT, which the trainer turns into "finish this step, save
models/latest_checkpoint.npz, exit". A second `x` sends SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from microgpt.atomic import atomic_write_text
from microgpt.config import TrainConfig
from microgpt.train.artifacts import read_events, run_file

RUN_ID_PREFIX = "run_id:"
TUI_CONFIG_NAME = "tui_train_config.json"
PUMP_REST_S = 0.05


def train_config_paths(state_file: Path, log_dir: Path) -> tuple[Path, Path]:
    """Where the TUI writes the knob values it hands to `python -m microgpt train --config`: next to its
    settings, else (a read-only settings folder) in LOG_DIR, which the run must be able to write anyway. The
    name is the dashboard's own: a `train_config.json` of the user's beside the settings is never replaced."""
    return state_file.with_name(TUI_CONFIG_NAME), log_dir / TUI_CONFIG_NAME


class ConfigNotWritten(OSError):
    """The trainer's config file could not be written; `filename` names it (not the temporary file)."""


@dataclass
class RunnerUpdate:
    """What arrived since the last poll: console lines (text, from_stderr), events, and whether it ended."""

    lines: list[tuple[str, bool]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def __bool__(self) -> bool:
        return bool(self.lines or self.events or self.finished)


def _pump(stream: IO[bytes], from_stderr: bool, sink: queue.SimpleQueue) -> None:
    """Thread body: forward the complete lines of a pipe to `sink` in batches, then None at end of file.

    It takes whatever the pipe holds, then rests PUMP_REST_S: a trainer that prints a line per
    step costs this thread ~20 wake-ups a second instead of one per line (the pipe's 64 KB
    buffer holds far more than 50 ms of output).
    """
    pending = b""
    while chunk := stream.read1(65536):
        *lines, pending = (pending + chunk).split(b"\n")
        if lines:
            sink.put(([line.decode("utf-8", "replace") for line in lines], from_stderr))
        time.sleep(PUMP_REST_S)
    if pending:
        sink.put(([pending.decode("utf-8", "replace")], from_stderr))
    sink.put((None, from_stderr))
    stream.close()


class TrainerRunner:
    """One training subprocess at a time; `poll()` from the UI loop, `stop()` on `x`."""

    def __init__(self, cwd: str | os.PathLike[str], command: list[str] | None = None) -> None:
        self.cwd = Path(cwd)
        self.command = command or [sys.executable, "-m", "microgpt", "train"]
        self.process: subprocess.Popen[bytes] | None = None
        self.run_id = ""
        self.log_dir = TrainConfig.log_dir
        self.returncode: int | None = None
        self.error = ""
        self.stop_requests = 0
        self.stderr_tail: deque[str] = deque(maxlen=50)
        self._lines: queue.SimpleQueue = queue.SimpleQueue()
        self._open_pipes = 0
        self._events_offset = 0

    @property
    def live(self) -> bool:
        """True from `start` until the process has exited and both pipes are drained."""
        return self.process is not None and self.returncode is None

    @property
    def events_path(self) -> Path | None:
        """Where the trainer writes this run's events (known once it printed its run id)."""
        if not self.run_id:
            return None
        return run_file(self.cwd / self.log_dir, self.run_id, "events")

    def start(self, values: dict[str, Any], config_file: str | os.PathLike[str]) -> None:
        """Write `values` (env-style knob names) to `config_file` as JSON and launch the trainer on it."""
        if self.live:
            raise RuntimeError("a training run is already going")
        try:
            atomic_write_text(config_file, json.dumps(values, indent=2) + "\n")
        except (OSError, ValueError) as exc:  # a read-only or full folder (ValueError: a NUL in the path)
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigNotWritten(getattr(exc, "errno", None) or errno.EINVAL, reason, str(config_file)) from exc
        self.run_id, self.error, self.returncode = "", "", None
        self.log_dir = str(values.get("LOG_DIR") or TrainConfig.log_dir)
        self.stop_requests, self._events_offset = 0, 0
        self.stderr_tail.clear()
        self._lines = queue.SimpleQueue()
        # The environment outranks a config file (defaults < preset < file < env < flags): drop knob-named
        # variables so the run uses exactly the values on screen. Unbuffered output streams line by line.
        env = {name: value for name, value in os.environ.items() if name not in values}
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            [*self.command, "--config", str(config_file)],
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # a Ctrl-C meant for the TUI must not hit the trainer
        )
        self._open_pipes = 2
        for stream, is_err in ((self.process.stdout, False), (self.process.stderr, True)):
            threading.Thread(target=_pump, args=(stream, is_err, self._lines), daemon=True).start()

    def poll(self) -> RunnerUpdate:
        """Collect new console lines and events; never blocks."""
        update = RunnerUpdate()
        if self.process is None or self.returncode is not None:
            return update
        while True:
            try:
                batch, from_stderr = self._lines.get_nowait()
            except queue.Empty:
                break
            if batch is None:
                self._open_pipes -= 1
                continue
            for text in batch:
                if not from_stderr and not self.run_id and text.startswith(RUN_ID_PREFIX):
                    self.run_id = text[len(RUN_ID_PREFIX):].strip()
                if from_stderr and text.strip():
                    self.stderr_tail.append(text.strip())
                update.lines.append((text, from_stderr))
        if self.events_path is not None:
            events, self._events_offset = read_events(self.events_path, self._events_offset)
            update.events = events
        if self._open_pipes == 0 and self.process.poll() is not None:
            self._finish(update)
        return update

    def _finish(self, update: RunnerUpdate) -> None:
        """The child exited and its pipes are drained: take the last events and decide whether it failed."""
        assert self.process is not None
        if self.events_path is not None:
            events, self._events_offset = read_events(self.events_path, self._events_offset)
            update.events.extend(events)
        self.returncode = self.process.returncode
        update.finished = True
        polite_exits = (0, 130, -signal.SIGINT, -signal.SIGTERM)
        # stopped before it printed its run id, the trainer was still starting Python: whatever it exits with
        # (a KeyboardInterrupt while its streams were being set up) is the stop asked for, not a failure
        stopped_by_user = self.stop_requests > 0 and (self.returncode in polite_exits or not self.run_id)
        if self.returncode != 0 and not stopped_by_user:
            last = self.stderr_tail[-1] if self.stderr_tail else ""
            self.error = last or f"trainer exited with code {self.returncode}"

    def stop(self) -> str:
        """First call: SIGINT (graceful: save and exit). Second call: SIGTERM. Returns what it did."""
        if not self.live or self.process is None:
            return "no training run to stop"
        self.stop_requests += 1
        if self.process.poll() is not None:
            return "the trainer is already exiting"
        if self.stop_requests == 1:
            self.process.send_signal(signal.SIGINT)
            return "stopping: the trainer finishes its step and saves the latest checkpoint (x again forces)"
        self.process.terminate()
        return "forced stop sent (SIGTERM)"

    def shutdown(self, grace_s: float = 10.0) -> None:
        """Used when the TUI quits during a run: SIGINT, wait up to `grace_s`, then SIGTERM, then SIGKILL."""
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, grace_s), (signal.SIGTERM, 3.0)):
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
        self.process.kill()
        self.process.wait()
