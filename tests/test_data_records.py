"""Record schema and templates: each type renders to its documented text, and chatting matches training."""

import json
import re
from pathlib import Path

import pytest

from microgpt.data.records import check_record, record_type_of
from microgpt.data.templates import ASSISTANT_PREFIX, USER_PREFIX, chat_prompt, render_record

RENDERED = [
    ({"record_type": "knowledge", "text": " Attention mixes positions. "}, "Attention mixes positions."),
    ({"record_type": "memory", "text": "The user likes tea."}, "The user likes tea."),
    ({"record_type": "qa", "question": "2+2?", "answer": "4"}, "Question: 2+2?\nAnswer: 4"),
    ({"record_type": "chat", "input": "hi", "output": "hello"}, "User: hi\nAssistant: hello"),
    (
        {
            "record_type": "messages",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
            ],
        },
        "System: Be brief.\nUser: hi\nAssistant: hello",
    ),
    (
        {"record_type": "trajectory", "task": "fix", "actions": ["read", " ", "edit"], "result": "done"},
        "Task: fix\nActions: read | edit\nResult: done",
    ),
    ({"record_type": "trajectory", "task": "wait", "actions": [], "result": "ok"}, "Task: wait\nResult: ok"),
    (
        {"record_type": "preference", "prompt": "p", "chosen": "good", "rejected": "bad"},
        "Prompt: p\nPreferred: good",
    ),
    (
        {
            "instruction": "Summarise.",
            "context": "Some text.",
            "response": "Short.",
            "category": "summarization",
        },
        "User: Summarise.\nContext: Some text.\nAssistant: Short.",
    ),
    (
        {"instruction": "Name a fish.", "context": "", "response": "Tope", "category": "open_qa"},
        "User: Name a fish.\nAssistant: Tope",
    ),
]


@pytest.mark.parametrize(("record", "text"), RENDERED)
def test_each_record_type_renders_to_its_template(record, text):
    if "record_type" in record:
        record = {"id": "x", **record}
    assert check_record(record) == []
    assert render_record(record) == text


def test_chat_prompt_is_the_training_text_up_to_the_reply():
    document = render_record({"id": "c", "record_type": "chat", "input": "hi", "output": "hello"})
    prompt = chat_prompt([], "hi")
    assert prompt.endswith(ASSISTANT_PREFIX) and prompt.startswith(USER_PREFIX)
    assert document == prompt + " hello"


def test_multi_turn_chat_prompt_matches_a_messages_document():
    turns = [("user", "hi"), ("assistant", "hello"), ("user", "how are you?"), ("assistant", "fine")]
    record = {"id": "m", "record_type": "messages", "messages": [{"role": r, "content": c} for r, c in turns]}
    prompt = chat_prompt([("hi", "hello")], "how are you?")
    assert render_record(record) == prompt + " fine"


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ([1, 2], "expected a JSON object, got array"),
        ({"record_type": "memory", "text": "t"}, "missing required field 'id'"),
        ({"id": "a", "text": "t"}, "missing required field 'record_type'"),
        ({"id": "a", "record_type": "qa", "question": "q"}, "missing required field 'answer'"),
        (
            {"id": "a", "record_type": "qa", "question": "q", "answer": None},
            "missing required field 'answer'",
        ),
        ({"id": "a", "record_type": "knowledge", "text": " \n"}, "field 'text' is empty"),
        ({"id": 7, "record_type": "knowledge", "text": "t"}, "field 'id' must be a string, not number"),
        (
            {"id": "a", "record_type": "chat", "input": ["x"], "output": "y"},
            "field 'input' must be a string, not array",
        ),
        ({"id": "a", "record_type": "poem", "text": "t"}, "unknown record_type 'poem'"),
        ({"id": "a", "record_type": "messages", "messages": []}, "field 'messages' is empty"),
        (
            {"id": "a", "record_type": "messages", "messages": {}},
            "field 'messages' must be an array, not object",
        ),
        ({"id": "a", "record_type": "messages", "messages": ["hi"]}, "field 'messages[0]' must be an object"),
        (
            {"id": "a", "record_type": "messages", "messages": [{"role": "bot", "content": "x"}]},
            "'messages[0].role' is 'bot'",
        ),
        (
            {"id": "a", "record_type": "messages", "messages": [{"role": "user"}]},
            "missing required field 'messages[0].content'",
        ),
        (
            {"id": "a", "record_type": "trajectory", "task": "t", "actions": {"a": 1}, "result": "r"},
            "field 'actions' must be an array of strings, not object",
        ),
        (
            {"id": "a", "record_type": "trajectory", "task": "t", "actions": [1], "result": "r"},
            "field 'actions[0]' must be a string",
        ),
        *(({"id": "a", "record_type": "trajectory", "task": "t", "actions": falsy, "result": "r"},
           f"field 'actions' must be an array of strings, not {kind}")  # empty, but not an array: refused
          for falsy, kind in (({}, "object"), ("", "string"), (False, "boolean"), (0, "number"))),

        (
            {"id": "a", "record_type": "preference", "prompt": "p", "chosen": "c"},
            "missing required field 'rejected'",
        ),
        ({"instruction": "i", "context": "c"}, "missing required field 'response'"),
        ({"context": "c", "response": "r"}, "missing required field 'instruction'"),
        ({"instruction": "i", "response": "r", "context": 3}, "field 'context' must be a string, not number"),
        (
            {"id": "a", "record_type": "knowledge", "text": "bad \ud800"},
            "field 'text' contains an unpaired surrogate",
        ),
    ],
)
def test_each_problem_names_its_field(record, expected):
    problems = check_record(record)
    assert any(expected in problem for problem in problems), problems


def test_unknown_fields_are_allowed_and_every_problem_is_reported():
    assert (
        check_record({"id": "a", "record_type": "memory", "text": "t", "tags": ["x"], "source": "me"}) == []
    )
    assert check_record({"instruction": "i", "context": None, "response": "r"}) == []
    assert check_record({"id": None, "instruction": "i", "response": "r"}) == []  # a Dolly id is optional: null too


def test_openai_fine_tuning_rows_of_messages_alone_are_messages_records_and_developer_is_system():
    row = {"messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"}]}
    assert check_record(row) == [] and record_type_of(row) == "messages"
    assert render_record(row) == "System: Be brief.\nUser: Hi\nAssistant: Hello!"
    assert render_record(row) == render_record({"id": "m", "record_type": "messages", **row})  # as typed
    assert check_record({"messages": [{"role": "user", "content": ""}], "id": 7}) == [
        "field 'id' must be a string, not number", "field 'messages[0].content' is empty"]


def test_alpaca_rows_train_their_input_as_context_and_a_misnamed_context_is_refused_not_dropped():
    assert check_record({"instruction": "i", "input": "", "output": "o"}) == []
    assert check_record({"instruction": "i", "output": "o", "input": None, "id": "a1"}) == []
    assert render_record({"instruction": "Translate", "input": "hola", "output": "hello"}) == \
        "User: Translate\nContext: hola\nAssistant: hello"
    assert record_type_of({"instruction": "i", "input": "x"}) == "alpaca"  # and is missing its output:
    assert check_record({"instruction": "i", "input": "x"}) == ["missing required field 'output'"]
    renamed = check_record({"instruction": "Translate", "input": "hola", "response": "hello"})  # half-converted
    assert len(renamed) == 1 and "field 'input' is Alpaca's context" in renamed[0] and "rename it 'context'" in renamed[0]
    mixed = check_record({"instruction": "i", "context": "c", "output": "o"})
    assert len(mixed) == 1 and "field 'context' is Dolly's context" in mixed[0] and "rename it 'input'" in mixed[0]
    assert check_record({"instruction": "i", "context": "c", "response": "r", "input": ""}) == []  # nothing lost


def test_a_long_wrong_value_is_cut_short_in_its_problem():
    problems = check_record({"id": "a", "record_type": "w" * 10_000, "text": "t"})
    assert len(problems) == 1 and "unknown record_type 'www" in problems[0] and len(problems[0]) < 300
    assert len(check_record({"record_type": "qa", "question": 1})) == 3  # id, question, answer


def test_every_example_in_the_datasets_readme_renders_as_shown():
    readme = (Path(__file__).resolve().parent.parent / "datasets" / "README.md").read_text()
    pairs = re.findall(r"```json\n(.*?)\n```\s*```text\n(.*?)\n```", readme, flags=re.DOTALL)
    assert len(pairs) == 11  # one per record type, two for Dolly, one for Alpaca, one of messages alone
    for record_json, rendered in pairs:
        record = json.loads(record_json)
        assert check_record(record) == []
        assert render_record(record) == rendered


def test_a_trajectory_without_actions_is_valid_and_renders_without_an_actions_line() -> None:
    record = {"id": "t", "record_type": "trajectory", "task": "Water the plants", "result": "Done by noon."}
    assert check_record(record) == []
    assert render_record(record) == "Task: Water the plants\nResult: Done by noon."
