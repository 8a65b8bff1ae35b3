"""Reliability, data loss: a download never destroys the file it replaces, two trainers never share a
models folder, and a resume on changed data says so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_download
from test_training import assert_one_line_error, microgpt, user_env, write_dataset

from microgpt.atomic import LineFile
from microgpt.errors import ConfigError
from microgpt.storage import load_checkpoint
from microgpt.train.run_lock import LOCK_NAME, RunLock

server, data_cli = test_download.server, test_download.data_cli  # the local HTTP server and the `data` CLI
PAYLOAD, SHA256 = test_download.PAYLOAD, test_download.SHA256


# --- downloads ---------------------------------------------------------------------------------------------
def test_an_existing_file_is_kept_when_its_replacement_fails_the_check(server, tmp_path, data_cli, capsys):
    out = tmp_path / "dolly.jsonl"
    out.write_bytes(b"my own edited copy\n")
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", "1" * 64, "--out", str(out)]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    assert out.read_bytes() == b"my own edited copy\n"  # untouched: the new file never verified


def test_an_existing_file_is_kept_when_the_download_fails(tmp_path, data_cli, capsys):
    out = tmp_path / "dolly.jsonl"
    out.write_bytes(b"old\n")
    url = f"http://127.0.0.1:{test_download.free_port()}/dolly.jsonl"
    assert data_cli(["data", "get", "dolly", "--url", url, "--sha256", SHA256, "--out", str(out)]) == 2
    assert "cannot download" in capsys.readouterr().err
    assert out.read_bytes() == b"old\n"


def test_an_existing_file_is_replaced_only_by_a_verified_one(server, tmp_path, data_cli):
    out = tmp_path / "dolly.jsonl"
    out.write_bytes(b"old\n")
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", SHA256, "--out", str(out)]) == 0
    assert out.read_bytes() == PAYLOAD


@pytest.mark.parametrize("where", ["folder", "device"])
def test_out_a_folder_or_a_device_is_one_line_exit_2(server, tmp_path, data_cli, capsys, where):
    if where == "device" and not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this OS")
    out = str(tmp_path) if where == "folder" else "/dev/full"
    assert data_cli(["data", "get", "dolly", "--url", server, "--sha256", "", "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "--out" in captured.err
    assert "already here" not in captured.out + captured.err
    assert test_download.RangeHandler.ranges == []  # refused before anything was requested


# --- one run per models folder -------------------------------------------------------------------------------
def test_a_second_trainer_on_the_same_models_folder_refuses_naming_the_first(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    first = subprocess.Popen([sys.executable, "-m", "microgpt", "train"], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env=user_env(tmp_path, NUM_STEPS="1000000", SAMPLE_COUNT="0"))
    try:
        run_id = first.stdout.readline().removeprefix("run_id: ").strip()  # printed once the folder is held
        assert run_id, first.stderr.read()
        second = microgpt(tmp_path, "train")
        assert_one_line_error(second, "MODEL_DIR", "in use by run", run_id, f"pid {first.pid}")
    finally:
        first.terminate()
        first.communicate(timeout=120)
    assert first.returncode == 0
    assert not (tmp_path / "models" / LOCK_NAME).exists()  # released when the first run stopped


def test_a_lock_left_by_a_dead_run_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "run_id": "old"}), encoding="utf-8")
    lock = RunLock(tmp_path, "new").acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8"))["run_id"] == "new"
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_live_lock_refuses_and_is_left_alone(tmp_path: Path) -> None:
    holder = {"pid": os.getppid(), "run_id": "theirs"}  # our parent: certainly alive, certainly not us
    (tmp_path / LOCK_NAME).write_text(json.dumps(holder), encoding="utf-8")
    with pytest.raises(ConfigError, match="in use by run theirs"):
        RunLock(tmp_path, "mine").acquire()
    assert json.loads((tmp_path / LOCK_NAME).read_text(encoding="utf-8")) == holder


def test_a_lock_whose_holder_is_a_zombie_or_a_later_process_with_its_pid_is_taken_over(tmp_path: Path) -> None:
    import psutil

    child = subprocess.Popen([sys.executable, "-c", "pass"])  # exits, and stays a zombie until it is reaped
    try:
        for _ in range(600):
            if psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE:
                break
            time.sleep(0.05)
        assert psutil.Process(child.pid).status() == psutil.STATUS_ZOMBIE
        (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": child.pid, "run_id": "dead"}), encoding="utf-8")
        RunLock(tmp_path, "new").acquire().release()
    finally:
        child.wait()
    # our parent runs, but it started long after this lock was written: the pid was handed out again
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "run_id": "old", "started": 1.0e9}),
                                      encoding="utf-8")
    RunLock(tmp_path, "new").acquire().release()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": os.getppid(), "run_id": "live", "started": time.time()}),
                                      encoding="utf-8")
    with pytest.raises(ConfigError, match=f"in use by run live .pid {os.getppid()}, its lock {LOCK_NAME}"):
        RunLock(tmp_path, "mine").acquire()


def test_a_best_path_inside_another_live_runs_model_dir_is_refused(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "theirs").mkdir()
    holder = {"pid": os.getppid(), "run_id": "theirs", "started": time.time()}  # alive, not us
    (tmp_path / "theirs" / LOCK_NAME).write_text(json.dumps(holder), encoding="utf-8")
    result = microgpt(tmp_path, "train", "--model-best-path", "theirs/best_checkpoint.npz")
    assert_one_line_error(result, "MODEL_BEST_PATH='theirs/best_checkpoint.npz' (its folder 'theirs') is in use by run theirs")
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == [LOCK_NAME]  # nothing of theirs touched
    assert not (tmp_path / "models" / LOCK_NAME).exists()  # and our own folder is free again


def test_a_run_is_refused_a_model_dir_whose_best_a_live_run_claimed_and_claims_go_when_it_ends(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    (tmp_path / "a").mkdir()
    claim = tmp_path / "a" / ".best_checkpoint.npz.microgpt-claim"  # a live run writes its MODEL_BEST_PATH here
    claim.write_text(json.dumps({"pid": os.getppid(), "run_id": "B", "started": time.time()}), encoding="utf-8")
    result = microgpt(tmp_path, "train", "--model-dir", "a")
    assert_one_line_error(result, "MODEL_DIR='a/best_checkpoint.npz' (its folder 'a') is in use by run B")
    assert not (tmp_path / "a" / LOCK_NAME).exists()  # its own lock let go
    claim.unlink()
    done = microgpt(tmp_path, "train", "--model-best-path", "a/best_checkpoint.npz", NUM_STEPS="10")
    assert done.returncode == 0, done.stderr
    assert not claim.exists() and (tmp_path / "a" / "best_checkpoint.npz").is_file()  # claimed while it ran


# --- resume on changed data ----------------------------------------------------------------------------------
def test_resume_warns_when_the_dataset_changed(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", NUM_STEPS="20").returncode == 0
    with (tmp_path / "data.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"id": "extra", "record_type": "knowledge", "text": "A new fact."}) + "\n")
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "30")
    assert resumed.returncode == 0, resumed.stderr
    warning = [line for line in resumed.stdout.splitlines() if " WARNING " in line]
    assert len(warning) == 1 and "data.jsonl changed" in warning[0] and "sha256" in warning[0]


def test_resume_on_another_dataset_says_so_rather_than_that_the_file_changed(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", NUM_STEPS="20").returncode == 0
    lines = (tmp_path / "data.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "other.jsonl").write_text("".join(lines[1:]), encoding="utf-8")  # the same records but one
    before = (tmp_path / "data.jsonl").read_bytes()
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "30",
                       "--dataset-path", "other.jsonl")
    assert resumed.returncode == 0, resumed.stderr
    warning = [line for line in resumed.stdout.splitlines() if " WARNING " in line]
    assert len(warning) == 1 and "the checkpoint was trained on data.jsonl; this run continues on other.jsonl" \
        in warning[0] and "changed" not in warning[0]
    assert (tmp_path / "data.jsonl").read_bytes() == before


def test_resume_with_other_validation_windows_warns_that_losses_do_not_compare(tmp_path: Path) -> None:
    """BATCH_SIZE x EVAL_STEPS windows make the validation set: other values measure other text, and a loss
    below the best would be no improvement of the model."""
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", NUM_STEPS="20").returncode == 0
    batch, steps = (load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").meta["train_config"][k]
                    for k in ("batch_size", "eval_steps"))
    same = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "22",
                    "--batch-size", str(batch * steps), "--eval-steps", "1")  # the same windows, in one batch
    assert same.returncode == 0 and "other windows" not in same.stdout, same.stderr
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "24",
                       "--eval-steps", "3")
    assert resumed.returncode == 0, resumed.stderr
    warning = [line for line in resumed.stdout.splitlines() if " WARNING " in line]
    assert len(warning) == 1 and "x 3, the checkpoint's" in warning[0] and "other windows" in warning[0]


def test_resume_on_the_same_dataset_does_not_warn(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", NUM_STEPS="20").returncode == 0
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "30")
    assert resumed.returncode == 0, resumed.stderr
    assert " WARNING " not in resumed.stdout


def half_then_full(real_write):
    """An os.write that writes half of what it is given, then finds the disk full (as ENOSPC mid-line does)."""
    calls = {"n": 0}

    def write(fd: int, data) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: max(1, len(data) // 2)])
        raise OSError(28, "No space left on device")

    return write


def test_an_append_that_fills_the_disk_leaves_no_torn_line(tmp_path: Path, monkeypatch) -> None:
    """Whole lines or nothing: the file is cut back to where it was, and the error names the file."""
    path = tmp_path / "events.jsonl"
    log = LineFile(path)
    log.append('{"step": 1}\n')
    monkeypatch.setattr(os, "write", half_then_full(os.write))
    with pytest.raises(OSError) as failed:
        log.append('{"step": 2, "loss": 3.5709981}\n')
    monkeypatch.undo()
    assert failed.value.filename == str(path) and failed.value.errno == 28
    log.append('{"step": 3}\n')
    log.close()
    assert path.read_text() == '{"step": 1}\n{"step": 3}\n'


def test_a_torn_last_line_left_by_a_killed_writer_is_dropped_on_open(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_bytes(b"step,loss\r\n10,4.2\r\n20,3.")  # killed mid-row
    table = LineFile(path)
    table.append("30,3.1\r\n")
    table.close()
    assert path.read_bytes() == b"step,loss\r\n10,4.2\r\n30,3.1\r\n"
    path.write_text("no newline at all")
    LineFile(path).close()
    assert path.read_text() == ""


def test_evals_results_table_keeps_whole_rows_when_the_disk_fills(tmp_path: Path, monkeypatch) -> None:
    from microgpt.evaluation.heldout import EvalResult, append_results

    result = EvalResult(dataset="d.jsonl", sha256="0" * 64, split="all", records=1, tokens=10, bytes=20, loss=1.0,
                        bits_per_byte=0.5, skipped=0, seconds=0.1)
    path = append_results([result], "models/best.npz", tmp_path)
    before = path.read_text()
    monkeypatch.setattr(os, "write", half_then_full(os.write))
    with pytest.raises(OSError):
        append_results([result, result], "models/best.npz", tmp_path)
    monkeypatch.undo()
    assert path.read_text() == before


def test_a_log_sent_to_dev_null_is_written_as_before(tmp_path: Path) -> None:
    """/dev/null (or a FIFO) takes lines as it did with a plain open(): no tail to mend, nothing to sync."""
    link = tmp_path / "train_latest.log"
    link.symlink_to(os.devnull)
    log = LineFile(link, truncate=True)
    log.append("a line\n")
    log.close()
    assert Path(os.devnull).is_char_device()


def test_a_failed_append_never_cuts_another_writers_line(tmp_path: Path, monkeypatch) -> None:
    """Two processes append to one chat_latest.log: a failure cuts back only what this append wrote."""
    path = tmp_path / "shared.log"
    mine, theirs = LineFile(path), LineFile(path)
    real = os.write

    def theirs_first_then_full(fd: int, data) -> int:
        monkeypatch.setattr(os, "write", real)
        theirs.append("theirs\n")  # lands between this append's size check and its write
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", theirs_first_then_full)
    with pytest.raises(OSError):
        mine.append("mine\n")
    mine.close()
    theirs.close()
    assert path.read_text() == "theirs\n"
