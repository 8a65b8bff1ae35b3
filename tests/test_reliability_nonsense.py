"""Reliability, nonsense values: counts that cannot be counted are refused, a loss nobody measured is not put
in a file name, JSON output stays JSON, and a diverging run says so in one line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_training import microgpt, user_env, write_dataset

from microgpt.evaluation.heldout import EvalResult, results_json
from microgpt.nn import GPT, GPTConfig, SamplingSettings, next_token_distribution
from microgpt.storage import Checkpoint, checkpoint_info, step_checkpoint_name


@pytest.mark.parametrize("args", [
    ("bench", "--windows", "0"), ("bench", "--gen-tokens", "-5"), ("bench", "--windows", "x"),
    ("train", "--stop-after", "0"), ("train", "--stop-after", "-3"),
    ("eval", "--max-records", "0"), ("validate-dataset", "--max-problems", "0"),
])
def test_counts_below_one_are_refused_before_anything_runs(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = subprocess.run([sys.executable, "-m", "microgpt", *args], cwd=tmp_path, env=user_env(tmp_path),
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]  # argparse prints the usage line, then the error
    assert args[1] in error and ("at least 1" in error or "whole number" in error)


@pytest.mark.parametrize("value", ["0", "-5", "99999999999", "abc"])
def test_a_vocab_size_outside_its_knobs_limits_is_refused_not_replaced(tmp_path: Path, value: str) -> None:
    data = write_dataset(tmp_path)
    result = microgpt(tmp_path, "validate-dataset", str(data), "--vocab-size", value)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and f"--vocab-size={value!r}" in result.stderr


@pytest.mark.parametrize("args, fragment", [(("chat-once", ".", "hi"), "is a folder, not a checkpoint"),
                                            (("chat-once", "m.npz", "  "), "the prompt is empty")])
def test_a_folder_for_a_checkpoint_and_an_empty_prompt_are_one_line(tmp_path: Path, args: tuple[str, ...],
                                                                    fragment: str) -> None:
    (tmp_path / "m.npz").write_bytes(b"")
    result = microgpt(tmp_path, *args)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and fragment in result.stderr


def test_a_run_stopped_before_any_evaluation_names_no_loss(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--stop-after", "3")  # EVAL_INTERVAL is 10: nothing was measured
    assert result.returncode == 0, result.stderr
    (final,) = (tmp_path / "models").glob("ckpt_*.npz")
    assert final.name.endswith("_step0003.npz") and "nan" not in final.name
    info = checkpoint_info(final)
    assert (info["step"], info["kind"]) == (3, "step")


def test_step_checkpoint_names_round_trip_through_checkpoint_info(tmp_path: Path) -> None:
    for loss, expected in ((2.5, 2.5), (math.nan, None), (math.inf, None)):
        path = tmp_path / step_checkpoint_name("20250101-000000_run", 12, loss)
        path.write_bytes(b"not read for the name")
        info = checkpoint_info(path)
        assert (info["run"], info["step"], info["val_loss"]) == ("20250101-000000_run", 12, expected)


def test_eval_json_is_strict_json_even_when_a_loss_is_nan() -> None:
    model = GPT(GPTConfig(zero_init=False, vocab_size=300, n_layer=1, n_embd=8, n_head=2, block_size=8), seed=0)
    results = [EvalResult("d.jsonl", "0" * 64, "all", 1, 0, 0, math.nan, math.inf)]
    text = results_json(results, "m.npz", Checkpoint(model, None, {}), stride=4)

    def refuse(constant: str) -> None:
        raise AssertionError(f"bare {constant} in the output")

    document = json.loads(text, parse_constant=refuse)
    (row,) = document["results"]
    assert (row["loss"], row["ppl"], row["bits_per_byte"]) == (None, None, None)


def test_a_diverging_run_says_so_in_one_line_without_numpy_warnings(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", LEARNING_RATE="1e30", EVAL_INTERVAL="1", NUM_STEPS="40",
                      WEIGHT_DECAY="0", ZERO_INIT="false")  # random output weights: the first big step blows up
    assert result.returncode == 1
    assert "Warning" not in result.stderr + result.stdout
    errors = [line for line in result.stdout.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "became nan" in errors[0]


@pytest.mark.parametrize("temperature", [1e-320, 5e-324, 1e-30])
def test_a_tiny_temperature_picks_the_likeliest_token_instead_of_nan(temperature: float) -> None:
    logits = np.array([1.0, 3.0, -2.0, 2.999], dtype=np.float32)
    settings = SamplingSettings(temperature=temperature, top_k=0, top_p=1.0, repetition_penalty=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        p = next_token_distribution(logits, [], settings, n_generated=5)
    assert np.isfinite(p).all() and p.argmax() == 1 and p[1] == pytest.approx(1.0)


def test_a_run_name_too_long_for_a_file_name_is_cut_to_100_characters(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    result = microgpt(tmp_path, "train", "--run-name", "x" * 300, NUM_STEPS="2")
    assert result.returncode == 0, result.stderr
    run_id = result.stdout.splitlines()[0].removeprefix("run_id: ")
    assert run_id.endswith("_" + "x" * 100) and (tmp_path / "logs" / "runs" / f"run_{run_id}.json").exists()


@pytest.mark.parametrize("value", ["1e-310", "0.001", "1e300"])
def test_a_repetition_penalty_that_would_overflow_the_scores_is_refused(tmp_path: Path, value: str) -> None:
    result = microgpt(tmp_path, "chat-once", "m.npz", "hi", "--repetition-penalty", value)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "must be >= 0.01 and <= 100" in result.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_given_as_a_checkpoint_is_named_as_such(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.npz")
    result = microgpt(tmp_path, "chat-once", "pipe.npz", "hi")
    assert result.returncode == 2 and "is not a regular file (a FIFO, device or socket)" in result.stderr
