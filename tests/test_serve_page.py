"""The chat page at GET /, in a real headless browser: it streams a reply, keeps the conversation, shows tokens/s.

Needs Playwright (the test extra) and a Chromium on PATH (Debian: `apt-get install chromium`); the test skips,
saying which is missing, where either is not there.
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import socket
import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (test extra)")
from test_serve import ServerProcess, checkpoint  # noqa: F401 - the fixture is shared

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
PAGE = Path(__file__).resolve().parents[1] / "microgpt" / "serve" / "page.html"
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")


@contextlib.contextmanager
def open_page(url: str) -> Iterator[tuple[Any, list[dict]]]:
    """The chat page at `url` open in headless Chromium: (the page, the JSON bodies it has posted)."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
        page = browser.new_page()
        sent: list[dict] = []
        page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
        page.goto(url + "/")
        yield page, sent
        browser.close()


@contextlib.contextmanager
def chat_page(model: Path) -> Iterator[tuple[Any, list[dict]]]:
    """A real server and its chat page open in headless Chromium: (the page, the JSON bodies it has posted)."""
    server = ServerProcess(model)
    try:
        with open_page(server.url) as opened:
            yield opened
    finally:
        server.close()


RESET = object()  # a ScriptedServer feed item: break the connection (a reset) instead of ending the stream


class ScriptedServer:
    """Serves the chat page and answers its n-th chat request with the stream the test writes into `feeds[n]`,
    piece by piece: a reply stays in flight for as long as the test wants (the real model is too quick to
    catch mid-reply reliably)."""

    def __init__(self) -> None:
        self.feeds: list[queue.Queue] = [queue.Queue() for _ in range(8)]
        taken = iter(self.feeds)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = PAGE.read_text(encoding="utf-8").replace("{{MODEL}}", "scripted").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    feed = next(taken)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.end_headers()  # HTTP/1.0: the stream ends when the connection closes
                self.wfile.flush()
                try:
                    while (piece := feed.get()) is not None:
                        if piece is RESET:  # the connection breaks mid-reply: the client reads a reset
                            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            self.connection.close()
                            return
                        self.wfile.write(piece.encode())
                        self.wfile.flush()
                except OSError:
                    pass  # the page stopped reading (Stop, New chat)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def _event(self, n: int, data: dict | str) -> None:
        self.feeds[n].put(f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n")

    def say(self, n: int, text: str) -> None:
        self._event(n, {"choices": [{"index": 0, "delta": {"content": text}}]})

    def finish(self, n: int) -> None:
        self._event(n, {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        self._event(n, {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}})
        self._event(n, "[DONE]")
        self.feeds[n].put(None)

    def reset(self, n: int) -> None:
        self.feeds[n].put(RESET)

    def fail(self, n: int, message: str) -> None:
        self._event(n, {"error": {"message": message, "type": "server_error"}})
        self.feeds[n].put(None)

    def close(self) -> None:
        for feed in self.feeds:
            feed.put(None)  # releases any reply still waiting for words
        self.httpd.shutdown()
        self.httpd.server_close()


@contextlib.contextmanager
def scripted_page() -> Iterator[tuple[Any, list[dict], ScriptedServer]]:
    server = ScriptedServer()
    try:
        with open_page(server.url) as (page, sent):
            yield page, sent, server
    finally:
        server.close()


def shown(page: Any) -> list[dict]:
    """The conversation on screen, as the chat messages it stands for."""
    return page.evaluate("""[...document.querySelectorAll('.turn.user, .turn.assistant')].map(d => ({
        role: d.classList.contains('user') ? 'user' : 'assistant',
        content: d.textContent.replace(/^(You|Model): /, '')}))""")


def wait_until(page: Any, condition: str) -> None:
    page.wait_for_function(condition, timeout=10_000)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": text}


def send(page: Any, text: str) -> None:
    """Type `text` into the message box and press Enter, as a user sends a message."""
    page.fill("#input", text)
    page.press("#input", "Enter")


def ask(page: Any, text: str, status: str = "ready") -> None:
    """Type `text`, send it, and wait until the page's status line says `status` (after some reply began)."""
    send(page, text)
    page.wait_for_function(f"document.getElementById('status').textContent === '{status}' && "
                           "document.querySelectorAll('.assistant, .error').length > 0", timeout=30_000)
    page.wait_for_function(f"document.getElementById('status').textContent === '{status}'", timeout=30_000)


@needs_browser
def test_the_page_streams_replies_and_keeps_the_conversation(checkpoint: Path) -> None:  # noqa: F811
    with chat_page(checkpoint) as (page, sent):
        assert page.inner_text("#model") == "tiny"
        page.fill("#max_tokens", "20")
        for question in ("how do i boil an egg", "and how long for a soft one"):
            ask(page, question)
        turns = page.locator(".turn").all_inner_texts()
        assert [t.split(":")[0] for t in turns] == ["You", "Model", "You", "Model"]
        assert "tokens/s" in page.inner_text("#speed")
        assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]  # history was sent
        assert sent[-1]["stream"] is True and sent[-1]["max_tokens"] == 20


@needs_browser
def test_a_stream_that_ends_before_done_is_an_error_and_not_kept(checkpoint: Path) -> None:  # noqa: F811
    cut_short = ('data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n'
                 'data: {"choices": [{"index": 0, "delta": {"content": "half a rep"}}]}\n\n')  # no [DONE]
    with chat_page(checkpoint) as (page, sent):
        page.route("**/v1/chat/completions", lambda route: route.fulfill(
            status=200, headers={"Content-Type": "text/event-stream"}, body=cut_short))
        ask(page, "hello", status="error")
        assert "cut off" in page.inner_text(".error")
        page.unroute("**/v1/chat/completions")
        page.fill("#max_tokens", "5")
        ask(page, "hello again")
    assert sent[-1]["messages"] == [{"role": "user", "content": "hello again"}]  # the broken turn was dropped


@needs_browser
def test_a_connection_that_breaks_mid_reply_says_the_reply_was_cut_off() -> None:
    """Chromium rejects the read of a reset stream ("network error"): the page says what happened instead."""
    with scripted_page() as (page, _sent, server):
        send(page, "hello")
        server.say(0, "half a re")
        wait_until(page, "[...document.querySelectorAll('.assistant')].pop()?.textContent === 'Model: half a re'")
        server.reset(0)
        wait_until(page, "document.getElementById('status').textContent === 'error'")
        assert page.inner_text(".error") == ("Error: the reply was cut off (the connection ended before it was "
                                             "complete)")
        assert shown(page) == [] and page.input_value("#input") == "hello"  # to send again


STATUS = "document.getElementById('status').textContent"
REPLY = "[...document.querySelectorAll('.assistant')].pop()?.textContent"  # the latest reply


@needs_browser
def test_while_a_reply_streams_send_is_stop_and_stop_keeps_the_partial_reply() -> None:
    with scripted_page() as (page, sent, server):
        send(page, "first question")
        server.say(0, "par")
        server.say(0, "tial")
        wait_until(page, f"{REPLY} === 'Model: partial'")
        page.fill("#input", "second question")
        page.press("#input", "Enter")  # does nothing while a reply streams: neither sends nor stops
        server.say(0, " reply")
        wait_until(page, "document.querySelector('.assistant').textContent === 'Model: partial reply'")
        assert len(sent) == 1 and page.input_value("#input") == "second question"
        assert shown(page) == [user("first question"), assistant("partial reply")]
        assert page.inner_text("#send") == "Stop" and page.inner_text("#status") == "generating…"

        page.click("#send")  # Stop: the partial reply stays, as the model's turn
        wait_until(page, f"{STATUS} === 'stopped'")
        assert page.inner_text("#send") == "Send"
        page.press("#input", "Enter")
        server.say(1, "second reply")
        server.finish(1)
        wait_until(page, f"{STATUS} === 'ready' && {REPLY} === 'Model: second reply'")
        send(page, "third question")
        server.finish(2)
        wait_until(page, f"{STATUS} === 'ready'")
        assert [r["messages"] for r in sent] == [
            [user("first question")],
            [user("first question"), assistant("partial reply"), user("second question")],
            [user("first question"), assistant("partial reply"), user("second question"), assistant("second reply"),
             user("third question")]]
        assert shown(page) == sent[-1]["messages"] + [assistant("")]


@needs_browser
def test_new_chat_during_a_reply_drops_that_reply() -> None:
    with scripted_page() as (page, sent, server):
        send(page, "old question")
        server.say(0, "old partial")
        wait_until(page, f"{REPLY} === 'Model: old partial'")
        page.click("#clear")
        assert shown(page) == [] and page.inner_text("#send") == "Send"
        server.say(0, " and more")  # what the server would still have sent for the old reply
        server.finish(0)
        wait_until(page, f"{STATUS} === 'ready'")
        send(page, "new chat question")
        server.say(1, "fresh")
        server.finish(1)
        wait_until(page, f"{STATUS} === 'ready' && {REPLY} === 'Model: fresh'")
        assert sent[-1]["messages"] == [user("new chat question")]
        assert shown(page) == [user("new chat question"), assistant("fresh")]


@needs_browser
def test_after_an_error_the_conversation_is_as_shown() -> None:
    with scripted_page() as (page, sent, server):
        send(page, "first question")
        server.say(0, "first reply")
        server.finish(0)
        wait_until(page, f"{STATUS} === 'ready' && {REPLY} === 'Model: first reply'")
        send(page, "second question")
        server.say(1, "half a rep")
        server.fail(1, "the model broke")
        wait_until(page, f"{STATUS} === 'error'")
        assert "the model broke" in page.inner_text(".error")
        assert shown(page) == [user("first question"), assistant("first reply")]  # the failed turn is gone
        assert page.input_value("#input") == "second question"  # ready to send again
        assert page.inner_text("#send") == "Send"
        send(page, "third question")
        server.say(2, "third reply")
        server.finish(2)
        wait_until(page, f"{STATUS} === 'ready' && {REPLY} === 'Model: third reply'")
        assert sent[-1]["messages"] == [user("first question"), assistant("first reply"), user("third question")]
        assert shown(page) == sent[-1]["messages"] + [assistant("third reply")]
