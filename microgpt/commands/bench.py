"""`python -m microgpt bench`: training and KV-cached generation throughput, against PyTorch when installed."""

from __future__ import annotations

import argparse
import json

from microgpt.bench.micro import run_micro
from microgpt.bench.serve import format_serve_bench, run_serve_bench
from microgpt.bench.throughput import CONFIGS, bench_config, torch_available
from microgpt.bench.tui import run_tui_bench


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                        help="which configs to run (c1 = vocab 2048, 1 layer, n_embd 48, 4 heads, block 96; "
                             "c2 = vocab 8192, 4 layers, n_embd 128, 8 heads, block 256)")
    parser.add_argument("--windows", type=int, default=7, help="timed windows per contestant (median reported)")
    parser.add_argument("--gen-tokens", type=int, default=64, help="tokens generated per generation window")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
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


def run(args: argparse.Namespace) -> int:
    if args.serve:
        report = run_serve_bench(args.checkpoint, windows=min(args.windows, 3))
        print(json.dumps(report) if args.json else format_serve_bench(report))
        return 0
    if args.tui or args.micro:
        result = run_tui_bench() if args.tui else run_micro()
        print(json.dumps(result) if args.json else "\n".join(f"{k:<28} {v:8.3f}" for k, v in result.items()))
        return 0
    with_torch = not args.no_torch and torch_available()
    if not args.no_torch and not with_torch and not args.json:
        print("(PyTorch is not installed: timing ours only; `pip install torch==2.13.0` adds the comparison)")
    rows = []
    for name in args.configs:
        row = bench_config(CONFIGS[name], windows=args.windows, with_torch=with_torch, gen_tokens=args.gen_tokens)
        rows.append(row)
        if not args.json:
            print(_format_row(row, with_torch), flush=True)
    if args.json:
        print(json.dumps({"torch": with_torch, "results": rows}, indent=2))
    return 0


def _format_row(row: dict, with_torch: bool) -> str:
    text = (f"{row['config']:<7} train {row['train_ours_tok_s']:>9,.0f} tok/s   "
            f"generate {row['generate_ours_tok_s']:>7,.0f} tok/s   peak RSS {row['peak_rss_mb']:.0f} MB")
    if with_torch:
        text += (f"   | torch train {row['train_torch_tok_s']:>9,.0f} ({row['train_ratio']:.2f}x)   "
                 f"generate {row['generate_torch_tok_s']:>7,.0f} ({row['generate_ratio']:.2f}x)")
    return text
