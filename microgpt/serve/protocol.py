"""The OpenAI-style request and response shapes: parsing a JSON body into a checked request, and building
the JSON that the official clients expect back. No web framework in here: just dicts in, dicts out.

Every problem with a request becomes a `RequestError` naming the field (`param`), turned into
{"error": {"message", "type", "param", "code"}} with status 400 by the app.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from microgpt.config import parse_sampling_value, sampling_from_mapping
from microgpt.data.records import ROLES
from microgpt.errors import ConfigError, clipped, shown
from microgpt.nn import SamplingSettings

MAX_STOPS = 4  # as the OpenAI API
# Fields the OpenAI clients may send that change nothing here; accepted when null or their neutral value (a
# number equal to it for a number, the value itself otherwise: `"n": true` is not `"n": 1`, `"logprobs": 0` not false).
NEUTRAL = {"n": 1, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": False, "logit_bias": {},
           "echo": False, "best_of": 1, "suffix": None, "top_logprobs": 0, "response_format": {"type": "text"},
           "parallel_tool_calls": None, "tools": [], "tool_choice": "none", "service_tier": None, "store": False,
           "metadata": {}}
OTHER_FIELDS = ("user", "model", "stream_options")  # the model is any string; stream_options needs "stream": true
# A message's own fields: "name" (a participant's name) is taken and unused; what a client's own reply object
# carries back into the history is accepted when null or empty, as the NEUTRAL fields are
MESSAGE_FIELDS = ("role", "content", "name")
MESSAGE_NEUTRAL = {"tool_calls": [], "function_call": None, "tool_call_id": None, "refusal": None, "audio": None,
                   "annotations": []}
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "seed",
                   "repetition_penalty", "min_tokens", "stop", "stream")


class RequestError(ValueError):
    """A bad request: the message, and the field it is about (None when it is the whole body)."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.status, self.kind, self.code = param, status, kind, code

    def body(self) -> dict[str, Any]:
        return error_body(str(self), self.kind, self.param, self.code)


MAX_PARAM = 120  # characters of a field's name an error names; a longer one is cut in the middle


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error object: what went wrong, its type, the request field it concerns (a field name a client
    made 100,000 characters long is cut short, as values in messages are) and a code."""
    return {"error": {"message": message, "type": kind, "param": param if param is None or len(param) <= MAX_PARAM else clipped(param, MAX_PARAM),
                      "code": code}}


@dataclass
class Request:
    """A checked request: what to continue (messages or a prompt) and how."""

    messages: list[tuple[str, str]] | None
    prompt: str | None
    settings: SamplingSettings
    stops: tuple[str, ...]
    stream: bool
    include_usage: bool


# OpenAI request field -> SamplingSettings field; values are range-checked by the sampling knobs' own limits
SAMPLING_NAMES = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "max_tokens": "max_new_tokens",
                  "max_completion_tokens": "max_new_tokens",  # the chat API's newer name for max_tokens
                  "min_tokens": "min_new_tokens", "repetition_penalty": "repetition_penalty", "seed": "seed"}
INTEGERS = {"top_k", "max_tokens", "max_completion_tokens", "min_tokens", "seed"}


def _is_neutral(value: Any, neutral: Any) -> bool:
    """Whether a NEUTRAL field's value is null or its neutral one: JSON's true is not 1, nor false 0."""
    if value is None or value is neutral:
        return True
    if isinstance(value, bool) or isinstance(neutral, bool):
        return False
    if isinstance(neutral, (int, float)):
        return isinstance(value, (int, float)) and value == neutral
    return value == neutral  # a string, list or object: the same one


def _sampling(body: dict, defaults: SamplingSettings) -> SamplingSettings:
    """The request's sampling fields over the server's defaults: JSON types checked here, ranges by the knobs."""
    values = {}
    for name, field_name in SAMPLING_NAMES.items():
        value = body.get(name)
        if value is None:
            continue
        integer = name in INTEGERS
        if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
            raise RequestError(f"'{name}' must be {'an integer' if integer else 'a number'}, not {shown(value)}", name)
        if isinstance(value, float) and not math.isfinite(value):  # JSON's NaN and Infinity mean no setting
            raise RequestError(f"'{name}' must be a finite number, not {shown(value)}", name)
        if values.get(field_name, value) != value:
            raise RequestError(f"'{name}' disagrees with 'max_tokens': send one of them", name)
        values[field_name] = value
    for name, field_name in SAMPLING_NAMES.items():  # one field at a time, each error naming the server's default
        if body.get(name) is not None:
            try:
                parse_sampling_value(field_name, values[field_name], name, getattr(defaults, field_name))
            except ConfigError as exc:
                raise RequestError(str(exc), name) from None
    low = values.get("min_new_tokens", defaults.min_new_tokens)
    high = values.get("max_new_tokens", defaults.max_new_tokens)
    if low > high:  # each fine alone, wrong together; a limit the request did not send is the server's default
        most = "max_completion_tokens" if body.get("max_tokens") is None else "max_tokens"  # the name sent
        if "min_new_tokens" not in values:
            raise RequestError(f"'{most}' ({high}) must be at least the server's default min_tokens ({low})", most)
        limit = f"'{most}' ({high})" if "max_new_tokens" in values else f"the server's default max_tokens ({high})"
        raise RequestError(f"'min_tokens' ({low}) must not exceed {limit}", "min_tokens")
    return sampling_from_mapping(values, defaults)


def _stops(body: dict) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a non-empty string or a list of non-empty strings", "stop")
    if len(stops) > MAX_STOPS:
        raise RequestError(f"'stop' may hold at most {MAX_STOPS} strings", "stop")
    return tuple(stops)


def _messages(body: dict) -> list[tuple[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"'{where}' must be an object with 'role' and 'content'", where)
        if m.get("role") not in ROLES:
            raise RequestError(f"'{where}.role' must be one of {', '.join(ROLES)}, not {shown(m.get('role'))}",
                               f"{where}.role")
        _check_message_fields(m, where)
        content = m.get("content")
        if isinstance(content, list):  # the newer "content parts" form: text parts only, joined
            content = "".join(_text_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)) or None
        if m["role"] == "assistant" and content is None:  # a model may have said nothing (OpenAI allows it)
            content = ""
        if not isinstance(content, str) or (m["role"] != "assistant" and not content.strip()):
            raise RequestError(f"'{where}.content' must be a {'' if m['role'] == 'assistant' else 'non-empty '}"
                               "string", f"{where}.content")
        out.append(("system" if m["role"] == "developer" else m["role"], content))
    if out[-1][0] != "user":
        raise RequestError("the last message must come from the user", f"messages[{len(out) - 1}].role")
    return out


def _check_message_fields(message: dict, where: str) -> None:
    """A message holds only MESSAGE_FIELDS, and MESSAGE_NEUTRAL ones at their neutral value: nothing a client
    sends is dropped unread (a tool call, say)."""
    for key, value in message.items():
        if key in MESSAGE_NEUTRAL and not _is_neutral(value, MESSAGE_NEUTRAL[key]):
            raise RequestError(f"'{where}.{key}' is not supported: this model reads text turns only", f"{where}.{key}")
        if key not in MESSAGE_FIELDS and key not in MESSAGE_NEUTRAL:
            raise RequestError(f"unknown field {shown(key)} in '{where}' (a message has role, content and name)",
                               f"{where}.{key}")
    if not isinstance(message.get("name", ""), str):
        raise RequestError(f"'{where}.name' must be a string", f"{where}.name")


def _text_part(part: Any, where: str) -> str:
    """The text of one content part, which must be {"type": "text", "text": ...}: an image or a part of a
    misspelled type is refused, not dropped."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}:
        return part["text"]
    why = f"{shown(kind)} parts are not supported: this model reads text" if isinstance(kind, str) and kind != "text" \
        else 'it must be {"type": "text", "text": "..."}'
    raise RequestError(f"'{where}' is not a text part: {why}", where)


def parse_request(body: Any, defaults: SamplingSettings, chat: bool) -> Request:
    """A decoded JSON body -> a checked Request; RequestError for anything wrong, naming the field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    known = {"messages" if chat else "prompt", *SAMPLING_FIELDS, *NEUTRAL, *OTHER_FIELDS}
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(f"unknown field {shown(unknown[0])}", unknown[0])
    for name, neutral in NEUTRAL.items():
        if not _is_neutral(body.get(name), neutral):
            raise RequestError(f"'{name}' is not supported (leave it out or set it to {json.dumps(neutral)})", name)
    if not isinstance(body.get("stream", False), bool):
        raise RequestError("'stream' must be true or false", "stream")
    if not isinstance(body.get("model", ""), str):
        raise RequestError("'model' must be a string (any name: this server has one model)", "model")
    if not isinstance(body.get("user", ""), str):
        raise RequestError("'user' must be a string (an end user's id)", "user")
    options = {} if body.get("stream_options") is None else body["stream_options"]
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool) \
            or set(options) - {"include_usage"}:
        raise RequestError("'stream_options' must be an object whose one field, 'include_usage', is true or false",
                           "stream_options")
    if body.get("stream_options") is not None and not body.get("stream"):  # as OpenAI: no stream, no options
        raise RequestError("'stream_options' is only allowed with \"stream\": true", "stream_options")
    settings = _sampling(body, defaults)
    if chat:
        messages, prompt = _messages(body), None
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str) or not prompt:
            raise RequestError("'prompt' must be a non-empty string", "prompt")
        messages = None
    return Request(messages, prompt, settings, _stops(body), body.get("stream", False),
                   options.get("include_usage", False))


# ----- responses -------------------------------------------------------------------------------------------
def new_id(prefix: str) -> str:
    """A reply's id, as OpenAI's: the object kind's prefix and random hex ("chatcmpl-3f9a...")."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The token counts a reply reports."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


@dataclass(frozen=True)
class Reply:
    """What every body of one answer repeats: chat or text, its id, the model, and one creation time (all the
    chunks of a stream carry the same, as OpenAI's do)."""

    chat: bool
    id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))

    def head(self, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def completion_body(reply: Reply, text: str, finish: str, use: dict) -> dict[str, Any]:
    """The whole (non-streamed) answer."""
    if reply.chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                  "logprobs": None}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {**reply.head(chunk=False), "choices": [choice], "usage": use}


def chunk_body(reply: Reply, text: str | None, finish: str | None, first: bool = False) -> dict[str, Any]:
    """One server-sent event's JSON while streaming."""
    if reply.chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return {**reply.head(chunk=True), "choices": [choice]}


def usage_chunk(reply: Reply, use: dict) -> dict[str, Any]:
    """The last event of a stream that asked for usage (`stream_options.include_usage`): no choices, the counts."""
    return {**reply.head(chunk=True), "choices": [], "usage": use}
