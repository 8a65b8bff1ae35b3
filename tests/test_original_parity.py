"""What a user of the original Go edition relies on: its datasets load and train, its knobs
(TRAIN_DOC_SAMPLING, MODEL_BEST_PATH) work, its chat logs are written, and training shows a live progress line."""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from microgpt.__main__ import main
from microgpt.chat.log import ChatLog
from microgpt.config import config_from_dict
from microgpt.data.dataset import load_documents
from microgpt.nn import SamplingSettings
from microgpt.storage import load_checkpoint
from microgpt.train.batches import document_starts, join_with_bos, sequential_starts
from microgpt.train.progress import ERASE, ProgressLine, bar_text
from microgpt.train.trainer import Trainer

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "go_written.jsonl"
TINY = {"TOKENIZER": "char", "TOKEN_VOCAB_SIZE": 300, "N_LAYER": 1, "N_EMBD": 16, "N_HEAD": 2, "BLOCK_SIZE": 16,
        "BATCH_SIZE": 2, "NUM_STEPS": 12, "EVAL_INTERVAL": 6, "EVAL_STEPS": 1, "SAMPLE_COUNT": 0,
        "METRIC_INTERVAL": 3, "LOG_DIR": "logs", "MODEL_DIR": "models", "VAL_SPLIT": 0.2}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copy(FIXTURE, tmp_path / "go.jsonl")
    return tmp_path


def test_a_go_written_dataset_with_every_record_shape_validates(project: Path, capsys) -> None:
    assert main(["validate-dataset", "go.jsonl"]) == 0
    out = capsys.readouterr().out
    for kind, count in (("knowledge", 2), ("memory", 1), ("qa", 2), ("chat", 2), ("messages", 1),
                        ("trajectory", 5), ("preference", 1), ("dolly", 4)):
        assert f"{kind} {count}" in " ".join(out.split()), kind
    texts = {d.text for d in load_documents("go.jsonl")}
    assert "Task: Bake bread\nResult: One loaf." in texts  # "actions": null, as Go writes a nil slice
    assert "Task: Tune a guitar\nActions: pluck each string\nResult: In tune." in texts
    joined = "\n".join(texts)
    assert "hills <upstream> to" in joined and "water & letting" in joined  # Go escapes < > & as \u003c ...


@pytest.mark.parametrize("sampling", ["random", "sequential"])
def test_it_trains_with_either_doc_sampling_and_the_best_checkpoint_goes_to_model_best_path(
        project: Path, sampling: str) -> None:
    cfg = config_from_dict({**TINY, "DATASET_PATH": "go.jsonl", "TRAIN_DOC_SAMPLING": sampling,
                            "MODEL_BEST_PATH": "keep/best.npz"}, check_paths=True)
    trainer = Trainer(cfg)
    assert trainer.run() == 0
    best = load_checkpoint(project / "keep" / "best.npz")
    assert best.meta["train_config"]["train_doc_sampling"] == sampling
    assert not (project / "models" / "best_checkpoint.npz").exists()
    assert (project / "models" / "latest_checkpoint.npz").is_file()


def test_sequential_sampling_walks_the_documents_in_order_and_wraps() -> None:
    stream = join_with_bos([np.array([5, 6, 7]), np.array([8, 9]), np.array([4, 4, 4, 4])], bos_id=0)
    starts = document_starts(stream, 0, block_size=2)
    assert starts.tolist() == [0, 4, 7]  # each document's BOS
    assert sequential_starts(starts, 0, 2).tolist() == [0, 4]
    assert sequential_starts(starts, 1, 2).tolist() == [7, 0]  # wraps after the last document
    late = document_starts(stream, 0, block_size=6)  # a start too close to the end moves back to fit a window
    assert late.max() <= len(stream) - 6 - 1


def test_sequential_sampling_resumes_exactly(project: Path) -> None:
    knobs = {**TINY, "DATASET_PATH": "go.jsonl", "TRAIN_DOC_SAMPLING": "sequential"}
    whole = Trainer(config_from_dict({**knobs, "RUN_NAME": "whole", "MODEL_DIR": "a"}))
    assert whole.run() == 0
    half = Trainer(config_from_dict({**knobs, "RUN_NAME": "half", "MODEL_DIR": "b"}), stop_after=6)
    assert half.run() == 0
    rest = Trainer(config_from_dict({**knobs, "RUN_NAME": "half", "MODEL_DIR": "b"}),
                   resume=str(project / "b" / "latest_checkpoint.npz"))
    assert rest.run() == 0
    a, b = load_checkpoint(project / "a" / "latest_checkpoint.npz"), load_checkpoint(project / "b" / "latest_checkpoint.npz")
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7, err_msg=name)




class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_rewrites_itself_and_stays_below_the_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERM", "xterm")
    tty = FakeTerminal()
    line = ProgressLine(tty, min_interval_s=0)
    assert line.enabled
    line.show(bar_text(5, 20, 2.5, 1234.0, 83.0))
    line.write("a log line\n")
    line.show(bar_text(20, 20, 2.0, 1234.0, 0.0))
    line.clear()
    out = tty.getvalue()
    assert out.startswith(ERASE + "[#####...............] 5/20  25% | loss 2.5000 | 1,234 tok/s | eta 0:01:23")
    assert ERASE + "a log line\n[#####" in out  # the bar is lifted for the log line and put back under it
    assert "[####################] 20/20 100%" in out and out.endswith(ERASE)
    plain = io.StringIO()  # not a terminal: no bar, the log lines pass through untouched
    piped = ProgressLine(plain)
    piped.show("bar")
    piped.write("a log line\n")
    assert plain.getvalue() == "a log line\n"


def test_the_progress_line_fits_the_terminal_and_is_off_on_a_dumb_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A line wider than the terminal wraps, and erasing the last row leaves the rest: one stale row a redraw."""
    monkeypatch.setenv("COLUMNS", "30")
    monkeypatch.setenv("TERM", "xterm")
    tty = FakeTerminal()
    ProgressLine(tty, min_interval_s=0).show("x" * 100)
    assert tty.getvalue() == ERASE + "x" * 29
    wide = FakeTerminal()  # a file name in CJK: two cells a character
    ProgressLine(wide, min_interval_s=0).show("数据" * 20)
    assert wide.getvalue() == ERASE + "数据" * 7  # 28 cells: the 29th would be half a character
    monkeypatch.setenv("TERM", "dumb")  # no cursor movement there: plain log lines only
    assert not ProgressLine(FakeTerminal()).enabled


def test_training_on_a_terminal_shows_the_bar_and_system_lines(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tty = FakeTerminal()
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stdout", tty)
    assert Trainer(config_from_dict({**TINY, "DATASET_PATH": "go.jsonl"})).run() == 0
    out = tty.getvalue()
    assert ERASE + "[" in out and "/12 " in out and "tok/s | eta" in out
    assert f"[system] pid {os.getpid()} run " in out and str(project / "logs" / "train") in out
    log = next((project / "logs" / "train").glob("*.log")).read_text()
    assert "\r" not in log and "[system] dataset " + str(project / "go.jsonl") in log


def test_a_chat_log_that_cannot_be_written_warns_once_and_the_chat_goes_on(tmp_path: Path) -> None:
    (tmp_path / "chat").write_text("a file where the folder should be")
    warnings: list[str] = []
    log = ChatLog(tmp_path, "tui_chat", "s1", warn=warnings.append)
    log.turn("user", "hello")
    log.turn("assistant", "hi")
    assert len(warnings) == 1 and "cannot be written" in warnings[0] and log.failed


def test_a_chat_log_appends_turns_and_a_new_session_restarts_latest(tmp_path: Path) -> None:
    first = ChatLog(tmp_path, "tui_chat", "s1")
    first.context("models/a.npz", SamplingSettings())
    first.turn("user", "hello")
    first.turn("assistant", "two\nlines")
    first.context("models/a.npz", SamplingSettings())  # unchanged: not written again
    second = ChatLog(tmp_path, "tui_chat", "s2")
    second.turn("user", "again")
    one = (tmp_path / "chat" / "tui_chat_s1.log").read_text(encoding="utf-8")
    assert one.count("# checkpoint models/a.npz | temperature=") == 1
    assert "] user: hello\n" in one and "] assistant: two\n    lines\n" in one
    assert "again" in (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    assert "hello" not in (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    older, newer = ChatLog(tmp_path, "chat", "s3"), ChatLog(tmp_path, "chat", "s4")
    older.context("models/a.npz", SamplingSettings())
    newer.context("models/a.npz", SamplingSettings())  # the same first line: the latest log's size tells nothing
    older.turn("user", "the older session goes on")  # in its own file only: the latest log is the newer's
    newer.turn("assistant", "the newer answers")
    assert "the older session goes on" in (tmp_path / "chat" / "chat_s3.log").read_text(encoding="utf-8")
    latest = (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    assert "the older session goes on" not in latest and latest.endswith("] assistant: the newer answers\n")
