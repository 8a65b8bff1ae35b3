"""`python -m microgpt validate-dataset [PATH]`: every problem as PATH:LINE, or counts and token statistics.

The file is streamed three times (validate, learn the vocabulary, count tokens), so memory stays at a few
lines plus one number per document whatever the file's size.
"""

from __future__ import annotations

import argparse

import numpy as np

from microgpt.commands import positive_int
from microgpt.config import KNOB_BY_NAME, TrainConfig, knob_from_env, parse_value
from microgpt.data.dataset import MAX_PROBLEMS, iter_documents, validate_dataset
from microgpt.data.records import RECORD_TYPES
from microgpt.data.tokenizer import build_tokenizer, iter_batches
from microgpt.errors import ConfigError, counted, one_line
from microgpt.train.batches import MIN_DOCUMENTS

DEFAULT_DATASET = TrainConfig.dataset_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", nargs="?", help=f"JSONL dataset (default: $DATASET_PATH or {DEFAULT_DATASET})"
    )
    parser.add_argument(
        "--max-problems", type=positive_int, default=MAX_PROBLEMS, help="problems to list before counting the rest"
    )
    parser.add_argument(
        "--tokenizer", type=str.lower, choices=["bpe", "char"], help="tokenizer for the statistics ($TOKENIZER)"
    )
    parser.add_argument(
        "--vocab-size", metavar="N",
        help=f"local vocabulary size ($TOKEN_VOCAB_SIZE, default {KNOB_BY_NAME['TOKEN_VOCAB_SIZE'].default})"
    )


def run(args: argparse.Namespace) -> int:
    path = knob_from_env("DATASET_PATH") if args.path is None else args.path
    if not path.strip():
        raise ConfigError("the dataset path is empty; give the JSONL file to check")
    kind = args.tokenizer or knob_from_env("TOKENIZER")  # the settings first: a bad one is said before any reading
    vocab_size = knob_from_env("TOKEN_VOCAB_SIZE") if args.vocab_size is None else \
        parse_value("TOKEN_VOCAB_SIZE", args.vocab_size, "--vocab-size")
    encoding = knob_from_env("BPE_ENCODING")
    report = validate_dataset(path, max_problems=args.max_problems)
    if not report.ok:
        for problem in report.problems:
            print(problem)
        hidden = report.problem_count - len(report.problems)
        if hidden:
            print(f"... and {hidden} more problems not shown (--max-problems {args.max_problems})")
        print(f"{one_line(path)}: invalid ({counted(report.problem_count, 'problem')}; "
              f"{counted(report.documents, 'valid record')})")
        return 1

    documents = (document.text for document in iter_documents(path))
    tokenizer = build_tokenizer(kind, vocab_size, documents, encoding, knob_from_env("BPE_FILE") or None)

    lengths: list[np.ndarray] = []
    fallback = 0
    for batch in iter_batches(document.text for document in iter_documents(path)):
        ids, offsets = tokenizer.encode_concat(batch)
        lengths.append(np.diff(offsets))
        fallback += int(tokenizer.is_fallback(ids).sum())
    per_document = np.concatenate(lengths)
    total = int(per_document.sum())

    print(f"{one_line(path)}: valid")
    print("records by type:")
    for record_type in RECORD_TYPES:
        if record_type in report.counts:
            print(f"  {record_type:<12}{report.counts[record_type]:>8,}")
    print(f"documents: {report.documents:,}")
    name = f"bpe ({encoding})" if kind == "bpe" else kind
    print(f"tokenizer: {name}, {tokenizer.vocab_size:,} ids used of {vocab_size:,}")
    print(
        f"tokens: {total:,} total; per document mean {per_document.mean():.1f}, "
        f"p95 {np.percentile(per_document, 95):,.0f}, max {per_document.max():,}"
    )
    print(f"outside the local vocabulary: {fallback / max(total, 1):.2%} of tokens are byte fallback")
    if report.documents < MIN_DOCUMENTS:
        print(f"warning: training needs at least {MIN_DOCUMENTS} records (one to train on, one to validate with); "
              "add records before `microgpt train`")
    return 0
