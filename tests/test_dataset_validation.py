"""Dataset validation: every bad line is reported as PATH:LINE naming the field, and no good line is rejected."""

import argparse
import json
import re
import tracemalloc
from pathlib import Path

import pytest

import microgpt.__main__ as cli
import microgpt.data.dataset as dataset_module
from microgpt.commands import validate_dataset as command
from microgpt.data.dataset import (
    MAX_RECORD_BYTES,
    iter_dataset,
    load_documents,
    sha256_file,
    validate_dataset,
)
from microgpt.errors import DatasetError

EXAMPLES = Path(__file__).resolve().parent.parent / "datasets" / "examples"


def line_numbers(problems: list[str], path: Path) -> set[int]:
    return {int(re.match(rf"{re.escape(str(path))}:(\d+): ", p).group(1)) for p in problems}


def line(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# (bytes of the line, expected fragment of its problem or None for a good line). Line numbers follow order.
MIXED = [
    (b"\xef\xbb\xbf" + line({"id": "a", "record_type": "chat", "input": "hi", "output": "hello"}), None),
    (
        line({"id": "b", "record_type": "qa", "question": "日本の首都は?", "answer": "東京 👨‍👩‍👧"}) + b"\r",
        None,
    ),
    (b"", None),  # blank line
    (line({"instruction": "Name a fish.", "context": "", "response": "Tope", "category": "open_qa"}), None),
    (b'{"id": "c", "record_type": "chat", "input": "unterminated}', "invalid JSON"),
    (b'"just a string"', "expected a JSON object, got string"),
    (line({"id": "d", "record_type": "qa", "question": "q"}), "missing required field 'answer'"),
    (line({"id": "e", "record_type": "knowledge", "text": ""}), "field 'text' is empty"),
    (line({"id": "f", "record_type": "chat", "input": 5, "output": "x"}), "field 'input' must be a string"),
    (line({"id": "g", "record_type": "sonnet", "text": "x"}), "unknown record_type 'sonnet'"),
    (line({"id": "a", "record_type": "memory", "text": "again"}), "duplicate id 'a' (first used on line 1)"),
    (b'{"id": "h", "record_type": "knowledge", "text": "caf\xe9"}', "invalid UTF-8"),
    (b"   \t", None),  # whitespace-only line
    (line({"id": "i", "record_type": "knowledge", "text": "NUL \u0000 and \u0301 combining"}), None),
    (line({"record_type": "memory", "text": "no id"}), "missing required field 'id'"),
    (line({"instruction": "Explain.", "context": "Background.", "response": "Because."}), None),
    (line({"id": "j", "record_type": "messages", "messages": [{"role": "user", "content": "hi"}]}), None),
    (b'{"id": "k", "record_type": "qa", "question": "q", "answer": "yes", "answer": "no"}',
     "the key 'answer' appears twice in one object"),
]


@pytest.fixture
def mixed_file(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\r\n".join(raw for raw, _ in MIXED[:3]) + b"\n" + b"\n".join(raw for raw, _ in MIXED[3:])
    )
    return path


def test_old_mac_line_ends_and_huge_numbers_are_named_as_such(tmp_path):
    """Records separated by a lone \\r read as one line with extra data after the first record; a 5,000-digit
    number is "too many digits", not Python's advice to raise its own limit."""
    mac = tmp_path / "mac.jsonl"
    mac.write_bytes(line({"id": "a", "record_type": "memory", "text": "one"}) + b"\r"
                    + line({"id": "b", "record_type": "memory", "text": "two"}) + b"\r")
    huge = tmp_path / "huge.jsonl"
    huge.write_bytes(b'{"id": "a", "record_type": "memory", "text": "x", "n": ' + b"7" * 5000 + b"}\n")
    (mac_problem,) = validate_dataset(mac).problems
    (huge_problem,) = validate_dataset(huge).problems
    assert "lone \\r (old Mac line ends)" in mac_problem and "save it with \\n line ends" in mac_problem
    assert "more than 4,300 digits" in huge_problem and "sys." not in huge_problem


def test_every_error_class_is_reported_on_its_line_and_good_lines_pass(mixed_file):
    report = validate_dataset(mixed_file)
    bad_lines = {number for number, (_, problem) in enumerate(MIXED, start=1) if problem}
    assert line_numbers(report.problems, mixed_file) == bad_lines
    for number, (_, expected) in enumerate(MIXED, start=1):
        if expected:
            prefix = f"{mixed_file}:{number}: "
            assert any(p.startswith(prefix) and expected in p for p in report.problems), (
                number,
                report.problems,
            )
    assert report.documents == 6
    assert report.counts == {"chat": 1, "qa": 1, "dolly": 2, "knowledge": 1, "messages": 1}
    assert report.problem_count == len(bad_lines) and not report.ok


def test_documents_keep_their_line_numbers_and_dolly_ids(mixed_file):
    documents = [doc for _, doc, _ in iter_dataset(mixed_file) if doc]
    assert [doc.line for doc in documents] == [1, 2, 4, 14, 16, 17]
    assert documents[2].id == "dolly-4" and documents[2].record_type == "dolly"
    assert documents[1].text == "Question: 日本の首都は?\nAnswer: 東京 👨‍👩‍👧"


def test_a_line_with_several_problems_is_one_entry_naming_each_field(tmp_path):
    path = tmp_path / "several.jsonl"
    path.write_text(json.dumps({"record_type": "qa", "question": 3}) + "\n")
    (problem,) = validate_dataset(path).problems
    assert problem.startswith(f"{path}:1: ")
    assert all(f"'{field}'" in problem for field in ("id", "question", "answer"))


def test_an_id_used_three_times_names_its_first_line_at_every_later_use(tmp_path):
    path = tmp_path / "triple.jsonl"
    texts = ["one", "two", "other", "three", "four"]
    ids = ["x", "x", "y", "x", "x"]
    path.write_text("".join(json.dumps({"id": i, "record_type": "knowledge", "text": t}) + "\n"
                            for i, t in zip(ids, texts)), encoding="utf-8")
    problems = validate_dataset(path).problems
    assert problems == [f"{path}:{n}: duplicate id 'x' (first used on line 1)" for n in (2, 4, 5)]


def test_problems_are_capped_but_all_counted(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{not json\n" * 120)
    report = validate_dataset(path, max_problems=10)
    assert len(report.problems) == 10 and report.problem_count == 120


def test_load_documents_refuses_an_invalid_dataset_with_the_same_messages(mixed_file):
    with pytest.raises(DatasetError) as caught:
        load_documents(mixed_file)
    assert str(caught.value).startswith(f"{mixed_file}:5: invalid JSON")
    assert "(10 problems; run `python -m microgpt validate-dataset" in str(caught.value)
    assert caught.value.problems == validate_dataset(mixed_file).problems


def test_missing_and_empty_files_are_one_line_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_documents(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    with pytest.raises(DatasetError, match="holds no records"):
        load_documents(empty)


def test_validation_streams_instead_of_loading_the_file(tmp_path):
    path = tmp_path / "big.jsonl"
    record = {"record_type": "knowledge", "text": "x" * 2000}
    with open(path, "w") as f:
        f.writelines(json.dumps({"id": str(i), **record}) + "\n" for i in range(2500))  # ~5 MB
    tracemalloc.start()
    report = validate_dataset(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.ok and report.documents == 2500
    assert peak < 1_000_000


def test_a_record_past_the_size_cap_is_a_problem_on_its_line_and_is_never_read_whole(tmp_path, monkeypatch):
    assert MAX_RECORD_BYTES >= 4 << 20  # a long novel fits as one record
    limit = 1 << 20  # the same cap, smaller, so the test writes megabytes, not hundreds of them
    monkeypatch.setattr(dataset_module, "MAX_RECORD_BYTES", limit)
    path = tmp_path / "long.jsonl"
    at_limit = json.dumps({"id": "a", "record_type": "knowledge", "text": ""}).encode()
    at_limit = at_limit[:-2] + b"y" * (limit - len(at_limit)) + b'"}'  # exactly the cap, then CRLF: fine
    with open(path, "wb") as f:
        f.write(at_limit + b"\r\n")
        f.write(json.dumps({"id": "b", "record_type": "knowledge", "text": "x" * 16 * limit}).encode() + b"\n")
        f.write(json.dumps({"id": "c", "record_type": "knowledge", "text": "after"}).encode() + b"\n")
        f.write(b"z" * 16 * limit)  # and a last line with no newline at all
    tracemalloc.start()
    report = validate_dataset(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert report.documents == 2 and report.problem_count == 2
    assert all(f"longer than {limit:,} bytes" in p for p in report.problems)
    assert [p.split(":")[1] for p in report.problems] == ["2", "4"]  # the lines after a long one keep their numbers
    assert peak < 10 * limit  # a long line is cut as it is read, never held whole (each is 16 MiB)


def test_shipped_examples_validate_and_the_invalid_one_shows_each_error():
    for path in EXAMPLES.glob("*.jsonl"):
        report = validate_dataset(path)
        assert report.ok != (path.name == "invalid_examples.jsonl"), (path, report.problems)
    invalid = validate_dataset(EXAMPLES / "invalid_examples.jsonl")
    assert line_numbers(invalid.problems, EXAMPLES / "invalid_examples.jsonl") == set(range(2, 12))


def _args(**overrides):
    values = {"path": None, "max_problems": 50, "tokenizer": None, "vocab_size": None}
    return argparse.Namespace(**{**values, **overrides})


def test_command_prints_counts_and_token_statistics(capsys):
    assert command.run(_args(path=str(EXAMPLES / "chat.jsonl"), vocab_size=300)) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "chat" in out and "documents: 3" in out
    assert "tokens:" in out and "p95" in out and "byte fallback" in out


def test_command_lists_problems_and_exits_1(mixed_file, capsys):
    assert command.run(_args(path=str(mixed_file), max_problems=3)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{mixed_file}:5: ")
    assert "7 more problems" in out[3] and "(10 problems;" in out[4]


def test_cli_missing_file_is_exit_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", {"validate-dataset": cli.COMMANDS["validate-dataset"]})
    assert cli.main(["validate-dataset", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found" in err


def test_sha256_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_an_empty_path_is_refused_and_a_single_record_is_flagged(tmp_path, capsys):
    """"" is not the default dataset; one valid record validates, with a word that training needs two."""
    assert cli.main(["validate-dataset", ""]) == 2
    assert "the dataset path is empty" in capsys.readouterr().err
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"id": "a", "record_type": "knowledge", "text": "hello there"}) + "\n")
    assert cli.main(["validate-dataset", str(one), "--tokenizer", "CHAR"]) == 0  # as TOKENIZER=CHAR is
    assert "warning: training needs at least 2 records" in capsys.readouterr().out
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    assert cli.main(["validate-dataset", str(bad), "--vocab-size", "abc"]) == 2  # the flag first, then the data
    assert "--vocab-size='abc': not a whole number" in capsys.readouterr().err


@pytest.mark.parametrize("made, kind", [
    (lambda text: text.encode("utf-16"), "UTF-16"),  # what Windows PowerShell 5 writes
    (lambda text: __import__("gzip").compress(text.encode()), "gzip-compressed"),
    (lambda text: __import__("lzma").compress(text.encode()), "xz-compressed"),
    (lambda text: json.dumps([json.loads(x) for x in text.splitlines()], indent=2).encode(), "one JSON array"),
    (lambda text: ("[" + ",".join(text.splitlines()) + "]").encode(), "one JSON array"),
    (lambda text: "".join(json.dumps(json.loads(x), indent=2) + "\n" for x in text.splitlines()).encode(),
     "JSON spread over several lines (pretty-printed)"),  # what `jq .` writes
    (lambda text: "".join(json.loads(x)["text"] + " is a note.\n" for x in text.splitlines()).encode(),
     "plain text, not JSON Lines"),
])
def test_a_file_that_is_not_json_lines_at_all_is_one_problem_saying_what_it_is(tmp_path, capsys, made, kind):
    records = "".join(json.dumps({"id": f"r{i}", "record_type": "memory", "text": f"t {i}"}) + "\n" for i in range(9))
    path = tmp_path / "data.jsonl"
    path.write_bytes(made(records))
    assert command.run(_args(path=str(path), max_problems=50)) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}:1: the file is {kind}") and out[1:] == [f"{path}: invalid (1 problem; 0 valid records)"]


@pytest.mark.parametrize("first", ["# my dataset, exported 2026-11-27", "}"])
def test_a_line_of_text_above_records_is_that_lines_problem_not_a_plain_text_file(tmp_path, first):
    path = tmp_path / "data.jsonl"
    path.write_text(first + "\n\n" + "".join(
        json.dumps({"id": f"r{i}", "record_type": "memory", "text": "t"}) + "\n" for i in range(2)), encoding="utf-8")
    report = validate_dataset(path)
    assert report.documents == 2 and len(report.problems) == 1 and "plain text" not in report.problems[0]


def test_a_damaged_first_record_is_that_lines_problem_only(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('"id": "r0", "record_type": "memory"}\n' + "".join(
        json.dumps({"id": f"r{i}", "record_type": "memory", "text": "t"}) + "\n" for i in range(1, 3)), encoding="utf-8")
    report = validate_dataset(path)
    assert report.documents == 2 and len(report.problems) == 1 and "invalid JSON" in report.problems[0]


def test_a_stray_array_on_line_1_is_that_lines_problem_only(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('["stray", "array"]\n' + "".join(
        json.dumps({"id": f"r{i}", "record_type": "memory", "text": "t"}) + "\n" for i in range(2)), encoding="utf-8")
    report = validate_dataset(path)
    assert report.documents == 2 and report.problems == [f"{path}:1: expected a JSON object, got array"]


def test_files_joined_with_cat_keep_their_byte_order_marks_out_of_the_records(tmp_path):
    part = "\ufeff" + json.dumps({"id": "{}", "record_type": "memory", "text": "t"}) + "\r\n"
    path = tmp_path / "joined.jsonl"
    path.write_text(part.replace("{}", "a") + part.replace("{}", "b"), encoding="utf-8")
    assert [(d.id, d.line) for d in load_documents(path)] == [("a", 1), ("b", 2)]


def test_a_file_name_with_a_newline_keeps_each_problem_on_one_line(tmp_path):
    path = tmp_path / "two\nlines.jsonl"
    path.write_text('{"id": "a"}\n', encoding="utf-8")
    [problem] = validate_dataset(path).problems
    assert "\n" not in problem and problem.endswith(":1: missing required field 'record_type'")
