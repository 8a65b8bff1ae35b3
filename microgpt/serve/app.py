"""The HTTP side of `microgpt serve`: a Starlette app whose routes speak the OpenAI API over the Engine.

Routes: GET / (the chat page), GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions.
Bodies are read with a size cap (413 past it), parsed by `protocol`, and answered whole or, with
"stream": true, as server-sent events ending in `data: [DONE]`. A client that goes away mid-stream cancels
its sequence, which leaves the batch at the next step. With an API key, /v1/* requires
`Authorization: Bearer KEY` (compared in constant time; 401 otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from microgpt.chat import STOP_MARKERS
from microgpt.data.templates import messages_prompt
from microgpt.nn.sampling import SamplingSettings
from microgpt.serve import protocol
from microgpt.serve.engine import Engine, Job
from microgpt.serve.protocol import RequestError

MAX_BODY_BYTES = 1 << 20  # 1 MiB: far more than a context window of text
BODY_TIMEOUT_S = 30.0  # a body that trickles in slower than this (a slowloris client) gets a 408
DISCONNECT_POLL_S = 0.25  # how often a waiting non-streamed reply checks that its client is still there


class JSONResponse(Response):
    """JSON as pure ASCII: a request's text echoed back in an error (a field name holding a lone surrogate,
    say) is escaped, never an encoding error; NaN is never written."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


async def _read_body(request: HttpRequest) -> bytes:
    """The body, at most MAX_BODY_BYTES (413 past it) and within BODY_TIMEOUT_S (408 past it)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise RequestError(f"request body over {MAX_BODY_BYTES} bytes", status=413, code="body_too_large")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise RequestError(f"request body over {MAX_BODY_BYTES} bytes", status=413,
                                       code="body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(f"the request body did not arrive within {BODY_TIMEOUT_S:.0f} s", status=408,
                           code="body_timeout") from None
    except ClientDisconnect:  # nobody is left to answer; the status is for the access log only
        raise RequestError("the client went away while sending its body", status=499,
                           code="client_closed") from None
    return b"".join(chunks)


async def _read_json(request: HttpRequest) -> Any:
    raw = await _read_body(request)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RequestError(f"the body is not valid JSON ({exc})") from None


class Server:
    """The app's state: one model behind one Engine, its name, defaults and optional key."""

    def __init__(self, engine: Engine, model_name: str, defaults: SamplingSettings, api_key: str | None) -> None:
        self.engine = engine
        self.model_name = model_name
        self.defaults = defaults
        self.api_key = api_key
        self.block_size = engine.model.config.block_size

    def authorised(self, request: HttpRequest) -> bool:
        if not self.api_key:
            return True
        scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
        # the scheme is case-insensitive (RFC 7235); the header arrives as latin-1 text, the key is ASCII
        same = hmac.compare_digest(token.strip().encode("latin-1", "replace"), self.api_key.encode("ascii"))
        return same and scheme.lower() == "bearer"

    # ----- routes ---------------------------------------------------------------------------------------
    async def page(self, request: HttpRequest) -> Response:
        html = resources.files("microgpt.serve").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("{{MODEL}}", self.model_name))

    async def health(self, request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_name, **self.engine.stats()})

    async def models(self, request: HttpRequest) -> Response:
        if not self.authorised(request):
            return _error(_unauthorised())
        return JSONResponse({"object": "list", "data": [
            {"id": self.model_name, "object": "model", "created": 0, "owned_by": "microgpt"}]})

    async def chat_completions(self, request: HttpRequest) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: HttpRequest) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: HttpRequest, chat: bool) -> Response:
        try:
            if not self.authorised(request):
                raise _unauthorised()
            req = protocol.parse_request(await _read_json(request), self.defaults, chat)
        except RequestError as exc:
            return _error(exc)
        tok = self.engine.tokenizer
        text = messages_prompt(req.messages) if chat else req.prompt
        ids = [tok.bos_id, *tok.encode(text)][-(self.block_size - 1):]  # keep room for at least one token
        room = self.block_size - len(ids)
        settings = req.settings
        headers = {}
        if settings.max_new_tokens > room:
            headers["X-Microgpt-Max-Tokens"] = f"capped to {room} (context window {self.block_size})"
            settings = replace(settings, max_new_tokens=room)
        settings = replace(settings, stop_token_ids=(tok.bos_id,))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: tuple[str, str]) -> None:  # called on the decoder's thread
            with contextlib.suppress(RuntimeError):  # the event loop already closed (a forced stop): drop it
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = Job(ids, settings, tuple(req.stops) + (STOP_MARKERS if chat else ()), emit=emit,
                  strip_leading_space=chat, stream=req.stream)
        self.engine.submit(job)
        rid = protocol.new_id("chatcmpl" if chat else "cmpl")
        if req.stream:
            return StreamingResponse(self._stream(job, events, chat, rid, len(ids), req.include_usage),
                                     media_type="text/event-stream", headers=headers)
        try:
            pieces, finish = [], "stop"
            next_check = time.monotonic() + DISCONNECT_POLL_S
            while True:
                try:
                    kind, value = await asyncio.wait_for(events.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    kind, value = "wait", ""
                if time.monotonic() >= next_check:
                    if await request.is_disconnected():  # nobody to answer: free the row (or the queue place)
                        return Response(status_code=499)
                    next_check = time.monotonic() + DISCONNECT_POLL_S
                if kind == "wait":
                    continue
                if kind == "text":
                    pieces.append(value)
                elif kind == "done":
                    finish = value
                    break
                else:
                    return JSONResponse(protocol.error_body(value, "server_error"), status_code=500)
        finally:
            job.cancelled = True  # a client gone while waiting frees its row too
        body = protocol.completion_body(chat, rid, self.model_name, "".join(pieces), finish,
                                        protocol.usage(len(ids), job.completion_tokens))
        return JSONResponse(body, headers=headers)

    async def _stream(self, job: Job, events: asyncio.Queue, chat: bool, rid: str, prompt_tokens: int,
                      include_usage: bool) -> AsyncIterator[str]:
        def sse(obj: Any) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        try:
            if chat:
                yield sse(protocol.chunk_body(chat, rid, self.model_name, None, None, first=True))
            while True:
                kind, value = await events.get()
                if kind == "text":
                    yield sse(protocol.chunk_body(chat, rid, self.model_name, value, None))
                elif kind == "done":
                    yield sse(protocol.chunk_body(chat, rid, self.model_name, None, value))
                    break
                else:
                    yield sse(protocol.error_body(value, "server_error"))
                    break
            if include_usage:
                yield sse({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                           "model": self.model_name, "choices": [],
                           "usage": protocol.usage(prompt_tokens, job.completion_tokens)})
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled = True  # the client went away (or the reply ended): the row leaves the batch


def _unauthorised() -> RequestError:
    return RequestError("missing or wrong API key: send 'Authorization: Bearer KEY'", status=401,
                        kind="authentication_error", code="invalid_api_key")


def build_app(server: Server) -> Starlette:
    """The Starlette app for one Server; the engine stops when the app shuts down."""
    routes = [
        Route("/", server.page, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
    ]

    async def not_found(request: HttpRequest, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        kind = "not_found_error" if status == 404 else "invalid_request_error" if status < 500 else "server_error"
        return JSONResponse(protocol.error_body(f"{request.method} {request.url.path}: "
                                                f"{getattr(exc, 'detail', 'error')}", kind), status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.engine.stop()

    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
