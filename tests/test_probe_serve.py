"""`microgpt serve` attacked: odd text, echoed values, slow and vanishing clients, floods, keys, memory, signals.

Most cases run the real app under uvicorn in this process (a thread, a free port on 127.0.0.1), so the test can
slow the decoder down and shorten the body deadline; the signal cases run the real command. Every request loop
here is bounded in count and in time.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("starlette", reason="the serve extra installs Starlette")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra installs uvicorn")

from starlette.testclient import TestClient

from microgpt.commands import serve as serve_command
from microgpt.data.tokenizer import CharTokenizer
from microgpt.nn import GPT, GPTConfig, SamplingSettings, bounds
from microgpt.serve import app as app_module
from microgpt.serve import http as http_module
from microgpt.serve.engine import Busy, Engine, Job, _prefill_groups
from microgpt.serve.settings import ServeSettings
from microgpt.storage import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHARS = "abcdefghijklmnopqrstuvwxyz .,?!'\nUAS:"
MAX_BATCH = 2
LIMITS = ServeSettings(max_batch=MAX_BATCH, header_timeout_s=1.5, keep_alive_s=1.5, max_reply_tokens=300)


def _model(block_size: int = 128) -> tuple[GPT, CharTokenizer]:
    tokenizer = CharTokenizer(CHARS)
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=16, n_head=2, block_size=block_size),
                seed=3)
    return model, tokenizer


class InProcessServer:
    """The app on uvicorn in a thread; `delay` seconds are added to every decoding step (0 by default)."""

    def __init__(self, limits: ServeSettings = LIMITS, log_level: str = "critical") -> None:
        model, tokenizer = _model()
        self.engine = Engine(model, tokenizer, max_batch=limits.max_batch, max_waiting=limits.max_waiting)
        self.delay = 0.0
        step = self.engine._step

        def slow_step() -> None:
            time.sleep(self.delay)
            step()

        self.engine._step = slow_step
        self.app = app_module.Server(self.engine, "tiny", replace(SamplingSettings(), seed=None), None, limits)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uvicorn = uvicorn.Server(app_module.uvicorn_config(self.app, "127.0.0.1", self.port,
                                                                log_level=log_level, lifespan="off"))
        self.thread = threading.Thread(target=self.uvicorn.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def health(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as response:
            return json.loads(response.read())

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_idle(self, seconds: float) -> dict:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            stats = self.health()
            if stats["decoding"] == 0 and stats["waiting"] == 0:
                break
            time.sleep(0.05)
        return stats

    def close(self) -> None:
        self.uvicorn.should_exit = True
        self.thread.join(timeout=30)
        self.engine.stop()


@pytest.fixture(scope="module")
def server():
    proc = InProcessServer()
    yield proc
    proc.close()


def _chat(text: str, **extra) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": text}], **extra}).encode("utf-8", "surrogatepass")


# ----- text that cannot be encoded, values that must not be echoed whole ----------------------------------
def test_a_lone_surrogate_in_a_field_name_is_a_400_not_a_500(server: InProcessServer) -> None:
    body = b'{"\\ud800": 1, "messages": [{"role": "user", "content": "hi"}]}'
    status, raw = server.post("/v1/chat/completions", body)
    assert status == 400
    error = json.loads(raw)["error"]
    assert error["param"] == "\ud800" and "unknown field" in error["message"]
    raw.decode("ascii")  # escaped: any client can read it


def test_a_huge_wrong_value_is_not_echoed_back(server: InProcessServer) -> None:
    status, raw = server.post("/v1/chat/completions", _chat("hi", temperature="x" * 500_000))
    assert status == 400 and len(raw) < 1000
    assert json.loads(raw)["error"]["param"] == "temperature"
    status, raw = server.post("/v1/chat/completions", _chat("hi", **{"y" * 100_000: 1}))  # a huge wrong name
    assert status == 400 and len(raw) < 1000 and json.loads(raw)["error"]["param"].startswith("yyy")


def test_a_malformed_request_line_is_named_without_python_reprs(server: InProcessServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 400") and "illegal request line: 'GARBAGE'" in reply, reply


def _request(server: InProcessServer, method: str, path: str, body: bytes | None = None,
             headers: dict | None = None) -> tuple[int, dict, dict]:
    """Any request, with the headers given (none by default): status, reply headers, the JSON body."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read() or b"null")
    finally:
        conn.close()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_a_body_not_labelled_json_is_a_415_naming_the_header(server: InProcessServer, content_type: str | None) -> None:
    # a web page may post text/plain, form or multipart bodies to any address without the browser asking first
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, _, body = _request(server, "POST", "/v1/chat/completions", _chat("hi", max_tokens=2), headers)
    assert status == 415
    assert body["error"]["code"] == "unsupported_media_type" and "Content-Type: application/json" in body["error"]["message"]


def test_json_with_a_charset_is_served(server: InProcessServer) -> None:
    status, _, body = _request(server, "POST", "/v1/chat/completions", _chat("hi", max_tokens=2),
                               {"Content-Type": "Application/JSON; charset=utf-8"})
    assert status == 200 and body["choices"]


def test_max_completion_tokens_is_max_tokens(server: InProcessServer) -> None:
    replies = [json.loads(server.post("/v1/chat/completions", _chat("hi", seed=5, **{name: 3}))[1])
               for name in ("max_tokens", "max_completion_tokens")]
    assert replies[0]["choices"][0]["message"] == replies[1]["choices"][0]["message"]
    assert replies[1]["usage"]["completion_tokens"] <= 3
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_tokens=3, max_completion_tokens=4))
    assert status == 400 and json.loads(raw)["error"]["param"] == "max_completion_tokens"
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_completion_tokens="4"))
    assert status == 400 and json.loads(raw)["error"]["param"] == "max_completion_tokens"
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_completion_tokens=5, min_tokens=10))
    message = json.loads(raw)["error"]["message"]
    assert status == 400 and "max_completion_tokens" in message and "max_tokens" not in message.replace(
        "max_completion_tokens", "")  # the field the client sent is the one named


def test_a_developer_message_is_a_system_message(server: InProcessServer) -> None:
    def reply(role: str) -> dict:
        body = {"messages": [{"role": role, "content": "Be brief."}, {"role": "user", "content": "hi"}],
                "max_tokens": 6, "seed": 2}
        status, raw = server.post("/v1/chat/completions", json.dumps(body).encode())
        assert status == 200
        return json.loads(raw)

    system, developer = reply("system"), reply("developer")
    assert developer["choices"] == system["choices"] and developer["usage"] == system["usage"]


def test_one_model_can_be_looked_up_by_name(server: InProcessServer) -> None:
    status, _, body = _request(server, "GET", "/v1/models/tiny")
    assert status == 200 and body["id"] == "tiny" and body["object"] == "model"
    status, _, body = _request(server, "GET", "/v1/models/gpt-4")
    assert status == 404 and body["error"]["code"] == "model_not_found" and "tiny" in body["error"]["message"]


def test_a_wrong_method_says_which_are_allowed_and_a_trailing_slash_is_not_redirected(server: InProcessServer) -> None:
    status, headers, body = _request(server, "PUT", "/v1/chat/completions")
    assert status == 405 and headers.get("allow") == "POST" and body["error"]
    status, headers, body = _request(server, "POST", "/v1/chat/completions/", _chat("hi"),
                                     {"Content-Type": "application/json"})
    assert status == 404 and "location" not in headers and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("field, value", [("n", True), ("echo", 0), ("presence_penalty", False),
                                          ("logprobs", 0), ("store", True), ("tools", [{}]), ("model", 5),
                                          ("model", {"a": 1}),
                                          ("stream_options", {"include_usage": "yes"}), ("stream_options", [])])
def test_json_true_is_not_1_nor_false_0_and_types_are_checked(server: InProcessServer, field: str,
                                                              value: object) -> None:
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_tokens=2, **{field: value}))
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == field
    assert "None" not in error["message"] and "False" not in error["message"]  # JSON spellings: null, false


@pytest.mark.parametrize("field, value", [("n", 1), ("n", 1.0), ("presence_penalty", 0.0), ("echo", False),
                                          ("logprobs", None), ("model", "anything"), ("logprobs", False),
                                          ("store", False), ("tools", []), ("logit_bias", {}), ("tool_choice", "none"),
                                          ("metadata", {}), ("response_format", {"type": "text"})])
def test_neutral_values_are_accepted(server: InProcessServer, field: str, value: object) -> None:
    status, _ = server.post("/v1/chat/completions", _chat("hi", max_tokens=2, **{field: value}))
    assert status == 200


@pytest.mark.parametrize("field", ["max_tokens", "temperature", "top_k", "seed"])
def test_a_400_digit_number_is_a_400_not_a_500(server: InProcessServer, field: str) -> None:
    """JSON integers have no size limit: one past every float is refused by its field, not an OverflowError."""
    status, raw = server.post("/v1/completions", b'{"prompt": "hi", "' + field.encode() + b'": 1' + b"0" * 400 + b"}")
    assert status == 400 and json.loads(raw)["error"]["param"] == field


@pytest.mark.parametrize("field", ["temperature", "top_p", "repetition_penalty"])
@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused_as_not_finite(server: InProcessServer, field: str, literal: bytes) -> None:
    # Python's JSON reads these literals; NaN once tripped the max_tokens conflict check (NaN != NaN)
    body = b'{"messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (field.encode(), literal)
    status, raw = server.post("/v1/chat/completions", body)
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == field and "must be a finite number" in error["message"]


def test_min_tokens_may_equal_a_huge_max_tokens_and_errors_name_the_fields_sent(server: InProcessServer) -> None:
    huge = 2**53  # the ceiling of every count
    status, raw = server.post("/v1/completions", json.dumps({"prompt": "hi", "min_tokens": huge,
                                                             "max_tokens": huge}).encode())
    body = json.loads(raw)  # capped to the server's longest reply (LIMITS: 300 tokens)
    assert status == 200 and body["choices"][0]["finish_reason"] == "length" and body["usage"]["completion_tokens"] == 300
    status, raw = server.post("/v1/completions", json.dumps({"prompt": "hi", "min_tokens": huge}).encode())
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == "min_tokens"
    assert f"default max_tokens ({SamplingSettings().max_new_tokens})" in error["message"]
    assert "new_tokens" not in error["message"] and str(2**62) not in error["message"]  # no internal name or value


def test_stream_options_need_a_stream_and_the_usage_chunk_is_a_whole_chunk(server: InProcessServer) -> None:
    for stream in ({}, {"stream": False}):
        status, raw = server.post("/v1/chat/completions", _chat("hi", stream_options={"include_usage": True}, **stream))
        assert status == 400 and json.loads(raw)["error"]["param"] == "stream_options"
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_tokens=3, stream=True,
                                                            stream_options={"include_usage": True}))
    events = [json.loads(line[6:]) for line in raw.decode().splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert status == 200 and events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] <= 3
    assert {key for key in events[0] if key != "choices"} <= set(events[-1])  # id, object, created, model


def test_every_chunk_of_a_stream_carries_one_creation_time(server: InProcessServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    from microgpt.serve import protocol

    clock = itertools.count(1_700_000_000, 7)  # a clock that moves 7 s at every reading
    monkeypatch.setattr(protocol.time, "time", lambda: float(next(clock)))
    status, raw = server.post("/v1/chat/completions", _chat("hi", max_tokens=5, stream=True,
                                                            stream_options={"include_usage": True}))
    created = {json.loads(line[6:])["created"] for line in raw.decode().splitlines()
               if line.startswith("data: {")}
    assert status == 200 and len(created) == 1, created


def test_a_prompt_past_the_context_window_is_cut_and_the_reply_says_so(server: InProcessServer) -> None:
    block = server.engine.model.config.block_size
    status, headers, body = _request(server, "POST", "/v1/completions",
                                     json.dumps({"prompt": "ab " * block, "max_tokens": 1}).encode(),
                                     {"Content-Type": "application/json"})
    assert status == 200 and body["usage"]["prompt_tokens"] == block  # the whole window, as chat keeps
    assert f"kept the last {block} of {3 * block + 1} prompt tokens" in headers["x-microgpt-prompt-truncated"]
    status, headers, _ = _request(server, "POST", "/v1/completions", json.dumps({"prompt": "ab", "max_tokens": 1}).encode(),
                                  {"Content-Type": "application/json"})
    assert status == 200 and "x-microgpt-prompt-truncated" not in headers


def test_a_prompt_being_tokenized_does_not_hold_up_other_clients(server: InProcessServer,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tokenizer = server.engine.tokenizer
    encode, entered, released = tokenizer.encode, threading.Event(), threading.Event()

    def slow_encode(text: str) -> list[int]:  # a long prompt's tokenizing, held until /health has answered
        entered.set()
        released.wait(30)
        return encode(text)

    monkeypatch.setattr(tokenizer, "encode", slow_encode)
    with ThreadPoolExecutor(1) as pool:
        reply = pool.submit(server.post, "/v1/chat/completions", _chat("hi", max_tokens=2))
        assert entered.wait(30)
        try:
            assert server.health()["status"] == "ok"  # on the event loop, the tokenizing would block this
        finally:
            released.set()
        assert reply.result(timeout=60)[0] == 200


TEXT = st.text(alphabet=st.characters(codec=None), max_size=40)  # surrogates, NUL, emoji and all
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), TEXT,
                   st.lists(TEXT, max_size=5), st.dictionaries(TEXT, TEXT, max_size=3))
FIELDS = st.sampled_from(["temperature", "top_p", "top_k", "max_tokens", "min_tokens", "seed", "stop", "stream",
                          "repetition_penalty", "n", "logprobs", "stream_options", "model", "user", "bogus", "\ud800"])


@given(content=TEXT, extra=st.dictionaries(FIELDS, VALUES, max_size=4))
def test_any_field_values_and_any_text_get_a_reply_or_a_400(server: InProcessServer, content: str,
                                                             extra: dict) -> None:
    extra.pop("stream", None)  # a streamed reply is another code path, tested below
    extra["max_tokens"] = extra.get("max_tokens") if extra.get("max_tokens") != 0 else 1
    if isinstance(extra["max_tokens"], int) and not isinstance(extra["max_tokens"], bool):
        extra["max_tokens"] = min(max(extra["max_tokens"], 1), 8)  # keep the test fast
    if isinstance(extra.get("min_tokens"), int):
        extra.pop("min_tokens")
    status, raw = server.post("/v1/chat/completions", _chat(content, **extra))
    assert status in (200, 400), raw
    body = json.loads(raw)
    assert ("choices" in body) == (status == 200)


@pytest.mark.parametrize("stop", ["\nUs", "\n", "User", ":", "\ud800", "\x00", "😀"])
def test_stop_strings_that_are_template_prefixes_or_odd_text_end_cleanly(server: InProcessServer, stop: str) -> None:
    for stream in (False, True):
        status, raw = server.post("/v1/chat/completions", _chat("hi", stop=[stop], max_tokens=40, seed=1,
                                                                stream=stream))
        assert status == 200
        if stream:
            events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
        else:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        assert stop not in text


# ----- slow, vanishing and too many clients ---------------------------------------------------------------
def test_a_body_that_never_finishes_arriving_gets_a_408(server: InProcessServer,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server.app, "limits", replace(LIMITS, body_timeout_s=1.0))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{")
        start = time.monotonic()
        reply = s.recv(4096)
    assert reply.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 8


def test_a_head_that_trickles_in_gets_a_408_and_a_silent_connection_is_closed(server: InProcessServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as silent:
        start = time.monotonic()
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")  # the head never ends
        reply = slow.recv(4096)
        assert reply.startswith(b"HTTP/1.1 408") and b'"code":"header_timeout"' in reply.replace(b" ", b"")
        assert silent.recv(4096) == b""  # nothing sent, nothing said: closed
        assert LIMITS.header_timeout_s - 0.2 < time.monotonic() - start < LIMITS.header_timeout_s + 5


def _response(s: socket.socket) -> bytes:
    """One whole response with a Content-Length read from a raw socket: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(4096)
    return head + b"\r\n\r\n" + body


def _closed_while_trickling(s: socket.socket, most: int = 12) -> bool:
    """Whether the server closes `s` while the client sends it one byte a third of the keep-alive apart (each
    would restart the keep-alive timer), at most `most` bytes."""
    s.settimeout(LIMITS.keep_alive_s / 3)
    for _ in range(most):
        try:
            if s.recv(4096) == b"":
                return True
        except TimeoutError:
            pass
        except ConnectionResetError:
            return True
        try:
            s.sendall(b" ")
        except OSError:
            return True
    return False


@pytest.mark.parametrize("case, head", [
    ("415", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n"),
    ("413", b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n"),
    ("401", b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n"),
    ("408", b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"),
    ("404", b"POST /nowhere HTTP/1.1\r\nContent-Length: 1000000000\r\n"),
])
def test_a_reply_that_leaves_the_body_unread_closes_the_connection(server: InProcessServer, case: str, head: bytes,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # left open, a client trickling the rest of the body would hold the connection forever
    monkeypatch.setattr(http_module, "DRAIN_S", 0.5)  # this client sends no more: reading it away only waits
    monkeypatch.setattr(server.app, "api_key", "s3cret" if case == "401" else None)
    monkeypatch.setattr(server.app, "limits", replace(LIMITS, body_timeout_s=1.0))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head + b"Host: localhost\r\n\r\n{")
        reply = _response(s)
        assert reply.startswith(b"HTTP/1.1 " + case.encode()) and b"\r\nconnection: close\r\n" in reply.lower()
        assert _closed_while_trickling(s)


@pytest.mark.parametrize("case", ["401", "413"])
def test_a_client_that_uploads_a_big_body_before_reading_gets_its_error(server: InProcessServer, case: str,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """http.client (and httpx, openai) send the whole body before reading: the rest of it is read away before
    the early reply, so they get the 401 or 413 instead of a reset upload."""
    import http.client

    monkeypatch.setattr(server.app, "api_key", "s3cret" if case == "401" else None)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = b'{"prompt": "' + b"x" * (4 << 20) + b'"}'  # 4 MiB: past the 1 MiB cap, under what is read away
    connection.request("POST", "/v1/completions", body=body, headers={"Content-Type": "application/json",
                                                                       "Authorization": "Bearer wrong"})
    reply = connection.getresponse()
    assert reply.status == int(case) and json.loads(reply.read())["error"]["message"]
    connection.close()


def test_a_connection_whose_body_was_read_stays_open(server: InProcessServer) -> None:
    body = _chat("hi", max_tokens=1)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for _ in range(2):  # a good request, then a bad field (its body read whole): neither closes the connection
            s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            reply = _response(s)
            assert b"connection: close" not in reply.lower()
            body = _chat("hi", max_tokens=1, n=2)
        assert reply.startswith(b"HTTP/1.1 400")


@pytest.mark.parametrize("host, served", [("localhost", True), ("LOCALHOST:7860", True), ("127.0.0.1", True),
                                          ("127.8.9.10:80", True), ("[::1]:7860", True), ("[::1]", True), ("[::ffff:127.0.0.1]", True),
                                          ("evil.example", False), ("evil.example:7860", False),
                                          ("localhost.evil.example", False), ("127.0.0.1.evil.example", False),
                                          ("10.0.0.1", False), ("[::2]", False), ("::1", False), ("", False)])
def test_on_loopback_only_loopback_host_headers_are_served(server: InProcessServer, host: str, served: bool) -> None:
    # a web page whose name its DNS re-points at 127.0.0.1 (DNS rebinding) sends its own name as Host
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: %s\r\n\r\n" % host.encode())
        head, _, body = _response(s).partition(b"\r\n\r\n")
    if served:
        assert head.startswith(b"HTTP/1.1 200")
    else:
        assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "invalid_host"


def test_a_request_without_host_is_served_on_loopback(server: InProcessServer) -> None:
    # only HTTP/1.0 may leave Host out (HTTP/1.1 without it is a 400), and no browser does
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /v1/models HTTP/1.0\r\n\r\n")
        assert _response(s).startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("head, why", [
    (b"Content-Length: abc\r\n", "bad Content-Length"), (b"Content-Length: -5\r\n", "bad Content-Length"),
    (b"Bad Header Line\r\n", "illegal header line"),
    (b"Content-Length: 2\r\nContent-Length: 3\r\n", "conflicting Content-Length headers"),
    (b"Transfer-Encoding: gzip\r\n", "Only Transfer-Encoding: chunked is supported"),
    (b"Host: other\r\n", "multiple Host"),
])
def test_a_request_http_cannot_parse_gets_a_json_400_saying_why(server: InProcessServer, head: bytes, why: str) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n" + head + b"\r\n{}")
        reply = b""
        while chunk := s.recv(4096):
            reply += chunk
    status, _, rest = reply.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 400") and b"content-type: application/json" in headers.lower()
    error = json.loads(body)["error"]
    assert error["code"] == "bad_http_request" and why in error["message"], error


def test_a_404_for_a_huge_path_is_cut_short(server: InProcessServer) -> None:
    status, raw = server.post("/" + "a" * 20_000, b"{}")
    message = json.loads(raw)["error"]["message"]
    assert status == 404 and message.startswith("POST /aaa") and len(message) < 200


def test_an_idle_kept_alive_connection_is_closed_and_a_slow_next_head_gets_a_408(server: InProcessServer) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as idle, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        for s in (idle, slow):
            s.sendall(request)
            assert _response(s).startswith(b"HTTP/1.1 200")
        start = time.monotonic()
        slow.sendall(b"GET /health HTTP/1.1\r\n")  # the second request's head starts, and stops
        assert idle.recv(4096) == b"" and time.monotonic() - start < LIMITS.keep_alive_s + 5
        assert slow.recv(4096).startswith(b"HTTP/1.1 408")


def test_a_head_that_arrives_in_pieces_within_the_deadline_is_served(server: InProcessServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for piece in (b"GET /health HTTP/1.1\r\n", b"Host: localhost\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(LIMITS.header_timeout_s / 4)
        assert _response(s).startswith(b"HTTP/1.1 200")


def test_requests_past_the_waiting_cap_get_a_503_with_retry_after() -> None:
    busy = InProcessServer(replace(LIMITS, max_batch=1, max_waiting=1))
    busy.delay = 0.05
    try:
        body = json.dumps({"prompt": "a", "max_tokens": 100, "min_tokens": 100}).encode()
        with ThreadPoolExecutor(2) as pool:
            first = [pool.submit(busy.post, "/v1/completions", body) for _ in range(2)]  # one decodes, one waits
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until one is decoding and one waiting (both may be queued first)
                stats = busy.health()
                if stats["decoding"] >= 1 and stats["waiting"] >= 1:
                    break
                time.sleep(0.02)
            request = urllib.request.Request(f"http://127.0.0.1:{busy.port}/v1/completions", data=body,
                                             method="POST", headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=30)
            assert [f.result()[0] for f in first] == [200, 200]  # those already in are served in full
        assert refused.value.code == 503 and refused.value.headers["Retry-After"] == str(LIMITS.retry_after_s)
        error = json.loads(refused.value.read())["error"]
        assert error["code"] == "server_busy" and error["type"] == "server_error"
        assert "1 sequences decoding and 1 queued for 1 rows; at most 1 may wait" in error["message"]
    finally:
        busy.close()


def test_a_forced_stop_answers_the_requests_it_cuts_short_in_the_api_shape() -> None:
    stopping = InProcessServer()
    stopping.delay = 0.05  # 120 tokens would take 6 s
    try:
        body = json.dumps({"prompt": "a", "max_tokens": 120, "min_tokens": 120}).encode()
        with ThreadPoolExecutor(1) as pool:
            reply = pool.submit(stopping.post, "/v1/completions", body)
            deadline = time.monotonic() + 10
            while not stopping.health()["decoding"] and time.monotonic() < deadline:
                time.sleep(0.02)
            stopping.uvicorn.force_exit = True  # as a second signal: replies in flight are cut short
            stopping.uvicorn.should_exit = True
            status, raw = reply.result(timeout=30)
    finally:
        stopping.close()
    assert status == 503  # uvicorn alone: a plain-text 500
    error = json.loads(raw)["error"]
    assert error["code"] == "server_stopping" and error["type"] == "server_error"


def test_the_engine_counts_only_requests_that_really_wait() -> None:
    model, tokenizer = _model()
    engine = Engine(model, tokenizer, max_batch=2, max_waiting=0)

    def job(**kw: bool) -> Job:
        return Job([0, 1], replace(SamplingSettings(), max_new_tokens=3), (), lambda event: None, **kw)

    try:
        with engine.lock:  # hold the loop: nothing is admitted while the queue is filled
            engine.submit(job())
            engine.submit(job())  # two rows are free: neither of these waits
            engine.pending.append(job(cancelled=True))  # a client that left does not hold a place
        with engine.lock, pytest.raises(Busy, match="0 sequences decoding and 2 queued for 2 rows; at most 0"):
            engine.submit(job())
    finally:
        engine.stop()
    with pytest.raises(Busy, match="stopping"):
        engine.submit(job())


def test_a_chunked_body_over_the_cap_is_a_413(server: InProcessServer) -> None:
    chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(20):  # 1.25 MiB, past the 1 MiB cap; the server may stop reading early
            try:
                s.sendall(chunk)
            except OSError:
                break
        assert s.recv(4096).startswith(b"HTTP/1.1 413")


@pytest.mark.parametrize("headers, status", [
    (b"Content-Type: application/json\r\nContent-Length: 20000000\r\n", b"413"),  # declared too big
    (b"Content-Type: text/plain\r\nContent-Length: 1000\r\n", b"415"),
])
def test_a_client_that_expects_100_continue_hears_the_refusal_before_uploading(server: InProcessServer,
                                                                               headers: bytes, status: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n" + headers
                  + b"\r\n")  # and waits: no body until "100 Continue"
        assert s.recv(4096).startswith(b"HTTP/1.1 " + status)  # not "100 Continue", which asks for the body


def test_a_client_that_sends_its_body_despite_expect_100_continue_still_hears_the_refusal(
        server: InProcessServer) -> None:
    body = b"x" * 300_000  # more than the socket buffers hold: left unread, closing would reset the connection
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
                  b"Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body) + body)  # RFC 9110 allows
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 415") and b"application/json" in reply.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("stream", [False, True])
def test_clients_that_leave_free_their_rows_and_places_in_the_queue(server: InProcessServer, stream: bool) -> None:
    server.delay = 0.05  # 120 tokens would take 6 s each
    try:
        body = json.dumps({"prompt": "a", "max_tokens": 120, "stream": stream}).encode()
        request = (b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body)) + body
        sockets = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(MAX_BATCH + 3)]
        for s in sockets:
            s.sendall(request)
        time.sleep(0.5)
        assert server.health()["waiting"] > 0  # more requests than rows: some queue
        for s in sockets:
            s.close()
        assert server.wait_idle(3.0) == {"status": "ok", "model": "tiny", "decoding": 0, "waiting": 0}
    finally:
        server.delay = 0.0


def test_a_job_cancelled_while_waiting_is_never_prefilled() -> None:
    model, tokenizer = _model()
    engine = Engine(model, tokenizer, max_batch=1)
    events: list = []
    try:
        with engine.lock:  # hold the loop while both jobs are queued
            first = Job([0, 1, 2], replace(SamplingSettings(), max_new_tokens=3), (), events.append)
            gone = Job([0, 1, 2], replace(SamplingSettings(), max_new_tokens=3), (), events.append, cancelled=True)
            engine.pending += [gone, first]
            engine.lock.notify()
        deadline = time.monotonic() + 10
        while ("done", "length") not in events and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone.rng is None and not gone.generated and engine.stats() == {"decoding": 0, "waiting": 0}
    finally:
        engine.stop()


def test_a_prefill_that_fails_fails_only_its_own_request() -> None:
    model, tokenizer = _model()

    class RefusesLongPrompts:  # the model, except that 5-token prompts "do not fit in memory", alone or padded
        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

        def __call__(self, idx, cache=None):
            if idx.shape[1] == 5:
                raise MemoryError("attention for this prompt does not fit")
            return model(idx, cache)

    engine = Engine(RefusesLongPrompts(), tokenizer, max_batch=2)
    events: dict[str, list] = {"ok": [], "big": []}
    try:
        ok = Job([0, 1, 2], replace(SamplingSettings(), max_new_tokens=40, seed=1), (), events["ok"].append)
        big = Job([0, 1, 2, 3, 4], replace(SamplingSettings(), max_new_tokens=40, seed=1), (), events["big"].append)
        engine.submit(ok)
        engine.submit(big)
        deadline = time.monotonic() + 20
        while not (events["ok"] and events["ok"][-1][0] == "done") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events["big"] == [("error", "MemoryError: attention for this prompt does not fit")]
        assert events["ok"][-1] == ("done", "length") and ok.completion_tokens == 40
    finally:
        engine.stop()


def test_a_reply_whose_text_fails_ends_alone_and_the_batch_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Something wrong in one reply's text (a tokenizer that cannot spell a token) ends that reply with an
    error; the row decoding beside it finishes as if alone."""
    from microgpt.chat.session import ReplyText

    model, tokenizer = _model()
    real = ReplyText.add

    def fails_for_one(self, token: int) -> bool:
        if self.stops == ("BOOM",):
            raise UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")
        return real(self, token)

    monkeypatch.setattr(ReplyText, "add", fails_for_one)
    engine = Engine(model, tokenizer, max_batch=2)
    events: dict[str, list] = {"ok": [], "bad": []}
    try:
        ok = Job([0, 1, 2], replace(SamplingSettings(), max_new_tokens=20, seed=1), (), events["ok"].append)
        bad = Job([0, 1, 2], replace(SamplingSettings(), max_new_tokens=20, seed=1), ("BOOM",), events["bad"].append)
        engine.submit(ok)
        engine.submit(bad)
        deadline = time.monotonic() + 20
        while not (events["ok"] and events["ok"][-1][0] == "done") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert events["bad"][-1][0] == "error" and "UnicodeEncodeError" in events["bad"][-1][1]
        assert events["ok"][-1] == ("done", "length") and ok.completion_tokens == 20
    finally:
        engine.stop()


def test_prompts_are_prefilled_together_only_where_padding_wastes_little() -> None:
    def jobs(*lengths: int) -> list[Job]:
        return [Job(list(range(n)), SamplingSettings(), (), lambda event: None) for n in lengths]

    def lengths(groups: list[list[Job]]) -> list[list[int]]:
        return [[len(job.prompt_ids) for job in group] for group in groups]

    assert lengths(_prefill_groups(jobs(7, 7, 7, 7))) == [[7, 7, 7, 7]]
    assert lengths(_prefill_groups(jobs(4, 40, 38, 5))) == [[40, 38], [5, 4]]  # never 40 tokens for a 4-token one
    assert lengths(_prefill_groups(jobs(100, 1))) == [[100], [1]]
    assert lengths(_prefill_groups([])) == []


def test_prompts_prefilled_together_get_the_replies_they_get_alone() -> None:
    model, tokenizer = _model()
    prompts = [[0, 5, 6, 7, 8], [0, 9, 10, 11], [0, 12, 13, 14, 15], [0, 5, 6, 7, 8]]
    settings = [replace(SamplingSettings(), max_new_tokens=12, min_new_tokens=12, seed=seed, temperature=t)
                for seed, t in ((1, 0.8), (2, 1.0), (3, 0.0), (1, 0.8))]
    shapes: list[tuple[int, ...]] = []

    class Recording:  # the model, noting the shape of every batch it is given
        def __getattr__(self, name: str) -> object:
            return getattr(model, name)

        def __call__(self, idx, cache=None):
            shapes.append(idx.shape)
            return model(idx, cache)

    def replies(together: bool) -> list[list[int]]:
        engine = Engine(Recording(), tokenizer, max_batch=4)
        batch = [Job(prompt, s, (), lambda event: None) for prompt, s in zip(prompts, settings)]
        try:
            with engine.lock if together else contextlib.nullcontext():  # held: all four are admitted at once
                for job in batch:
                    engine.submit(job)
                    deadline = time.monotonic() + 20
                    while not together and not job.ended and time.monotonic() < deadline:
                        time.sleep(0.01)
            deadline = time.monotonic() + 20
            while not all(job.ended for job in batch) and time.monotonic() < deadline:
                time.sleep(0.01)
            return [job.generated for job in batch]
        finally:
            engine.stop()

    alone = replies(together=False)
    assert (4, 5) not in shapes
    assert replies(together=True) == alone and (4, 5) in shapes  # one padded pass for the four prompts
    assert alone[0] == alone[3] and all(len(reply) == 12 for reply in alone)


def test_more_clients_than_rows_all_queue_and_finish(server: InProcessServer) -> None:
    def ask(i: int) -> str:
        status, raw = server.post("/v1/chat/completions", _chat(f"q{i}", max_tokens=10, seed=i))
        assert status == 200
        return json.loads(raw)["choices"][0]["finish_reason"]

    with ThreadPoolExecutor(4 * MAX_BATCH) as pool:
        reasons = list(pool.map(ask, range(4 * MAX_BATCH)))
    assert set(reasons) <= {"stop", "length"} and len(reasons) == 4 * MAX_BATCH


@pytest.mark.parametrize("header, ok", [("Bearer s3cret", True), ("bearer s3cret", True), ("BEARER  s3cret ", True),
                                        ("Bearer s3cre", False), ("Bearer s3cret2", False), ("Basic s3cret", False),
                                        ("s3cret", False), ("", False), ("Bearer \u00e9", False),
                                        ("Bearer s3cret\u00ff", False)])
def test_bearer_header_variants(header: str, ok: bool) -> None:
    model, tokenizer = _model()
    engine = Engine(model, tokenizer, max_batch=1)
    try:
        client = TestClient(app_module.build_app(app_module.Server(engine, "tiny", SamplingSettings(), "s3cret")))
        headers = {"Authorization": header.encode("latin-1")} if header else {}
        response = client.get("/v1/models", headers=headers)
        assert response.status_code == (200 if ok else 401)
        if not ok:  # as OpenAI's
            assert response.json()["error"]["type"] == "invalid_request_error"
            assert response.json()["error"]["code"] == "invalid_api_key"
    finally:
        engine.stop()


# ----- the command: keys, memory, signals ------------------------------------------------------------------
def _serve(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "microgpt", "serve", *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


@pytest.mark.parametrize("key", ["caf\u00e9", "two words", "tab\there"])
def test_an_api_key_that_cannot_travel_in_a_header_is_one_line(tmp_path: Path, key: str) -> None:
    result = _serve(str(tmp_path / "none.npz"), env={"MICROGPT_API_KEY": key})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "MICROGPT_API_KEY" in result.stderr


@pytest.mark.parametrize("args, env", [(["--api-key", ""], {}), ([], {"MICROGPT_API_KEY": ""})])
def test_an_empty_api_key_is_refused_not_taken_as_no_key(tmp_path: Path, args: list, env: dict) -> None:
    # `--api-key "$KEY"` with KEY unset must not quietly serve without authentication
    result = _serve(str(tmp_path / "none.npz"), *args, env=env)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "is empty" in result.stderr


@pytest.mark.parametrize("flag, value", [("--max-waiting", "-1"), ("--max-batch", "0"), ("--keep-alive", "0"),
                                         ("--header-timeout", "nan"), ("--header-timeout", "1e9")])
def test_a_bad_limit_is_one_line_naming_its_flag(flag: str, value: str) -> None:
    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    with pytest.raises(serve_command.ConfigError, match=f"^{flag} "):
        serve_command._limits(parser.parse_args([flag, value]))


def test_the_limit_flags_default_to_the_serve_settings() -> None:
    parser = argparse.ArgumentParser()
    serve_command.add_arguments(parser)
    assert serve_command._limits(parser.parse_args([])) == ServeSettings()
    chosen = serve_command._limits(parser.parse_args(["--max-waiting", "0", "--keep-alive", "2.5"]))
    assert chosen == replace(ServeSettings(), max_waiting=0, keep_alive_s=2.5)


def test_a_batch_that_does_not_fit_in_memory_is_refused_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _model(block_size=4096)
    free = type("Free", (), {"available": 1 << 20})()
    monkeypatch.setattr(bounds.psutil, "virtual_memory", lambda: free)
    with pytest.raises(serve_command.ConfigError, match="--max-batch 64: .* GiB"):
        serve_command._check_batch_memory(model, 64)


def test_two_signals_with_a_reply_in_flight_exit_cleanly(tmp_path: Path) -> None:
    model, tokenizer = _model(block_size=256)
    checkpoint = save_checkpoint(tmp_path / "tiny.npz", model, tokenizer, {"step": 0})
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "serve", str(checkpoint), "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        body = json.dumps({"prompt": "a", "max_tokens": 250, "stream": True}).encode()
        stream = socket.create_connection(("127.0.0.1", port), timeout=10)
        stream.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(body) + body)
        stream.recv(100)  # the reply has begun
        partial = socket.create_connection(("127.0.0.1", port), timeout=10)  # and a body still arriving
        partial.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=40)
        stream.close()
        partial.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "Traceback" not in out and "stopped" in out


def test_the_page_shows_a_model_name_that_holds_markup_as_text() -> None:
    model, tokenizer = _model()
    engine = Engine(model, tokenizer, max_batch=1)
    try:
        name = '<img src=x onerror="alert(1)">'  # a checkpoint's file name becomes the model's name
        page = TestClient(app_module.build_app(app_module.Server(engine, name, SamplingSettings(), None))).get("/")
        assert page.status_code == 200 and "<img" not in page.text
        assert '&lt;img src=x onerror=&quot;alert(1)&quot;&gt;' in page.text
    finally:
        engine.stop()


def test_an_empty_assistant_turn_is_history_but_an_empty_user_turn_is_refused(server: InProcessServer) -> None:
    def ask(messages: list) -> tuple[int, dict]:
        status, raw = server.post("/v1/chat/completions", json.dumps({"messages": messages, "max_tokens": 2}).encode())
        return status, json.loads(raw)

    said_nothing = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""},
                    {"role": "user", "content": "again"}]
    assert ask(said_nothing)[0] == 200
    assert ask([*said_nothing[:1], {"role": "assistant", "content": None}, *said_nothing[2:]])[0] == 200
    status, body = ask([{"role": "user", "content": "  "}])
    assert status == 400 and body["error"]["param"] == "messages[0].content"


def test_replies_longer_than_the_context_window_slide_it_as_chat_does_alone_or_together() -> None:
    """A row whose window fills goes on from the last half of its text, re-encoded: each reply is the one
    `generate` (chat, chat-once) gives alone, token for token, even as rows slide, retire and move around it."""
    from microgpt.nn.sampling import generate

    model, tokenizer = _model(block_size=16)
    engine = Engine(model, tokenizer, max_batch=3)
    prompts = [[1, 2, 3], list(range(1, 17)), [4, 5, 6, 7, 8, 9, 10], [3]]  # the second fills the window at once
    lengths = [40, 25, 60, 7]
    settings = [replace(SamplingSettings(), max_new_tokens=n, min_new_tokens=n, temperature=0.9, seed=10 + i,
                        stop_token_ids=(0,)) for i, n in enumerate(lengths)]
    done = [threading.Event() for _ in prompts]
    jobs = [Job(prompt, s, (), lambda event, i=i: done[i].set() if event[0] in ("done", "error") else None)
            for i, (prompt, s) in enumerate(zip(prompts, settings))]
    try:
        with engine.lock:  # all four arrive in one step: three decode, one waits for a row
            for job in jobs:
                engine.submit(job)
        assert all(event.wait(60) for event in done)
    finally:
        engine.stop()
    for prompt, s, job in zip(prompts, settings, jobs):
        assert job.generated == list(generate(model, prompt, s))
        assert len(job.generated) == s.max_new_tokens
    assert sum(len(p) + n > model.config.block_size for p, n in zip(prompts, lengths)) == 3  # 3 slide, one fits


def test_the_model_is_named_after_its_file_or_folder_even_when_served_as_dot(tmp_path: Path, monkeypatch) -> None:
    from microgpt.evaluation.heldout import results_csv_path
    from microgpt.storage import checkpoint_stem

    (tmp_path / "exp1").mkdir()
    monkeypatch.chdir(tmp_path / "exp1")
    assert checkpoint_stem(".") == "exp1" and checkpoint_stem("./") == "exp1"
    assert checkpoint_stem("models/best_checkpoint.npz") == "best_checkpoint"
    assert checkpoint_stem("/") == "model"
    assert results_csv_path(".", tmp_path).name == "heldout_exp1.csv"  # eval's results file, named the same way
    (tmp_path / "exp1" / "gpt.v1").mkdir()  # an export folder's dots are part of its name: v1 and v2 stay apart
    assert checkpoint_stem("gpt.v1") == "gpt.v1" and checkpoint_stem("gpt.v1/") == "gpt.v1"


def test_a_port_out_of_range_names_where_it_came_from(monkeypatch) -> None:
    from microgpt.errors import ConfigError

    monkeypatch.setenv("PORT", "9" * 40)
    with pytest.raises(ConfigError, match=r"^PORT=9999.*\.\.\. is out of range: give 1-65535$"):
        serve_command._port(argparse.Namespace(port=None))
    with pytest.raises(ConfigError, match=r"^--port=0 is out of range"):
        serve_command._port(argparse.Namespace(port="0"))
    for raw in ("1_8910", " 80", "８０", "80.0"):  # int() takes the first three
        with pytest.raises(ConfigError, match=r"^--port=.* is not a port number \(1-65535\)$"):
            serve_command._port(argparse.Namespace(port=raw))


@pytest.mark.parametrize("raw, port", [("", 7860), ("  ", 7860), ("8123", 8123)])
def test_an_empty_port_variable_counts_as_unset_as_every_other_variable_does(monkeypatch, raw: str, port: int) -> None:
    monkeypatch.setenv("PORT", raw)
    assert serve_command._port(argparse.Namespace(port=None)) == port


def test_error_lines_write_control_characters_in_a_path_as_escapes(capsys) -> None:
    from microgpt.__main__ import main

    assert main(["chat-once", "/nope/a\nb\x1b[31mred.npz", "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "/nope/a\\nb\\x1b[31mred.npz" in err


def test_a_range_error_names_the_servers_own_default_not_the_knobs() -> None:
    from microgpt.serve import protocol

    defaults = replace(SamplingSettings(), temperature=0.9, max_new_tokens=20, seed=None)  # CHAT_* and no seed

    def message(**fields: object) -> str:
        with pytest.raises(protocol.RequestError) as caught:
            protocol.parse_request({"prompt": "hi", **fields}, defaults, chat=False)
        return str(caught.value)

    assert message(temperature=-1).endswith("(default 0.9)")
    assert message(max_tokens=0).endswith("(default 20)") and message(max_tokens=0).startswith("max_tokens=")
    assert "default" not in message(seed=-1)  # the server's seed is fresh randomness: no number to name
    assert message(min_tokens=-1).endswith(f"(default {SamplingSettings.min_new_tokens})")


@pytest.mark.parametrize("message, param", [
    ({"role": "user", "content": [{"type": "text", "text": "describe"},
                                  {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]},
     "messages[0].content[1]"),
    ({"role": "user", "content": [{"type": "txet", "text": "b"}]}, "messages[0].content[0]"),
    ({"role": "user", "content": ["just a string"]}, "messages[0].content[0]"),
    ({"role": "user", "content": "hi", "bogus_key": 123}, "messages[0].bogus_key"),
    ({"role": "user", "content": "hi", "name": 5}, "messages[0].name"),
])
def test_what_a_message_holds_beyond_text_is_refused_by_name_not_dropped(message: dict, param: str) -> None:
    from microgpt.serve import protocol

    with pytest.raises(protocol.RequestError) as caught:
        protocol.parse_request({"messages": [message]}, SamplingSettings(), chat=True)
    assert caught.value.param == param


def test_a_tool_call_in_the_history_or_odd_top_level_values_are_refused() -> None:
    from microgpt.serve import protocol

    call = {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
                                                                   "function": {"name": "f", "arguments": "{}"}}]}
    for body, param in [({"messages": [{"role": "user", "content": "a"}, call, {"role": "user", "content": "b"}]},
                         "messages[1].tool_calls"),
                        ({"messages": [{"role": "user", "content": "a"}], "user": {"a": [1]}}, "user"),
                        ({"messages": [{"role": "user", "content": "a"}], "stream": True,
                          "stream_options": {"include_usage": True, "bogus": 1}}, "stream_options")]:
        with pytest.raises(protocol.RequestError) as caught:
            protocol.parse_request(body, SamplingSettings(), chat=True)
        assert caught.value.param == param


def test_a_clients_own_reply_object_goes_back_into_the_history_as_it_is(server: InProcessServer) -> None:
    """What the openai client returns as a message (null refusal, tool_calls, audio...; an empty annotations
    list) is what people append to their history: it is taken as the plain assistant turn it is."""
    returned = {"role": "assistant", "content": "hello", "refusal": None, "tool_calls": None, "function_call": None,
                "audio": None, "annotations": [], "name": "bot"}
    status, raw = server.post("/v1/chat/completions", json.dumps({
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
                     returned, {"role": "user", "content": "and?"}], "max_tokens": 2}).encode())
    assert status == 200, raw


def test_replies_still_running_when_the_graceful_stop_runs_out_are_cut_without_tracebacks() -> None:
    import logging

    server = InProcessServer(replace(LIMITS, graceful_shutdown_s=0.5), log_level="error")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("uvicorn.error").addHandler(handler)
    server.delay = 0.05  # 200 tokens: 10 s, far past the half second the stop waits
    try:
        body = json.dumps({"prompt": "a", "max_tokens": 200, "min_tokens": 200, "stream": True}).encode()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")  # the reply has begun
            server.uvicorn.should_exit = True
            server.thread.join(timeout=30)
    finally:
        logging.getLogger("uvicorn.error").removeHandler(handler)
        server.delay = 0.0
        server.close()
    assert not server.thread.is_alive()
    assert any("graceful shutdown exceeded" in r.getMessage() for r in records)  # uvicorn's one line says so
    assert not [r.getMessage() for r in records if r.exc_info]  # and no traceback per reply follows it


def test_a_failure_while_a_reply_slides_its_window_ends_that_reply_with_an_error() -> None:
    model, tokenizer = _model(block_size=16)
    engine = Engine(model, tokenizer, max_batch=2)
    new_cache = model.new_cache
    calls = []

    def fails_on_the_slide(batch: int):
        calls.append(batch)
        if len(calls) == 2:  # the first is the prefill, the second the slide
            raise MemoryError("no room")
        return new_cache(batch)

    model.new_cache = fails_on_the_slide
    events, ended = [], threading.Event()

    def emit(event) -> None:
        events.append(event)
        if event[0] in ("done", "error"):
            ended.set()

    job = Job(list(range(1, 11)), replace(SamplingSettings(), max_new_tokens=40, min_new_tokens=40, seed=1,
                                          stop_token_ids=(0,)), (), emit, stream=False)
    try:
        engine.submit(job)
        assert ended.wait(30), events  # never left waiting
    finally:
        engine.stop()
    assert events[-1] == ("error", "MemoryError: no room") and engine.stats() == {"decoding": 0, "waiting": 0}


# ----- a full server refuses before it spends anything on a request -------------------------------------------
def test_a_request_past_the_queue_is_refused_before_its_prompt_is_parsed_or_tokenized(monkeypatch) -> None:
    """admit() holds a place before the body is parsed and the prompt tokenized: a 1 MB prompt the server has
    no room for costs no tokenizing, and requests being prepared count as waiting."""
    proc = InProcessServer(replace(LIMITS, max_batch=1, max_waiting=0))
    encoded: list[int] = []
    encode = proc.engine.tokenizer.encode
    monkeypatch.setattr(proc.engine.tokenizer, "encode", lambda text: encoded.append(len(text)) or encode(text))
    try:
        proc.engine.admit()  # the one place, held as a request being prepared would hold it
        status, body = proc.post("/v1/completions", json.dumps({"prompt": "a" * 1_000_000}).encode())
        assert status == 503 and json.loads(body)["error"]["code"] == "server_busy"
        assert encoded == [] and proc.engine.preparing == 1
        proc.engine.release()
        status, _ = proc.post("/v1/completions", json.dumps({"prompt": "hello", "max_tokens": 2}).encode())
        assert status == 200 and encoded == [5]
        status, _ = proc.post("/v1/completions", b'{"prompt": 5}')  # a bad request gives its place back
        assert status == 400 and proc.engine.preparing == 0
        assert proc.wait_idle(10) == {"status": "ok", "model": "tiny", "decoding": 0, "waiting": 0}
    finally:
        proc.close()


def test_asyncios_line_for_writes_to_a_gone_client_is_dropped_and_its_other_lines_kept() -> None:
    """A client that leaves mid-stream made asyncio log a bare "socket.send() raised exception." now and then."""
    engine = Engine(*_model(), max_batch=1)
    try:
        app_module.uvicorn_config(app_module.Server(engine, "tiny", SamplingSettings(), None), "127.0.0.1", 1)
    finally:
        engine.stop()
    asyncio_log = logging.getLogger("asyncio")

    def record(message: str) -> logging.LogRecord:
        return asyncio_log.makeRecord("asyncio", logging.WARNING, __file__, 1, message, (), None)

    assert not asyncio_log.filter(record("socket.send() raised exception."))
    assert asyncio_log.filter(record("Task was destroyed but it is pending!"))


@pytest.mark.parametrize(("variable", "expected"), [("~/m/best.npz", "HOME/m/best.npz"), ("  ", "DEFAULT"),
                                                    ("a.npz", "a.npz")])
def test_model_path_expands_the_home_folder_and_counts_blank_as_unset(monkeypatch, tmp_path: Path,
                                                                      variable: str, expected: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODEL_PATH", variable)
    chosen = serve_command._checkpoint_path(argparse.Namespace(checkpoint=None))
    assert chosen == expected.replace("HOME", str(tmp_path)).replace("DEFAULT", serve_command.DEFAULT_CHECKPOINT)
    assert serve_command._checkpoint_path(argparse.Namespace(checkpoint="given.npz")) == "given.npz"


def test_a_row_whose_reply_has_ended_is_free_for_the_next_request() -> None:
    """A client that sends its next request as soon as a reply arrives met a 503 now and then: the decoder
    retires a finished row a moment after the reply's last event, and the room check counted it."""
    engine = Engine(*_model(), max_batch=1, max_waiting=0)
    engine.stop()  # no decoder thread: the rows stay as the test sets them
    engine.stopping = False
    finished = Job([1], SamplingSettings(), (), emit=lambda event: None)
    engine.rows.append(finished)
    with pytest.raises(Busy, match="1 sequences decoding and 0 queued"):
        engine.admit()
    finished.ended = True
    engine.admit()
    assert engine.preparing == 1


@pytest.mark.parametrize(("body", "param", "fragment"), [
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
     "messages[1].role", "the last message must come from the user"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "min_tokens": 6}, "min_tokens",
     "must not exceed 'max_tokens' (5)"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
])
def test_requests_just_past_a_limit_are_refused_by_name(server: InProcessServer, body: dict, param: str,
                                                        fragment: str) -> None:
    status, raw = server.post("/v1/chat/completions", json.dumps(body).encode())
    error = json.loads(raw)["error"]
    assert status == 400 and error["param"] == param and fragment in error["message"], error


@pytest.mark.parametrize("body", [{"max_tokens": 5, "min_tokens": 5}, {"stop": ["a", "b", "c", "d"]}])
def test_requests_at_a_limit_are_answered(server: InProcessServer, body: dict) -> None:
    status, raw = server.post("/v1/chat/completions", _chat("hi", **body))
    assert status == 200, raw
