"""The newer knobs attacked: MODEL_BEST_PATH pointing where no checkpoint may go, and resuming with a
different ACTIVATION, TIE_EMBEDDINGS, NORM_GAIN (the model's function: refused, as the shape) or DROPOUT
(a regulariser: allowed, and actually applied; before, the resumed model kept the checkpoint's rate while the
log and the saved config claimed the new one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import test_training
from test_reliability_security import rewrite_checkpoint
from test_training import assert_one_line_error, microgpt

from microgpt.errors import ConfigError
from microgpt.storage import load_checkpoint
from microgpt.train import outputs

finished_run = test_training.finished_run


def _check(tmp_path: Path, best: str, out: str = "") -> None:
    outputs.check_output_locations(str(tmp_path / "models"), str(tmp_path / "logs"), tmp_path / "cache", out,
                                   1000, best)


@pytest.mark.parametrize("case", ["folder", "fifo", "latest", "final", "below_a_file", "device"])
def test_a_best_path_no_checkpoint_may_go_to_is_refused_up_front(tmp_path: Path, case: str) -> None:
    (tmp_path / "a_file").write_text("keep")
    best, out = {"folder": (str(tmp_path), ""), "fifo": (str(tmp_path / "pipe"), ""),
                 "latest": (str(tmp_path / "models" / "latest_checkpoint.npz"), ""),
                 "final": (str(tmp_path / "same.npz"), str(tmp_path / "same.npz")),
                 "below_a_file": (str(tmp_path / "a_file" / "best.npz"), ""),
                 "device": ("/dev/null", "")}[case]
    if case == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("FIFOs are POSIX")
        os.mkfifo(best)
    with pytest.raises(ConfigError, match="MODEL_BEST_PATH="):
        _check(tmp_path, best, out)
    assert (tmp_path / "a_file").read_text() == "keep"


def test_a_best_path_elsewhere_is_fine(tmp_path: Path) -> None:
    _check(tmp_path, str(tmp_path / "keep" / "best_of_run_a.npz"))
    assert (tmp_path / "keep").is_dir() and not list((tmp_path / "keep").iterdir())


@pytest.fixture
def resumable(finished_run, tmp_path: Path) -> Path:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    shutil.copy(source / "models" / "latest_checkpoint.npz", tmp_path / "latest.npz")
    return tmp_path


@pytest.mark.parametrize("flag, knob", [(("--activation", "gelu"), "ACTIVATION"),
                                        (("--tie-embeddings", "true"), "TIE_EMBEDDINGS"),
                                        (("--norm-gain", "true"), "NORM_GAIN")])
def test_resume_cannot_change_what_the_model_computes(resumable: Path, flag: tuple[str, str], knob: str) -> None:
    result = microgpt(resumable, "train", "--resume", "latest.npz", *flag, NUM_STEPS="40")
    assert_one_line_error(result, f"{knob}=", "a resumed run keeps the model it was started with")


@pytest.mark.parametrize("flag, fragment", [(("--run-name", "other"), "keeps the run name (its run id) it was"),
                                            (("--seed", "7"), "keeps the seed it was started with"),
                                            (("--val-split", "0.3"), "keeps the data split it was started with")])
def test_resume_refuses_what_names_or_splits_the_run_in_words_that_fit(resumable: Path, flag: tuple[str, str],
                                                                      fragment: str) -> None:
    result = microgpt(resumable, "train", "--resume", "latest.npz", *flag, "--num-steps", "40")
    assert_one_line_error(result, fragment)


def test_resume_with_another_dropout_trains_with_it(resumable: Path) -> None:
    result = microgpt(resumable, "train", "--resume", "latest.npz", "--dropout", "0.2", "--num-steps", "32")
    assert result.returncode == 0, result.stderr
    saved = load_checkpoint(resumable / "models" / "latest_checkpoint.npz")
    assert saved.model.config.dropout == 0.2 == saved.meta["train_config"]["dropout"]
    assert saved.meta["step"] == 32


@pytest.mark.parametrize("field, value", [("activation", "gelu"), ("tie_embeddings", True), ("n_layer", 3)])
def test_a_stored_config_that_contradicts_its_model_is_refused(resumable: Path, field: str, value: object) -> None:
    rewrite_checkpoint(resumable / "latest.npz", resumable / "c.npz",
                       lambda meta: meta["train_config"].update({field: value}))
    result = microgpt(resumable, "train", "--resume", "c.npz", NUM_STEPS="40")
    assert_one_line_error(result, "c.npz", f"{field.upper()}=", "but its model has")


def test_knobs_in_the_environment_that_a_resume_ignores_are_named(resumable: Path) -> None:
    result = microgpt(resumable, "train", "--resume", "latest.npz", NUM_STEPS="45", LEARNING_RATE="nonsense")
    note = next(line for line in result.stdout.splitlines() if line.startswith("note: a resumed run"))
    assert "NUM_STEPS='45'" in note and "LEARNING_RATE='nonsense'" in note
    # as the note says, NUM_STEPS stays the checkpoint's 30: the finished run has nothing left to train
    assert_one_line_error(result, "NUM_STEPS=30: this run is already at step 30; give --num-steps above 30")
    assert not (resumable / "models").exists()


@pytest.mark.parametrize("flags, fragment", [
    (("--num-steps", "20"), "NUM_STEPS=20: this run is already at step 30; give --num-steps above 30"),
    (("--num-steps", "40", "--early-stop-patience", "1"),
     ("EARLY_STOP_PATIENCE=1: this run has gone 1 evaluation without an improvement above EARLY_STOP_MIN_DELTA "
      "(0.0005) by step 30, which that patience ends at once; give --early-stop-patience above 1")),
    (("--num-steps", "40", "--stop-after", "30"), "--stop-after 30: this run is already at step 30; give a later step"),
])
def test_a_resume_with_nothing_left_to_train_is_one_line_and_writes_nothing(resumable: Path, flags: tuple[str, ...],
                                                                           fragment: str) -> None:
    rewrite_checkpoint(resumable / "latest.npz", resumable / "c.npz", lambda meta: meta.update(patience_used=1))
    result = microgpt(resumable, "train", "--resume", "c.npz", *flags)
    assert_one_line_error(result, fragment)
    assert sorted(p.name for p in resumable.iterdir()) == ["c.npz", "data.jsonl", "latest.npz"]


def test_a_checkpoint_from_before_the_patience_mark_val_step_and_clock_resumes(resumable: Path) -> None:
    def older(meta: dict) -> None:
        del meta["patience_mark"], meta["val_step"], meta["elapsed_s"]

    rewrite_checkpoint(resumable / "latest.npz", resumable / "old.npz", older)
    result = microgpt(resumable, "train", "--resume", "old.npz", "--num-steps", "40")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(resumable / "models" / "latest_checkpoint.npz").meta["val_step"] == 40


@pytest.mark.parametrize("field, value", [("val_step", 31), ("val_step", -1), ("patience_mark", "low"),
                                          ("elapsed_s", -1.0), ("elapsed_s", float("nan"))])
def test_a_malformed_patience_mark_val_step_or_clock_is_refused_in_one_line(resumable: Path, field: str,
                                                                      value: object) -> None:
    rewrite_checkpoint(resumable / "latest.npz", resumable / "c.npz", lambda meta: meta.update({field: value}))
    result = microgpt(resumable, "train", "--resume", "c.npz", "--num-steps", "40")
    assert_one_line_error(result, "c.npz", f"meta.{field} is malformed")
