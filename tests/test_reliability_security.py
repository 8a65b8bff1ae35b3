"""Reliability, security: a checkpoint is data anyone may have made. Resuming from a crafted one must not
write outside the folders this command line names, and loading one must not open a file it names.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import test_training
from test_training import microgpt

from microgpt.config import TrainConfig
from microgpt.data.tokenizer import _rank_file, build_tokenizer
from microgpt.errors import MicrogptError
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import load_checkpoint, save_checkpoint
from microgpt.train.resume import NEVER_FROM_CHECKPOINT, resume_config

finished_run = test_training.finished_run  # one tiny trained run, shared (read-only) by this module


def rewrite_checkpoint(source: Path, target: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of `source` whose meta JSON went through `edit` (everything else byte for byte the same)."""
    with np.load(source, allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["meta"].tobytes())
    edit(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    target.write_bytes(buffer.getvalue())
    return target


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def test_a_crafted_checkpoint_cannot_choose_where_a_resume_writes(finished_run, tmp_path: Path) -> None:
    source, _ = finished_run
    outside, work = tmp_path / "outside", tmp_path / "work"
    outside.mkdir()
    work.mkdir()
    victim = outside / "precious.txt"
    victim.write_text("do not overwrite")
    shutil.copy(source / "data.jsonl", work / "data.jsonl")

    def point_outside(meta: dict) -> None:
        meta["train_config"].update(model_dir=str(outside / "models"), log_dir=str(outside / "logs"),
                                    model_out_path=str(victim), model_best_path=str(outside / "best.npz"))

    crafted = rewrite_checkpoint(source / "models" / "latest_checkpoint.npz", work / "crafted.npz", point_outside)
    result = microgpt(work, "train", "--resume", "crafted.npz", "--num-steps", "40")
    assert result.returncode == 0, result.stderr
    assert files_under(outside) == {victim} and victim.read_text() == "do not overwrite"
    assert (work / "models" / "latest_checkpoint.npz").exists() and list((work / "logs" / "runs").iterdir())
    assert "a checkpoint never chooses paths" in result.stdout  # the stored paths are shown, not used
    assert load_checkpoint(crafted).meta["train_config"]["model_dir"] == str(outside / "models")
    cwd = os.getcwd()  # the resumed config itself, whether or not a best checkpoint was saved
    os.chdir(work)
    try:
        cfg, _ = resume_config("crafted.npz", {}, env={})
    finally:
        os.chdir(cwd)
    assert (cfg.model_dir, cfg.log_dir, cfg.model_out_path, cfg.model_best_path) == ("models", "logs", "", "")


def test_every_output_path_knob_is_one_a_checkpoint_never_sets() -> None:
    """A knob added later that names where a run writes (MODEL_BEST_PATH was one, and resumes wrote the best
    checkpoint wherever a crafted file said) must join NEVER_FROM_CHECKPOINT."""
    read_only = {"dataset_path"}  # read, never written: a resume reads the dataset its checkpoint names
    paths = {name for name in TrainConfig().to_dict() if name.endswith(("_path", "_dir", "_file"))} - read_only
    assert paths and {name.upper() for name in paths} <= set(NEVER_FROM_CHECKPOINT)


@pytest.mark.parametrize("run_id", ["../../escaped", "/tmp/abs", ".hidden", "a/b", ""])
def test_a_run_id_that_would_leave_the_log_folder_is_refused(finished_run, tmp_path: Path, run_id: str) -> None:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    rewrite_checkpoint(source / "models" / "latest_checkpoint.npz", tmp_path / "c.npz",
                       lambda meta: meta.update(run_id=run_id))
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    test_training.assert_one_line_error(result, "c.npz", "meta.run_id")
    assert not (tmp_path / "escaped").exists() and not (tmp_path.parent / "escaped").exists()


def test_a_saved_tokenizer_never_makes_the_loader_open_its_rank_file_path(tmp_path: Path) -> None:
    """The saved dict names a valid rank file (opening it would succeed, its sha256 matches): it must be
    named in the error, not opened."""
    tokenizer = build_tokenizer("bpe", 300, ["tea is hot", "the cat sat"])
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=8), seed=0)
    path = save_checkpoint(tmp_path / "m.npz", model, tokenizer, {"step": 0})
    lure = tmp_path / "lure.tiktoken"
    shutil.copy(_rank_file("cl100k_base", None)[0], lure)
    rewrite_checkpoint(path, path, lambda meta: meta["tokenizer"].update(encoding="other", bpe_file=str(lure)))
    with pytest.raises(MicrogptError, match="set BPE_FILE") as error:
        load_checkpoint(path, bpe_file="")
    assert str(lure) in str(error.value)  # named, so the user can decide to trust it
    assert load_checkpoint(path, bpe_file=str(lure)).tokenizer.vocab_size == tokenizer.vocab_size  # if chosen


@pytest.mark.parametrize("special", ["/dev/zero", "fifo"])
def test_bpe_file_that_never_ends_or_blocks_is_one_line(tmp_path: Path, special: str) -> None:
    if special == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs on this OS")
        special = str(tmp_path / "ranks.fifo")
        os.mkfifo(special)
    elif not Path(special).exists():
        pytest.skip(f"no {special} on this OS")
    test_training.write_dataset(tmp_path)
    result = microgpt(tmp_path, "validate-dataset", "data.jsonl", TOKENIZER="bpe", BPE_FILE=special)
    test_training.assert_one_line_error(result, "BPE_FILE", special)


def _set_rng(value: object) -> Callable[[dict], None]:
    return lambda meta: meta["rng_state"]["state"].update(state=value)


def _set_config(value: object) -> Callable[[dict], None]:
    return lambda meta: meta.update(train_config=value)


@pytest.mark.parametrize("edit, fragment", [
    (_set_rng(2**200), "meta.rng_state"), (_set_rng(-5), "meta.rng_state"),
    (_set_config([1, 2]), "meta.train_config is not an object"), (_set_config("x"), "meta.train_config is not an object"),
    (lambda meta: meta["train_config"].update(learning_rate=10**400), "meta.train_config: LEARNING_RATE="),
    (lambda meta: meta.update(step=10**300), "meta.step"),
    (lambda meta: meta.update(best_val_loss=float("nan")), "meta.best_val_loss"),
    (lambda meta: meta.update(best_val_loss=float("-inf")), "meta.best_val_loss"),
])
def test_a_crafted_training_state_is_one_line_before_anything_runs(finished_run, tmp_path: Path, edit, fragment: str) -> None:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    rewrite_checkpoint(source / "models" / "latest_checkpoint.npz", tmp_path / "c.npz", edit)
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    test_training.assert_one_line_error(result, "c.npz", fragment)
    assert not (tmp_path / "models").exists()


def test_negative_second_moments_are_refused_at_resume(finished_run, tmp_path: Path) -> None:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    with np.load(source / "models" / "latest_checkpoint.npz", allow_pickle=False) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["optim/v"] = -np.abs(arrays["optim/v"]) - 1.0  # squares cannot be negative: sqrt(v) would be NaN
    np.savez(tmp_path / "c.npz", **arrays)
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    test_training.assert_one_line_error(result, "c.npz", "optim/v", "at least 0")


def test_an_output_path_never_overwrites_a_file_that_is_not_a_checkpoint(finished_run, tmp_path: Path) -> None:
    source, _ = finished_run
    data = tmp_path / "data.jsonl"
    shutil.copy(source / "data.jsonl", data)
    before = data.read_bytes()
    for knob in ("MODEL_OUT_PATH", "MODEL_BEST_PATH"):
        result = microgpt(tmp_path, "train", NUM_STEPS="2", **{knob: "data.jsonl"})
        test_training.assert_one_line_error(result, f"{knob}='data.jsonl'", "not a microgpt checkpoint")
    assert data.read_bytes() == before
    shutil.copy(source / "models" / "latest_checkpoint.npz", tmp_path / "old.npz")  # a checkpoint: replaced
    assert microgpt(tmp_path, "train", NUM_STEPS="2", MODEL_OUT_PATH="old.npz").returncode == 0


@pytest.mark.parametrize("args, fragment", [(("--resume", ""), "--resume: the path is empty"),
                                            (("--resume", "c.npz", "--config", "none.json"), "--config does not apply"),
                                            (("--resume", "c.npz", "--preset", "fast"), "--preset does not apply")])
def test_resume_refuses_an_empty_path_and_settings_it_would_ignore(tmp_path: Path, args: tuple[str, ...],
                                                                   fragment: str) -> None:
    result = microgpt(tmp_path, "train", *args)
    test_training.assert_one_line_error(result, fragment)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("config, fragment", [('{"model_out_path": "m/a\\u0000b.npz"}', "holds a NUL character"),
                                              ('{"log_dir": "l\\u0000"}', "holds a NUL character"),
                                              ('{"learning_rate": 1' + "0" * 400 + "}", "must be a finite number"),
                                              ('{"model_out_path": "' + "a" * 300 + '.npz"}', "more than 255")])
def test_a_config_file_value_no_file_system_takes_is_one_line_before_training(tmp_path: Path, config: str,
                                                                             fragment: str) -> None:
    test_training.write_dataset(tmp_path)
    (tmp_path / "c.json").write_text(config, encoding="utf-8")
    result = microgpt(tmp_path, "train", "--config", "c.json")
    test_training.assert_one_line_error(result, fragment)
    assert len(result.stderr) < 500 and sorted(p.name for p in files_under(tmp_path)) == ["c.json", "data.jsonl"]
