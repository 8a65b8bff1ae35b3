"""`microgpt data import-transcripts` attacked: special files among the transcripts, BOMs, odd line breaks,
huge files, file names that are not UTF-8 or hold a newline, text that is not UTF-8, and an OUT that is an input, a folder or a FIFO; and the atomic writer that must never replace a
device or FIFO by rename (as root, that would have replaced /dev/full itself).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgpt.__main__ import main
from microgpt.atomic import atomic_write_bytes
from microgpt.data import transcripts
from microgpt.data.transcripts import read_turns

fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("U: hi\nA: hello\n", encoding="utf-8")
    return tmp_path / "in"


def _problems(capsys: pytest.CaptureFixture, argv: list[str]) -> list[str]:
    assert main(argv) == 1
    return capsys.readouterr().err.strip().splitlines()


@fifo
def test_a_fifo_or_a_device_among_the_transcripts_is_a_listed_problem_not_a_hang(folder: Path, capsys) -> None:
    os.mkfifo(folder / "pipe.txt")
    (folder / "zero.txt").symlink_to("/dev/zero")
    (folder / "gone.txt").symlink_to(folder / "nowhere")
    (folder / "dir.txt").mkdir()
    errors = _problems(capsys, ["data", "import-transcripts", str(folder), str(folder.parent / "out.jsonl")])
    for name in ("pipe.txt", "zero.txt", "gone.txt", "dir.txt"):
        assert any(line.startswith(f"{folder / name}: cannot read") for line in errors), errors
    assert not (folder.parent / "out.jsonl").exists()


def test_a_huge_transcript_is_a_listed_problem(folder: Path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcripts, "MAX_TRANSCRIPT_BYTES", 1000)
    (folder / "big.txt").write_text("U: " + "x" * 2000 + "\nA: y\n", encoding="utf-8")
    errors = _problems(capsys, ["data", "import-transcripts", str(folder), str(folder.parent / "out.jsonl")])
    assert any("big.txt: cannot read" in line and "limit" in line for line in errors)


def test_a_bom_and_windows_or_old_mac_line_ends_are_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfU: hi\r\nA: one\rtwo\r\n")
    turns, problems = read_turns(path)
    assert problems == [] and [(t.speaker, t.text) for t in turns] == [("user", "hi"), ("assistant", "one\ntwo")]


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="these file systems only take UTF-8 names")
def test_a_file_name_that_is_not_utf8_gets_an_escaped_id(folder: Path, capsys) -> None:
    with open(os.path.join(os.fsencode(folder), b"caf\xe9.txt"), "wb") as handle:
        handle.write(b"U: hi\nA: yo\n")
    out = folder.parent / "out.jsonl"
    assert main(["data", "import-transcripts", str(folder), str(out)]) == 0
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert ids == ["a-0001", "caf\\udce9-0001"]  # the byte 0xe9 that is no UTF-8, written as Python escapes it


def test_a_file_name_with_a_newline_is_one_line_per_problem(folder: Path, capsys) -> None:
    (folder / "two\nlines.txt").write_text("A: a reply to nothing\nU: hi\n", encoding="utf-8")
    errors = _problems(capsys, ["data", "import-transcripts", str(folder), str(folder.parent / "out.jsonl")])
    assert errors[:2] == [f"{folder}/two\\nlines.txt:1: an assistant turn with no user turn before it",
                          f"{folder}/two\\nlines.txt:2: the last user turn has no reply"]


@pytest.mark.parametrize(("data", "where"), [
    (b"U: hi\nA: ok\nU: caf\xe9\nA: yes\n", "3: not UTF-8 text (byte 7 of the line is 0xe9)"),
    (b"\xef\xbb\xbfU: \xff\r\nA: yes\r\n", "1: not UTF-8 text (byte 4 of the line is 0xff)"),  # after the BOM
    (b"U: hi\rA: y\xc3\r\n", "2: not UTF-8 text (byte 5 of the line is 0xc3)"),  # \r alone ends a line too
])
def test_text_that_is_not_utf8_is_a_problem_on_its_line(tmp_path: Path, data: bytes, where: str) -> None:
    path = tmp_path / "t.txt"
    path.write_bytes(data)
    assert read_turns(path) == ([], [f"{path}:{where}; save the file as UTF-8"])


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"), max_size=30))
def test_text_within_a_turn_is_kept_as_written(tmp_path_factory: pytest.TempPathFactory, middle: str) -> None:
    path = tmp_path_factory.mktemp("t") / "t.txt"
    path.write_text(f"U: q\nA: <{middle}>\n", encoding="utf-8")  # form feeds, U+2028 and NUL are text, not lines
    turns, problems = read_turns(path)
    assert problems == [] and turns[1].text == f"<{middle}>".strip()


def test_out_that_is_one_of_the_transcripts_is_refused_and_the_input_kept(folder: Path, capsys) -> None:
    before = (folder / "a.txt").read_bytes()
    for out in (folder / "a.txt", folder / ".." / folder.name / "a.txt"):
        assert main(["data", "import-transcripts", str(folder), str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "would destroy" in err
    assert (folder / "a.txt").read_bytes() == before


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_out_that_is_a_folder_or_a_fifo_is_one_line(folder: Path, capsys, kind: str) -> None:
    out = folder.parent / "out"
    if kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("FIFOs are POSIX")
        os.mkfifo(out)
    else:
        out.mkdir()
    assert main(["data", "import-transcripts", str(folder), str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "OUT.jsonl" in err
    assert out.is_dir() if kind == "folder" else out.is_fifo()


@fifo
def test_the_atomic_writer_never_replaces_a_fifo_or_a_folder(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "dir").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "pipe")
    for name in ("pipe", "dir", "link"):
        with pytest.raises(OSError, match="never replaced"):
            atomic_write_bytes(tmp_path / name, b"data")
    assert (tmp_path / "pipe").is_fifo() and (tmp_path / "dir").is_dir() and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "link", "pipe"]  # no temp file left
