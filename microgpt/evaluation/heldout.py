"""Held-out evaluation: how well a checkpoint predicts text it never trained on.

What is scored
    Each document (a record rendered to text exactly as training renders it) is tokenized as
    [BOS] + tokens(text). Every text token is scored once, given all the tokens before it: the leading
    BOS is context only and no closing BOS is scored. So the targets are exactly the document's tokens,
    and the bytes they cover are exactly len(text.encode("utf-8")) (an original Go vocabulary, which drops or
    replaces what it does not know, covers less: its bits per byte is then not given).

        loss           total negative log-likelihood (nats) / tokens scored
        perplexity     exp(loss)
        bits per byte  total NLL / ln 2 / UTF-8 bytes of the texts

    Loss and perplexity compare models that share a tokenizer; bits per byte does not depend on how the
    text was cut into tokens, so it compares any two models. (The original Go project's char tokenizer
    drops characters outside its vocabulary: those bytes count but are never scored.)

Documents longer than the context
    The model sees at most T = block_size tokens. A document of n tokens is scored in windows whose
    last target is the min(T + k * stride, n)-th token, for k = 0, 1, ...; each window holds the (up to)
    T tokens before its end. Window 0 scores all its positions; window k > 0 only those after window
    k - 1's end (at most `stride`), each of which sees at least T - stride tokens of history. No token is
    scored twice. stride = T is fastest with the least context; stride = 1 gives every token a full window.

Batching
    Windows of all documents are sorted by length and stacked `batch_size` at a time. Shorter windows are
    padded on the right; the causal mask keeps padding from reaching real positions, and padded positions
    are not scored. Log-softmax is taken with NumPy on the scored rows of the logits only, under no_grad.

`--split val` instead reproduces the training run's validation loss: same config, same document split,
same windows (`validation_batches`), same `evaluate` as the trainer.

The module is long because a score's whole path sits here, each step beside the one it feeds: reading a
held-out file, windowing its documents, scoring them, and the table, JSON and CSV that report them.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from microgpt.atomic import LineFile
from microgpt.autograd import no_grad
from microgpt.config import TrainConfig
from microgpt.data.dataset import iter_dataset, sha256_file
from microgpt.errors import CheckpointError, ConfigError, DatasetError, one_line
from microgpt.nn import GPT
from microgpt.storage import Checkpoint, checkpoint_stem
from microgpt.train.batches import fit_block_size, validation_batches
from microgpt.train.data_pipeline import prepare_data
from microgpt.train.progress import ProgressLine, perplexity, shown_perplexity
from microgpt.train.resume import stored_config
from microgpt.train.trainer import evaluate

CSV_FIELDS = ("timestamp", "checkpoint", "dataset", "dataset_sha256", "split", "records", "tokens", "bytes",
              "loss", "ppl", "bits_per_byte", "run_id", "step")
EARLIER_CSV_FIELDS = CSV_FIELDS[:-2]  # a file begun before run_id and step were recorded keeps its columns
DEFAULT_BATCH_SIZE = 32
MAX_SHOWN_PROBLEMS = 5


def default_stride(block_size: int) -> int:
    """Tokens a window advances in a long record when no stride is given: half a block."""
    return max(1, block_size // 2)


# ----- reading a held-out dataset -------------------------------------------------------------------
@dataclass
class HeldoutSet:
    """The valid documents of one dataset file, rendered as training renders them, plus what was skipped."""

    path: str
    sha256: str
    texts: list[str]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def read_heldout(path: str | Path, max_records: int | None = None) -> HeldoutSet:
    """Read a JSONL dataset with the training loader; invalid records are skipped and counted.

    Raises DatasetError (one line) for a missing or unreadable file, a file without records, or one
    whose records are all invalid. `max_records` keeps only the first N valid records.
    """
    texts: list[str] = []
    problems: list[str] = []
    skipped = 0
    for line, document, reasons in iter_dataset(path):
        if document is None:
            skipped += 1
            if len(problems) < MAX_SHOWN_PROBLEMS:
                problems.append(f"{one_line(str(path))}:{line}: {'; '.join(reasons)}")
            continue
        texts.append(document.text)
        if max_records is not None and len(texts) >= max_records:
            break
    if not texts and not skipped:
        raise DatasetError(f"dataset {path} holds no records; nothing to evaluate")
    if not texts:
        raise DatasetError(f"dataset {path}: none of its {skipped} records is valid (first: {problems[0]}); "
                           f"run `python -m microgpt validate-dataset {path}`", problems=problems)
    return HeldoutSet(str(path), sha256_file(path), texts, skipped, problems)


# ----- windows ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Windows:
    """The scoring plan: one entry per window, all arrays of shape (W,).

    A window covers inputs seq[start : start + length] of its document's sequence [BOS] + tokens and
    scores its last `scored` targets (target i is seq[i + 1]).
    """

    doc: np.ndarray
    start: np.ndarray
    length: np.ndarray
    scored: np.ndarray


def plan_windows(doc_lengths: Sequence[int] | np.ndarray, block_size: int, stride: int) -> Windows:
    """Windows that score each of a document's n tokens exactly once (see the module docstring)."""
    if not 1 <= stride <= block_size:
        raise ConfigError(f"--stride {stride}: must be between 1 and the block size {block_size}")
    n = np.asarray(doc_lengths, dtype=np.int64)
    extra = -(-(n - block_size) // stride)  # ceil((n - T) / stride), <= 0 when the document fits
    counts = np.where(n > 0, 1 + np.maximum(extra, 0), 0)
    doc = np.repeat(np.arange(n.size), counts)
    k = np.arange(doc.size) - np.repeat(np.cumsum(counts) - counts, counts)  # window index within its doc
    end = np.minimum(block_size + k * stride, n[doc])
    previous_end = np.where(k == 0, 0, np.minimum(block_size + (k - 1) * stride, n[doc]))
    start = np.maximum(end - block_size, 0)
    return Windows(doc=doc, start=start, length=end - start, scored=end - previous_end)


# ----- scoring ------------------------------------------------------------------------------------
@dataclass
class DocumentScores:
    """Summed NLL (nats) and the number of scored targets, per document: arrays of shape (D,)."""

    nll: np.ndarray
    tokens: np.ndarray


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log softmax(logits)[target] per row: logits (N, V), targets (N,) -> (N,) float64 nats.

    With m = max(x): -log p[t] = log(sum(exp(x - m))) - (x[t] - m). The exps stay in the logits' dtype
    (float32: one pass, no overflow after the shift); the sum is accumulated in float64.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)  # (N, V), every entry <= 0
    picked = shifted[np.arange(len(targets)), targets].astype(np.float64)
    np.exp(shifted, out=shifted)
    return np.log(shifted.sum(axis=1, dtype=np.float64)) - picked


def score_documents(model: GPT, ids: np.ndarray, offsets: np.ndarray, bos_id: int, stride: int | None = None,
                    batch_size: int = DEFAULT_BATCH_SIZE,
                    on_batch: Callable[[int, int], None] | None = None) -> DocumentScores:
    """Score every token of every document once; document d's tokens are ids[offsets[d]:offsets[d + 1]].

    `on_batch(records_done, tokens_done)` is called after each batch (for a progress line).
    """
    T = model.config.block_size
    stride = default_stride(T) if stride is None else stride
    lengths = np.diff(offsets)
    n_docs = lengths.size
    seq = np.insert(np.asarray(ids, dtype=np.int64), offsets[:-1], bos_id)  # [BOS] doc0 [BOS] doc1 ...
    seq_start = offsets[:-1] + np.arange(n_docs)  # where document d's BOS sits in seq
    plan = plan_windows(lengths, T, stride)
    order = np.argsort(-plan.length, kind="stable")  # longest first: each batch pads to its first window
    last_slot = np.full(n_docs, -1, dtype=np.int64)
    np.maximum.at(last_slot, plan.doc[order], np.arange(order.size))
    finished_at = np.sort(last_slot[lengths > 0])  # a document is done once its last window is

    nll = np.zeros(n_docs)
    tokens = np.zeros(n_docs, dtype=np.int64)
    done_tokens = 0
    for begin in range(0, order.size, batch_size):
        w = order[begin:begin + batch_size]
        width = int(plan.length[w[0]])
        pos = np.arange(width)  # (L,)
        length, scored = plan.length[w][:, None], plan.scored[w][:, None]  # (B, 1)
        real = pos < length  # (B, L)
        mask = real & (pos >= length - scored)  # (B, L) the positions this window scores
        at = seq_start[plan.doc[w]][:, None] + plan.start[w][:, None] + pos  # (B, L) index of each input
        x = np.where(real, seq[np.minimum(at, seq.size - 1)], bos_id)  # (B, L), right-padded
        y = seq[np.minimum(at + 1, seq.size - 1)]  # (B, L) next tokens
        with no_grad():
            logits = model(x).data  # (B, L, V)
        row_nll = token_nll(logits[mask], y[mask])  # (N,)
        row_doc = np.broadcast_to(plan.doc[w][:, None], mask.shape)[mask]
        nll += np.bincount(row_doc, weights=row_nll, minlength=n_docs)
        tokens += np.bincount(row_doc, minlength=n_docs)
        done_tokens += row_nll.size
        if on_batch is not None:
            on_batch(int(np.searchsorted(finished_at, begin + len(w), side="left")), done_tokens)
    return DocumentScores(nll, tokens)


def encode_documents(tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All texts' ids concatenated and their offsets (text d is ids[offsets[d]:offsets[d + 1]]).

    Our tokenizers encode in bulk; the Go project's (from its JSON checkpoints) one text at a time.
    """
    if hasattr(tokenizer, "encode_concat"):
        ids, offsets = tokenizer.encode_concat(texts)
        return np.asarray(ids, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
    encoded = [tokenizer.encode(text) for text in texts]
    offsets = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    ids = np.fromiter((i for e in encoded for i in e), dtype=np.int64, count=int(offsets[-1]))
    return ids, offsets


# ----- results ------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """One checkpoint on one dataset: what was scored and the three figures."""

    dataset: str
    sha256: str
    split: str  # "all" (every record) or "val" (the run's validation split)
    records: int
    tokens: int
    bytes: int
    loss: float
    bits_per_byte: float  # NaN when the tokenizer could not spell some records (see `unspelled`)
    skipped: int = 0
    seconds: float = 0.0
    unspelled: int = 0  # records whose tokens do not spell their text back (an original Go vocabulary's UNK)

    @property
    def ppl(self) -> float:
        return perplexity(self.loss)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "sha256": self.sha256, "split": self.split, "records": self.records,
                "skipped": self.skipped, "tokens": self.tokens, "bytes": self.bytes, "loss": self.loss,
                "ppl": self.ppl, "bits_per_byte": self.bits_per_byte,
                "bits_per_byte_estimated": self.split == "val",  # from the sampled windows' loss, as the table's `~`
                "unspelled": self.unspelled, "seconds": round(self.seconds, 3)}


class EvalProgress:
    """Records done, tokens/s and ETA while a held-out set is scored: a run's status line (ProgressLine) on a
    terminal, else a plain line every 10 s (a log keeps a record of a long evaluation), and the last at the end."""

    def __init__(self, label: str, records: int, tokens: int, stream: TextIO | None = None) -> None:
        self.label, self.records, self.tokens = one_line(label), records, tokens  # a file name may hold any byte
        self.line = ProgressLine(stream or sys.stderr, min_interval_s=0.2)
        self.started = self.printed = time.perf_counter()
        self.text = ""

    def update(self, records_done: int, tokens_done: int) -> None:
        now = time.perf_counter()
        rate = tokens_done / max(now - self.started, 1e-9)
        eta = (self.tokens - tokens_done) / rate if rate else 0.0
        self.text = (f"{self.label}: {records_done:,}/{self.records:,} records | {tokens_done:,}/{self.tokens:,} "
                     f"tokens | {rate:,.0f} tok/s | eta {eta:.0f}s")
        if self.line.enabled:
            self.line.show(self.text)
        elif now - self.printed >= 10.0:
            self.line.write(self.text + "\n")
            self.printed = now

    def close(self) -> None:
        if self.text:
            self.line.clear()
            self.line.write(self.text + "\n")
            self.line.flush()


def evaluate_heldout(checkpoint: Checkpoint, heldout: HeldoutSet, stride: int | None = None,
                     batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> EvalResult:
    """Score every valid record of one dataset with the checkpoint's model and tokenizer."""
    started = time.perf_counter()
    tokenizer = checkpoint.tokenizer
    ids, offsets = encode_documents(tokenizer, heldout.texts)
    if offsets[-1] == 0:
        raise DatasetError(f"dataset {heldout.path}: its records give no tokens to score with this tokenizer")
    line = EvalProgress(Path(heldout.path).name, len(heldout.texts), int(offsets[-1])) if progress else None
    scores = score_documents(checkpoint.model, ids, offsets, tokenizer.bos_id, stride, batch_size,
                             on_batch=line.update if line else None)
    if line:
        line.close()
    total_nll, n_tokens = float(scores.nll.sum()), int(scores.tokens.sum())
    n_bytes = sum(len(text.encode("utf-8")) for text in heldout.texts)
    unspelled = _unspelled(tokenizer, heldout.texts, ids, offsets)
    bits = math.nan if unspelled else total_nll / math.log(2) / n_bytes  # bytes no token carried cost no bits
    return EvalResult(dataset=heldout.path, sha256=heldout.sha256, split="all", records=len(heldout.texts),
                      tokens=n_tokens, bytes=n_bytes, loss=total_nll / n_tokens, bits_per_byte=bits,
                      skipped=heldout.skipped, seconds=time.perf_counter() - started, unspelled=unspelled)


def _unspelled(tokenizer: Any, texts: Sequence[str], ids: np.ndarray, offsets: np.ndarray) -> int:
    """How many texts the tokens do not spell back: 0 for ours (byte fallback); an original Go vocabulary drops
    or UNKs what it does not know, and bits per byte would then flatter the model (bits of less than the bytes)."""
    if getattr(tokenizer, "lossless", True):
        return 0
    return sum(tokenizer.decode(ids[offsets[d]:offsets[d + 1]].tolist()) != text for d, text in enumerate(texts))


def evaluate_val_split(checkpoint: Checkpoint, dataset_path: str | None = None) -> EvalResult:
    """The run's validation loss, recomputed exactly as the trainer did (config, split, windows, batches).

    Bits per byte here converts that loss with the split's own ratio: (tokens in the validation stream,
    BOS separators included, less the first) / (UTF-8 bytes of the validation texts).
    """
    stored = checkpoint.meta.get("train_config")
    if stored is None:
        raise CheckpointError("--split val needs a checkpoint saved by `microgpt train` (this one holds no "
                              "training config, so its validation split is unknown)")
    started = time.perf_counter()
    cfg = stored_config(checkpoint, fix="evaluate another checkpoint")  # checked as a resume's: from anyone
    if dataset_path is not None:
        cfg = replace(cfg, dataset_path=dataset_path)
    elif not Path(cfg.dataset_path).is_file():
        raise DatasetError(f"the run's dataset {cfg.dataset_path} is not found from here; give its path: "
                           "`python -m microgpt eval CKPT DATASET --split val`")
    data = prepare_data(cfg, checkpoint.tokenizer)
    recorded = checkpoint.meta.get("dataset_sha256")
    if recorded and recorded != data.dataset_sha256:
        print(f"warning: {cfg.dataset_path} changed since the run trained on it (sha256 differs), so this "
              "validation split is not the run's", file=sys.stderr)
    block = fit_block_size(len(data.val_stream), checkpoint.model.config.block_size)
    batches = validation_batches(data.val_stream, block, cfg.batch_size, cfg.eval_steps)
    loss = evaluate(checkpoint.model, batches)
    assert loss is not None  # None only when asked to stop, and nothing asks here
    n_bytes = sum(len(text.encode("utf-8")) for text in data.val_texts)
    bits_per_token = loss / math.log(2)
    return EvalResult(dataset=cfg.dataset_path, sha256=data.dataset_sha256, split="val", records=data.n_val_docs,
                      tokens=sum(int(y.size) for _, y in batches), bytes=n_bytes, loss=loss,
                      bits_per_byte=bits_per_token * (data.val_stream.size - 1) / n_bytes,
                      seconds=time.perf_counter() - started)


# ----- reporting ----------------------------------------------------------------------------------
def format_table(results: Sequence[EvalResult]) -> str:
    """A plain-text table, one row per dataset."""
    names = [one_line(r.dataset) for r in results]  # no escape sequence in a path reaches the terminal
    width = max(len("dataset"), *map(len, names))
    header = (f"{'dataset':<{width}}  {'split':<5}  {'records':>8}  {'tokens':>10}  {'bytes':>11}  "
              f"{'loss':>7}  {'ppl':>9}  {'bits/byte':>9}")
    lines = [header] + [f"{name:<{width}}  {r.split:<5}  {r.records:>8,}  {r.tokens:>10,}  {r.bytes:>11,}  "
                        f"{r.loss:>7.4f}  {shown_perplexity(r.ppl):>9}  {shown_bits(r):>9}"
                        for r, name in zip(results, names)]
    for r, name in zip(results, names):
        if r.unspelled:
            lines.append(f"bits/byte n/a on {name}: this checkpoint's tokenizer cannot spell {r.unspelled:,} "
                         f"of its {r.records:,} records (an original Go vocabulary drops or replaces what it "
                         "does not know), so its bits would not count every byte")
    if any(r.split == "val" for r in results):
        lines.append("split val: the loss of the windows the trainer samples (tokens counts their scored "
                     "tokens, which may repeat); ~ bits/byte is estimated from it with the split's own "
                     "tokens per byte")
    return "\n".join(lines)


def shown_bits(result: EvalResult) -> str:
    """Bits per byte for a table (~ when estimated from a sampled loss: the val split), or n/a when the
    tokenizer could not spell every record."""
    return "n/a" if result.unspelled else f"{'~' if result.split == 'val' else ''}{result.bits_per_byte:.4f}"


def results_csv_path(checkpoint_path: str | Path, log_dir: str | Path = TrainConfig.log_dir) -> Path:
    """logs/eval/heldout_<checkpoint stem>.csv"""
    return Path(log_dir) / "eval" / f"heldout_{checkpoint_stem(checkpoint_path)}.csv"


def append_results(results: Sequence[EvalResult], checkpoint_path: str | Path, log_dir: str | Path = TrainConfig.log_dir,
                   meta: dict | None = None) -> Path:
    """Append one row per result to the checkpoint's CSV, writing the header when the file is new. `meta` is
    the checkpoint's: its run_id and step say which weights were scored, since a checkpoint's file is
    overwritten as its run goes on (blank for a checkpoint that has none, as the original Go trainer's)."""
    path = results_csv_path(checkpoint_path, log_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().isoformat(timespec="seconds")
    meta = meta or {}
    table = LineFile(path)
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            earlier = table.size > 0 and next(csv.reader(f), None) == list(EARLIER_CSV_FIELDS)
        rows = io.StringIO()
        writer = csv.writer(rows)
        if table.size == 0:  # a new file (or one whose only line was torn) starts with the header
            writer.writerow(CSV_FIELDS)
        for r in results:
            row = [stamp, one_line(str(checkpoint_path)), one_line(r.dataset), r.sha256, r.split, r.records, r.tokens, r.bytes,
                   f"{r.loss:.6f}", f"{r.ppl:.4f}", f"{r.bits_per_byte:.6f}", one_line(str(meta.get("run_id") or "")),
                   "" if meta.get("step") is None else one_line(str(meta["step"]))]
            writer.writerow(row[:len(EARLIER_CSV_FIELDS)] if earlier else row)
        table.append(rows.getvalue())  # every row or none: a full disk leaves no torn row behind
    finally:
        table.close()
    return path


def results_json(results: Sequence[EvalResult], checkpoint_path: str | Path, checkpoint: Checkpoint,
                 stride: int | None) -> str:
    """One JSON object: the checkpoint, the scoring settings and every dataset's result.

    Strict JSON: a loss that is NaN or infinite (a diverged model, a dataset with no scored token) is `null`.
    """
    config = checkpoint.model.config
    rows = [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in r.to_dict().items()}
            for r in results]
    return json.dumps({
        "checkpoint": str(checkpoint_path), "run_id": checkpoint.meta.get("run_id"),
        "step": checkpoint.meta.get("step"), "block_size": config.block_size, "stride": stride,
        "vocab_size": config.vocab_size, "results": rows,
    }, allow_nan=False)
