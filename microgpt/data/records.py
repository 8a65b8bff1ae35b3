"""The record schema: which record types exist, what fields each one needs, and how one record is checked.

A dataset line is one JSON object. Typed records carry `id` and `record_type`; a raw Dolly row
(`instruction`, `context`, `response`, `category`), Alpaca row (`instruction`, `input`, `output`) or OpenAI
chat fine-tuning row (`messages` alone) carries neither and is recognised by those fields (an `output` makes
it Alpaca's).
`check_record` returns every problem of one parsed line as a short message that names the field, so a
reader can fix the line without opening this file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from microgpt.errors import shown
from microgpt.safe_io import json_type

# record_type -> the string fields it requires (non-empty). `messages` and `actions` are lists, checked apart.
RECORD_FIELDS: dict[str, tuple[str, ...]] = {
    "knowledge": ("text",),
    "memory": ("text",),
    "qa": ("question", "answer"),
    "chat": ("input", "output"),
    "messages": (),
    "trajectory": ("task", "result"),
    "preference": ("prompt", "chosen", "rejected"),
}
DOLLY, ALPACA = "dolly", "alpaca"  # the raw rows: no id or record_type, known by their fields
RAW_FIELDS: dict[str, tuple[str, str, str]] = {  # (the question, its optional context, the answer)
    DOLLY: ("instruction", "context", "response"),
    ALPACA: ("instruction", "input", "output"),
}
RECORD_TYPES: tuple[str, ...] = (*RECORD_FIELDS, DOLLY, ALPACA)
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant")  # "developer": OpenAI's newer "system"

# json.loads turns the escape "\ud800" into a lone surrogate: a str that is not valid Unicode text.
_SURROGATE = re.compile("[\ud800-\udfff]")


def raw_type(record: dict) -> str | None:
    """ALPACA or DOLLY for a row with no `record_type` but their fields (checked as that kind even when some
    are missing): Alpaca's when it has an `output`, or an `input` and no `response`; "messages" for a row with
    `messages` and neither's fields (OpenAI's chat fine-tuning format); else None."""
    if "record_type" in record:
        return None
    if "output" in record or ("input" in record and "response" not in record):
        return ALPACA
    if any(field in record for field in RAW_FIELDS[DOLLY]):
        return DOLLY
    return "messages" if "messages" in record else None


def record_type_of(record: dict) -> str:
    """The type a valid record is counted and rendered as ("dolly" or "alpaca" for raw rows)."""
    return raw_type(record) or record["record_type"]


def check_record(record: object) -> list[str]:
    """Every schema problem of one parsed JSON line; an empty list means the record is valid."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {json_type(record)}"]
    if raw_type(record):
        return _check_raw(record)
    problems = _present([_string_problem(record, "id")])
    record_type = record.get("record_type")
    type_problem = _string_problem(record, "record_type")
    if type_problem:
        return [*problems, type_problem]
    if record_type not in RECORD_FIELDS:
        known = ", ".join(RECORD_FIELDS)
        return [*problems, f"unknown record_type {shown(record_type)} (expected one of: {known})"]
    problems += _present(_string_problem(record, field) for field in RECORD_FIELDS[record_type])
    if record_type == "messages":
        problems += _check_messages(record)
    if record_type == "trajectory":
        problems += _check_actions(record)
    return problems


def _check_raw(record: dict) -> list[str]:
    """Dolly rows need an instruction and a response, Alpaca rows an instruction and an output; the context
    (Dolly's `context`, Alpaca's `input`) and Dolly's category may be empty, null or absent. The other kind's
    context field, when it holds something, is refused rather than dropped unread. A raw messages row is
    checked as a typed one's messages. An id is optional in all three."""
    optional_id = [_string_problem(record, "id")] if record.get("id") is not None else []  # null as absent
    if raw_type(record) == "messages":
        return _present(optional_id) + _check_messages(record)
    alpaca = raw_type(record) == ALPACA
    _, context, answer = RAW_FIELDS[ALPACA if alpaca else DOLLY]
    other = RAW_FIELDS[DOLLY if alpaca else ALPACA][1]
    checks = [_string_problem(record, "instruction"), _string_problem(record, answer)]
    optional = [field for field in (context, "category") if record.get(field) is not None]
    checks += [_string_problem(record, field, allow_empty=True) for field in optional]
    if record.get(other) not in (None, ""):
        kind, others = ("Alpaca", "Dolly") if alpaca else ("Dolly", "Alpaca")
        checks.append(f"field '{other}' is {others}'s context, but this row is read as {kind}'s (instruction, "
                      f"{context}, {answer}): rename it '{context}', or use {others}'s fields throughout")
    return _present(checks + optional_id)


def _check_messages(record: dict) -> list[str]:
    """`messages` is a non-empty list of {role: system|developer|user|assistant, content: non-empty string}."""
    messages = record.get("messages")
    if messages is None:
        return ["missing required field 'messages'"]
    if not isinstance(messages, list):
        return [f"field 'messages' must be an array, not {json_type(messages)}"]
    if not messages:
        return ["field 'messages' is empty"]
    problems: list[str] = []
    for i, message in enumerate(messages):
        label = f"messages[{i}]"
        if not isinstance(message, dict):
            problems.append(f"field '{label}' must be an object, not {json_type(message)}")
            continue
        role_problem = _string_problem(message, "role", label=f"{label}.role")
        if role_problem:
            problems.append(role_problem)
        elif message["role"] not in ROLES:
            problems.append(
                f"field '{label}.role' is {shown(message['role'])} (expected one of: {', '.join(ROLES)})"
            )
        problems += _present([_string_problem(message, "content", label=f"{label}.content")])
    return problems


def _check_actions(record: dict) -> list[str]:
    """`actions`, when present, is a list of strings; it may be empty, null or absent (as the original allows), and
    the rendered document then has no Actions line."""
    actions = record.get("actions")
    if actions is None:
        return []
    if not isinstance(actions, list):  # {} "" false 0 are not an empty list
        return [f"field 'actions' must be an array of strings, not {json_type(actions)}"]
    return _present(
        _string_problem(record["actions"], i, label=f"actions[{i}]", allow_empty=True)
        for i in range(len(actions))
    )


def _string_problem(
    container: dict | list, key: str | int, label: str | None = None, allow_empty: bool = False
) -> str | None:
    """The problem with one required string field, or None when it is fine."""
    label = label or str(key)
    value = container.get(key) if isinstance(container, dict) else container[key]
    if value is None:
        return f"missing required field '{label}'"
    if not isinstance(value, str):
        return f"field '{label}' must be a string, not {json_type(value)}"
    if not allow_empty and not value.strip():
        return f"field '{label}' is empty"
    if _SURROGATE.search(value):
        return f"field '{label}' contains an unpaired surrogate escape (\\ud800-\\udfff), which is not text"
    return None


def _present(problems: Iterable[str | None]) -> list[str]:
    """Drop the Nones from a sequence of maybe-problems."""
    return [problem for problem in problems if problem]
