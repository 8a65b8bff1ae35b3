"""Training end to end, run the way a user runs it: `python -m microgpt train` with environment variables.

Every run is tiny (char tokenizer, one layer of width 16, a few dozen steps on a 40-record dataset written
into tmp_path), so the whole file takes seconds. What is checked is what a user relies on: the files a run
leaves, that a resumed run continues exactly where it stopped, that early stopping, signals and a diverging
loss end a run cleanly, and that every bad input is one line on stderr with exit code 2.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import microgpt.train.trainer as trainer_module
from microgpt.__main__ import COMMANDS
from microgpt.config import KNOB_BY_NAME, KNOBS, config_from_dict, format_value, load_config
from microgpt.errors import ConfigError
from microgpt.storage import checkpoint_info, load_checkpoint, step_checkpoint_name
from microgpt.storage.npz import FORMAT_VERSION
from microgpt.train.artifacts import EVAL_COLUMNS, SYSTEM_COLUMNS, list_runs
from microgpt.train.resume import stored_config
from microgpt.train.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parent.parent

TINY = {
    "DATASET_PATH": "data.jsonl", "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": "300", "N_LAYER": "1",
    "N_EMBD": "16", "N_HEAD": "2", "BLOCK_SIZE": "16", "BATCH_SIZE": "4", "NUM_STEPS": "30",
    "EVAL_INTERVAL": "10", "EVAL_STEPS": "2", "SAMPLE_COUNT": "1", "SAMPLE_MAX_NEW_TOKENS": "8",
    "METRIC_INTERVAL": "1", "LOG_DIR": "logs", "MODEL_DIR": "models",
}
SUBJECTS = ("tea", "rivers", "networks", "exams", "gardens", "stars", "bread", "music", "trains", "maps")


def write_dataset(folder: Path, name: str = "data.jsonl") -> Path:
    """40 varied records of five record types."""
    records = []
    for i in range(40):
        a, b = SUBJECTS[i % 10], SUBJECTS[(i * 3 + 1) % 10]
        records.append([
            {"id": f"k{i}", "record_type": "knowledge", "text": f"Fact {i}: {a} are linked to {b}."},
            {"id": f"q{i}", "record_type": "qa", "question": f"What about {a}?", "answer": f"{a} need {b}, {i}."},
            {"id": f"c{i}", "record_type": "chat", "input": f"Tell me about {a}.", "output": f"Sure: {a}, {i}."},
            {"id": f"m{i}", "record_type": "memory", "text": f"The user likes {a} and {b}."},
            {"id": f"t{i}", "record_type": "trajectory", "task": f"count {a}", "actions": ["look", "count"],
             "result": f"{i} {a}"},
        ][i % 5])
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def user_env(folder: Path, **knobs: str) -> dict[str, str]:
    """The environment of a user's shell: no stray knob variables from ours, the tiny knobs, a private cache."""
    env = {k: v for k, v in os.environ.items() if k not in KNOB_BY_NAME}
    env.update(TINY, **knobs)
    env["MICROGPT_CACHE_DIR"] = str(folder / "cache")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["COLUMNS"] = "200"
    return env


def microgpt(folder: Path, *args: str, stdin: str | None = None, **knobs: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microgpt", *args], cwd=folder, env=user_env(folder, **knobs),
                          input=stdin, capture_output=True, text=True, timeout=300, check=False)


def strict_json(text: str) -> object:
    """json.loads, refusing the NaN and Infinity that Python writes but JSON has not (other readers fail on them)."""
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in what should be strict JSON: {text[:200]!r}")

    return json.loads(text, parse_constant=refuse)


def only_manifest(folder: Path) -> dict:
    (path,) = (folder / "logs" / "runs").glob("run_*.json")
    return strict_json(path.read_text(encoding="utf-8"))


def events_of(folder: Path) -> list[dict]:
    (path,) = (folder / "logs" / "events").glob("events_*.jsonl")
    return [strict_json(line) for line in path.read_text(encoding="utf-8").splitlines()]


def eval_rows(folder: Path) -> list[dict[str, str]]:
    (path,) = (folder / "logs" / "eval").glob("eval_metrics_*.csv")
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    """One completed 30-step run that several tests read (and never modify)."""
    folder = tmp_path_factory.mktemp("finished")
    write_dataset(folder)
    result = microgpt(folder, "train")
    assert result.returncode == 0, result.stderr
    return folder, result


@pytest.mark.parametrize("argv, typed", [
    (["/venv/lib/python3.11/site-packages/microgpt/__main__.py", "train", "--resume", "my run/last.npz"],
     "python -m microgpt train --resume 'my run/last.npz'"),
    (["/venv/bin/microgpt", "eval", "models/best_checkpoint.npz"], "microgpt eval models/best_checkpoint.npz"),
    (["/home/x/other/__main__.py", "train"], "__main__.py train"),  # another package's __main__ keeps its name
])
def test_the_manifest_records_the_command_as_one_would_type_it_again(argv, typed) -> None:
    assert trainer_module.command_line(argv, python="python") == typed


# --- a run leaves every artifact ------------------------------------------------------------------------

def test_run_writes_every_artifact_with_its_columns(finished_run) -> None:
    folder, result = finished_run
    first_line = result.stdout.splitlines()[0]
    assert re.fullmatch(r"run_id: \d{8}-\d{6}_run", first_line), first_line
    run_id = first_line.removeprefix("run_id: ")
    logs = folder / "logs"

    assert "resolved config:" in result.stdout
    for name in ("N_EMBD", "TOKENIZER", "NUM_STEPS"):
        line = next(line for line in result.stdout.splitlines() if f" {name} " in line)
        assert line.split()[-1] == TINY[name]

    train_log = (logs / "train" / f"train_{run_id}.log").read_text(encoding="utf-8")
    assert "resolved config:" in train_log and "stopped: completed at step 30/30" in train_log
    assert (logs / "train_latest.log").read_text(encoding="utf-8") == train_log

    with (logs / "system" / f"system_metrics_{run_id}.csv").open(encoding="utf-8", newline="") as f:
        system = list(csv.DictReader(f))
    assert tuple(system[0]) == SYSTEM_COLUMNS
    assert {"time", "step", "cpu_percent", "ram_used_mb", "rss_mb"} <= set(system[0])
    assert int(system[0]["step"]) == 1 and float(system[0]["rss_mb"]) > 0  # sampled from the first step on

    rows = eval_rows(folder)
    assert tuple(rows[0]) == EVAL_COLUMNS
    assert {"step", "train_loss", "val_loss", "val_ppl", "gap", "best_val_loss", "lr", "tokens_per_sec"} <= set(rows[0])
    assert [int(r["step"]) for r in rows] == [10, 20, 30]
    for r in rows:
        assert float(r["val_ppl"]) == pytest.approx(np.exp(float(r["val_loss"])))
        assert float(r["gap"]) == pytest.approx(float(r["val_loss"]) - float(r["train_loss"]))
    assert float(rows[-1]["best_val_loss"]) == min(float(r["val_loss"]) for r in rows)

    events = events_of(folder)
    assert (logs / "events" / f"events_{run_id}.jsonl").is_file()
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop"
    assert {"start", "step", "eval", "sample", "checkpoint", "stop"} <= set(kinds)
    assert [e["step"] for e in events if e["type"] == "step"] == list(range(1, 31))
    assert events[-1]["reason"] == "completed"

    manifest = json.loads((logs / "runs" / f"run_{run_id}.json").read_text(encoding="utf-8"))
    dataset = folder / "data.jsonl"
    assert manifest["dataset"]["path"] == "data.jsonl"
    assert manifest["dataset"]["sha256"] == hashlib.sha256(dataset.read_bytes()).hexdigest()
    assert manifest["dataset"]["records"] == 40
    assert manifest["dataset"]["counts"] == {"knowledge": 8, "qa": 8, "chat": 8, "memory": 8, "trajectory": 8}
    assert manifest["config"]["n_embd"] == 16 and set(manifest["config"]) == {k.field for k in KNOBS}
    assert {"microgpt", "numpy", "python"} <= set(manifest["versions"])
    assert manifest["start_time"] <= manifest["end_time"]
    assert (manifest["status"], manifest["stop_reason"], manifest["steps"]) == ("finished", "completed", 30)
    assert manifest["best_val_loss"] == pytest.approx(float(rows[-1]["best_val_loss"]))
    assert manifest["final"]["val_loss"] == pytest.approx(float(rows[-1]["val_loss"]))
    assert manifest["command"] == f"{Path(sys.executable).name} -m microgpt train"  # not __main__.py's full path

    val = float(rows[-1]["val_loss"])
    final = Path("models") / f"ckpt_{run_id}_step0030_valloss{val:.4f}.npz"
    assert manifest["checkpoints"] == {"final": str(final), "best": str(Path("models") / "best_checkpoint.npz"),
                                       "latest": str(Path("models") / "latest_checkpoint.npz")}
    for path in manifest["checkpoints"].values():
        assert load_checkpoint(folder / path).meta["run_id"] == run_id
    assert load_checkpoint(folder / final).step == 30


# --- resume equals an uninterrupted run -----------------------------------------------------------------

@pytest.mark.parametrize("stop_after", [13, 20])
def test_resumed_run_matches_uninterrupted_run(finished_run, tmp_path: Path, stop_after: int) -> None:
    reference, _ = finished_run
    write_dataset(tmp_path)
    first = microgpt(tmp_path, "train", "--stop-after", str(stop_after))
    assert first.returncode == 0, first.stderr
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").step == stop_after
    assert only_manifest(tmp_path)["stop_reason"] == "stopped_after"

    second = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz")
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines()[0] == first.stdout.splitlines()[0]  # the same run continues

    def losses(folder: Path) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in events_of(folder) if e["type"] == "step" and e["step"] > stop_after}

    expected, got = losses(reference), losses(tmp_path)
    assert sorted(got) == list(range(stop_after + 1, 31))
    np.testing.assert_allclose([got[s] for s in sorted(got)], [expected[s] for s in sorted(got)], rtol=0, atol=1e-6)

    def later_evals(folder: Path) -> list[list[float]]:
        return [[float(r[c]) for c in ("step", "train_loss", "val_loss", "best_val_loss", "lr")]
                for r in eval_rows(folder) if int(r["step"]) > stop_after]

    np.testing.assert_allclose(later_evals(tmp_path), later_evals(reference), rtol=0, atol=1e-6)

    a = load_checkpoint(reference / "models" / "latest_checkpoint.npz")
    b = load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz")
    assert a.step == b.step == 30
    for (name, wa), (_, wb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        np.testing.assert_allclose(wb, wa, rtol=0, atol=1e-6, err_msg=name)
    for key in ("m", "v"):
        np.testing.assert_allclose(b.optimizer_state[key], a.optimizer_state[key], rtol=0, atol=1e-6)
    for key in ("tokens_seen", "patience_used", "patience_mark", "best_val_loss"):  # the run's counters go on too
        assert b.meta[key] == pytest.approx(a.meta[key], abs=1e-6), key
    manifest = only_manifest(tmp_path)
    assert manifest["stop_reason"] == "completed" and manifest["resumed_from"] == "models/latest_checkpoint.npz"
    assert manifest["final"]["tokens_seen"] == a.meta["tokens_seen"]


def test_a_resumed_run_counts_patience_from_the_same_mark_with_a_minimum_delta(tmp_path: Path) -> None:
    """With EARLY_STOP_MIN_DELTA > 0 the mark patience counts from is not the best loss: a resume must carry it."""
    knobs = {"NUM_STEPS": "30", "EVAL_INTERVAL": "2", "EARLY_STOP_MIN_DELTA": "0.05", "EARLY_STOP_PATIENCE": "50"}
    straight, split = tmp_path / "straight", tmp_path / "split"
    for folder in (straight, split):
        folder.mkdir()
        write_dataset(folder)
    assert microgpt(straight, "train", **knobs).returncode == 0
    assert microgpt(split, "train", "--stop-after", "28", **knobs).returncode == 0  # 28: best below the mark
    assert microgpt(split, "train", "--resume", "models/latest_checkpoint.npz").returncode == 0

    def patience(folder: Path) -> list[tuple[int, int]]:
        return [(int(r["step"]), int(r["patience_used"])) for r in eval_rows(folder)]

    assert patience(split) == patience(straight) and max(used for _, used in patience(straight)) > 0


def test_a_new_run_keeps_an_unfinished_runs_best_and_latest(finished_run, tmp_path: Path) -> None:
    """A run stopped by kill -9 wrote no final checkpoint: a new run in its MODEL_DIR moves its best and latest
    to the names their steps give (ckpt_<run>_step<N>...) instead of writing over its only copies."""
    reference, _ = finished_run
    write_dataset(tmp_path)
    shutil.copytree(reference / "models", tmp_path / "models", ignore=shutil.ignore_patterns("ckpt_*", ".*"))
    old_best, old_latest = (load_checkpoint(tmp_path / "models" / f"{kind}_checkpoint.npz")
                            for kind in ("best", "latest"))
    result = microgpt(tmp_path, "train", NUM_STEPS="10")
    assert result.returncode == 0, result.stderr
    run = old_latest.meta["run_id"]
    for old in (old_best, old_latest):
        kept = tmp_path / "models" / step_checkpoint_name(run, old.step, old.meta["val_loss"])
        for (name, a), (_, b) in zip(old.model.state_dict().items(), load_checkpoint(kept).model.state_dict().items(),
                                     strict=True):
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").meta["run_id"] != run
    assert f"_checkpoint.npz of the earlier run '{run}' as" in result.stdout


# --- ways a run ends -----------------------------------------------------------------------------------

def test_early_stopping_ends_the_run_when_validation_stops_improving(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    # Only the first evaluation can beat the best by more than a billion (the best starts at infinity).
    result = microgpt(tmp_path, "train", NUM_STEPS="40", EARLY_STOP_PATIENCE="1", EARLY_STOP_MIN_DELTA="1e9")
    assert result.returncode == 0, result.stderr
    manifest = only_manifest(tmp_path)
    assert (manifest["stop_reason"], manifest["steps"]) == ("early_stop", 20)
    rows = eval_rows(tmp_path)
    assert [int(r["patience_used"]) for r in rows] == [0, 1]
    assert events_of(tmp_path)[-1]["reason"] == "early_stop"
    # "best" is the lowest validation loss all the same: the delta decides only when to stop
    lowest = min(rows, key=lambda r: float(r["val_loss"]))
    best = load_checkpoint(tmp_path / "models" / "best_checkpoint.npz")
    assert best.step == int(lowest["step"]) == 20  # its drop was less than a billion, and still the lowest
    assert best.meta["best_val_loss"] == float(lowest["val_loss"])
    assert manifest["best_val_loss"] == float(lowest["val_loss"]) == float(rows[-1]["best_val_loss"])


def test_diverging_loss_exits_1_and_keeps_the_best_checkpoint(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    # The first update (at learning rate 1e10) still evaluates to a finite loss; the next ones overflow.
    result = microgpt(tmp_path, "train", LEARNING_RATE="1e10", EVAL_INTERVAL="1", NUM_STEPS="40", WEIGHT_DECAY="0",
                      ZERO_INIT="false")  # random output weights: the first big step blows up (decay: lr x wd < 1)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    error = next(line for line in result.stdout.splitlines() if " ERROR " in line)
    assert "became nan" in error.lower() and "the best checkpoint models/best_checkpoint.npz is kept" in error
    assert "LEARNING_RATE" in error
    manifest = only_manifest(tmp_path)
    assert (manifest["status"], manifest["stop_reason"]) == ("failed", "nan_loss")
    assert manifest["steps"] < 40
    for name in ("best", "latest"):  # neither was overwritten with the ruined weights
        checkpoint = load_checkpoint(tmp_path / "models" / f"{name}_checkpoint.npz")
        assert all(np.isfinite(w).all() for w in checkpoint.model.state_dict().values()), name
    assert events_of(tmp_path)[-1]["reason"] == "nan_loss"


def test_nan_loss_in_process_keeps_the_last_best_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The same stop, made certain: the loss of step 15 is NaN, after a best checkpoint at step 10."""
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    trainer = Trainer(load_config(cli={**TINY, "SAMPLE_COUNT": "0"}, env={}))
    real_step = trainer._train_step

    def nan_at_step_15() -> float:
        loss = real_step()
        return float("nan") if trainer.progress.step == 15 else loss

    monkeypatch.setattr(trainer, "_train_step", nan_at_step_15)
    assert trainer.run() == 1
    assert "loss became nan at step 15" in capsys.readouterr().out
    manifest = only_manifest(tmp_path)
    assert (manifest["stop_reason"], manifest["steps"]) == ("nan_loss", 15)
    assert load_checkpoint(tmp_path / "models" / "best_checkpoint.npz").step == 10
    assert not list((tmp_path / "models").glob("ckpt_*.npz"))  # no "final" model of ruined weights


# --- bad input: one line, exit 2 ------------------------------------------------------------------------

BAD_VALUES = [
    ({"N_EMBD": "15"}, ("N_EMBD", "15", "N_HEAD")),
    ({"LEARNING_RATE": "abc"}, ("LEARNING_RATE", "abc")),
    ({"VAL_SPLIT": "0.9"}, ("VAL_SPLIT", "0.9")),
    ({"VAL_SPLIT": "0"}, ("VAL_SPLIT", "0")),
    ({"TOKENIZER": "word"}, ("TOKENIZER", "word")),
    ({"TRAIN_DEVICE": "tpu"}, ("TRAIN_DEVICE", "tpu")),
    ({"DATASET_PATH": "missing.jsonl"}, ("DATASET_PATH", "missing.jsonl")),
]


@pytest.mark.parametrize("via", ["env", "flag"])
@pytest.mark.parametrize(("bad", "fragments"), BAD_VALUES, ids=[next(iter(b)) + "=" + next(iter(b.values()))
                                                                  for b, _ in BAD_VALUES])
def test_bad_config_value_is_one_line_exit_2(tmp_path: Path, bad: dict[str, str], fragments: tuple[str, ...],
                                             via: str) -> None:
    write_dataset(tmp_path)
    if via == "env":
        result = microgpt(tmp_path, "train", **bad)
    else:
        (name, value), = bad.items()
        result = microgpt(tmp_path, "train", KNOB_BY_NAME[name].flag, value)
    assert_one_line_error(result, "microgpt train: error:", *fragments)
    assert not (tmp_path / "logs").exists()  # nothing started


def test_invalid_dataset_line_exits_2_naming_path_and_line(tmp_path: Path) -> None:
    lines = write_dataset(tmp_path).read_text(encoding="utf-8").splitlines(keepends=True)
    lines.insert(5, '{"id": "broken", "record_type": "chat", "input": "no closing brace"\n')
    (tmp_path / "bad.jsonl").write_text("".join(lines), encoding="utf-8")
    result = microgpt(tmp_path, "train", DATASET_PATH="bad.jsonl")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "bad.jsonl:6: invalid JSON" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("microgpt train: error: bad.jsonl:6:")


def damage(kind: str, good: Path, target: Path) -> Path:
    """A copy of `good` spoiled in one way."""
    data = good.read_bytes()
    if kind == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif kind == "random-bytes":
        target.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    else:
        with np.load(good) as f:
            arrays = {k: f[k] for k in f.files}
        arrays["format_version"] = (np.asarray(FORMAT_VERSION + 1) if kind == "format-version"
                                    else np.asarray([FORMAT_VERSION, FORMAT_VERSION]))
        with target.open("wb") as f:
            np.savez(f, **arrays)
    return target


@pytest.mark.parametrize("command", ["chat-once", "train --resume"])
@pytest.mark.parametrize("kind", ["truncated", "random-bytes", "format-version", "format-version-not-a-number"])
def test_damaged_checkpoint_is_one_line_exit_2(finished_run, tmp_path: Path, kind: str, command: str) -> None:
    folder, _ = finished_run
    write_dataset(tmp_path)
    damage(kind, folder / "models" / "latest_checkpoint.npz", tmp_path / "bad.npz")
    args = ["chat-once", "bad.npz", "hello"] if command == "chat-once" else ["train", "--resume", "bad.npz"]
    result = microgpt(tmp_path, *args)
    expected = (f"format version {FORMAT_VERSION + 1}" if kind == "format-version"
                else "damaged or truncated checkpoint")
    assert_one_line_error(result, f"microgpt {args[0]}: error: bad.npz:", expected)


# --- help ----------------------------------------------------------------------------------------------

def test_help_lists_every_command_and_every_knob_with_its_default(tmp_path: Path) -> None:
    top = microgpt(tmp_path, "--help")
    assert top.returncode == 0
    listed = {line.split()[0] for line in top.stdout.splitlines() if line.startswith("    ")}
    assert set(COMMANDS) <= listed
    for _, help_text in COMMANDS.values():
        assert help_text in " ".join(top.stdout.split())
    train = microgpt(tmp_path, "train", "--help")
    assert train.returncode == 0
    text = " ".join(train.stdout.split())  # undo argparse's line wrapping
    for knob in KNOBS:
        assert f"[{knob.name}, default {format_value(knob.default) or '(empty)'}]" in text, knob.name
        assert knob.flag in text


def test_resume_refuses_to_change_the_model_shape(finished_run, tmp_path: Path) -> None:
    folder, _ = finished_run
    checkpoint = folder / "models" / "latest_checkpoint.npz"
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--resume", str(checkpoint), "--n-embd", "32")
    assert_one_line_error(result, "N_EMBD=32", "resumed run keeps the model it was started with")
    loaded = load_checkpoint(checkpoint)
    zero_init = loaded.meta["train_config"]["zero_init"]
    result = microgpt(tmp_path, "train", "--resume", str(checkpoint), "--zero-init", str(not zero_init).lower())
    assert_one_line_error(result, f"ZERO_INIT={str(not zero_init).lower()}", "keeps the initialisation")
    loaded.meta["train_config"].pop("zero_init")  # saved before the knob existed: the original's random weights
    assert stored_config(loaded).model.zero_init is False


def test_resume_elsewhere_names_the_checkpoints_dataset_and_the_flag_that_moves_it(finished_run, tmp_path: Path) -> None:
    """The relative dataset path comes from the checkpoint: from another folder the error says so and names
    --dataset-path (DATASET_PATH in the environment is not read on resume). A blank BPE_FILE is unset."""
    folder, _ = finished_run
    checkpoint = str(folder / "models" / "latest_checkpoint.npz")
    result = microgpt(tmp_path, "train", "--resume", checkpoint, "--num-steps", "31",
                      DATASET_PATH=str(folder / "data.jsonl"), BPE_FILE=" ")
    assert_one_line_error(result, "DATASET_PATH='data.jsonl': file not found", f"{checkpoint} was trained on",
                          "give --dataset-path")
    moved = microgpt(tmp_path, "train", "--resume", checkpoint, "--num-steps", "31", "--bpe-file", " ",
                     "--dataset-path", str(folder / "data.jsonl"), "--model-dir", "m", "--log-dir", "l")
    assert moved.returncode == 0, moved.stderr


def test_resume_refuses_to_change_the_optimizer_and_reads_an_old_checkpoint_as_adam(
        finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam's and Muon's moments share one layout but not one meaning: a resume keeps its optimizer. A checkpoint
    saved before OPTIMIZER existed was trained with Adam."""
    folder, _ = finished_run
    checkpoint = load_checkpoint(folder / "models" / "latest_checkpoint.npz")
    used = checkpoint.meta["train_config"]["optimizer"]
    other = {"adam": "muon", "muon": "adam"}[used]
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--resume", str(folder / "models" / "latest_checkpoint.npz"), "--optimizer", other)
    assert_one_line_error(result, f"OPTIMIZER={other}", f"keeps the optimizer it was started with (OPTIMIZER={used})")
    checkpoint.meta["train_config"].pop("optimizer")
    assert stored_config(checkpoint).optim.optimizer == "adam"


def test_resume_refuses_to_change_the_positions_and_reads_an_old_checkpoint_as_learned(
        finished_run, tmp_path: Path) -> None:
    """A rope model has no position table to continue with, nor a learned one any rotation: positions stay."""
    folder, _ = finished_run
    checkpoint = load_checkpoint(folder / "models" / "latest_checkpoint.npz")
    assert checkpoint.meta["train_config"]["positions"] == "rope"
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--resume", str(folder / "models" / "latest_checkpoint.npz"),
                      "--positions", "learned")
    assert_one_line_error(result, "POSITIONS=learned", "keeps the model it was started with (POSITIONS=rope)")
    checkpoint.meta["train_config"].pop("positions")
    assert stored_config(checkpoint).model.positions == "learned"


def test_trainer_refuses_a_changed_shape_with_the_clis_error(finished_run, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The rule lives in Trainer, so code that builds one (a notebook) gets the same refusal as the CLI."""
    folder, _ = finished_run
    checkpoint = load_checkpoint(folder / "models" / "latest_checkpoint.npz")
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    changed = config_from_dict({**checkpoint.meta["train_config"], "n_embd": 32})
    with pytest.raises(ConfigError) as exc:
        Trainer(changed, checkpoint=checkpoint)
    cli = microgpt(tmp_path, "train", "--resume", str(folder / "models" / "latest_checkpoint.npz"), "--n-embd", "32")
    assert cli.stderr.strip() == f"microgpt train: error: {exc.value}"


def test_resume_restores_adams_moments_and_takes_hyper_parameters_from_the_config(
        finished_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _ = finished_run
    checkpoint = load_checkpoint(folder / "models" / "latest_checkpoint.npz")
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    saved = checkpoint.optimizer_state
    stored = config_from_dict(checkpoint.meta["train_config"])
    resumed = Trainer(config_from_dict({**checkpoint.meta["train_config"], "weight_decay": 0.05,
                                        "num_steps": checkpoint.step + 10}), checkpoint=checkpoint)
    opt = resumed.optimizer
    np.testing.assert_array_equal(opt.m, saved["m"])
    np.testing.assert_array_equal(opt.v, saved["v"])
    assert opt.t == int(saved["t"]) == checkpoint.step
    assert opt.weight_decay == 0.05  # a flag given at resume wins over the saved value
    assert opt.betas == (stored.optim.beta1, stored.optim.beta2) and opt.eps == stored.optim.eps
    assert opt.lr == stored.optim.lr_at(checkpoint.step, checkpoint.step + 10)


def test_a_dataset_with_one_record_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "one.jsonl").write_text(json.dumps({"id": "a", "record_type": "knowledge", "text": "hi"}) + "\n")
    result = microgpt(tmp_path, "train", DATASET_PATH="one.jsonl")
    assert_one_line_error(result, "at least 2")


def test_a_sample_with_control_characters_is_logged_on_one_escaped_line(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(trainer_module.ChatSession, "reply", lambda self, *a, **k: "a\x00b\nc\x08")
    assert Trainer(load_config(cli={**TINY, "NUM_STEPS": "10"}, env={})).run() == 0
    log = (tmp_path / "logs" / "train_latest.log").read_text(encoding="utf-8")
    assert "-> a\\x00b\\nc\\x08\n" in log and "\x00" not in log and "\x08" not in log
    samples = [e for e in events_of(tmp_path) if e["type"] == "sample"]
    assert samples and samples[0]["text"] == "a\x00b\nc\x08"  # the event keeps the text as it was


def test_a_stop_during_an_evaluation_is_made_up_on_resume(finished_run, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped mid-evaluation at step 10, a run resumes by making that evaluation first: its rows (train loss
    averaged since the last evaluation, val loss, best) are those of the run that was never stopped."""
    reference, _ = finished_run
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    plain = trainer_module.evaluate

    def stopped_midway(model, batches, stopped=lambda: False):
        trainer.stop_reason = "interrupted"  # as the first SIGINT does
        return plain(model, batches, stopped)

    monkeypatch.setattr(trainer_module, "evaluate", stopped_midway)
    trainer = Trainer(load_config(cli=TINY, env={}))
    assert trainer.run() == 0 and trainer.progress.step == 10
    monkeypatch.setattr(trainer_module, "evaluate", plain)
    assert eval_rows(tmp_path) == []
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").meta["eval_pending"] is True
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz")
    assert resumed.returncode == 0, resumed.stderr

    def evals(folder: Path) -> list[list[float]]:
        return [[float(r[c]) for c in ("step", "train_loss", "val_loss", "best_val_loss")] for r in eval_rows(folder)]

    np.testing.assert_allclose(evals(tmp_path), evals(reference), rtol=0, atol=1e-6)


@pytest.mark.parametrize("meta", [{"run_id": "../../escaped", "step": 5, "val_loss": 1e300},
                                  {"run_id": "r" * 200, "step": 10**40, "val_loss": 1.5}])
def test_an_earlier_checkpoint_with_a_crafted_meta_is_kept_under_a_safe_name(tmp_path: Path, meta: dict) -> None:
    """The meta naming the kept file comes from the file: a run id with a path in it, a name past 255 bytes (a
    huge loss or step, a long id) give a plain name in MODEL_DIR, and the new run goes on."""
    from microgpt.data.tokenizer import CharTokenizer
    from microgpt.nn import GPT, GPTConfig
    from microgpt.storage import save_checkpoint

    write_dataset(tmp_path)
    tokenizer = CharTokenizer("ab")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=8), seed=0)
    crafted = save_checkpoint(tmp_path / "models" / "latest_checkpoint.npz", model, tokenizer, meta)
    result = microgpt(tmp_path, "train", NUM_STEPS="10")
    assert result.returncode == 0, result.stderr
    run = result.stdout.splitlines()[0].removeprefix("run_id: ")
    kept = tmp_path / "models" / f"latest_checkpoint.before_{run}.npz"
    assert load_checkpoint(kept).meta["run_id"] == meta["run_id"] and crafted.is_file()
    assert not (tmp_path.parent / "escaped").exists() and not list(tmp_path.parent.glob("ckpt_*"))


def test_a_run_stopped_before_its_first_evaluation_writes_strict_json(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--stop-after", "2", NUM_STEPS="20", EVAL_INTERVAL="10")
    assert result.returncode == 0, result.stderr
    manifest = only_manifest(tmp_path)
    assert manifest["final"]["val_loss"] is None and manifest["best_val_loss"] is None
    stop = [e for e in events_of(tmp_path) if e["type"] == "stop"]
    assert stop and stop[-1]["best_val_loss"] is None
    assert checkpoint_info(tmp_path / "models" / "latest_checkpoint.npz")["val_loss"] is None  # not NaN: none


def test_a_run_stopped_between_evaluations_names_its_final_checkpoint_without_an_older_loss(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--stop-after", "14", NUM_STEPS="40")  # evaluated at 10, stopped at 14
    assert result.returncode == 0, result.stderr
    [final] = (tmp_path / "models").glob("ckpt_*.npz")
    assert final.name.endswith("_step0014.npz"), final.name
    assert load_checkpoint(final).meta["val_step"] == 10  # its val_loss is step 10's, and says so
    assert only_manifest(tmp_path)["final"] == {"step": 14, "val_loss": None, "tokens_seen": 14 * 4 * 16}
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--stop-after", "20")
    assert resumed.returncode == 0, resumed.stderr
    assert [p.name for p in (tmp_path / "models").glob("ckpt_*_step0020_valloss*.npz")]  # measured at 20: named


def test_a_resumed_runs_clock_goes_on_from_where_it_stopped(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", "--stop-after", "20", NUM_STEPS="40").returncode == 0
    before = load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").meta["elapsed_s"]
    first = only_manifest(tmp_path)["duration_s"]
    assert before > 0
    resumed = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz")
    assert resumed.returncode == 0, resumed.stderr
    rows = eval_rows(tmp_path)
    elapsed = [float(r["elapsed_s"]) for r in rows]
    assert [int(r["step"]) for r in rows] == [10, 20, 30, 40] and elapsed == sorted(elapsed)
    assert elapsed[2] >= before - 0.05  # the run's training time, not the session's (rows round to 0.1 s)
    assert load_checkpoint(tmp_path / "models" / "latest_checkpoint.npz").meta["elapsed_s"] >= before
    assert only_manifest(tmp_path)["duration_s"] >= first
    assert only_manifest(tmp_path)["checkpoints"]["best"] == "models/best_checkpoint.npz"  # the first session's


def test_a_run_that_diverges_before_any_checkpoint_says_none_was_written(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", LEARNING_RATE="1e10", NUM_STEPS="40", ZERO_INIT="false", GRAD_CLIP="0",
                      WEIGHT_DECAY="0")
    assert result.returncode == 1, result.stderr
    error = next(line for line in result.stdout.splitlines() if " ERROR " in line)
    assert "this run has no best checkpoint here (try a lower LEARNING_RATE or GRAD_CLIP=1)" in error
    assert not list((tmp_path / "models").glob("*.npz"))
    stop = next(line for line in result.stdout.splitlines() if "stopped: nan_loss" in line)
    assert "no validation loss yet" in stop


def test_a_new_run_keeps_a_stopped_runs_final_checkpoint_once_and_without_an_older_loss(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", "--stop-after", "14", NUM_STEPS="40").returncode == 0
    [final] = (tmp_path / "models").glob("ckpt_*.npz")
    assert checkpoint_info(final)["val_loss"] is None  # step 10's loss is not this step-14 model's
    assert microgpt(tmp_path, "train", NUM_STEPS="20").returncode == 0  # a new run over its best and latest
    kept = sorted(p.name for p in (tmp_path / "models").glob(f"{final.name.split('_step')[0]}_*.npz"))
    # its best (step 10) is kept under its own name; its latest is the final checkpoint already: not kept twice
    assert len(kept) == 2 and "_step0010_valloss" in kept[0] and kept[1] == final.name, kept
    earlier = next(m for m in list_runs(tmp_path / "logs") if m["run_id"] == final.name[5:].split("_step")[0])
    assert earlier["checkpoints"]["best"] == f"models/{kept[0]}"  # its manifest leads to where its files are
    assert earlier["checkpoints"]["latest"] == earlier["checkpoints"]["final"] == f"models/{final.name}"


def test_a_resumed_run_that_diverges_says_its_best_checkpoint_is_kept(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert microgpt(tmp_path, "train", "--stop-after", "10", NUM_STEPS="40").returncode == 0
    result = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--learning-rate", "1e10",
                      "--grad-clip", "0", "--weight-decay", "0")
    assert result.returncode == 1, result.stderr
    error = next(line for line in result.stdout.splitlines() if " ERROR " in line)
    assert "the best checkpoint models/best_checkpoint.npz is kept" in error  # the earlier session's, still its best
    assert (tmp_path / "models" / "best_checkpoint.npz").is_file()


def test_resuming_an_older_checkpoint_of_the_run_keeps_its_lower_best(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    fast = ("--eval-interval", "2", "--sample-count", "0")
    assert microgpt(tmp_path, "train", *fast, "--num-steps", "4").returncode == 0
    older = tmp_path / "step4.npz"
    shutil.copy(next((tmp_path / "models").glob("ckpt_*_step0004_*.npz")), older)
    later = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "30",
                     "--learning-rate", "0.3", "--lr-schedule", "constant")  # learns, then its rate spoils it
    assert later.returncode == 0, later.stderr
    best = checkpoint_info(tmp_path / "models" / "best_checkpoint.npz")
    assert best["val_loss"] < load_checkpoint(older).meta["best_val_loss"], best
    branch = microgpt(tmp_path, "train", "--resume", "step4.npz", "--num-steps", "6")
    assert branch.returncode == 0, branch.stderr
    assert f"holds step {best['step']} of this run" in branch.stdout
    assert "(improved)" not in branch.stdout  # its step 6 is worse than the file's model: that stays
    kept = checkpoint_info(tmp_path / "models" / "best_checkpoint.npz")
    assert (kept["step"], kept["val_loss"]) == (best["step"], best["val_loss"])


def test_a_huge_perplexity_is_shown_short() -> None:
    from microgpt.train.progress import perplexity, shown_perplexity

    assert shown_perplexity(perplexity(4.2769)) == "72.02"
    assert shown_perplexity(perplexity(741.0)) == "1.01e+304"  # capped, not 300 digits


def test_a_run_that_reads_its_data_many_times_over_is_warned_and_a_longer_resume_names_its_new_rate(
        tmp_path: Path) -> None:
    write_dataset(tmp_path)
    first = microgpt(tmp_path, "train", NUM_STEPS="1000", TOKENIZER="bpe", TOKEN_VOCAB_SIZE="2000",
                     EARLY_STOP_PATIENCE="1000")  # 40 short records read 30+ times: early stopping would end it
    assert first.returncode == 0, first.stderr
    warned = [line for line in first.stdout.splitlines() if "learn it by heart" in line]
    assert len(warned) == 1 and "WARNING" in warned[0] and "times over" in warned[0], first.stdout
    assert re.search(r"tokenizer bpe: \d+ ids \(all the training text has; TOKEN_VOCAB_SIZE allows 2,000\)",
                     first.stdout)
    assert re.search(r"dataset data.jsonl: 40 records \(knowledge 8, qa 8, chat 8, memory 8, trajectory 8\)",
                     first.stdout)
    longer = microgpt(tmp_path, "train", "--resume", "models/latest_checkpoint.npz", "--num-steps", "1010")
    assert longer.returncode == 0, longer.stderr
    assert "NUM_STEPS 1,000 -> 1,010: the wsd learning-rate schedule now spans 1,010 steps, so step 1,001 trains " \
        "at" in longer.stdout
    calm = microgpt(tmp_path, "train", NUM_STEPS="4", MODEL_DIR="other")
    assert "learn it by heart" not in calm.stdout
