"""Stand-ins for the trainer process and the chat model, shared by the TUI unit tests.

The fake trainer speaks the trainer's contract (first stdout line `run_id: <id>`, JSON events under
LOG_DIR/events, a manifest, SIGINT = save and stop) in a few lines of Python, so runner and app
tests run in well under a second each, without NumPy training anything.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

FAKE_TRAINER = textwrap.dedent(
    """
    import json, os, signal, sys, time
    config = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
    mode = os.environ.get("FAKE_TRAINER", "")  # "crash", "slow", "starting", or normal
    if mode == "starting":  # still starting up: Python's own Ctrl-C (a traceback, exit 1) stops it
        print("ready", file=sys.stderr, flush=True)
        time.sleep(60)
    if mode == "crash":
        print("loading dataset", flush=True)
        print("Traceback (most recent call last):", file=sys.stderr)
        print("ValueError: the dataset is empty", file=sys.stderr, flush=True)
        sys.exit(1)
    log_dir = config.get("LOG_DIR", "logs")
    run = "20250101-120000_fake"
    for sub in ("events", "runs"):
        os.makedirs(os.path.join(log_dir, sub), exist_ok=True)
    events = open(os.path.join(log_dir, "events", f"events_{run}.jsonl"), "a")
    def emit(event_type, **fields):
        events.write(json.dumps({"type": event_type, "time": time.time(), **fields}) + "\\n")
        events.flush()
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append("interrupted"))
    print(f"run_id: {run}", flush=True)
    total = int(config.get("NUM_STEPS", 50))
    emit("start", run=run, config=config, total_steps=total, parameters=1234, dataset="d.jsonl",
         tokenizer="char")
    step = 0
    for step in range(1, total + 1):
        if stop:
            break
        loss = 3.0 / step ** 0.5
        emit("step", step=step, loss=loss, lr=0.01, tokens_per_sec=1000.0 + step, steps_per_sec=50.0,
             elapsed_s=step * 0.02, eta_s=(total - step) * 0.02)
        if step % 10 == 0:
            emit("eval", step=step, train_loss=loss, val_loss=loss * 1.1, val_ppl=2.7 ** (loss * 1.1),
                 gap=loss * 0.1, best_val_loss=loss * 1.1, patience_used=0, patience=8)
            emit("system", step=step, cpu_percent=90.0, ram_used_mb=2048.0, rss_mb=120.0)
            print(f"step {step}/{total} loss {loss:.4f} \\x1b[31mred\\x1b[0m", flush=True)
        time.sleep(0.05 if mode == "slow" else 0.002)
    reason = stop[0] if stop else "completed"
    emit("checkpoint", step=step, path="models/latest_checkpoint.npz", kind="latest")
    emit("stop", step=step, reason=reason, best_val_loss=1.0)
    manifest = {"run": run, "run_id": run, "dataset": "d.jsonl", "steps": step, "stop_reason": reason,
                "best_val_loss": 1.0, "start_time": 100.0, "end_time": 160.0}
    json.dump(manifest, open(os.path.join(log_dir, "runs", f"run_{run}.json"), "w"))
    print("done", flush=True)
    """
)


def fake_trainer_command(tmp_path: Path) -> list[str]:
    """The command prefix that TrainerRunner appends `--config FILE` to."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER, encoding="utf-8")
    return [sys.executable, str(script)]


@dataclasses.dataclass
class FakeSettings:
    """Same shape as microgpt.nn.SamplingSettings, for the fields the TUI sets and checks."""

    temperature: float = 0.8
    top_k: int = 40
    min_new_tokens: int = 1
    max_new_tokens: int = 96


class FakeSession:
    """A chat session that echoes the prompt back in pieces, remembering each turn."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.history: list[str] = []

    @classmethod
    def open(cls, path: str) -> FakeSession:
        if "missing" in path:
            from microgpt.errors import CheckpointError

            raise CheckpointError(f"{path}: no such checkpoint")
        return cls(path)

    def stream_reply(self, user_text: str, settings: FakeSettings) -> Iterator[str]:
        self.history.append(user_text)
        while user_text == "endless":  # a reply that only a stop ends
            time.sleep(0.002)
            yield "la "
        yield from ("echo", ": ", user_text, f" (t={settings.temperature:.2f})")

    def reset(self) -> None:
        self.history.clear()


def wait_until(condition, tick=lambda: None, timeout: float = 30.0) -> bool:
    """Call `tick` until `condition()` holds or `timeout` seconds pass (generous: a loaded machine starts a
    Python process slowly; a condition that holds returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        if condition():
            return True
        time.sleep(0.01)
    return False
