"""`python -m microgpt eval CKPT DATASET [DATASET ...]`: loss, perplexity and bits per byte on held-out data."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path

from microgpt.bench.eval_speed import SEED_TASKS, benchmark_eval
from microgpt.bench.throughput import C1, describe_model
from microgpt.commands import CHECKPOINT_HELP, positive_int
from microgpt.config import TrainConfig, knob_from_env
from microgpt.errors import ConfigError, clipped, counted, one_line
from microgpt.evaluation.baseline import xz_bits_per_byte
from microgpt.evaluation.heldout import (
    DEFAULT_BATCH_SIZE,
    HeldoutSet,
    append_results,
    default_stride,
    evaluate_heldout,
    evaluate_val_split,
    format_table,
    read_heldout,
    results_csv_path,
    results_json,
)
from microgpt.nn import GPTConfig
from microgpt.nn.bounds import check_free_memory
from microgpt.safe_io import creatable_folder
from microgpt.storage import load_checkpoint

EPILOG = """\
scoring: each record is rendered as training renders it and tokenized as [BOS] + tokens(text); every text
token is scored once given the tokens before it (BOS is context only, no closing BOS is scored).
  loss = NLL (nats) / tokens,  ppl = exp(loss),  bits/byte = NLL / ln 2 / UTF-8 bytes of the texts
Bits per byte compares models with different tokenizers; loss and ppl only models sharing one.

long records: windows of BLOCK_SIZE tokens advancing by --stride (default BLOCK_SIZE // 2). The first window
scores all its tokens, each later one only its last STRIDE (or fewer at the end), so every token after the
first window sees at least BLOCK_SIZE - STRIDE tokens of history, and none is scored twice.

--split val reproduces the run's reported validation loss (its config, split, windows and batches);
DATASET then defaults to the run's dataset.

--baseline xz adds the compressor anchor under the table: the bits per byte xz (LZMA preset 9e) needs for the
same rendered texts after it has read the training data (--train-data, default the checkpoint's dataset). A
model that generalises should beat it.

Results are appended to LOG_DIR/eval/heldout_<checkpoint-stem>.csv, with the run and step of the weights scored.

examples:
  python -m microgpt eval models/best_checkpoint.npz ../shared/eval/self_instruct_seed_tasks.jsonl
  python -m microgpt eval models/best_checkpoint.npz ../shared/eval/self_instruct_seed_tasks.jsonl --baseline xz
  python -m microgpt eval models/best_checkpoint.npz --split val
  python -m microgpt eval --benchmark
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoint", nargs="?", metavar="CKPT", help=CHECKPOINT_HELP)
    parser.add_argument("datasets", nargs="*", metavar="DATASET", help="JSONL datasets to score (any record type)")
    parser.add_argument("--split", type=str.lower, choices=("all", "val"), default="all",
                        help="all: every record (default); val: only the run's validation split")
    parser.add_argument("--max-records", type=positive_int, metavar="N", help="score only the first N valid records")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help=f"windows per forward pass (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--stride", type=positive_int, metavar="N",
                        help="tokens a window advances in long records (default BLOCK_SIZE // 2)")
    parser.add_argument("--baseline", type=str.lower, choices=("xz",),
                        help="also show what xz needs per byte after reading the training data (see below)")
    parser.add_argument("--train-data", metavar="PATH",
                        help="training data the baseline reads first (default: the checkpoint's dataset)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table (strict "
                        "JSON: a loss that is NaN or infinite is null)")
    parser.add_argument("--log-dir", metavar="DIR",
                        help=f"where eval/heldout_*.csv goes (default: LOG_DIR, else {TrainConfig.log_dir})")
    parser.set_defaults(words_after_options="datasets")  # `eval CKPT --json a.jsonl b.jsonl` takes both
    parser.add_argument("--benchmark", action="store_true",
                        help=f"time {SEED_TASKS} records (../shared/eval seed tasks, else the starter set) with a "
                        f"c1-sized model ({describe_model(C1)}) and exit")


def run(args: argparse.Namespace) -> int:
    if args.benchmark:
        given = [name for name, value in (("CKPT", args.checkpoint), ("DATASET", args.datasets),
                                          ("--split", args.split != "all"), ("--baseline", args.baseline),
                                          ("--train-data", args.train_data), ("--stride", args.stride),
                                          ("--batch-size", args.batch_size), ("--log-dir", args.log_dir)) if value]
        if given:
            raise ConfigError(f"--benchmark times its own model on its own records (only --max-records and --json "
                              f"apply); leave out {', '.join(given)}")
        return _benchmark(args)
    if args.checkpoint is None:
        raise ConfigError("give a checkpoint: `python -m microgpt eval CKPT DATASET [DATASET ...]`")
    if args.split == "val" and (args.max_records or args.stride or args.batch_size):
        raise ConfigError("--max-records, --stride and --batch-size do not apply to --split val (it reproduces "
                          "the run's validation windows and batches)")
    if args.baseline and args.split == "val":
        raise ConfigError("--baseline xz scores held-out datasets (--split all), not the run's validation split")
    if args.train_data and not args.baseline:
        raise ConfigError("--train-data is the text xz reads for --baseline xz; add --baseline xz, or leave it out")
    if args.split == "all" and not args.datasets:
        raise ConfigError("give at least one DATASET to score (or --split val for the run's validation split)")
    log_dir = args.log_dir or knob_from_env("LOG_DIR")
    creatable_folder("--log-dir" if args.log_dir else "LOG_DIR", Path(log_dir) / "eval", value=log_dir)  # before any work
    table = results_csv_path(args.checkpoint, log_dir)
    if os.path.lexists(table) and not table.is_file():
        raise ConfigError(f"{one_line(str(table))}: the results table's place holds a folder or another kind of "
                          "file; move it, or give another --log-dir")

    checkpoint = load_checkpoint(args.checkpoint)
    block_size = checkpoint.model.config.block_size
    if args.batch_size:
        _check_batch_fits(checkpoint.model.config, args.batch_size)
    if args.stride and args.stride > block_size:
        raise ConfigError(f"--stride {args.stride}: must not exceed the checkpoint's block size {block_size}")
    stride = args.stride or default_stride(block_size)

    train, heldouts = None, []
    if args.split == "val":
        jobs = [functools.partial(evaluate_val_split, checkpoint, path) for path in (args.datasets or [None])]
    else:
        heldouts = [read_heldout(path, args.max_records) for path in args.datasets]  # every file checked first
        train = _baseline_train(args, checkpoint) if args.baseline else None  # so is the baseline's
        for heldout in [*heldouts, *([train] if train else [])]:
            if heldout.skipped:
                print(f"{one_line(heldout.path)}: skipped {counted(heldout.skipped, 'invalid record')}",
                      file=sys.stderr)
                for problem in heldout.problems:
                    print(f"  {problem}", file=sys.stderr)
        jobs = [functools.partial(evaluate_heldout, checkpoint, h, stride, args.batch_size or DEFAULT_BATCH_SIZE)
                for h in heldouts]
    results = []
    try:
        for job in jobs:
            results.append(job())
    except KeyboardInterrupt:  # what was scored is reported and kept; only the dataset in progress is lost
        if results:  # at once: no xz anchor (a minute of compressing that a second Ctrl-C would lose it all to)
            _report(args, checkpoint, results, stride, None, log_dir)
            skipped = "; the xz anchor was skipped" if train else ""
            print(f"interrupted: {len(results)} of {len(jobs)} datasets scored (reported above{skipped})",
                  file=sys.stderr)
        raise
    _report(args, checkpoint, results, stride, train and (train, heldouts), log_dir)
    return 0


def _report(args: argparse.Namespace, checkpoint, results: list, stride: int,
            anchor: tuple[HeldoutSet, list[HeldoutSet]] | None, log_dir: str) -> None:
    """Print the results (a table, or JSON) with the xz anchor when asked (`anchor`: the training data and the
    scored held-out sets), then append them to the CSV."""
    block_size = checkpoint.model.config.block_size
    baselines = _baselines(*anchor) if anchor else {}
    if args.json:
        report = json.loads(results_json(results, args.checkpoint, checkpoint, stride if args.split == "all" else None))
        if baselines:
            report["baseline"] = {"method": "xz", "train_data": baselines.pop("train_data"), "bits_per_byte": baselines}
        print(json.dumps(report))
    else:
        meta = checkpoint.meta
        where = (f"run {clipped(str(meta['run_id']))}, step {clipped(str(meta.get('step')))}" if meta.get("run_id")
                 else clipped(str(meta.get("format", ""))))  # from the file: escapes shown, long values cut
        scoring = f"stride {stride}" if args.split == "all" else "the run's validation windows"
        print(f"checkpoint {one_line(args.checkpoint)} ({where}; vocab {checkpoint.model.config.vocab_size}, "
              f"block {block_size}; {scoring})")
        print(format_table(results))
        if baselines:
            train_data = baselines.pop("train_data")
            for r in results:
                xz = baselines[r.dataset]
                if r.unspelled:
                    share = "n/a"
                elif xz <= 0:  # a text so short that xz's output grew by no whole byte: no ratio to give
                    share = "n/a (too little text for xz to measure)"
                else:
                    share = f"{r.bits_per_byte / xz:.1%}"
                print(f"xz having read {one_line(train_data)}: {xz:.3f} bits/byte on {one_line(r.dataset)}; "
                      f"the model needs {share} of that")
    csv_path = append_results(results, args.checkpoint, log_dir, checkpoint.meta)  # after the report: nothing lost
    print(f"results appended to {one_line(str(csv_path))}", file=sys.stderr if args.json else sys.stdout)


def _check_batch_fits(config: GPTConfig, batch_size: int) -> None:
    """A --batch-size whose forward pass would not fit in free memory is refused before anything is scored."""
    check_free_memory(config.inference_memory_mb(batch_size) * 2**20,
                      f"--batch-size {batch_size}: scoring that many windows at once",
                      f"give a smaller --batch-size (default {DEFAULT_BATCH_SIZE})", ConfigError)


def _baseline_train(args: argparse.Namespace, checkpoint) -> HeldoutSet:
    """The training data xz reads first: --train-data, else the dataset the checkpoint names (read and
    checked before any scoring, so a bad path costs no time)."""
    config = checkpoint.meta.get("train_config")
    stored = config.get("dataset_path") if isinstance(config, dict) else None
    train_data = args.train_data or (stored if isinstance(stored, str) else None)
    if not train_data:
        raise ConfigError("--baseline xz: this checkpoint does not name its training data; give --train-data PATH")
    if not Path(train_data).is_file():
        what = f"--train-data {train_data!r}" if args.train_data else \
            f"the training data this checkpoint names, {train_data!r},"
        raise ConfigError(f"--baseline xz: {what} is not a file here (relative to {Path.cwd()}); give "
                          "--train-data PATH, the dataset the model was trained on")
    return read_heldout(train_data)


def _baselines(train: HeldoutSet, heldouts: list[HeldoutSet]) -> dict:
    """The xz anchor for each held-out set: {dataset: bits/byte, "train_data": path}."""
    scores = {h.path: xz_bits_per_byte(train.texts, h.texts) for h in heldouts}
    return {**scores, "train_data": train.path}


def _benchmark(args: argparse.Namespace) -> int:
    report = benchmark_eval(records=args.max_records or SEED_TASKS)
    if args.json:
        print(json.dumps(report))
    else:
        print(f"eval benchmark (c1: {describe_model(C1)}): {report['records']} "
              f"records, {report['tokens']:,} tokens of {report['dataset']} in {report['seconds']:.2f} s "
              f"({report['tokens_per_s']:,.0f} tok/s; runs {report['runs_s']})")
    return 0
