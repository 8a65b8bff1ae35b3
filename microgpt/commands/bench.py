"""`python -m microgpt bench`: training and KV-cached generation throughput, against PyTorch when installed."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

from microgpt.autograd.parallel import MAX_THREADS, set_threads
from microgpt.bench.micro import run_micro
from microgpt.bench.profile import format_profile, profile_step
from microgpt.bench.serve import format_serve_bench, run_serve_bench
from microgpt.bench.throughput import (
    CONFIGS,
    PROMPT_TOKENS,
    bench_config,
    competing_process,
    describe,
    machine_description,
    torch_available,
)
from microgpt.bench.tui import run_tui_bench
from microgpt.commands import positive_int
from microgpt.config import load_config
from microgpt.errors import ConfigError

GEN_TOKENS = 64  # tokens per generation window, when the configs' block sizes leave room


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", type=str.lower, choices=list(CONFIGS), default=list(CONFIGS),
                        help="which configs to run: " + "; ".join(f"{name} = {describe(cfg)}"
                                                                  for name, cfg in CONFIGS.items()))
    parser.add_argument("--windows", type=positive_int, default=7, help="timed windows per contestant (median reported)")
    parser.add_argument("--gen-tokens", type=positive_int,
                        help="tokens generated per generation window (default: 64, or what the smallest chosen "
                             "block leaves after the prompt)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    parser.add_argument("--profile", action="store_true",
                        help="the per-op time split (forward and backward) of one training step, fused and public "
                             "paths, instead of the comparison")
    parser.add_argument("--threads", type=positive_int, default=2,
                        help="threads for both microgpt's split and PyTorch (default 2; try 1, 4, 8)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time windows by the process's CPU time (--profile: the thread's) instead of the wall "
                             "clock: steadier on a machine shared with other programs, meaningful with --threads 1")
    parser.add_argument("--busy", action="store_true",
                        help="run the comparison twice: as usual, then with another CPU-bound program competing")
    parser.add_argument("--micro", action="store_true", help="only the autograd micro-benchmarks (MLP, attention)")
    parser.add_argument("--tui", action="store_true",
                        help="the dashboard's idle CPU, its CPU while following a run, and the run's speed "
                             "against the plain CLI (needs tmux; a few minutes)")
    parser.add_argument("--serve", action="store_true",
                        help="the HTTP server's tokens/s with 1, 4 and 8 clients at once against the same requests "
                             "one at a time (needs the serve extra)")
    parser.add_argument("--checkpoint", metavar="CKPT", help="with --serve: serve this model instead of a random one "
                        "of the default preset's shape")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


MODES = ("profile", "busy", "micro", "tui", "serve")  # each measures something else: one at a time


def run(args: argparse.Namespace) -> int:
    chosen = [f"--{mode}" for mode in MODES if getattr(args, mode)]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)}: each measures something else; give one of them")
    if args.checkpoint and not args.serve:
        raise ConfigError("--checkpoint is the model --serve serves; give it with --serve (the other benchmarks "
                          "build their own models)")
    if args.serve:
        report = run_serve_bench(args.checkpoint, windows=args.windows)
        print(json.dumps(report) if args.json else format_serve_bench(report))
        return 0
    if args.tui:  # its trainers read the knob variables of this environment: a bad one is named at once
        load_config(env=os.environ, check_paths=False)
    if args.tui or args.micro:
        result = run_tui_bench() if args.tui else run_micro()
        print(json.dumps(result) if args.json else "\n".join(f"{k:<28} {v:8.3f}" for k, v in result.items()))
        return 0
    longest = min(CONFIGS[name].model.block_size for name in args.configs) - PROMPT_TOKENS
    if not 1 <= args.threads <= MAX_THREADS:
        raise ConfigError(f"--threads {args.threads}: must be 1 to {MAX_THREADS}")
    if getattr(args, "gen_tokens", None) is None:
        args.gen_tokens = min(GEN_TOKENS, longest)
    if not args.profile and not 1 <= args.gen_tokens <= longest:
        raise ConfigError(f"--gen-tokens {args.gen_tokens}: must be 1 to {longest} (the block size of the chosen "
                          f"configs, less the {PROMPT_TOKENS}-token prompt)")
    machine = machine_description()
    if args.profile:
        clock = time.thread_time if args.cpu_time else time.perf_counter
        set_threads(args.threads)
        try:
            profiles = [profile_step(CONFIGS[name], fused, clock=clock)
                        for name in args.configs for fused in (True, False)]
        finally:
            set_threads(0)
        print(json.dumps({"machine": machine, "profiles": profiles}, indent=2) if args.json
              else "\n\n".join([machine] + [format_profile(p) for p in profiles]))
        return 0
    with_torch = not args.no_torch and torch_available()
    if not args.json:
        print(f"{machine}; {args.threads} thread(s) each; {'CPU' if args.cpu_time else 'wall'} time")
        if not args.no_torch and not with_torch:
            print("(PyTorch is not installed: timing ours only; `pip install torch==2.13.0` adds the comparison)")
    results: dict[str, list[dict]] = {}
    for label in ("quiet", "busy") if args.busy else ("quiet",):
        if not args.json and args.busy:
            print(f"-- {'as usual' if label == 'quiet' else 'with another CPU-bound program running'}")
        rows = results[label] = []
        with competing_process() if label == "busy" else contextlib.nullcontext():
            for name in args.configs:
                row = bench_config(CONFIGS[name], windows=args.windows, with_torch=with_torch,
                                   gen_tokens=args.gen_tokens, threads=args.threads,
                                   clock=time.process_time if args.cpu_time else time.perf_counter)
                rows.append(row)
                if not args.json:
                    print(_format_row(row, with_torch), flush=True)
    if args.json:
        print(json.dumps({"machine": machine, "torch": with_torch, **results}, indent=2))
    return 0


def _format_row(row: dict, with_torch: bool) -> str:
    """Three lines per config: training by path (x = against PyTorch, % = against the hand-written step);
    generation at batch 1 and 8; then each ratio's 95% interval over the run's windows (ratio_interval)."""
    def vs_torch(key: str) -> str:
        return f" {row[key]:.2f}x" if with_torch else ""

    train = "  ".join(
        f"{path} {row[f'train_{path}_tok_s']:>8,.0f}{vs_torch(f'train_{path}_ratio')} "
        f"{100 * row[f'train_{path}_vs_reference']:.0f}%ref" for path in ("fused", "public"))
    train += f"  reference {row['train_reference_tok_s']:>8,.0f}{vs_torch('train_reference_ratio')}"
    if with_torch:
        train += f"  torch {row['train_torch_tok_s']:>8,.0f}"
    gen = "  ".join(
        f"b{b} {row[f'generate_b{b}_ours_tok_s']:>7,.0f}{vs_torch(f'generate_b{b}_ratio')}"
        + (f" (torch {row[f'generate_b{b}_torch_tok_s']:,.0f})" if with_torch else "") for b in (1, 8))

    def interval(key: str, percent: bool = False) -> str:
        low, high = row[f"{key}_interval"]
        return f"{100 * low:.0f}-{100 * high:.0f}%ref" if percent else f"{low:.2f}-{high:.2f}x"

    spans = "  ".join(f"{path} " + (f"{interval(f'train_{path}_ratio')} " if with_torch else "")
                      + interval(f"train_{path}_vs_reference", percent=True) for path in ("fused", "public"))
    if with_torch:
        spans += "".join(f"  generate b{b} {interval(f'generate_b{b}_ratio')}" for b in (1, 8))
    return (f"{row['config']:<8} train tok/s  {train}\n"
            f"{'':<8} generate tok/s  {gen}   peak RSS {row['peak_rss_mb']:.0f} MB\n"
            f"{'':<8} 95% intervals  {spans}")
