"""The one place that turns records into text: training documents and the chat prompt share these templates.

Every template is a few `Label: value` lines joined by "\\n", the format of the original Go project:

    chat        User: {input}\\nAssistant: {output}
    qa          Question: {question}\\nAnswer: {answer}
    messages    one `System:` / `User:` / `Assistant:` line per turn
    trajectory  Task: {task}\\nActions: {a | b | c}\\nResult: {result}   (no Actions line when there are none or `actions` is absent)
    preference  Prompt: {prompt}\\nPreferred: {chosen}                   (`rejected` is never trained on)
    dolly       User: {instruction}\\nContext: {context}\\nAssistant: {response}   (Context only when non-empty)
    alpaca      the same, with {input} as the context and {output} as the response
    knowledge, memory   the text itself

Values are stripped of surrounding whitespace, as the original did. `chat_prompt` ends with "Assistant:"
and no space: it is exactly what a chat document holds before the reply, so the model continues the way it
was trained. The reply it writes therefore starts with a space (cl100k attaches it to the first word).
"""

from __future__ import annotations

from microgpt.data.records import ALPACA, DOLLY, RAW_FIELDS, record_type_of

USER_PREFIX = "User:"
ASSISTANT_PREFIX = "Assistant:"
SYSTEM_PREFIX = "System:"
QUESTION_PREFIX, PROMPT_PREFIX, TASK_PREFIX, CONTEXT_PREFIX = "Question:", "Prompt:", "Task:", "Context:"
ROLE_PREFIX = {"system": SYSTEM_PREFIX, "developer": SYSTEM_PREFIX, "user": USER_PREFIX, "assistant": ASSISTANT_PREFIX}
# the labels that open a new part of a document: a reply ends where the model starts a line with one
OPENING_LABELS = (USER_PREFIX, ASSISTANT_PREFIX, SYSTEM_PREFIX, QUESTION_PREFIX, PROMPT_PREFIX, TASK_PREFIX,
                  CONTEXT_PREFIX)


def line(prefix: str, value: str) -> str:
    """One template line: `Prefix: value`, the value stripped."""
    return f"{prefix} {value.strip()}"


def render_record(record: dict) -> str:
    """A validated record (see records.check_record) -> the text of its training document."""
    kind = record_type_of(record)
    if kind in ("knowledge", "memory"):
        return record["text"].strip()
    if kind == "qa":
        return "\n".join([line(QUESTION_PREFIX, record["question"]), line("Answer:", record["answer"])])
    if kind == "chat":
        return "\n".join([line(USER_PREFIX, record["input"]), line(ASSISTANT_PREFIX, record["output"])])
    if kind == "messages":
        return "\n".join(line(ROLE_PREFIX[m["role"]], m["content"]) for m in record["messages"])
    if kind == "trajectory":
        actions = [a.strip() for a in (record.get("actions") or []) if a.strip()]
        lines = [line(TASK_PREFIX, record["task"])]
        if actions:
            lines.append(line("Actions:", " | ".join(actions)))
        return "\n".join([*lines, line("Result:", record["result"])])
    if kind == "preference":
        return "\n".join([line(PROMPT_PREFIX, record["prompt"]), line("Preferred:", record["chosen"])])
    if kind in (DOLLY, ALPACA):
        question, context, answer = RAW_FIELDS[kind]
        lines = [line(USER_PREFIX, record[question])]
        if (record.get(context) or "").strip():
            lines.append(line(CONTEXT_PREFIX, record[context]))
        return "\n".join([*lines, line(ASSISTANT_PREFIX, record[answer])])
    raise ValueError(f"cannot render record_type {kind!r}")


def chat_prompt(history: list[tuple[str, str]], user_message: str) -> str:
    """Earlier (user, assistant) turns plus the new message -> the text the model continues.

    The result is the prefix of the matching `chat` (or `messages`) document up to its reply:
    chat_prompt([], "hi") == "User: hi\\nAssistant:" and the document is "User: hi\\nAssistant: hello".
    """
    turns = [turn for user, reply in history for turn in (("user", user), ("assistant", reply))]
    return messages_prompt([*turns, ("user", user_message)])


def messages_prompt(messages: list[tuple[str, str]]) -> str:
    """(role, content) turns, the last one the user's -> the text the model continues: the `messages`
    document of those turns followed by "Assistant:", as `chat_prompt` does for plain user/assistant pairs."""
    return "\n".join([*(line(ROLE_PREFIX[role], content) for role, content in messages), ASSISTANT_PREFIX])
