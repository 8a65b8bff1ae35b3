"""The HTTP side of `microgpt serve`: a Starlette app whose routes speak the OpenAI API over the Engine.

Routes: GET / (the chat page), GET /health, GET /v1/models (and /v1/models/{id}), POST /v1/chat/completions,
POST /v1/completions. Bodies must say they are JSON (415 otherwise: a web page cannot then post to the server
without the browser asking first) and are read with a size cap (413 past it) and a deadline (408), parsed by
`protocol`, tokenized off the event loop (a long prompt does not hold up other clients), and answered whole
or, with "stream": true, as server-sent events ending in `data: [DONE]`. A client that goes away mid-stream
cancels its sequence, which leaves the batch at the next step; a request that would wait behind too many
others gets a 503 with Retry-After. With an API key, /v1/* requires `Authorization: Bearer KEY` (compared in
constant time; 401 otherwise). A `Guard` in front of the routes closes a connection whose body was left unread,
refuses Host headers that are not loopback when the server listens on loopback, and answers a request a forced
stop cuts short. `uvicorn_config` puts the app on uvicorn with the limits of ServeSettings, including a deadline
for each request's head, which uvicorn alone does not have.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import html
import json
import logging
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from importlib import resources
from typing import Any

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect
from starlette.requests import Request as HttpRequest
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from microgpt.chat.session import STOP_MARKERS
from microgpt.data.templates import messages_prompt
from microgpt.errors import clipped, shown
from microgpt.nn.sampling import SamplingSettings
from microgpt.safe_io import parse_json
from microgpt.serve import protocol
from microgpt.serve.engine import Busy, Engine, Job
from microgpt.serve.http import Guard, JSONResponse, error_response, is_loopback
from microgpt.serve.protocol import RequestError
from microgpt.serve.settings import ServeSettings


async def _read_body(request: HttpRequest, limits: ServeSettings) -> bytes:
    """The body, at most max_body_bytes (413 past it) and within body_timeout_s (408 past it)."""
    most = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > most:
        raise RequestError(f"request body over {most} bytes", status=413, code="body_too_large")
    chunks: list[bytes] = []

    async def collect() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > most:
                raise RequestError(f"request body over {most} bytes", status=413, code="body_too_large")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(collect(), limits.body_timeout_s)
    except asyncio.TimeoutError:  # not yet the builtin TimeoutError on Python 3.10
        raise RequestError(f"the request body did not arrive within {limits.body_timeout_s:g} s", status=408,
                           code="body_timeout") from None
    except ClientDisconnect:  # nobody is left to answer; the status is for the access log only
        raise RequestError("the client went away while sending its body", status=499,
                           code="client_closed") from None
    return b"".join(chunks)


async def _read_json_body(request: HttpRequest, limits: ServeSettings) -> bytes:
    """The body of a request that says it is JSON (parsed later, off the event loop: _json)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        raise RequestError(f"send the body as JSON with 'Content-Type: application/json', not "
                           f"{shown(media_type or 'no Content-Type')}", status=415,
                           code="unsupported_media_type")
    return await _read_body(request, limits)


def _json(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except ValueError as exc:
        raise RequestError(f"the body is not valid JSON ({exc})") from None


class Server:
    """The app's state: one model behind one Engine, its name, sampling defaults, optional key and limits."""

    def __init__(self, engine: Engine, model_name: str, defaults: SamplingSettings, api_key: str | None,
                 limits: ServeSettings | None = None) -> None:
        self.engine = engine
        self.model_name = model_name
        self.defaults = defaults
        self.api_key = api_key
        self.limits = limits or ServeSettings()
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
        page = resources.files("microgpt.serve").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(page.replace("{{MODEL}}", html.escape(self.model_name)))  # a file name may hold markup

    async def health(self, request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok", "model": self.model_name, **self.engine.stats()})

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.model_name, "object": "model", "created": 0, "owned_by": "microgpt"}

    async def models(self, request: HttpRequest) -> Response:
        if not self.authorised(request):
            return error_response(_unauthorised())
        return JSONResponse({"object": "list", "data": [self._model_card()]})

    async def model(self, request: HttpRequest) -> Response:
        if not self.authorised(request):
            return error_response(_unauthorised())
        name = request.path_params["name"]
        if name != self.model_name:
            return error_response(RequestError(f"no model {shown(name)} here: this server has "
                                       f"{self.model_name!r}", "model", status=404, code="model_not_found"))
        return JSONResponse(self._model_card())

    async def chat_completions(self, request: HttpRequest) -> Response:
        return await self._complete(request, chat=True)

    async def completions(self, request: HttpRequest) -> Response:
        return await self._complete(request, chat=False)

    async def _complete(self, request: HttpRequest, chat: bool) -> Response:
        try:
            if not self.authorised(request):
                raise _unauthorised()
            raw = await _read_json_body(request, self.limits)
            self.engine.admit()  # a place first: a request refused for want of one costs no parsing or tokenizing
        except RequestError as exc:
            return error_response(exc)
        except Busy as exc:
            return self._busy(exc)
        handed_over = False
        try:
            try:  # on a thread: a big body or a long prompt does not hold up the other clients
                req, ids = await asyncio.to_thread(self._prepare, raw, chat)
            except RequestError as exc:
                return error_response(exc)
            job, events, headers = self._job(req, ids, chat)
            handed_over = True
            self.engine.submit(job, admitted=True)
        except Busy as exc:  # the server began stopping meanwhile
            return self._busy(exc)
        finally:
            if not handed_over:  # a bad request, or a client gone while it was prepared
                self.engine.release()
        return await self._answer(request, job, events, headers, req, chat)

    def _prepare(self, raw: bytes, chat: bool) -> tuple[protocol.Request, list[int]]:
        """The request checked, and its prompt as token ids after BOS (on a worker thread)."""
        req = protocol.parse_request(_json(raw), self.defaults, chat)
        tok = self.engine.tokenizer
        return req, [tok.bos_id, *tok.encode(messages_prompt(req.messages) if chat else req.prompt)]

    def _busy(self, exc: Busy) -> Response:
        return JSONResponse(protocol.error_body(f"the server is busy ({exc}); retry later", "server_error",
                                                code="server_busy"),
                            status_code=503, headers={"Retry-After": str(self.limits.retry_after_s)})

    def _job(self, req: protocol.Request, ids: list[int],
             chat: bool) -> tuple[Job, asyncio.Queue, dict[str, str]]:
        """The decoding job for a checked request, the queue its events arrive in, and the reply's headers (a
        prompt cut to the context window, a reply length capped)."""
        tok = self.engine.tokenizer
        headers = {}
        if len(ids) > self.block_size:  # the context window keeps the prompt's end; it slides as the reply grows
            headers["X-Microgpt-Prompt-Truncated"] = (f"kept the last {self.block_size} of {len(ids)} prompt "
                                                      f"tokens (context window {self.block_size})")
            ids = ids[-self.block_size:]
        settings = req.settings
        longest = self.limits.max_reply_tokens
        if settings.max_new_tokens > longest:
            headers["X-Microgpt-Max-Tokens"] = f"capped to {longest} (the server's longest reply)"
            settings = replace(settings, max_new_tokens=longest, min_new_tokens=min(settings.min_new_tokens, longest))
        settings = replace(settings, stop_token_ids=(tok.bos_id,))
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(event: tuple[str, str]) -> None:  # called on the decoder's thread
            with contextlib.suppress(RuntimeError):  # the event loop already closed (a forced stop): drop it
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = Job(ids, settings, tuple(req.stops) + (STOP_MARKERS if chat else ()), emit=emit,
                  strip_leading_space=chat, stream=req.stream, labels=STOP_MARKERS if chat else ())
        return job, events, headers

    async def _answer(self, request: HttpRequest, job: Job, events: asyncio.Queue, headers: dict[str, str],
                      req: protocol.Request, chat: bool) -> Response:
        """The reply to a submitted job: a stream of its events, or the whole reply once it is done."""
        ids = job.prompt_ids
        reply = protocol.Reply(chat, protocol.new_id("chatcmpl" if chat else "cmpl"), self.model_name)
        if req.stream:
            return StreamingResponse(self._stream(job, events, reply, len(ids), req.include_usage),
                                     media_type="text/event-stream", headers=headers)
        try:
            pieces, finish = [], "stop"
            poll = self.limits.disconnect_poll_s
            next_check = time.monotonic() + poll
            while True:
                try:
                    kind, value = await asyncio.wait_for(events.get(), poll)
                except asyncio.TimeoutError:  # the builtin TimeoutError only from Python 3.11
                    kind, value = "wait", ""
                if time.monotonic() >= next_check:
                    if await request.is_disconnected():  # nobody to answer: free the row (or the queue place)
                        return Response(status_code=499)
                    next_check = time.monotonic() + poll
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
        body = protocol.completion_body(reply, "".join(pieces), finish, protocol.usage(len(ids), job.completion_tokens))
        return JSONResponse(body, headers=headers)

    async def _stream(self, job: Job, events: asyncio.Queue, reply: protocol.Reply, prompt_tokens: int,
                      include_usage: bool) -> AsyncIterator[str]:
        def sse(obj: Any) -> str:
            return f"data: {json.dumps(obj)}\n\n"

        try:
            if reply.chat:
                yield sse(protocol.chunk_body(reply, None, None, first=True))
            while True:
                kind, value = await events.get()
                if kind == "text":
                    yield sse(protocol.chunk_body(reply, value, None))
                elif kind == "done":
                    yield sse(protocol.chunk_body(reply, None, value))
                    break
                else:
                    yield sse(protocol.error_body(value, "server_error"))
                    break
            if include_usage:
                yield sse(protocol.usage_chunk(reply, protocol.usage(prompt_tokens, job.completion_tokens)))
            yield "data: [DONE]\n\n"
        finally:
            job.cancelled = True  # the client went away (or the reply ended): the row leaves the batch


def _unauthorised() -> RequestError:
    return RequestError("missing or wrong API key: send 'Authorization: Bearer KEY'", status=401,
                        code="invalid_api_key")


def build_app(server: Server, loopback_only: bool = False) -> Starlette:
    """The Starlette app for one Server, behind a Guard (loopback_only: refuse Host headers that are not
    loopback); the engine stops when the app shuts down."""
    routes = [
        Route("/", server.page, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/models/{name:path}", server.model, methods=["GET"]),
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/v1/completions", server.completions, methods=["POST"]),
    ]

    async def not_found(request: HttpRequest, exc: Exception) -> Response:  # a 404 or a 405, as OpenAI words them
        return JSONResponse(protocol.error_body(f"{request.method} {clipped(request.url.path)}: "
                                                f"{getattr(exc, 'detail', 'error')}", "invalid_request_error"),
                            status_code=getattr(exc, "status_code", 404),
                            headers=getattr(exc, "headers", None))  # a 405's Allow: the methods the route takes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        server.engine.stop()

    app = Starlette(routes=routes, middleware=[Middleware(Guard, loopback_only=loopback_only)],
                    exception_handlers={404: not_found, 405: not_found}, lifespan=lifespan)
    app.router.redirect_slashes = False  # a redirect would be built from the client's Host header: a 404 instead
    return app


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for each request's head (request line and headers): it must
    be complete `header_timeout_s` after the connection opens or after its first byte arrives on a kept-alive
    connection. Past it a client that sent part of a head gets a 408, one that sent nothing is closed quietly.
    uvicorn alone waits forever for a head that trickles in (a slowloris client holding connections open).
    A request HTTP itself cannot parse (a Content-Length of "abc") gets its 400 in the API's JSON error shape,
    where uvicorn alone answers in plain text."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.head_deadline = self.loop.call_later(self.header_timeout_s, self.head_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiting_for_head = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
        if waiting_for_head and self.head_deadline is None:
            self.head_deadline = self.loop.call_later(self.header_timeout_s, self.head_too_slow)
        elif not waiting_for_head and self.head_deadline is not None:
            self.head_deadline.cancel()
            self.head_deadline = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.head_deadline is not None:
            self.head_deadline.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        cause = sys.exc_info()[1]  # uvicorn calls this while handling h11's error, whose text says what was wrong
        detail = str(cause) if isinstance(cause, h11.RemoteProtocolError) and str(cause) else msg
        detail = re.sub(r"bytearray\(b('.*')\)", r"\1", detail)  # h11 shows the line as Python's repr of bytes
        self._reply_and_close(b"400 Bad Request", f"malformed HTTP request: {clipped(detail)}", "bad_http_request")

    def head_too_slow(self) -> None:
        self.head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            self._reply_and_close(b"408 Request Timeout", f"the request line and headers did not arrive within "
                                  f"{self.header_timeout_s:g} s", "header_timeout")
        self.transport.close()

    def _reply_and_close(self, status: bytes, message: str, code: str) -> None:
        """An error in the API's JSON shape, written straight to the connection, which then closes: the app
        never saw this request, so no route answers it."""
        body = json.dumps(protocol.error_body(message, "invalid_request_error", code=code)).encode()
        self.transport.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
                             b"content-length: %d\r\n\r\n%s" % (status, len(body), body))
        self.transport.close()


class CutShortReplies(logging.Filter):
    """Drops uvicorn's traceback for each reply a stop cut short (a second signal, or replies still running when
    the graceful stop's time ran out): the stop was asked for, and uvicorn has already said in one line how many
    it cut; a page of CancelledError tracebacks per reply says nothing more."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


CUT_SHORT = CutShortReplies()


class ClientsGone(logging.Filter):
    """Drops asyncio's bare "socket.send() raised exception." line: it is logged when the server writes a few
    times more to a client that has gone (closed the page, stopped a stream), which is normal, and it names
    neither the request nor that nothing is wrong."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


CLIENTS_GONE = ClientsGone()


def uvicorn_config(server: Server, host: str, port: int, **options: Any) -> uvicorn.Config:
    """The app for `server` on uvicorn with the server's limits: keep-alive, head deadline, graceful stop; on a
    loopback `host`, only loopback Host headers are served."""
    limits = server.limits
    logging.getLogger("uvicorn.error").addFilter(CUT_SHORT)  # the same filter once, however many servers
    logging.getLogger("asyncio").addFilter(CLIENTS_GONE)
    return uvicorn.Config(build_app(server, loopback_only=is_loopback(host)), host=host, port=port,
                          http=functools.partial(HeadDeadlineProtocol, header_timeout_s=limits.header_timeout_s),
                          timeout_keep_alive=limits.keep_alive_s,  # type: ignore[arg-type]
                          timeout_graceful_shutdown=limits.graceful_shutdown_s,  # type: ignore[arg-type]
                          **{"log_level": "warning", **options})
