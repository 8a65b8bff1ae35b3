"""The chat page at GET /, in a real headless browser: it streams a reply, keeps the conversation, shows tokens/s.

Needs Playwright (the test extra) and a Chromium on PATH (Debian: `apt-get install chromium`); the test skips,
saying which is missing, where either is not there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (test extra)")
from test_serve import ServerProcess, checkpoint  # noqa: F401 - the fixture is shared

BROWSER = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
def test_the_page_streams_replies_and_keeps_the_conversation(checkpoint: Path) -> None:  # noqa: F811
    server = ServerProcess(checkpoint)
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
            page = browser.new_page()
            sent: list[dict] = []
            page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
            page.goto(server.url + "/")
            assert page.inner_text("#model") == "tiny"
            page.fill("#max_tokens", "20")
            for question in ("how do i boil an egg", "and how long for a soft one"):
                page.fill("#input", question)
                page.press("#input", "Enter")
                page.wait_for_function("document.getElementById('status').textContent === 'ready' && "
                                       "document.querySelectorAll('.assistant').length > 0", timeout=30_000)
                page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=30_000)
            turns = page.locator(".turn").all_inner_texts()
            assert [t.split(":")[0] for t in turns] == ["You", "Model", "You", "Model"]
            assert "tokens/s" in page.inner_text("#speed")
            assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]  # history was sent
            assert sent[-1]["stream"] is True and sent[-1]["max_tokens"] == 20
            browser.close()
    finally:
        server.close()


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on PATH (Debian: apt-get install chromium)")
def test_a_stream_that_ends_before_done_is_an_error_and_not_kept(checkpoint: Path) -> None:  # noqa: F811
    server = ServerProcess(checkpoint)
    cut_short = ('data: {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}\n\n'
                 'data: {"choices": [{"index": 0, "delta": {"content": "half a rep"}}]}\n\n')  # no [DONE]
    try:
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox"])
            page = browser.new_page()
            sent: list[dict] = []
            page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" else None)
            page.route("**/v1/chat/completions", lambda route: route.fulfill(
                status=200, headers={"Content-Type": "text/event-stream"}, body=cut_short))
            page.goto(server.url + "/")
            page.fill("#input", "hello")
            page.press("#input", "Enter")
            page.wait_for_function("document.getElementById('status').textContent === 'error'", timeout=30_000)
            assert "cut off" in page.inner_text(".error")
            page.unroute("**/v1/chat/completions")
            page.fill("#max_tokens", "5")
            page.fill("#input", "hello again")
            page.press("#input", "Enter")
            page.wait_for_function("document.getElementById('status').textContent === 'ready'", timeout=30_000)
            browser.close()
        assert sent[-1]["messages"] == [{"role": "user", "content": "hello again"}]  # the broken turn was dropped
    finally:
        server.close()
