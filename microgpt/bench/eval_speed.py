"""How fast held-out evaluation runs: `python -m microgpt eval --benchmark`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from microgpt.bench.throughput import C1
from microgpt.config import TrainConfig
from microgpt.data.tokenizer import build_tokenizer
from microgpt.evaluation.heldout import evaluate_heldout, read_heldout
from microgpt.nn import GPT
from microgpt.storage import Checkpoint

SEED_TASKS = 175  # records timed by default: the Self-Instruct seed tasks the README's figure is on


def benchmark_eval(dataset: str | Path | None = None, records: int = SEED_TASKS, repeats: int = 3) -> dict[str, Any]:
    """Time held-out evaluation of `records` records with a c1-sized model (bench's C1 with a BPE vocabulary of
    its size; random weights: the speed does not depend on them). Without `dataset`: the seed tasks where this
    project's shared evaluation data sits beside it, else the starter dataset.

    Tokenizing and scoring are both timed; the best of `repeats` runs is reported.
    """
    if dataset is None:
        here = Path(__file__).resolve().parents[2]
        seed_tasks = here.parent / "shared" / "eval" / "self_instruct_seed_tasks.jsonl"
        dataset = seed_tasks if seed_tasks.is_file() else here / TrainConfig.dataset_path
    heldout = read_heldout(dataset, max_records=records)
    tokenizer = build_tokenizer("bpe", C1.vocab_size, heldout.texts)
    model = GPT(replace(C1, vocab_size=tokenizer.vocab_size), seed=0)
    checkpoint = Checkpoint(model, tokenizer, {})
    timings = []
    for _ in range(repeats):
        result = evaluate_heldout(checkpoint, heldout, progress=False)
        timings.append(result.seconds)
    best = min(timings)
    return {"dataset": str(dataset), "records": result.records, "tokens": result.tokens, "seconds": best,
            "tokens_per_s": result.tokens / best, "runs_s": [round(t, 3) for t in timings]}
