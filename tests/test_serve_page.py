"""The chat page at GET /, in a real headless browser: it streams a reply, keeps the conversation, shows tokens/s.

Needs Playwright (the test extra) and a Chromium on PATH (Debian: `apt-get install chromium`); the test skips,
saying which is missing, where either is not there.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (test extra)")
from test_serve import ServerProcess, checkpoint  # noqa: F401 - the fixture is shared

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@contextlib.contextmanager
def chat_page(model: Path) -> Iterator[tuple[Any, list[dict]]]:
    """A real server and its chat page open in headless Chromium: (the page, the JSON bodies it has posted)."""
    server = ServerProcess(model)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
            page = browser.new_page()
            sent: list[dict] = []
            page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
            page.goto(server.url + "/")
            yield page, sent
            browser.close()
    finally:
        server.close()


def ask(page: Any, text: str, status: str = "ready") -> None:
    """Type `text`, send it, and wait until the page's status line says `status` (after some reply began)."""
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(f"document.getElementById('status').textContent === '{status}' && "
                           "document.querySelectorAll('.assistant, .error').length > 0", timeout=30_000)
    page.wait_for_function(f"document.getElementById('status').textContent === '{status}'", timeout=30_000)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
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


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
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
