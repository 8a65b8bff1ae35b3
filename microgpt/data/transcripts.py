"""Bring your own conversations: plain-text `U:` / `A:` transcripts -> `chat` records for training.

A transcript file holds turns, each starting with `U:` (the user) or `A:` (the assistant); a line without a
prefix continues the turn above it (a reply may run over several lines). Every assistant turn becomes one
`chat` record whose input carries up to HISTORY_TURNS earlier exchanges, written with the chat template's own
labels, so the rendered record is exactly what `chat` would show the model before that reply:

    input  = "earlier question\\nAssistant: earlier reply\\nUser: new question"
    render = "User: earlier question\\nAssistant: earlier reply\\nUser: new question\\nAssistant: reply"

A file's name is text from outside too: it may hold a newline, or (on Linux) bytes that are not UTF-8, which
Python keeps as lone surrogates that no UTF-8 file can hold. Problems and record ids show the name through
`one_line`, so each problem stays one line and each id is text: a Latin-1 name "café.txt" gives `caf\\udce9-0001`.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from microgpt.data.dataset import MAX_RECORD_BYTES
from microgpt.data.templates import ASSISTANT_PREFIX, USER_PREFIX
from microgpt.errors import one_line
from microgpt.safe_io import read_capped

HISTORY_TURNS = 2  # earlier (user, assistant) exchanges kept in each record, as the original's helper script
SPEAKERS = {"U:": "user", "A:": "assistant"}
MAX_TRANSCRIPT_BYTES = 64 << 20  # one conversation; a bigger .txt is not a transcript (or not one file's worth)


@dataclass
class Turn:
    speaker: str  # "user" or "assistant"
    text: str
    line: int  # where the turn starts, for error messages


def read_turns(path: Path) -> tuple[list[Turn], list[str]]:
    """The turns of one transcript, and every problem found as `PATH:LINE: message`."""
    turns: list[Turn] = []
    problems: list[str] = []
    where = one_line(str(path))
    try:
        data = read_capped(path, MAX_TRANSCRIPT_BYTES).removeprefix(codecs.BOM_UTF8)  # Notepad starts with a BOM
    except OSError as exc:  # a FIFO, a device, a folder, a dangling link, too big: listed like any other problem
        return [], [f"{where}: cannot read ({exc.strerror or exc})"]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # named by line, counted as below, and by byte within it, both from 1
        before = data[:exc.start].replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        problem = (f"{where}:{len(before)}: not UTF-8 text (byte {len(before[-1]) + 1} of the line is "
                   f"{data[exc.start]:#04x}); save the file as UTF-8")
        return [], [problem]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # not str.splitlines: \f, U+2028 are text
    for number, raw in enumerate(lines, start=1):
        prefix = raw[:2]
        if prefix in SPEAKERS:
            turns.append(Turn(SPEAKERS[prefix], raw[2:].strip(), number))
        elif turns:
            turns[-1].text = f"{turns[-1].text}\n{raw.rstrip()}"
        elif raw.strip():
            problems.append(f"{where}:{number}: text before the first turn (start each turn with 'U:' or 'A:')")
    for previous, turn in zip([None, *turns], turns):
        turn.text = turn.text.strip()
        if not turn.text:
            problems.append(f"{where}:{turn.line}: empty {turn.speaker} turn")
        expected = "user" if previous is None or previous.speaker == "assistant" else "assistant"
        if turn.speaker != expected:
            what = ("two user turns in a row (the first has no reply)" if expected == "assistant" else
                    "an assistant turn with no user turn before it" if previous is None else
                    "two assistant turns in a row (join them into one reply, or put the user's turn between)")
            problems.append(f"{where}:{turn.line}: {what}")
    if turns and turns[-1].speaker == "user":
        problems.append(f"{where}:{turns[-1].line}: the last user turn has no reply")
    if not turns and not problems:
        problems.append(f"{where}: no turns found (start each turn with 'U:' or 'A:')")
    return turns, problems


def chat_records(turns: list[Turn], id_prefix: str) -> Iterator[dict]:
    """One `chat` record per exchange, its input holding up to HISTORY_TURNS earlier exchanges."""
    exchanges = [(turns[i].text, turns[i + 1].text) for i in range(0, len(turns) - 1, 2)]
    for n, (question, reply) in enumerate(exchanges):
        lines = [f"{USER_PREFIX} {user}\n{ASSISTANT_PREFIX} {answer}"
                 for user, answer in exchanges[max(0, n - HISTORY_TURNS):n]]
        text = "\n".join([*lines, f"{USER_PREFIX} {question}"])
        yield {"id": f"{id_prefix}-{n + 1:04d}", "record_type": "chat",
               "input": text.removeprefix(f"{USER_PREFIX} "), "output": reply}


def record_line(record: dict) -> str:
    """A record as the dataset line the import writes (UTF-8 JSON, newline included)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def transcript_files(folder: Path) -> list[Path]:
    """The transcripts in `folder`, sorted by name: its entries ending in .txt, in any case (NOTES.TXT too);
    one that is not a readable file (a FIFO, a folder) is then a listed problem, not skipped unsaid."""
    return sorted(path for path in folder.iterdir() if path.suffix.lower() == ".txt")


def import_transcripts(folder: Path) -> tuple[list[dict], list[str]]:
    """Every `*.txt` transcript in `folder` (sorted by name) -> chat records, plus every problem found: a
    record longer than a dataset line may be (MAX_RECORD_BYTES, its history included) is one, named by the
    line of its user turn, so the import never writes a file that training refuses."""
    records: list[dict] = []
    problems: list[str] = []
    for path in transcript_files(folder):
        turns, found = read_turns(path)
        problems += found
        if found:
            continue
        for n, record in enumerate(chat_records(turns, one_line(path.stem))):
            size = len(record_line(record).encode("utf-8")) - 1
            if size > MAX_RECORD_BYTES:
                problems.append(f"{one_line(str(path))}:{turns[2 * n].line}: this exchange, with up to "
                                f"{HISTORY_TURNS} earlier ones as its history, makes a record of {size:,} bytes, "
                                f"more than a dataset record may be ({MAX_RECORD_BYTES:,}); shorten or split the "
                                "long turns")
            records.append(record)
    return records, problems
