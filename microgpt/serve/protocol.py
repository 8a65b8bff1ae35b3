"""The OpenAI-style request and response shapes: parsing a JSON body into a checked request, and building
the JSON that the official clients expect back. No web framework in here: just dicts in, dicts out.

Every problem with a request becomes a `RequestError` naming the field (`param`), turned into
{"error": {"message", "type", "param", "code"}} with status 400 by the app.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from microgpt.config import sampling_from_mapping
from microgpt.errors import ConfigError, shown
from microgpt.nn import SamplingSettings

MAX_STOPS = 4  # as the OpenAI API
ROLES = ("system", "developer", "user", "assistant")  # "developer": OpenAI's newer name for "system"
# Fields the OpenAI clients may send that change nothing here; accepted when they hold their neutral value
# (a number equal to it for a number, the value itself otherwise: `"n": true` is not `"n": 1`).
NEUTRAL = {"n": 1, "presence_penalty": 0, "frequency_penalty": 0, "logprobs": None, "logit_bias": None,
           "echo": False, "best_of": 1, "suffix": None, "top_logprobs": None, "response_format": None,
           "parallel_tool_calls": None, "tools": None, "tool_choice": None, "service_tier": None,
           "store": None, "metadata": None}
IGNORED = ("user", "stream_options", "model")  # never refused for their value (the last two checked for type)
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


def error_body(message: str, kind: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


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
    """Whether a NEUTRAL field's value is its neutral one: JSON's true is not 1, nor false 0."""
    if value is None or isinstance(neutral, bool) or neutral is None:
        return value is None or value is neutral
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == neutral


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
        if values.get(field_name, value) != value:
            raise RequestError(f"'{name}' disagrees with 'max_tokens': send one of them", name)
        values[field_name] = value
    alone = replace(defaults, min_new_tokens=0, max_new_tokens=2**62)  # no min/max clash while checking one
    for name, field_name in SAMPLING_NAMES.items():  # one field at a time, so the error names its field
        if body.get(name) is not None:
            try:
                sampling_from_mapping({field_name: values[field_name]}, alone)
            except ConfigError as exc:
                raise RequestError(str(exc).replace(field_name, name, 1), name) from None
    try:
        return sampling_from_mapping(values, defaults)
    except ConfigError as exc:  # fields fine alone, wrong together (min_tokens > max_tokens)
        most = "max_completion_tokens" if body.get("max_tokens") is None else "max_tokens"  # the name sent
        raise RequestError(str(exc).replace("min_new_tokens", "min_tokens").replace("max_new_tokens", most),
                           "min_tokens") from None


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
        content = m.get("content")
        if isinstance(content, list):  # the newer "content parts" form: keep the text parts
            parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            content = "".join(p for p in parts if isinstance(p, str)) if parts else None
        if m["role"] == "assistant" and content is None:  # a model may have said nothing (OpenAI allows it)
            content = ""
        if not isinstance(content, str) or (m["role"] != "assistant" and not content.strip()):
            raise RequestError(f"'{where}.content' must be a {'' if m['role'] == 'assistant' else 'non-empty '}"
                               "string", f"{where}.content")
        out.append(("system" if m["role"] == "developer" else m["role"], content))
    if out[-1][0] != "user":
        raise RequestError("the last message must come from the user", f"messages[{len(out) - 1}].role")
    return out


def parse_request(body: Any, defaults: SamplingSettings, chat: bool) -> Request:
    """A decoded JSON body -> a checked Request; RequestError for anything wrong, naming the field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    known = {"messages" if chat else "prompt", *SAMPLING_FIELDS, *NEUTRAL, *IGNORED}
    unknown = sorted(set(body) - known)
    if unknown:
        raise RequestError(f"unknown field {shown(unknown[0])}", unknown[0])
    for name, neutral in NEUTRAL.items():
        if not _is_neutral(body.get(name), neutral) and not (name == "response_format"
                                                             and body[name] == {"type": "text"}):
            raise RequestError(f"'{name}' is not supported (leave it out or set it to {json.dumps(neutral)})", name)
    if not isinstance(body.get("stream", False), bool):
        raise RequestError("'stream' must be true or false", "stream")
    if not isinstance(body.get("model", ""), str):
        raise RequestError("'model' must be a string (any name: this server has one model)", "model")
    options = {} if body.get("stream_options") is None else body["stream_options"]
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise RequestError("'stream_options' must be an object whose 'include_usage' is true or false",
                           "stream_options")
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
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def completion_body(chat: bool, rid: str, model: str, text: str, finish: str, use: dict) -> dict[str, Any]:
    """The whole (non-streamed) answer."""
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish,
                  "logprobs": None}
    else:
        choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
    return {"id": rid, "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": [choice], "usage": use}


def chunk_body(chat: bool, rid: str, model: str, text: str | None, finish: str | None,
               first: bool = False) -> dict[str, Any]:
    """One server-sent event's JSON while streaming."""
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
        if text is not None:
            delta["content"] = text
        choice = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish, "logprobs": None}
    return {"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model, "choices": [choice]}
