"""`eval --baseline xz` attacked: odd --train-data, a checkpoint whose stored dataset path is not a string, and
training data far larger than xz can use. Every problem with the baseline's data must be found before the
model scores anything (a bad path should not cost minutes of scoring first).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from test_eval import qa_records, save_random_checkpoint, texts_of, write_jsonl

from microgpt.__main__ import main
from microgpt.commands import eval as eval_command
from microgpt.evaluation import baseline
from microgpt.storage import load_checkpoint, save_checkpoint


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    monkeypatch.chdir(tmp_path)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", qa_records(3))
    return save_random_checkpoint(tmp_path / "m.npz", texts_of(heldout)), heldout


def _train_data(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"train_{kind}"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("FIFOs are POSIX")
        os.mkfifo(path)
    elif kind == "invalid":
        path.write_text('not json\n{"record_type": "qa"}\n', encoding="utf-8")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "folder":
        path.mkdir()
    elif kind == "device":
        return "/dev/zero"
    return str(path)


@pytest.mark.parametrize("kind", ["missing", "fifo", "invalid", "empty", "folder", "device"])
def test_bad_train_data_is_one_line_before_any_scoring(setup, tmp_path: Path, capsys, kind: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    scored = []
    monkeypatch.setattr(eval_command, "evaluate_heldout", lambda *a, **k: scored.append(a))
    code = main(["eval", str(ckpt), str(heldout), "--baseline", "xz", "--train-data", _train_data(tmp_path, kind),
                 "--log-dir", str(tmp_path / "logs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and ("train_" in err or "/dev/zero" in err)
    assert scored == []


def test_baseline_with_the_validation_split_is_refused_not_ignored(setup, capsys) -> None:
    ckpt, _ = setup
    assert main(["eval", str(ckpt), "--split", "val", "--baseline", "xz"]) == 2
    assert "--baseline" in capsys.readouterr().err


@pytest.mark.parametrize("stored", [["a", "list"], 42, {"nested": 1}])
def test_a_stored_dataset_path_that_is_not_text_is_one_line(setup, tmp_path: Path, capsys, stored: object) -> None:
    ckpt, heldout = setup
    original = load_checkpoint(ckpt)
    for train_config in (stored, {"dataset_path": stored}):
        crafted = save_checkpoint(tmp_path / "crafted.npz", original.model, original.tokenizer,
                                  {"step": 0, "train_config": train_config})
        code = main(["eval", str(crafted), str(heldout), "--baseline", "xz", "--log-dir", str(tmp_path / "logs")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err


def test_only_the_training_text_xz_can_look_back_at_is_compressed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseline, "XZ_WINDOW_BYTES", 2000)
    rng = np.random.default_rng(0)
    recent = ["".join(rng.choice(list("abcdefgh "), 2500))]
    junk = ["".join(rng.choice(list("xyz0123"), 50_000))]
    heldout = [recent[0][-400:]]
    assert baseline.xz_bits_per_byte(junk + recent, heldout) == baseline.xz_bits_per_byte(recent, heldout)
    assert baseline.xz_bits_per_byte(recent, heldout) < 2  # the window still holds what the held-out text repeats


@pytest.mark.parametrize("where", ["a file", "under a file", "/dev/null"])
def test_a_log_folder_that_cannot_be_one_is_one_line_before_any_scoring(setup, tmp_path: Path, capsys, where: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    log_dir = {"a file": str(tmp_path / "plain"), "under a file": str(tmp_path / "plain" / "logs"),
               "/dev/null": "/dev/null"}[where]
    scored = []
    monkeypatch.setattr(eval_command, "evaluate_heldout", lambda *a, **k: scored.append(a))
    code = main(["eval", str(ckpt), str(heldout), "--log-dir", log_dir])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"--log-dir={log_dir!r}" in err and "not a folder" in err
    assert scored == []


def test_results_go_to_the_log_dir_variable(setup, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    monkeypatch.setenv("LOG_DIR", str(tmp_path / "elsewhere"))
    assert main(["eval", str(ckpt), str(heldout)]) == 0
    assert capsys.readouterr().out.rstrip().endswith(".csv")
    assert list((tmp_path / "elsewhere" / "eval").glob("heldout_*.csv")) and not (tmp_path / "logs").exists()


def test_a_batch_too_big_for_memory_is_refused_before_any_scoring(setup, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    scored = []
    monkeypatch.setattr(eval_command, "evaluate_heldout", lambda *a, **k: scored.append(a))
    code = main(["eval", str(ckpt), str(heldout), "--batch-size", str(10**9)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--batch-size 1000000000" in err and "GiB" in err
    assert scored == []
    monkeypatch.undo()
    assert main(["eval", str(ckpt), str(heldout), "--batch-size", "64"]) == 0  # a batch that fits is scored


def test_datasets_after_options_are_scored_too(setup, tmp_path: Path, capsys) -> None:
    ckpt, heldout = setup
    other = write_jsonl(tmp_path / "other.jsonl", qa_records(2))
    code = main(["eval", str(ckpt), "--json", str(heldout), "--stride", "4", str(other), "--log-dir", "logs"])
    out, _ = capsys.readouterr()
    assert code == 0 and [r["dataset"] for r in __import__("json").loads(out)["results"]] == [str(heldout), str(other)]


def test_a_go_vocabulary_that_cannot_spell_the_text_gets_no_bits_per_byte(setup, tmp_path: Path, capsys) -> None:
    """An original Go char vocabulary drops what it does not know: bits per byte would count the bytes of the
    whole text and the bits of what was kept, and flatter the model (an untrained one scored below 1)."""
    from test_storage import write_go_checkpoint

    from microgpt.nn import GPT, GPTConfig

    _, heldout = setup
    vocab = list("aeiou ")  # most of the text's characters are not in it
    model = GPT(GPTConfig(zero_init=False, vocab_size=len(vocab) + 1, n_layer=1, n_embd=8, n_head=2, block_size=16,
                          positions="learned"), seed=3)
    go = write_go_checkpoint(tmp_path / "go.json", model, vocab=vocab)
    code = main(["eval", str(go), str(heldout), "--log-dir", "logs"])
    out, _ = capsys.readouterr()
    row = next(line for line in out.splitlines() if line.startswith(str(heldout)))
    assert code == 0 and row.split()[-1] == "n/a"
    assert f"bits/byte n/a on {heldout}: this checkpoint's tokenizer cannot spell 3 of its 3 records" in out
    assert main(["eval", str(go), str(heldout), "--json", "--log-dir", "logs"]) == 0
    [result] = __import__("json").loads(capsys.readouterr().out)["results"]
    assert result["bits_per_byte"] is None and result["unspelled"] == 3


def test_ctrl_c_in_a_later_dataset_keeps_the_ones_already_scored(setup, tmp_path: Path, capsys,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    second = write_jsonl(tmp_path / "second.jsonl", qa_records(2))
    scored = eval_command.evaluate_heldout

    def interrupted_at_the_second(checkpoint, held, *args, **kwargs):
        if held.path == str(second):
            raise KeyboardInterrupt
        return scored(checkpoint, held, *args, **kwargs)

    monkeypatch.setattr(eval_command, "evaluate_heldout", interrupted_at_the_second)
    assert main(["eval", str(ckpt), str(heldout), str(second), "--log-dir", "logs"]) == 130
    out, err = capsys.readouterr()
    assert any(line.startswith(str(heldout)) for line in out.splitlines())
    assert "interrupted: 1 of 2 datasets scored (reported above)" in err
    rows = (tmp_path / "logs" / "eval" / "heldout_m.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 2 and str(heldout) in rows[1]  # the header and the finished dataset's row


def test_a_resume_that_changes_the_schedule_names_each_rate_by_its_own_settings() -> None:
    from microgpt.config import TrainConfig, config_from_dict
    from microgpt.train.resume import schedule_note

    old = {**TrainConfig().to_dict(), "num_steps": 1000, "learning_rate": 0.01}
    new = config_from_dict({**old, "num_steps": 1010, "learning_rate": 0.001})
    assert schedule_note(old, new, 500).endswith("so step 501 trains at 0.001000 (step 500 trained at 0.010000)")
    assert schedule_note(old, config_from_dict({**old, "num_steps": 900}), 900) is None  # nothing left to train


def test_a_skipped_records_problem_line_escapes_its_path(tmp_path: Path) -> None:
    from microgpt.evaluation.heldout import read_heldout

    path = write_jsonl(tmp_path / "h\x1b[2Jx.jsonl", [*qa_records(1), {"id": "z"}])
    assert "\x1b" not in read_heldout(path).problems[0]


def test_a_missing_baseline_file_names_the_flag_that_fixes_it(setup, tmp_path: Path, capsys) -> None:
    ckpt, heldout = setup
    assert main(["eval", str(ckpt), str(heldout), "--baseline", "xz", "--train-data", "nope.jsonl"]) == 2
    err = capsys.readouterr().err
    assert "--train-data 'nope.jsonl' is not a file here" in err and "DATASET_PATH" not in err


@pytest.mark.parametrize("extra, named", [(["m.npz"], "CKPT"), (["--split", "val"], "--split"),
                                         (["--baseline", "xz"], "--baseline"), (["--stride", "3"], "--stride")])
def test_benchmark_refuses_what_it_would_ignore(extra: list[str], named: str, capsys) -> None:
    assert main(["eval", "--benchmark", *extra]) == 2
    assert f"leave out {named}" in capsys.readouterr().err


def test_train_data_without_the_baseline_is_refused_not_ignored(setup, capsys) -> None:
    ckpt, heldout = setup
    assert main(["eval", str(ckpt), str(heldout), "--train-data", "/nonexistent.jsonl"]) == 2
    assert "--train-data is the text xz reads for --baseline xz" in capsys.readouterr().err


def test_a_folder_where_the_results_table_goes_is_refused_before_any_scoring(setup, tmp_path: Path, capsys,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    ckpt, heldout = setup
    (tmp_path / "logs" / "eval" / "heldout_m.csv").mkdir(parents=True)
    scored = []
    monkeypatch.setattr(eval_command, "evaluate_heldout", lambda *a, **k: scored.append(a))
    assert main(["eval", str(ckpt), str(heldout), "--log-dir", str(tmp_path / "logs")]) == 2
    err = capsys.readouterr().err
    assert "heldout_m.csv: the results table's place holds a folder" in err and scored == []


def test_xz_measuring_nothing_on_a_tiny_text_gives_no_ratio_and_the_results_are_kept(
        setup, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """A held-out text of a few bytes can leave xz's output no longer: 0 bits per byte, nothing to divide by."""
    ckpt, heldout = setup
    monkeypatch.setattr(eval_command, "xz_bits_per_byte", lambda train, held: 0.0)
    assert main(["eval", str(ckpt), str(heldout), "--baseline", "xz", "--train-data", str(heldout),
                 "--log-dir", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    assert "0.000 bits/byte" in out and "the model needs n/a (too little text for xz to measure)" in out
    assert (tmp_path / "logs" / "eval" / "heldout_m.csv").is_file()
