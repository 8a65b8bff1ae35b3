"""`microgpt serve`, driven the way users drive it: a real server process and the official `openai` client.

The model is a small random GPT (the server's behaviour, not the model's quality, is under test). Skips, with
the reason printed, only where the serve/test extras are not installed.
"""

from __future__ import annotations

import http.client
import json
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
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai", reason="the test extra installs the openai client")
pytest.importorskip("starlette", reason="the serve extra installs Starlette")
pytest.importorskip("uvicorn", reason="the serve extra installs uvicorn")

from microgpt.data.tokenizer import CharTokenizer
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CHARS = "abcdefghijklmnopqrstuvwxyz .,?!'\nUAS:"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m microgpt serve` in a subprocess on a free port, ready when /health answers."""

    def __init__(self, checkpoint: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "microgpt", "serve", str(checkpoint), "--port",
                                      str(self.port), *extra], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.health()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {self.proc.stdout.read()}") from None
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def health(self) -> dict:
        with urllib.request.urlopen(f"{self.url}/health", timeout=5) as response:
            return json.loads(response.read())

    def client(self, key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=60)

    def post(self, path: str, data: bytes, headers: dict | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(f"{self.url}{path}", data=data, method="POST",
                                         headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def close(self, signalled: bool = False) -> str:
        """Stop the server (unless a signal was already sent: a second one would cut replies short)."""
        if not signalled and self.proc.poll() is None:
            self.proc.terminate()
        out, _ = self.proc.communicate(timeout=60)
        return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = CharTokenizer(CHARS)
    config = GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=32, n_head=4, block_size=256)
    model = GPT(config, seed=3)  # random output weights: it says something
    return save_checkpoint(tmp_path_factory.mktemp("serve") / "tiny.npz", model, tokenizer, {"step": 0})


@pytest.fixture(scope="module")
def server(checkpoint: Path):
    proc = ServerProcess(checkpoint)
    yield proc
    proc.close()


def _chat(client, text: str, **kw) -> tuple[str, str]:
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": text}], **kw)
    return reply.choices[0].message.content, reply.choices[0].finish_reason


def test_models_and_health(server: ServerProcess) -> None:
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert server.health()["status"] == "ok"


def test_chat_plain_and_streamed_agree_and_count_usage(server: ServerProcess) -> None:
    client = server.client()
    reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                           max_tokens=12, seed=7, temperature=0.9)
    text = reply.choices[0].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    stream = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello there"}],
                                            max_tokens=12, seed=7, temperature=0.9, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].choices[0].finish_reason == reply.choices[0].finish_reason


def test_length_is_reported_truthfully(server: ServerProcess) -> None:
    """A reply cut at max_tokens says "length"; one the model ended itself says "stop" (a random model does
    both, depending on the prompt)."""
    client = server.client()
    reasons = set()
    for prompt in ("abc", "the cat", "hello there", "zz top", "a b c d"):
        reply = client.completions.create(model="tiny", prompt=prompt, max_tokens=3, temperature=0)
        tokens, reason = reply.usage.completion_tokens, reply.choices[0].finish_reason
        assert tokens <= 3 and reason == ("length" if tokens == 3 else "stop"), (prompt, tokens, reason)
        reasons.add(reason)
    assert "length" in reasons


def test_completions_and_stop_sequences(server: ServerProcess) -> None:
    client = server.client()
    full = client.completions.create(model="tiny", prompt="the cat", max_tokens=40, temperature=0).choices[0].text
    assert full
    stop = full[len(full) // 2:len(full) // 2 + 2]
    cut = client.completions.create(model="tiny", prompt="the cat", max_tokens=40, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[:full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_eight_concurrent_clients_get_their_sequential_replies(server: ServerProcess) -> None:
    client = server.client()
    prompts = [f"question number {i}, {'long ' * i}please" for i in range(8)]

    def ask(i: int) -> tuple[str, str]:
        return _chat(client, prompts[i], max_tokens=30 + 5 * i, seed=100 + i, temperature=0.8)

    alone = [ask(i) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(ask, range(8)))
    assert together == alone


def test_bad_requests_get_openai_error_objects(server: ServerProcess) -> None:
    status, body = server.post("/v1/chat/completions", b"{not json")
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    twice = b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "max_tokens": 900}'
    status, body = server.post("/v1/chat/completions", twice)
    assert status == 400 and "'max_tokens' appears twice" in body["error"]["message"]
    cases = [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}, "temperature"),
        ({"messages": [{"role": "user", "content": "hi"}], "top_p": 0}, "top_p"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "frobnicate": 1}, "frobnicate"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"prompt": "hi"}, "prompt"),
    ]
    for body_in, param in cases:
        status, body = server.post("/v1/chat/completions", json.dumps(body_in).encode())
        assert status == 400, body_in
        assert body["error"]["param"] == param and body["error"]["message"]
    # An oversize body is refused from its declared length, before the server reads (or the client sends) it.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(2 << 20))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "body" in json.loads(response.read())["error"]["message"]
    connection.close()


def test_a_reply_slides_past_the_context_window_and_only_the_servers_longest_reply_caps_it(
        server: ServerProcess) -> None:
    def complete(body: dict) -> tuple[dict, Any]:
        request = urllib.request.Request(f"{server.url}/v1/completions", method="POST", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read()), response.headers

    body, headers = complete({"prompt": "abc " * 100, "max_tokens": 300, "min_tokens": 300, "seed": 1})
    assert body["usage"]["completion_tokens"] == 300 and body["choices"][0]["finish_reason"] == "length"
    assert headers["X-Microgpt-Prompt-Truncated"] == "kept the last 256 of 401 prompt tokens (context window 256)"
    assert headers["X-Microgpt-Max-Tokens"] is None
    body, headers = complete({"prompt": "abc", "max_tokens": 5000})
    assert headers["X-Microgpt-Max-Tokens"] == "capped to 4096 (the server's longest reply)"
    assert body["usage"]["completion_tokens"] <= 4096


def test_a_client_that_leaves_mid_stream_stops_its_sequence(server: ServerProcess) -> None:
    request = urllib.request.Request(f"{server.url}/v1/completions", method="POST", headers={
        "Content-Type": "application/json"}, data=json.dumps(
            {"prompt": "a", "max_tokens": 250, "stream": True, "temperature": 1.0}).encode())
    response = urllib.request.urlopen(request, timeout=30)
    response.readline()  # the first event arrived: the sequence is decoding
    response.close()
    deadline = time.monotonic() + 10
    while server.health()["decoding"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.health() == {"status": "ok", "model": "tiny", "decoding": 0, "waiting": 0}


def test_api_key_is_required_when_set(checkpoint: Path) -> None:
    proc = ServerProcess(checkpoint, "--api-key", "s3cret")
    try:
        with pytest.raises(openai.AuthenticationError):
            proc.client().models.list()
        with pytest.raises(openai.AuthenticationError):
            proc.client("wrong").chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}])
        assert [m.id for m in proc.client("s3cret").models.list().data] == ["tiny"]
    finally:
        proc.close()


def test_sigterm_finishes_the_reply_in_flight_and_exits_0(checkpoint: Path) -> None:
    proc = ServerProcess(checkpoint)
    result: dict = {}

    def ask() -> None:
        result["reply"] = _chat(proc.client(), "tell me a long story", max_tokens=240, temperature=1.0,
                                seed=1, extra_body={"min_tokens": 240})

    thread = threading.Thread(target=ask)
    thread.start()
    deadline = time.monotonic() + 10
    while not proc.health()["decoding"] and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.proc.send_signal(signal.SIGTERM)
    thread.join(60)
    out = proc.close(signalled=True)
    assert proc.proc.returncode == 0, out
    text, finish = result["reply"]
    assert finish == "length" and len(text) > 0
    assert "stopped" in out and "Traceback" not in out


@pytest.mark.parametrize(("host", "shown"), [("0.0.0.0", "0.0.0.0"), ("::", "[::]")])
def test_warns_when_listening_beyond_this_machine_without_a_key(checkpoint: Path, host: str, shown: str) -> None:
    """"::" is every address, IPv4 included (ServerProcess reaches it at 127.0.0.1), as uvicorn binds it."""
    proc = ServerProcess(checkpoint, "--host", host)
    out = proc.close()
    assert f"http://{shown}:{proc.port}/" in out and f"warning: listening on {shown} without --api-key" in out


@pytest.mark.parametrize("host", ["", "  "])
def test_an_empty_host_is_refused_rather_than_every_address(checkpoint: Path, host: str) -> None:
    """`--host "$HOST"` with HOST unset: as an empty --api-key, it must not open the model to the network."""
    out = subprocess.run([sys.executable, "-m", "microgpt", "serve", str(checkpoint), "--host", host], cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60,
                         check=False)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("microgpt serve: error: --host is empty: give an address (127.0.0.1: this "
                                  "machine; 0.0.0.0 or :: every one)")


def test_a_bad_port_is_one_line_and_exit_2(checkpoint: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PORT": "http"}
    out = subprocess.run([sys.executable, "-m", "microgpt", "serve", str(checkpoint)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == "microgpt serve: error: PORT='http' is not a port number (1-65535)"


def test_a_port_in_use_is_one_line_before_any_banner(checkpoint: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run([sys.executable, "-m", "microgpt", "serve", str(checkpoint), "--port", str(port)],
                             cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                             timeout=60, check=False)
    assert out.returncode == 2 and out.stdout == ""  # no banner saying it serves
    assert out.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr
