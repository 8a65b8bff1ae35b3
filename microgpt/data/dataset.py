"""Reading a JSONL dataset: one pass, line by line, every problem reported as `PATH:LINE: message`.

The file is read in binary mode and each line decoded here, so a stray invalid UTF-8 byte spoils one line,
not the whole file; memory holds one line plus the set of ids seen, never the file. A line longer than
MAX_RECORD_BYTES is a problem on its own, never read whole (a file with no newline at all is not read into
memory, nor tokenized for minutes). A UTF-8 byte-order mark (on line 1, or on any line of files joined with
`cat`), CRLF endings and blank lines are accepted; a file that is not JSON Lines at all (UTF-16, compressed, one
JSON array) is one problem saying so, not a problem on every line. Line numbers count every physical line,
blank or not, so they match what an editor shows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from microgpt.data.records import RECORD_TYPES, check_record, record_type_of
from microgpt.data.templates import render_record
from microgpt.errors import DatasetError, counted, one_line, shown
from microgpt.safe_io import json_value_problem, open_regular, unique_keys

BOM = b"\xef\xbb\xbf"
NOT_JSONL = ((b"\xff\xfe", "UTF-16 (or UTF-32) text, not UTF-8: save it as UTF-8"),
             (b"\xfe\xff", "UTF-16 text, not UTF-8: save it as UTF-8"),
             (b"\x1f\x8b", "gzip-compressed: decompress it (gunzip) and give the .jsonl"),
             (b"\xfd7zXZ\x00", "xz-compressed: decompress it (unxz) and give the .jsonl"),
             (b"BZh", "bzip2-compressed: decompress it (bunzip2) and give the .jsonl"),
             (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it (unzstd) and give the .jsonl"),
             (b"PK\x03\x04", "a zip archive: extract the .jsonl from it"))  # what such a file starts with
JSON_ARRAY = "one JSON array, not JSON Lines: write one JSON object per line"
PRETTY_JSON = ("JSON spread over several lines (pretty-printed), not JSON Lines: write each record on one line "
               "(`jq -c . FILE` does)")
PLAIN_TEXT = ('plain text, not JSON Lines: make each line a JSON record, such as {"id": "k1", "record_type": '
              '"knowledge", "text": "..."} (see datasets/README.md)')
MAX_RECORD_BYTES = 8 << 20  # 8 MiB: a long novel as one record fits; a line past it is a mistake (a file with no
# newlines), and tokenizing it would take minutes and gigabytes


@dataclass(frozen=True)
class Document:
    """One valid record rendered to its training text; `line` is where it sits in the file."""

    id: str
    record_type: str
    text: str
    line: int


@dataclass
class ValidationReport:
    """What one pass over a dataset found: counts of the good lines, and the first problems of the bad.

    There is one problem per bad line, listing everything wrong with it, so the cap counts lines.
    """

    path: str
    documents: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def add_problem(self, line: int | None, messages: list[str], max_problems: int) -> None:
        """Count one bad line; keep the first `max_problems` as `PATH:LINE: message; message`."""
        where = one_line(self.path) if line is None else f"{one_line(self.path)}:{line}"
        if len(self.problems) < max_problems:
            self.problems.append(f"{where}: {'; '.join(messages)}")
        self.problem_count += 1


def iter_dataset(path: str | Path) -> Iterator[tuple[int, Document | None, list[str]]]:
    """Yield (line number, document or None, problems) for every non-blank line, streaming.

    Problems are plain messages without the `PATH:LINE:` prefix. A duplicate id is reported on its second
    use, naming the line of the first. A raw row without an id gets "dolly-LINE" or "alpaca-LINE"; these
    synthetic ids are unique by construction and are not entered in the duplicate check.
    """
    first_use: dict[str, int] = {}
    lines, ahead = itertools.tee(_open_lines(path))
    for number, raw in enumerate(lines, start=1):
        raw = raw.removeprefix(BOM).rstrip(b"\r\n")
        if number == 1 and (kind := _not_json_lines(raw)) and not (kind == PLAIN_TEXT and _record_follows(ahead)):
            yield number, None, [f"the file is {kind}"]
            return
        ahead = None  # looked at once, for line 1: kept, it would hold every line read since
        if len(raw) > MAX_RECORD_BYTES:
            yield number, None, [f"the record is longer than {MAX_RECORD_BYTES:,} bytes; split it into smaller records"]
            continue
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, None, [f"invalid UTF-8 (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})"]
            continue
        try:
            record = json.loads(text, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as exc:
            lone_cr = exc.msg == "Extra data" and "\r" in text[:exc.pos]  # JSON reads a lone \r as a space
            hint = "; its records end in a lone \\r (old Mac line ends): save it with \\n line ends" if lone_cr else ""
            yield number, None, [f"invalid JSON: {exc.msg} (column {exc.colno}){hint}"]
            continue
        except RecursionError as exc:  # arrays nested 10000 deep
            yield number, None, [f"invalid JSON: {exc}"]
            continue
        except ValueError as exc:  # a 5000-digit number, a key twice
            yield number, None, [f"invalid JSON: {json_value_problem(exc)}"]
            continue
        problems = check_record(record)
        record_id = _explicit_id(record)
        if record_id in first_use:
            problems.append(f"duplicate id {shown(record_id)} (first used on line {first_use[record_id]})")
        elif record_id is not None:
            first_use[record_id] = number
        if problems:
            yield number, None, problems
            continue
        record_type = record_type_of(record)
        yield number, Document(record_id or f"{record_type}-{number}", record_type, render_record(record), number), []


MAX_PROBLEMS = 50  # problems a report lists before it only counts the rest


def validate_dataset(path: str | Path, max_problems: int = MAX_PROBLEMS) -> ValidationReport:
    """Check every line of a dataset; the report counts documents per type and keeps the first problems."""
    report = ValidationReport(str(path))
    for _ in _scan(path, report, max_problems):
        pass
    return report


def load_documents(path: str | Path) -> list[Document]:
    """All documents of a valid dataset; an invalid, missing or empty one raises DatasetError."""
    report = ValidationReport(str(path))
    documents = list(_scan(path, report, max_problems=MAX_PROBLEMS))
    if not report.ok:
        raise DatasetError(
            f"{report.problems[0]} ({counted(report.problem_count, 'problem')}; "
            f"run `python -m microgpt validate-dataset {path}`)",
            problems=report.problems,
        )
    return documents


def iter_documents(path: str | Path) -> Iterator[Document]:
    """Just the valid documents, streaming: for a second pass over a file already validated."""
    for _, document, _ in iter_dataset(path):
        if document is not None:
            yield document


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open_regular(path) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _scan(path: str | Path, report: ValidationReport, max_problems: int) -> Iterator[Document]:
    """One pass that fills `report` and yields the valid documents."""
    seen_any = False
    for number, document, problems in iter_dataset(path):
        seen_any = True
        if document is None:
            report.add_problem(number, problems, max_problems)
            continue
        report.documents += 1
        report.counts[document.record_type] = report.counts.get(document.record_type, 0) + 1
        yield document
    if not seen_any:
        types = ", ".join(RECORD_TYPES)
        report.add_problem(None, [f"the file holds no records; add JSONL lines ({types})"], max_problems)


def _not_json_lines(first: bytes) -> str | None:
    """What a file whose first line is `first` is instead of JSON Lines (UTF-16, compressed, one JSON array of
    records, pretty-printed JSON, plain text), or None. A line 1 that is an array on its own (of strings, say)
    is only that line's problem, and so is one that looks like a damaged record (a brace, a "key": in it)."""
    head = first.strip()
    kind = next((what for start, what in NOT_JSONL if head.startswith(start)), None)
    if kind:
        return kind
    if head == b"{":
        return PRETTY_JSON
    if head and b"{" not in head and b"[" not in head and b'":' not in head:
        try:
            json.loads(head)
        except (ValueError, RecursionError):
            return PLAIN_TEXT
        return None  # a number or a string alone: that line's problem
    if not head.startswith(b"["):
        return None
    try:
        value = json.loads(head)
    except (ValueError, RecursionError):  # an array that goes on past this line: a pretty-printed file
        return JSON_ARRAY
    return JSON_ARRAY if isinstance(value, list) and value and all(isinstance(v, dict) for v in value) else None


def _record_follows(lines: Iterator[bytes], within: int = 5) -> bool:
    """Whether one of the first few non-blank lines after line 1 is a JSON object: then a line 1 of text (a
    "# my notes" heading) is that line's problem, not a sign that the whole file is plain text."""
    rest = [line.strip() for line in itertools.islice(lines, 1, 1 + 4 * within)]
    return any(line.startswith(b"{") for line in [line for line in rest if line][:within])


def _explicit_id(record: object) -> str | None:
    """The record's own id when it has a usable one, even if other fields are wrong, so duplicates are
    found in the same run as every other problem."""
    if isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"].strip():
        return record["id"]
    return None


def _open_lines(path: str | Path) -> Iterator[bytes]:
    """The file's raw lines, or a one-line DatasetError when it cannot be opened."""
    try:
        with open_regular(path) as f:  # a FIFO or device is refused at once instead of blocking
            while line := f.readline(MAX_RECORD_BYTES + 2):  # room for CRLF: a longer one is cut here
                yield line
                if len(line) > MAX_RECORD_BYTES and not line.endswith(b"\n"):  # cut: skip the rest of it
                    while (rest := f.readline(1 << 20)) and not rest.endswith(b"\n"):
                        pass
    except FileNotFoundError:
        raise DatasetError(
            f"dataset {path} not found{'' if Path(path).is_absolute() else f' (relative to {Path.cwd()})'}; give the "
            "path of a .jsonl file (datasets/README.md)"
        ) from None
    except IsADirectoryError:
        raise DatasetError(f"dataset {path} is a directory; pass the path of a .jsonl file") from None
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror}") from None
