"""`microgpt eval`: the figures mean what the module docstring says, and bad input is one line and exit 2."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from microgpt.__main__ import main
from microgpt.data.dataset import iter_dataset
from microgpt.data.tokenizer import CharTokenizer
from microgpt.evaluation.heldout import plan_windows, score_documents
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import checkpoint_info, load_checkpoint, save_checkpoint

QA = [
    ("What is a token?", "A small piece of text the model reads as one unit."),
    ("Why split data into train and validation?", "To measure how well the model does on text it never saw."),
    ("What does BOS mark?", "The start of a document, and the end of the one before it."),
    ("What is the capital of Japan?", "Tokyo (東京), on the island of Honshū."),
    ("What does softmax return?", "Probabilities: positive numbers that add up to one."),
    ("Why use a learning rate schedule?", "Big steps early to learn fast, small steps late to settle."),
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def qa_records(n: int) -> list[dict]:
    return [{"id": f"qa-{i}", "record_type": "qa", "question": QA[i % len(QA)][0],
             "answer": f"{QA[i % len(QA)][1]} (note {i})"} for i in range(n)]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def eval_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def texts_of(path: Path) -> list[str]:
    """The training text of every valid record, straight from the loader."""
    return [document.text for _, document, _ in iter_dataset(path) if document is not None]


def save_random_checkpoint(path: Path, texts: list[str], block_size: int = 256, chars: str | None = None,
                           seed: int = 0) -> Path:
    """A random GPT with a char tokenizer that knows `chars` (default: every character of `texts`)."""
    chars = "".join(sorted(set("".join(texts)))) if chars is None else chars
    tokenizer = CharTokenizer(chars)
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=block_size),
                seed=seed)
    return save_checkpoint(path, model, tokenizer, {"run_id": "test", "step": 0})


def reference_nll(model: GPT, seq: np.ndarray, j: int, start: int) -> float:
    """-log p(seq[j] | seq[start:j]): one position, its context built explicitly, no batching or padding."""
    logits = model(seq[None, start:j]).data[0, -1].astype(np.float64)
    top = logits.max()
    return float(np.log(np.exp(logits - top).sum()) + top - logits[seq[j]])


# ----- a tiny trained run, shared by the tests that need one ------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from microgpt.config import load_config
    from microgpt.train.trainer import Trainer

    root = tmp_path_factory.mktemp("run")
    data = write_jsonl(root / "train.jsonl", qa_records(40))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MICROGPT_CACHE_DIR", str(root / "cache"))
        cfg = load_config(cli={
            "DATASET_PATH": str(data), "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": "300", "N_EMBD": "16",
            "N_HEAD": "2", "N_LAYER": "1", "BLOCK_SIZE": "32", "BATCH_SIZE": "4", "NUM_STEPS": "20",
            "EVAL_INTERVAL": "10", "EVAL_STEPS": "3", "SAMPLE_COUNT": "0", "LOG_DIR": str(root / "logs"),
            "MODEL_DIR": str(root / "models")}, env={})
        assert Trainer(cfg).run() == 0
    return {"root": root, "data": data, "checkpoint": root / "models" / "latest_checkpoint.npz"}


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


# ----- --split val ---------------------------------------------------------------------------------------
def test_split_val_reproduces_the_runs_last_reported_val_loss(trained, workdir, capsys):
    result = eval_json(capsys, str(trained["checkpoint"]), "--split", "val")["results"][0]
    meta = load_checkpoint(trained["checkpoint"]).meta
    with open(next((trained["root"] / "logs" / "eval").glob("eval_metrics_*.csv")), encoding="utf-8") as f:
        last_reported = float(list(csv.DictReader(f))[-1]["val_loss"])
    assert result["split"] == "val" and result["bits_per_byte_estimated"] is True  # as the table's ~ says
    assert result["dataset"] == str(trained["data"])
    assert result["loss"] == pytest.approx(meta["val_loss"], abs=1e-6)
    assert result["loss"] == pytest.approx(last_reported, abs=1e-6)
    assert result["records"] == 4  # VAL_SPLIT 0.1 of 40 documents
    assert result["loss"] == pytest.approx(validation_loss_by_hand(trained["checkpoint"]), rel=1e-5)
    code, table, _ = run_cli(capsys, str(trained["checkpoint"]), "--split", "val")
    row = next(line for line in table.splitlines() if line.startswith(str(trained["data"])))
    assert code == 0 and row.split()[-1] == f"~{result['bits_per_byte']:.4f}"  # an estimate, and says so
    assert "split val: the loss of the windows the trainer samples" in table


def validation_loss_by_hand(path: Path) -> float:
    """The run's validation loss computed apart from the trainer: its windows (evenly spaced starts over the
    validation stream, EVAL_STEPS batches of BATCH_SIZE), an unfused forward and a float64 log-softmax."""
    from microgpt.config import config_from_dict
    from microgpt.train.data_pipeline import prepare_data

    checkpoint = load_checkpoint(path)
    cfg = config_from_dict(checkpoint.meta["train_config"])
    stream = prepare_data(cfg, checkpoint.tokenizer).val_stream
    length = min(checkpoint.model.config.block_size, len(stream) - 1)
    starts = np.linspace(0, len(stream) - length - 1, cfg.batch_size * cfg.eval_steps).astype(np.int64)
    windows = np.stack([stream[s:s + length + 1] for s in starts])
    logits = checkpoint.model(windows[:, :-1]).data.astype(np.float64)
    top = logits.max(axis=-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, windows[:, 1:, None], axis=-1)
    return float(-picked.mean())


def test_split_val_with_a_missing_dataset_is_one_line(trained, workdir, capsys):
    code, _, err = run_cli(capsys, str(trained["checkpoint"]), str(workdir / "moved.jsonl"), "--split", "val")
    assert code == 2 and err.startswith("microgpt eval: error: dataset") and len(err.splitlines()) == 1


def test_split_val_needs_a_training_checkpoint(workdir, capsys):
    path = save_random_checkpoint(workdir / "bare.npz", ["abc"])
    code, _, err = run_cli(capsys, str(path), "--split", "val")
    assert code == 2 and "holds no training config" in err


# ----- the figures ---------------------------------------------------------------------------------------
def test_bits_per_byte_matches_a_hand_computation(workdir, capsys):
    data = write_jsonl(workdir / "three.jsonl", [
        {"id": "k", "record_type": "knowledge", "text": "Naïve Bayes counts words: 東京 is two characters."},
        {"instruction": "Name a fish.", "context": "", "response": "Tope", "category": "open_qa"},
        {"id": "c", "record_type": "chat", "input": "Hi!", "output": "Hello — how can I help?"},
    ])
    texts = texts_of(data)
    known = "".join(sorted(set("".join(texts)) - set("東京ï—")))  # leave some characters to byte fallback
    checkpoint = save_random_checkpoint(workdir / "model.npz", texts, chars=known)
    model, tokenizer = (loaded := load_checkpoint(checkpoint)).model, loaded.tokenizer

    total_nll = n_tokens = 0
    for text in texts:
        seq = np.array([tokenizer.bos_id, *tokenizer.encode(text)])
        assert len(seq) <= model.config.block_size
        logits = model(seq[None, :-1]).data[0].astype(np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        total_nll -= log_probs[np.arange(len(seq) - 1), seq[1:]].sum()
        n_tokens += len(seq) - 1
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)

    result = eval_json(capsys, str(checkpoint), str(data))["results"][0]
    assert (result["records"], result["tokens"], result["bytes"]) == (3, n_tokens, n_bytes)
    assert n_tokens > sum(len(t) for t in texts)  # the byte fallback really happened
    assert result["bits_per_byte"] == pytest.approx(total_nll / math.log(2) / n_bytes, rel=1e-6)
    assert result["loss"] == pytest.approx(total_nll / n_tokens, rel=1e-6)
    assert result["ppl"] == pytest.approx(math.exp(total_nll / n_tokens), rel=1e-6)


def test_uniform_logits_give_ln_vocab_size(workdir, capsys):
    data = write_jsonl(workdir / "qa.jsonl", qa_records(6))
    loaded = load_checkpoint(save_random_checkpoint(workdir / "tmp.npz", texts_of(data), block_size=32))
    loaded.model.lm_head.weight.data[...] = 0.0
    path = save_checkpoint(workdir / "uniform.npz", loaded.model, loaded.tokenizer, {})
    result = eval_json(capsys, str(path), str(data))["results"][0]
    vocab = loaded.tokenizer.vocab_size
    assert result["loss"] == pytest.approx(math.log(vocab), abs=1e-6)
    assert result["ppl"] == pytest.approx(vocab, rel=1e-5)


# ----- windows -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block_size,stride", [(8, 4), (8, 8), (8, 1), (7, 3), (1, 1)])
def test_plan_windows_scores_every_target_exactly_once(block_size, stride):
    lengths = np.array([0, 1, 5, 7, 8, 9, 16, 23, 50])
    plan = plan_windows(lengths, block_size, stride)
    assert np.all(plan.length <= block_size) and np.all(plan.scored >= 1) and np.all(plan.scored <= plan.length)
    for d, n in enumerate(lengths):
        ends, seen = [], []
        for w in np.flatnonzero(plan.doc == d):
            end = plan.start[w] + plan.length[w]  # targets are 1..n; window w's inputs end before target `end`
            first_scored = end - plan.scored[w] + 1
            seen += list(range(first_scored, end + 1))
            if ends:  # every later-window target sees at least T - stride tokens of history
                assert first_scored - plan.start[w] >= block_size - stride
            ends.append(end)
        assert seen == list(range(1, n + 1))


def test_long_documents_match_a_position_by_position_reference():
    rng = np.random.default_rng(0)
    T, stride, bos = 12, 5, 0
    model = GPT(GPTConfig(zero_init=False, vocab_size=20, n_layer=1, n_embd=16, n_head=2, block_size=T), seed=3)
    lengths = [41, 3, 12, 13, 27]  # longer than T, shorter, exactly T, one over: padding across a batch
    docs = [rng.integers(1, 20, size=n) for n in lengths]
    ids, offsets = np.concatenate(docs), np.concatenate([[0], np.cumsum(lengths)])
    scores = score_documents(model, ids, offsets, bos, stride=stride, batch_size=3)
    assert scores.tokens.tolist() == lengths

    for d, doc in enumerate(docs):
        seq = np.concatenate([[bos], doc])
        n, expected = len(doc), 0.0
        for j in range(1, n + 1):  # target j's window ends at the first min(T + k*stride, n) >= j
            end = j if j <= T else min(T + math.ceil((j - T) / stride) * stride, n)
            expected += reference_nll(model, seq, j, max(0, end - T))
        assert scores.nll[d] == pytest.approx(expected, rel=1e-5)

    full = score_documents(model, ids, offsets, bos, stride=1, batch_size=4)  # stride 1: a full window each
    seq = np.concatenate([[bos], docs[0]])
    sliding = sum(reference_nll(model, seq, j, max(0, j - T)) for j in range(1, lengths[0] + 1))
    assert full.nll[0] == pytest.approx(sliding, rel=1e-5)


# ----- checkpoints of the original Go project --------------------------------------------------------------
def test_go_json_checkpoint_is_evaluated(workdir, capsys):
    rng = np.random.default_rng(1)
    vocab = sorted(set("abcdefghijklmnopqrstuvwxyz ?.:\nAQUWT"))
    V, C, T = len(vocab) + 1, 8, 16
    shapes = {"wte": (V, C), "wpe": (T, C), "lm_head": (V, C), "layer0.attn_wq": (C, C),
              "layer0.attn_wk": (C, C), "layer0.attn_wv": (C, C), "layer0.attn_wo": (C, C),
              "layer0.mlp_fc1": (4 * C, C), "layer0.mlp_fc2": (C, 4 * C)}
    state = {name: (rng.normal(size=shape) * 0.1).round(6).tolist() for name, shape in shapes.items()}
    path = workdir / "go_model.json"
    path.write_text(json.dumps({"version": 2, "config": {"n_layer": 1, "n_embd": C, "n_head": 2, "block_size": T},
                                "tokenization": "char", "vocab": vocab, "state": state}), encoding="utf-8")
    data = write_jsonl(workdir / "qa.jsonl", qa_records(3))

    result = eval_json(capsys, str(path), str(data))["results"][0]
    texts = texts_of(data)
    assert result["tokens"] == sum(c in vocab for t in texts for c in t)  # unknown characters are dropped
    assert result["bytes"] == sum(len(t.encode("utf-8")) for t in texts)
    assert 0 < result["loss"] < 2 * math.log(V)
    code, _, err = run_cli(capsys, str(path), "--split", "val")
    assert code == 2 and "holds no training config" in err


# ----- output: table, JSON, CSV, options ------------------------------------------------------------------
def test_table_csv_and_options(trained, workdir, capsys):
    data = write_jsonl(workdir / "held.jsonl", qa_records(5))
    checkpoint = str(trained["checkpoint"])
    code, out, err = run_cli(capsys, checkpoint, str(data), "--max-records", "2", "--batch-size", "1")
    assert code == 0, err
    assert "bits/byte" in out and "held.jsonl" in out and "records" in err and "tok/s" in err
    code, out, _ = run_cli(capsys, checkpoint, str(data), "--log-dir", "elsewhere", "--stride", "3")
    assert code == 0 and "stride 3" in out

    with open(workdir / "logs" / "eval" / "heldout_latest_checkpoint.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "checkpoint", "dataset", "dataset_sha256", "split", "records", "tokens",
                       "bytes", "loss", "ppl", "bits_per_byte", "run_id", "step"]
    info = checkpoint_info(trained["checkpoint"])
    assert len(rows) == 2 and rows[1][5] == "2"
    assert rows[1][-2:] == [info["run"], str(info["step"])] and info["run"]  # which weights were scored
    assert (workdir / "elsewhere" / "eval" / "heldout_latest_checkpoint.csv").is_file()
    first = eval_json(capsys, checkpoint, str(data))
    with open(workdir / "logs" / "eval" / "heldout_latest_checkpoint.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert len(rows) == 3 and rows[0][0] == "timestamp"  # appended, header once
    assert first["results"][0]["records"] == 5 and first["stride"] == 16
    assert first["results"][0]["bits_per_byte_estimated"] is False  # a held-out set's is measured


def test_a_results_file_begun_before_run_and_step_were_recorded_keeps_its_columns(tmp_path):
    from microgpt.evaluation.heldout import EARLIER_CSV_FIELDS, EvalResult, append_results, results_csv_path

    result = EvalResult(dataset="d.jsonl", sha256="0" * 64, split="all", records=1, tokens=10, bytes=20, loss=1.0,
                        bits_per_byte=0.5, skipped=0, seconds=0.1)
    path = results_csv_path("models/best.npz", tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(",".join(EARLIER_CSV_FIELDS) + "\r\n" + "old,row" + ",x" * 9 + "\r\n", encoding="utf-8")
    append_results([result], "models/best.npz", tmp_path, {"run_id": "20261127-120000_run", "step": 40})
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert [len(row) for row in rows] == [11, 11, 11] and rows[2][2] == "d.jsonl"  # no column the header lacks
    fresh = append_results([result], "models/other.npz", tmp_path, {"run_id": "a\nrun", "step": 7})
    with open(fresh, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[1][-2:] == ["a\\nrun", "7"]  # a checkpoint's run_id stays on its line
    append_results([result], "models/go.npz", tmp_path, {})  # the original Go trainer's: no run, no step
    with open(results_csv_path("models/go.npz", tmp_path), encoding="utf-8", newline="") as f:
        assert list(csv.reader(f))[1][-2:] == ["", ""]


def test_invalid_records_are_skipped_and_reported(workdir, capsys):
    path = workdir / "mixed.jsonl"
    good = [json.dumps(r) for r in qa_records(3)]
    path.write_text("\n".join([good[0], "{not json", good[1], '{"id": "x", "record_type": "qa"}', good[2]]) + "\n",
                    encoding="utf-8")
    checkpoint = save_random_checkpoint(workdir / "m.npz", texts_of(path))
    code, out, err = run_cli(capsys, str(checkpoint), str(path), "--json")
    assert code == 0
    assert json.loads(out)["results"][0]["records"] == 3
    assert json.loads(out)["results"][0]["skipped"] == 2
    assert "skipped 2 invalid records" in err
    assert f"{path}:2: invalid JSON" in err and f"{path}:4: " in err


# ----- bad input: one line on stderr, exit 2 ------------------------------------------------------------
def _bad_inputs(root: Path, good_checkpoint: Path, good_data: Path) -> dict[str, list[str]]:
    damaged = root / "damaged.npz"
    damaged.write_bytes(b"this is not a zip archive")
    truncated = root / "truncated.npz"
    truncated.write_bytes(good_checkpoint.read_bytes()[: good_checkpoint.stat().st_size // 2])
    bad_json = root / "bad.json"
    bad_json.write_text('{"version": 2, "config": {', encoding="utf-8")
    empty = root / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    invalid = root / "invalid.jsonl"
    invalid.write_text('{"id": "a"}\n[1, 2]\nnot json\n', encoding="utf-8")
    binary = root / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    c, d = str(good_checkpoint), str(good_data)
    return {
        "missing checkpoint": [str(root / "nope.npz"), d],
        "damaged checkpoint": [str(damaged), d],
        "truncated checkpoint": [str(truncated), d],
        "damaged go checkpoint": [str(bad_json), d],
        "missing dataset": [c, str(root / "nope.jsonl")],
        "dataset is a folder": [c, str(root)],
        "empty dataset": [c, str(empty)],
        "all records invalid": [c, str(invalid)],
        "binary dataset": [c, str(binary)],
        "second dataset bad": [c, d, str(empty)],
        "no dataset": [c],
        "no checkpoint": [],
        "stride over block size": [c, d, "--stride", "10000"],
    }


def test_bad_input_is_one_line_and_exit_2(workdir, capsys):
    data = write_jsonl(workdir / "ok.jsonl", qa_records(3))
    checkpoint = save_random_checkpoint(workdir / "ok.npz", texts_of(data))
    for name, argv in _bad_inputs(workdir, checkpoint, data).items():
        code, out, err = run_cli(capsys, *argv)
        assert code == 2, name
        assert "Traceback" not in err, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("microgpt eval: error: "), (name, err)
        assert out == "", name
    assert not (workdir / "logs").exists()  # nothing is recorded for a failed evaluation


def test_a_run_id_from_the_file_reaches_the_terminal_escaped(trained, workdir, capsys):
    with np.load(trained["checkpoint"]) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["run_id"], meta["step"] = "\x1b]0;owned\x07\x1b[2Jfake\nline", "9" * 1000
    np.savez(workdir / "esc.npz", **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    code, out, _ = run_cli(capsys, str(workdir / "esc.npz"), str(trained["data"]), "--max-records", "3")
    header = out.splitlines()[0]
    assert code == 0 and "\x1b" not in out and "\\x1b]0;owned" in header and len(header) < 400


def test_file_names_with_control_characters_reach_the_progress_line_and_the_csv_escaped(trained, workdir, capsys):
    odd = "da\nta\x1b[31m"
    data = write_jsonl(workdir / f"{odd}.jsonl", qa_records(3))
    checkpoint = workdir / "ck\npt\x1b[31m.npz"
    checkpoint.write_bytes(trained["checkpoint"].read_bytes())
    code, _out, err = run_cli(capsys, str(checkpoint), str(data))
    assert code == 0 and "\x1b" not in err and "da\\nta\\x1b[31m.jsonl: 3/3 records" in err, err
    [csv_file] = (workdir / "logs" / "eval").glob("heldout_*.csv")
    text = csv_file.read_text(encoding="utf-8")
    assert "\x1b" not in text and len(text.splitlines()) == 2  # the header and one row, each on its line
    row = next(csv.reader(text.splitlines()[1:]))
    assert row[1].endswith("ck\\npt\\x1b[31m.npz") and row[2].endswith("da\\nta\\x1b[31m.jsonl")
