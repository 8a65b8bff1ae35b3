"""Reliability, stopping: a run that loses its console, its terminal or its first fraction of a second
loses no work and prints no traceback; what killed runs leave behind is cleaned up by the next one.

Each case runs the real CLI in a subprocess on the tiny dataset of test_training.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_training import eval_rows, events_of, microgpt, only_manifest, user_env, write_dataset

from microgpt.atomic import atomic_open, remove_stale_temps
from microgpt.storage import load_checkpoint
from microgpt.train.artifacts import read_events

POSIX = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and pipes")


def start_training(folder: Path, stdout: int = subprocess.DEVNULL, **knobs: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "microgpt", "train"], cwd=folder, stdout=stdout,
                            stderr=subprocess.PIPE, env=user_env(folder, **knobs))


def wait_for_a_step(folder: Path, proc: subprocess.Popen) -> None:
    """Until the run's events file records a step (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + 120
    while not any('"type": "step"' in p.read_text(encoding="utf-8")
                  for p in (folder / "logs" / "events").glob("*.jsonl")):
        assert proc.poll() is None, f"training ended early: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no step event appeared"
        time.sleep(0.05)


@contextlib.contextmanager
def killed_if_left(proc: subprocess.Popen) -> Iterator[None]:
    """However the block ends (a failed assertion too), the trainer it started is not left running."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@POSIX
def test_a_closed_stdout_does_not_stop_training(tmp_path: Path) -> None:
    """`train | head -c 10`: the reader goes away after 10 bytes; the run still finishes and saves."""
    write_dataset(tmp_path)
    proc = start_training(tmp_path, stdout=subprocess.PIPE)
    assert proc.stdout.read(10)
    proc.stdout.close()  # like head exiting
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert b"Traceback" not in stderr
    assert only_manifest(tmp_path)["stop_reason"] == "completed"
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").step == 30
    log = (tmp_path / "logs" / "train_latest.log").read_text(encoding="utf-8")
    assert "stopped: completed at step 30/30" in log  # the log files got every line


@POSIX
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_stops_cleanly_with_a_loadable_latest_checkpoint(tmp_path: Path, signum: int) -> None:
    """SIGTERM (kill) and SIGHUP (the terminal closed): finish the step, save latest, exit 0."""
    write_dataset(tmp_path)
    proc = start_training(tmp_path, NUM_STEPS="1000000", SAMPLE_COUNT="0")
    with killed_if_left(proc):
        wait_for_a_step(tmp_path, proc)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    manifest = only_manifest(tmp_path)
    assert (manifest["status"], manifest["stop_reason"]) == ("finished", "interrupted")
    assert 1 <= manifest["steps"] < 1_000_000
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").step == manifest["steps"]
    last = events_of(tmp_path)[-1]
    assert (last["type"], last["reason"], last["step"]) == ("stop", "interrupted", manifest["steps"])


@POSIX
def test_a_run_started_under_nohup_outlives_the_closed_terminal(tmp_path: Path) -> None:
    """nohup starts the trainer with SIGHUP ignored: the closed terminal's SIGHUP must not stop the run."""
    write_dataset(tmp_path)
    nohup = ("import runpy, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "  # what nohup does
             "sys.argv = ['microgpt', 'train']; runpy.run_module('microgpt', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", nohup], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=user_env(tmp_path, NUM_STEPS="1000000", SAMPLE_COUNT="0",
                                                                     EARLY_STOP_PATIENCE="1000000"))
    with killed_if_left(proc):
        wait_for_a_step(tmp_path, proc)
        proc.send_signal(signal.SIGHUP)
        with pytest.raises(subprocess.TimeoutExpired):  # still training after the terminal is gone
            proc.wait(timeout=3)
        proc.send_signal(signal.SIGTERM)  # a kill still stops it cleanly
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert only_manifest(tmp_path)["stop_reason"] == "interrupted"


@POSIX
def test_a_resume_after_kill_9_logs_each_step_once_and_a_rollback_says_its_logs_go_on(tmp_path: Path) -> None:
    """kill -9 after the run logged steps its last checkpoint does not hold: the resumed run computes them
    again, and its events and tables must hold each step once, as an uninterrupted run's do."""
    write_dataset(tmp_path)
    proc = start_training(tmp_path, NUM_STEPS="1000000", SAMPLE_COUNT="0", EARLY_STOP_PATIENCE="1000000",
                          EVAL_INTERVAL="10")
    try:
        deadline = time.monotonic() + 120
        while True:  # frozen (SIGSTOP) while its files are read, so what is seen is what the kill leaves
            proc.send_signal(signal.SIGSTOP)
            events = events_of_run(tmp_path)
            saves = [e["step"] for e in events if e["type"] == "checkpoint"]
            steps = [e["step"] for e in events if e["type"] == "step"]
            if saves and steps[-1] > max(saves) >= 20:  # it logged steps past its last save
                break
            proc.send_signal(signal.SIGCONT)
            assert proc.poll() is None and time.monotonic() < deadline, "the run logged nothing past a save"
            time.sleep(0.02)
    finally:
        proc.kill()  # kill -9: no checkpoint of the steps since the last save
        proc.wait()
    saved = load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").step
    shutil.copy(tmp_path / "models" / "latest_checkpoint.npz", tmp_path / "older.npz")
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--stop-after",
                       str(saved + 25))
    assert resumed.returncode == 0, resumed.stderr
    steps = [e["step"] for e in events_of(tmp_path) if e["type"] == "step"]
    assert steps == sorted(set(steps)) and steps[-1] == saved + 25, steps  # each step once, in order
    evaluated = [int(row["step"]) for row in eval_rows(tmp_path)]
    assert evaluated == sorted(set(evaluated)) and evaluated[-1] == saved + 20
    assert f"past step {saved}, from a session stopped before it saved them: removed" in resumed.stdout

    rollback = microgpt(tmp_path, "train", "--resume", "older.npz", "--stop-after", str(saved + 5))
    assert rollback.returncode == 0, rollback.stderr
    assert f"this run's logs go on to step {saved + 25}" in rollback.stdout  # kept: those weights exist
    assert [e["step"] for e in events_of(tmp_path) if e["type"] == "step"][:len(steps)] == steps


def test_a_run_killed_between_its_best_and_latest_saves_resumes_with_each_step_logged_once(tmp_path: Path) -> None:
    """At an improving evaluation best is saved, then latest: a kill between the two leaves a best past the
    latest, which is no other session's branch (the resumed run computes that same best again)."""
    write_dataset(tmp_path)
    killed = ("import os, sys, runpy; import microgpt.train.trainer as T; real = T.save_checkpoint\n"
              "def save(path, *args, **kwargs):\n"
              "    if args[2]['step'] == 20 and 'latest' in str(path): os._exit(137)  # as kill -9 would\n"
              "    return real(path, *args, **kwargs)\n"
              "T.save_checkpoint = save; sys.argv = ['microgpt', 'train']\n"
              "runpy.run_module('microgpt', run_name='__main__', alter_sys=True)")
    first = subprocess.run([sys.executable, "-c", killed], cwd=tmp_path, env=user_env(tmp_path, SAMPLE_COUNT="0"),
                           capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 137, first.stderr
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").step == 10
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", SAMPLE_COUNT="0")
    assert resumed.returncode == 0, resumed.stderr
    assert "another session" not in resumed.stdout and "from a session stopped before it saved them" in resumed.stdout
    steps = [e["step"] for e in events_of(tmp_path) if e["type"] == "step"]
    evaluated = [int(row["step"]) for row in eval_rows(tmp_path)]
    assert steps == sorted(set(steps)) and evaluated == [10, 20, 30], (steps, evaluated)


def events_of_run(folder: Path) -> list[dict]:
    """The events written so far (none before the file exists; a line being written is left out)."""
    events: list[dict] = []
    for path in (folder / "logs" / "events").glob("events_*.jsonl"):
        events += read_events(path)[0]
    return events


# `python -m microgpt train`, but saying "ready" on stderr once the interpreter is up and microgpt's entry
# module (a few light imports) is loaded; everything heavy (NumPy, the commands) is imported after that. A
# signal before that point hits Python's own start-up, which no program can handle.
STARTED_THEN_MICROGPT = ("import sys; import microgpt.__main__ as cli; sys.argv = ['microgpt', 'train']; "
                         "sys.stderr.write('ready\\n'); sys.stderr.flush(); sys.exit(cli.entry())")


@POSIX
@pytest.mark.parametrize("delay_s", [0.0, 0.03, 0.1, 0.2])
def test_ctrl_c_while_starting_exits_130_without_a_traceback(tmp_path: Path, delay_s: float) -> None:
    """SIGINT while microgpt is still importing its modules (the first fraction of a second)."""
    write_dataset(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", STARTED_THEN_MICROGPT], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=user_env(tmp_path, NUM_STEPS="1000000", SAMPLE_COUNT="0"))
    assert proc.stderr.readline() == b"ready\n"
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert b"Traceback" not in stderr, stderr.decode()
    # 130 while starting; 0 if the trainer was already running (it then saves and stops cleanly)
    assert proc.returncode in (130, 0), stderr.decode()
    assert len(stderr.decode().strip().splitlines()) <= 1


def test_stale_temporary_files_of_dead_writers_are_removed(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".best_checkpoint.npz.{dead_pid}.abcd1234.tmp"
    alive = tmp_path / f".latest_checkpoint.npz.{os.getppid()}.abcd1234.tmp"  # a live writer: kept
    unrelated = tmp_path / "notes.tmp"
    for path in (stale, alive, unrelated):
        path.write_bytes(b"half")
    assert remove_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and alive.exists() and unrelated.exists()


def test_atomic_temporary_files_carry_the_writer_pid(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    with atomic_open(target) as handle:
        (temp,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert f".x.bin.{os.getpid()}." in temp.name
        handle.write(b"data")
    assert target.read_bytes() == b"data"


def test_a_new_run_removes_the_temp_files_a_killed_run_left(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "models").mkdir()
    leftover = tmp_path / "models" / ".latest_checkpoint.npz.999999999.zzzz0000.tmp"
    leftover.write_bytes(b"half a checkpoint")
    result = microgpt(tmp_path, "train", NUM_STEPS="10")
    assert result.returncode == 0, result.stderr
    assert not leftover.exists()
    assert not list((tmp_path / "models").glob(".*.tmp"))


@POSIX
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGTERM])
def test_a_closed_terminal_while_the_data_is_prepared_stops_as_ctrl_c_does(tmp_path: Path, monkeypatch,
                                                                           capsys, signum: int) -> None:
    """The trainer's own handlers start with the loop; before it (tokenizing a big dataset can take a while) a
    SIGHUP or SIGTERM must not kill the process without a word, nor leave the run's lock behind."""
    import microgpt.train.trainer as trainer_module
    from microgpt.__main__ import main

    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    for name, value in user_env(tmp_path).items():
        monkeypatch.setenv(name, value)

    def signalled_while_preparing(*args, **kwargs):
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler interrupts this sleep
        raise AssertionError("the signal did not stop the preparation")

    monkeypatch.setattr(trainer_module, "prepare_data", signalled_while_preparing)
    before = signal.getsignal(signum)
    assert main(["train"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    assert not list((tmp_path / "models").glob(".microgpt-run*"))  # the lock was released
    assert signal.getsignal(signum) == before  # the command's handlers are gone with it


def test_a_stop_asked_for_during_an_evaluation_ends_it_at_the_next_batch(tmp_path: Path) -> None:
    from microgpt.nn import GPT, GPTConfig
    from microgpt.train.trainer import evaluate

    model = GPT(GPTConfig(vocab_size=20, n_layer=1, n_embd=8, n_head=2, block_size=4), seed=0)
    x = np.zeros((2, 4), dtype=np.int64)
    batches = [(x, x)] * 5
    asked = iter([False, False, True, True, True])
    scored = []
    loss = model.loss
    model.loss = lambda *args: scored.append(args) or loss(*args)  # type: ignore[method-assign]
    assert evaluate(model, batches, stopped=lambda: next(asked)) is None
    assert len(scored) == 2  # the two batches before the stop, none after
    assert evaluate(model, batches) == pytest.approx(loss(x, x).item(), rel=1e-6) and len(scored) == 7


def test_eval_steps_that_cannot_fit_in_memory_are_one_line_before_anything_runs(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", EVAL_STEPS="1000000000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "EVAL_STEPS=1000000000" in result.stderr
    assert not (tmp_path / "models").exists()
