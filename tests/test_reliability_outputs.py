"""Reliability, output locations: where a run writes is checked before it trains (one line, exit 2), a
write that fails mid-run stops it cleanly with the manifest saying why, and undecodable names are fine.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_training import TINY, assert_one_line_error, microgpt, only_manifest, user_env, write_dataset

import microgpt.train.trainer as trainer_module
from microgpt.config import load_config
from microgpt.errors import ConfigError
from microgpt.train import outputs
from microgpt.train.trainer import Trainer


@pytest.mark.parametrize("knobs, fragments", [
    ({"MODEL_DIR": "data.jsonl"}, ("MODEL_DIR", "not a folder")),
    ({"LOG_DIR": "data.jsonl/logs"}, ("LOG_DIR", "cannot write")),
    ({"MODEL_OUT_PATH": "models"}, ("MODEL_OUT_PATH", "is a folder")),
    ({"MODEL_OUT_PATH": "data.jsonl/final.npz"}, ("MODEL_OUT_PATH", "final.npz", "is not a folder")),
    # the final checkpoint written over the best one, which is where it is by default
    ({"MODEL_OUT_PATH": "models/best_checkpoint.npz"}, ("the best checkpoint", "MODEL_OUT_PATH", "give another path")),
    ({"MODEL_OUT_PATH": "models/./best_checkpoint.npz"}, ("the best checkpoint", "MODEL_OUT_PATH")),
    ({"MODEL_OUT_PATH": "logs/train_latest.log"}, ("MODEL_OUT_PATH", "train_latest.log", "the run writes itself")),
    ({"MODEL_BEST_PATH": "models/.microgpt-run.lock"}, ("MODEL_BEST_PATH", "run lock", "the run writes itself")),
])
def test_unusable_output_locations_fail_before_training(tmp_path: Path, knobs: dict[str, str],
                                                        fragments: tuple[str, ...]) -> None:
    write_dataset(tmp_path)
    (tmp_path / "models").mkdir()
    result = microgpt(tmp_path, "train", **knobs)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "logs" / "runs").exists()  # no run was started
    assert not list((tmp_path / "models").iterdir())


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="needs /dev/null")
def test_model_dir_dev_null_is_one_line(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert_one_line_error(microgpt(tmp_path, "train", MODEL_DIR="/dev/null"), "MODEL_DIR", "/dev/null")


def test_too_little_free_space_for_a_checkpoint_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda _: type("Usage", (), {"free": 1000})())
    with pytest.raises(ConfigError, match=r"MODEL_DIR=.*MiB free.*needs about"):
        outputs.check_output_locations(str(tmp_path / "m"), str(tmp_path / "l"), tmp_path / "c", "", 10_000, "")


def in_run_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An in-process Trainer's surroundings: the tiny dataset in `folder`, the working folder, a private cache."""
    write_dataset(folder)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(folder / "cache"))


def test_a_write_failing_mid_run_stops_cleanly_and_marks_the_manifest(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    in_run_folder(tmp_path, monkeypatch)

    def disk_full(path, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(trainer_module, "save_checkpoint", disk_full)
    trainer = Trainer(load_config(cli={**TINY, "SAMPLE_COUNT": "0"}, env={}))
    assert trainer.run() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "step 10" in err
    assert "models/best_checkpoint.npz" in err and "no checkpoint was written" in err  # names it, claims none
    manifest = only_manifest(tmp_path)
    assert (manifest["status"], manifest["stop_reason"]) == ("failed", "write_failed")
    assert "No space left on device" in manifest["error"]
    assert not (tmp_path / "models" / ".microgpt-run.lock").exists()  # the folder is free again


def test_a_log_dir_removed_mid_run_stops_it_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """rm -rf logs during a run: its lines would go into files no one can reach; the run stops, exit 1."""
    import shutil

    in_run_folder(tmp_path, monkeypatch)
    real = trainer_module.save_checkpoint

    def then_logs_removed(path, *args, **kwargs):
        real(path, *args, **kwargs)
        shutil.rmtree(tmp_path / "logs", ignore_errors=True)

    monkeypatch.setattr(trainer_module, "save_checkpoint", then_logs_removed)
    assert Trainer(load_config(cli={**TINY, "SAMPLE_COUNT": "0"}, env={})).run() == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "deleted while it was being written" in err and "logs/" in err, err
    assert "models/best_checkpoint.npz from step 10 is complete" in err


def test_a_signal_during_the_final_save_leaves_a_completed_run_completed(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    in_run_folder(tmp_path, monkeypatch)
    real = trainer_module.save_checkpoint
    trainer = Trainer(load_config(cli={**TINY, "SAMPLE_COUNT": "0"}, env={}))

    def ctrl_c_while_the_final_is_written(path, *args, **kwargs):
        if Path(path).name.startswith("ckpt_"):
            trainer._on_signal(signal.SIGINT, None)  # the first Ctrl-C: finish what is being done
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", ctrl_c_while_the_final_is_written)
    assert trainer.run() == 0
    assert only_manifest(tmp_path)["stop_reason"] == "completed"


def test_a_failed_latest_save_names_the_best_checkpoint_that_was_written(tmp_path: Path, monkeypatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The disk fills between the best and the latest save: the message names the best one, from its step."""
    in_run_folder(tmp_path, monkeypatch)
    real = trainer_module.save_checkpoint

    def latest_fails(path, *args, **kwargs):
        if Path(path).name == "latest_checkpoint.npz":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(trainer_module, "save_checkpoint", latest_fails)
    assert Trainer(load_config(cli={**TINY, "SAMPLE_COUNT": "0"}, env={})).run() == 1
    err = capsys.readouterr().err
    assert "models/best_checkpoint.npz from step 10 is complete" in err and "no checkpoint" not in err


def test_a_failed_save_names_its_target_not_the_temporary_file(tmp_path: Path, monkeypatch) -> None:
    """The temporary sibling is an implementation detail: the error names the file the caller asked for."""
    from microgpt.atomic import atomic_write_bytes

    def no_room(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_room)
    with pytest.raises(OSError) as failed:
        atomic_write_bytes(tmp_path / "latest_checkpoint.npz", b"x")
    assert failed.value.filename == str(tmp_path / "latest_checkpoint.npz")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    def read_only(*args, **kwargs):  # the folder became read-only: the temporary file cannot be made
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / ".latest_checkpoint.npz.1.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(OSError) as failed:
        atomic_write_bytes(tmp_path / "latest_checkpoint.npz", b"x")
    assert failed.value.filename == str(tmp_path / "latest_checkpoint.npz") and failed.value.errno == errno.EROFS


@pytest.mark.skipif(os.name == "nt" or sys.platform == "darwin", reason="needs a file system that takes any bytes")
def test_undecodable_names_and_paths_are_logged_not_fatal(tmp_path: Path) -> None:
    write_dataset(tmp_path, name="data-\udcff.jsonl")  # the file name holds the raw byte 0xff
    env = {os.fsencode(k): os.fsencode(v) for k, v in user_env(tmp_path).items()}
    env.update({b"DATASET_PATH": b"data-\xff.jsonl", b"RUN_NAME": b"caf\xe9", b"NUM_STEPS": b"10"})
    result = subprocess.run([sys.executable, "-m", "microgpt", "train"], cwd=tmp_path, env=env,
                            capture_output=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    manifest = only_manifest(tmp_path)
    assert manifest["status"] == "finished"
    log = (tmp_path / "logs" / "train_latest.log").read_bytes()
    log.decode("utf-8")  # still UTF-8: the odd byte is written as an escape
    assert b"data-\\udcff.jsonl" in log
    assert json.loads(json.dumps(manifest))["config"]["dataset_path"] == "data-\udcff.jsonl"
