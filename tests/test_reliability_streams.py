"""Reliability, streams and terminals: a closed pipe, a full disk, a narrow encoding, an unknown terminal, a
terminal without a size, and a FIFO given as a file each end in one line (or just work), never a traceback.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_training
from test_training import user_env, write_dataset

finished_run = test_training.finished_run  # one tiny trained run, shared (read-only) by this module

POSIX = pytest.mark.skipif(os.name == "nt", reason="POSIX pipes, FIFOs, /dev/full and ptys")


def run_cli(folder: Path, *args: str, stdout=subprocess.PIPE, stdin: str | None = None,
            **env: str) -> subprocess.CompletedProcess:
    environment = {**user_env(folder), **env}
    return subprocess.run([sys.executable, "-m", "microgpt", *args], cwd=folder, env=environment, stdout=stdout,
                          stderr=subprocess.PIPE, input=stdin.encode() if stdin else None, timeout=120,
                          check=False)


@POSIX
def test_chat_into_head_ends_quietly(finished_run) -> None:
    """`chat CKPT | head -c 10`: the reader leaves after 10 bytes; no BrokenPipeError, exit 0."""
    folder, _ = finished_run
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "chat", "models/best_checkpoint.npz"], cwd=folder,
                            env=user_env(folder), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert len(proc.stdout.read(10)) == 10
    proc.stdout.close()
    _, stderr = proc.communicate(b"hello\nhow are you?\n" * 20, timeout=120)
    assert proc.returncode == 0 and stderr == b"", stderr.decode()


@POSIX
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_on_a_full_disk_is_one_line_exit_1(finished_run) -> None:
    folder, _ = finished_run
    with open("/dev/full", "w") as full:
        result = run_cli(folder, "chat-once", "models/best_checkpoint.npz", "hi", stdout=full)
    stderr = result.stderr.decode()
    assert result.returncode == 1, stderr
    expected = "microgpt chat-once: error: cannot write to stdout: No space left on device"
    assert stderr.strip().splitlines() == [expected]


def test_an_ascii_only_stdout_escapes_what_it_cannot_show(finished_run) -> None:
    folder, _ = finished_run
    result = run_cli(folder, "chat-once", "models/best_checkpoint.npz", "héllo wörld ☕", "--max-new-tokens", "40",
                     PYTHONIOENCODING="ascii")
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    result.stdout.decode("ascii")  # everything printed is ASCII (escapes where needed)


def test_the_c_locales_surrogateescape_stdout_escapes_too(finished_run, tmp_path: Path) -> None:
    folder, _ = finished_run
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("héllo ☕\n", encoding="utf-8")  # echoed as "> héllo ☕": certain to need an escape
    result = run_cli(folder, "chat-once", "models/best_checkpoint.npz", "--prompts-file", str(prompts),
                     "--max-new-tokens", "4", LC_ALL="C", PYTHONUTF8="0", PYTHONIOENCODING="ascii:surrogateescape")
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode()
    assert result.stdout.startswith(b"> h\\xe9llo \\u2615")  # every byte printed is ASCII, escapes where needed


@POSIX
@pytest.mark.parametrize("closed", ["stdout", "stderr"])
def test_a_stream_the_command_was_started_without_is_not_a_crash_nor_mixed_into_the_other(
        tmp_path: Path, closed: str) -> None:
    """`train >&-` must train (its logs still go to files), and `eval --json 2>&-` must print only JSON: Python
    starts with sys.stdout (or stderr) None then, and print(file=None) falls back to stdout."""
    write_dataset(tmp_path)
    fd = 1 if closed == "stdout" else 2

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "microgpt", *args], cwd=tmp_path, env=user_env(tmp_path),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                              check=False, preexec_fn=lambda: os.close(fd))

    trained = run("train", "--num-steps", "2")
    assert trained.returncode == 0 and b"Traceback" not in trained.stdout + trained.stderr
    assert (tmp_path / "models" / "best_checkpoint.npz").is_file()
    scored = run("eval", "models/best_checkpoint.npz", "data.jsonl", "--json")
    assert scored.returncode == 0
    if closed == "stderr":
        __import__("json").loads(scored.stdout)  # nothing but the JSON object


def test_validate_dataset_names_unencodable_paths(tmp_path: Path) -> None:
    """A problem report that quotes non-ASCII text still prints on an ASCII stdout."""
    bad = tmp_path / "données.jsonl"
    bad.write_text('{"id": "é", "record_type": "knowledge"}\n', encoding="utf-8")
    result = run_cli(tmp_path, "validate-dataset", bad.name, PYTHONIOENCODING="ascii")
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"donn\\xe9es.jsonl" in result.stdout


@POSIX
@pytest.mark.parametrize("command", ["validate-dataset", "eval", "train"])
def test_a_fifo_is_refused_at_once_not_read(finished_run, tmp_path: Path, command: str) -> None:
    folder, _ = finished_run
    fifo = tmp_path / "data.jsonl"
    os.mkfifo(fifo)
    args = {"validate-dataset": ["validate-dataset", str(fifo)],
            "eval": ["eval", str(folder / "models" / "best_checkpoint.npz"), str(fifo)],
            "train": ["train"]}[command]
    result = run_cli(tmp_path, *args, DATASET_PATH=str(fifo))  # returns: run_cli would time out on a block
    stderr = result.stderr.decode()
    assert result.returncode == 2 and "Traceback" not in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and "not a regular file" in stderr


# --- the TUI on odd terminals --------------------------------------------------------------------------------
def run_tui_in_pty(folder: Path, rows: int, columns: int, **env: str) -> tuple[int, str]:
    """Start the TUI on a pseudo-terminal of the given size; quit it if it runs. (exit code, stderr)"""
    import fcntl  # POSIX-only modules: the tests using this are skipped elsewhere
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "microgpt.tui", "--no-splash"], cwd=folder, stdin=slave,
                            stdout=slave, stderr=subprocess.PIPE,
                            env={**user_env(folder), "MICROGPT_TUI_CONFIG": str(folder / "tui.json"), **env})
    os.close(slave)
    try:
        drawn, deadline = 0, time.monotonic() + 60  # a guard against hanging, not a timing assertion
        while proc.poll() is None and drawn < 500 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.1)[0]:
                try:
                    drawn += len(os.read(master, 65536))  # drain what it draws until the first screen is up
                except OSError:
                    break
        if proc.poll() is None:
            os.write(master, b"q")
            time.sleep(0.3)
            os.write(master, b"y")
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return proc.returncode, stderr.decode()


@POSIX
def test_tui_with_an_unknown_term_is_one_line_exit_2(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    code, stderr = run_tui_in_pty(tmp_path, 24, 80, TERM="no-such-term")
    assert code == 2 and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and "no-such-term" in stderr


@POSIX
def test_tui_on_a_terminal_without_a_size_runs_and_quits(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    code, stderr = run_tui_in_pty(tmp_path, 0, 0, TERM="xterm")
    assert code == 0 and "Traceback" not in stderr, stderr
