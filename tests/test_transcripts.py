"""`data import-transcripts`: U:/A: conversations become chat records that render as chat prompts do."""

from __future__ import annotations

import json
from pathlib import Path

from microgpt.__main__ import main
from microgpt.data.records import check_record
from microgpt.data.templates import chat_prompt, render_record

TRANSCRIPT = """U: How long do eggs keep?
A: About three to five weeks in the fridge.
Check the date on the box.
U: And boiled ones?
A: About a week, in their shells.
U: Can I freeze them?
A: Raw ones, yes, beaten; not boiled whites.
U: Thanks!
A: You're welcome.
"""


def test_each_reply_is_a_chat_record_with_two_exchanges_of_history(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "eggs.txt").write_text(TRANSCRIPT, encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["eggs-0001", "eggs-0002", "eggs-0003", "eggs-0004"]
    assert all(check_record(r) == [] for r in records)
    assert records[0]["output"] == "About three to five weeks in the fridge.\nCheck the date on the box."
    # The fourth reply sees only the two exchanges before it, exactly as `chat` would prompt the model.
    history = [("And boiled ones?", "About a week, in their shells."),
               ("Can I freeze them?", "Raw ones, yes, beaten; not boiled whites.")]
    assert render_record(records[3]) == chat_prompt(history, "Thanks!") + " You're welcome."


def test_problems_are_reported_by_line_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bad.txt").write_text("hello\nU: one\nU: two\nA: reply\nA: again\nU: last\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 1
    err = capsys.readouterr().err
    bad = tmp_path / "in" / "bad.txt"
    assert f"{bad}:1: text before the first turn" in err
    assert f"{bad}:3: two user turns in a row" in err
    assert f"{bad}:5: two assistant turns in a row" in err
    assert f"{bad}:6: the last user turn has no reply" in err
    assert not out.exists()
    assert main(["data", "import-transcripts", str(tmp_path / "nowhere"), str(out)]) == 2
    assert "microgpt data import-transcripts: error: " in capsys.readouterr().err  # the command as typed
    (tmp_path / "in" / "bad.txt").write_text("A: hello\n", encoding="utf-8")
    (tmp_path / "in" / "SHOUTED.TXT").write_text("U: hi\nA: there\n", encoding="utf-8")  # read: .txt in any case
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1: an assistant turn with no user turn before it" in err and "SHOUTED" not in err
    (tmp_path / "in" / "bad.txt").unlink()
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["id"] == "SHOUTED-0001"


def test_an_exchange_too_long_for_a_dataset_record_is_a_problem_not_a_file_training_refuses(
        tmp_path: Path, capsys, monkeypatch) -> None:
    import microgpt.data.dataset as dataset_module
    import microgpt.data.transcripts as transcripts_module
    for module in (dataset_module, transcripts_module):  # the same limit, made small enough for a test
        monkeypatch.setattr(module, "MAX_RECORD_BYTES", 400)
    long_turn = "A: " + "a log line\n" * 40  # 440 bytes: its own record and the next two (history) are too long
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "log.txt").write_text(f"U: hi\nA: hello\nU: read this\n{long_turn}U: ok?\nA: yes\nU: and?\n"
                                             "A: fine\nU: bye\nA: bye\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 1
    err = capsys.readouterr().err.splitlines()
    log = tmp_path / "in" / "log.txt"
    assert [line.split(": this exchange")[0] for line in err[:-1]] == [f"{log}:{n}" for n in (3, 44, 46)]
    assert all("more than a dataset record may be (400)" in line for line in err[:-1])
    assert err[-1].endswith("3 problems; nothing written") and not out.exists()
    monkeypatch.setattr(transcripts_module, "MAX_RECORD_BYTES", 10_000)  # the records the limit refused:
    assert main(["data", "import-transcripts", str(tmp_path / "in"), str(out)]) == 0
    sizes = [len(line.encode("utf-8")) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [size > 400 for size in sizes] == [False, True, True, True, False]  # ...are those the reader refuses
