"""`bench`'s pieces on a tiny model: every contestant runs and is reported, the profile names the ops and
leaves the autograd as it found it. Speed itself is only ever printed, never asserted."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import time

import numpy as np
import pytest

from microgpt.__main__ import main
from microgpt.autograd import Tensor
from microgpt.bench.profile import format_profile, profile_step
from microgpt.bench.throughput import BenchConfig, batches, bench_config, machine_description, ratio_interval
from microgpt.commands import bench
from microgpt.data.tokenizer import CharTokenizer
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import save_checkpoint

TINY = BenchConfig("tiny", GPTConfig(zero_init=False, vocab_size=17, n_layer=1, n_embd=8, n_head=2, block_size=16), 2, 1)


def test_bench_row_reports_every_path_and_both_generation_batches():
    row = bench_config(TINY, windows=1, with_torch=False, gen_tokens=3, pause=0.0)
    for key in ("train_fused_tok_s", "train_public_tok_s", "train_reference_tok_s",
                "generate_b1_ours_tok_s", "generate_b8_ours_tok_s"):
        assert row[key] > 0, key
    assert row["train_fused_vs_reference"] > 0 and row["train_public_vs_reference"] > 0
    for path in ("fused", "public"):
        low, high = row[f"train_{path}_vs_reference_interval"]
        assert 0 < low <= high
    text = bench._format_row(row, with_torch=False)
    assert "fused" in text and "public" in text and "reference" in text and "b8" in text
    assert "95% intervals" in text and "%ref" in text.splitlines()[-1]


def test_every_contestant_trains_on_the_same_stream_of_new_batches():
    """One batch repeated is learnt by heart and the step's cost then follows that state: each step takes the
    next batch of one random stream, the same stream for every contestant."""
    first, second = batches(TINY), batches(TINY)
    seen = [next(first) for _ in range(5)]
    for (x, y), (x2, y2) in zip(seen, (next(second) for _ in range(5))):
        assert np.array_equal(x, x2) and np.array_equal(y, y2)
        assert x.shape == y.shape == (TINY.batch, TINY.model.block_size)
        assert 0 <= x.min() and max(x.max(), y.max()) < TINY.model.vocab_size
        assert np.array_equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    assert len({x.tobytes() for x, _ in seen}) == 5


def test_ratio_interval_keeps_each_windows_pair_together():
    drifting = [1.0, 1.5, 0.8, 2.0, 1.2, 0.9, 1.7]  # seconds per call, the machine's speed moving window to window
    twice = [2 * s for s in drifting]  # a contestant exactly half as fast, timed beside each window
    assert ratio_interval(drifting, twice) == pytest.approx((2.0, 2.0))  # paired, the drift cancels out
    low, high = ratio_interval(drifting, twice[::-1])  # the same windows, paired wrongly: the drift shows
    assert low < 1.6 and high > 2.4
    assert ratio_interval(drifting, twice[::-1]) == (low, high)  # seeded: the same windows, the same interval


def test_bench_row_against_torch_prints_every_ratios_interval():
    row = bench_config(TINY, windows=1, with_torch=False, gen_tokens=3, pause=0.0)
    for i, key in enumerate(("train_fused_ratio", "train_public_ratio", "generate_b1_ratio", "generate_b8_ratio")):
        row[key], row[f"{key}_interval"] = 1.0, (0.5 + i / 10, 1.5 + i / 10)  # what a run with PyTorch adds
    for name in ("train_torch", "train_reference", "generate_b1_torch", "generate_b8_torch"):
        row[f"{name}_tok_s"] = 1.0
    row["train_reference_ratio"] = 1.0
    spans = bench._format_row(row, with_torch=True).splitlines()[-1]
    assert "fused 0.50-1.50x" in spans and "public 0.60-1.60x" in spans
    assert "generate b1 0.70-1.70x" in spans and "generate b8 0.80-1.80x" in spans


def test_profile_names_the_ops_of_both_paths_and_restores_the_autograd():
    plain = Tensor._result
    # the public path's cross_entropy of lm_head's logits takes the fused route too (F.cross_entropy)
    for fused, loss_op in ((True, "linear_cross_entropy"), (False, "linear_cross_entropy")):
        result = profile_step(TINY, fused=fused, steps=1)
        assert {"linear", "causal_self_attention", "rms_norm", loss_op} <= set(result["ops"])
        assert result["forward_ms"] > 0 and result["backward_ms"] > 0
        assert loss_op in format_profile(result)
    assert Tensor._result is plain


def test_machine_description_names_the_cpu_and_numpy():
    assert "cores; numpy" in machine_description()


def test_bench_command_profile_prints_one_table_per_path(capsys, monkeypatch):
    monkeypatch.setitem(bench_configs(), "tiny", TINY)
    args = argparse.Namespace(serve=False, tui=False, micro=False, busy=False, checkpoint=None, profile=True, configs=["tiny"], json=False, threads=1,
                              cpu_time=True)
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "tiny (fused path)" in out and "tiny (public path)" in out


def bench_configs() -> dict:
    from microgpt.bench.throughput import CONFIGS

    return CONFIGS


def test_bench_command_refuses_more_generated_tokens_than_the_context_holds(capsys):
    assert main(["bench", "--configs", "c1-b1", "--gen-tokens", "500"]) == 2
    assert capsys.readouterr().err == "microgpt bench: error: --gen-tokens 500: must be 1 to 88 (the block size of " \
                                      "the chosen configs, less the 8-token prompt)\n"


def test_bench_command_refuses_more_threads_than_a_split_may_have(capsys):
    assert main(["bench", "--configs", "c1-b1", "--threads", "100000"]) == 2
    assert capsys.readouterr().err == "microgpt bench: error: --threads 100000: must be 1 to 256\n"


def test_bench_row_in_cpu_time_on_one_thread_restores_the_split():
    from microgpt.autograd import parallel

    row = bench_config(TINY, windows=1, with_torch=False, gen_tokens=3, pause=0.0, threads=1, clock=time.process_time)
    assert row["threads"] == 1 and row["train_fused_tok_s"] > 0
    assert parallel._parts == parallel.usable_cores()


def test_serve_bench_sends_the_same_requests_both_ways_and_compares_every_reply(tmp_path):
    pytest.importorskip("uvicorn", reason="the serve extra installs uvicorn")
    from microgpt.bench.serve import CLIENTS, TOKENS, format_serve_bench, run_serve_bench

    tokenizer = CharTokenizer("".join(chr(c) for c in range(32, 127)) + "\n")
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=64), seed=0)
    report = run_serve_bench(str(save_checkpoint(tmp_path / "tiny.npz", model, tokenizer, {})), windows=1)
    assert [row["clients"] for row in report["results"]] == list(CLIENTS)
    for row in report["results"]:
        assert row["identical_replies"] and row["sequential_tok_s"] > 0 and row["concurrent_tok_s"] > 0
        assert row["speedup"] == pytest.approx(row["concurrent_tok_s"] / row["sequential_tok_s"])
    text = format_serve_bench(report)
    assert f"{TOKENS} tokens per request" in text and "cores; numpy" in text and text.count(" yes") == len(CLIENTS)


def test_serve_bench_of_a_model_whose_replies_end_at_once_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("uvicorn", reason="the serve extra installs uvicorn")
    from microgpt.bench import serve as serve_bench
    from microgpt.errors import ConfigError

    monkeypatch.setattr(serve_bench, "_timed", lambda url, requests, clients: (0.0, [""] * len(requests)))
    with pytest.raises(ConfigError, match="its replies end at once .no tokens written.. so bench --serve has"):
        serve_bench.run_serve_bench(None, windows=1)  # was a ZeroDivisionError computing the speed-up


def test_default_config_is_what_train_trains_and_the_help_says_so():
    from microgpt.bench.throughput import CONFIGS, describe
    from microgpt.config import TrainConfig

    trained, default = TrainConfig(), CONFIGS["default"]
    assert default.model == trained.model and default.batch == trained.batch_size
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    m = trained.model
    assert f"default = vocab {m.vocab_size}, {m.n_layer} layers, n_embd {m.n_embd}" in text
    assert f"block {m.block_size}, batch {trained.batch_size}" in describe(default)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGHUP"])
def test_busy_rival_dies_with_bench_on_sigterm_or_a_closed_terminal(signum: str) -> None:
    from microgpt.bench.throughput import competing_process

    rivals = []
    real_popen = subprocess.Popen

    def recorded(*args, **kwargs):
        rivals.append(real_popen(*args, **kwargs))
        return rivals[-1]

    def busy_then_signalled(args: argparse.Namespace) -> int:  # the busy half of `bench --busy`, signalled
        with competing_process():
            os.kill(os.getpid(), getattr(signal, signum))
            time.sleep(10)  # the signal interrupts this
        return 0

    from microgpt.__main__ import main

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(subprocess, "Popen", recorded)
        mp.setattr(bench, "run", busy_then_signalled)
        assert main(["bench"]) == 130  # the CLI's own handling of the signal (as Ctrl-C), not the test's
    assert len(rivals) == 1 and rivals[0].poll() is not None  # killed, not left spinning


@pytest.mark.parametrize("argv, fragment", [(["--micro", "--serve"], "--micro and --serve: each measures"),
                                            (["--profile", "--busy", "--tui"], "--profile and --busy and --tui"),
                                            (["--micro", "--checkpoint", "m.npz"], "--checkpoint is the model --serve")])
def test_benchmarks_that_would_silently_ignore_a_flag_are_one_line(capsys, argv: list[str], fragment: str) -> None:
    from microgpt.__main__ import main

    assert main(["bench", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_bench_tui_names_a_bad_knob_variable_at_once(monkeypatch, capsys) -> None:
    from microgpt.__main__ import main

    monkeypatch.setenv("THREADS", "garbage")  # its trainers would each fail on it, after minutes of measuring
    assert main(["bench", "--tui"]) == 2
    assert "THREADS='garbage': not a whole number" in capsys.readouterr().err
