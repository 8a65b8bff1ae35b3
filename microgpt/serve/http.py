"""The HTTP layer under the server's routes: JSON replies in pure ASCII, the loopback checks, and `Guard`,
the middleware that closes a connection whose body a reply left unread, refuses Host headers that are not
loopback when the server listens on loopback, and answers a request a forced stop cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from microgpt.errors import shown
from microgpt.serve import protocol
from microgpt.serve.protocol import RequestError


class JSONResponse(Response):
    """JSON as pure ASCII: a request's text echoed back in an error (a field name holding a lone surrogate,
    say) is escaped, never an encoding error; NaN is never written."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")




def error_response(exc: RequestError) -> JSONResponse:
    """A RequestError as the API's JSON error reply, with its status."""
    return JSONResponse(exc.body(), status_code=exc.status)


def is_loopback(host: str) -> bool:
    """Whether a host name or address (no port) is this machine's loopback: localhost, 127.x.x.x or [::1]."""
    host = host.lower().removesuffix(".")  # "localhost." is the same name, fully qualified
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)  # [::ffff:127.0.0.1] is 127.0.0.1
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def loopback_host_header(value: str) -> bool:
    """Whether a Host header names this machine by a loopback name or address, with or without a port."""
    name, port = value, ""
    if ":" in value.rpartition("]")[2]:  # a port follows the name (an IPv6 address's own colons are in [...])
        name, _, port = value.rpartition(":")
    return (port.isdigit() or not port) and is_loopback(name)


DRAIN_BYTES = 16 << 20  # of a body left unread, what is read away before the reply (then the connection closes)
DRAIN_S = 2.0  # and for how long at most: a client trickling bytes does not hold the connection longer


class Guard:
    """ASGI middleware in front of the routes, for three things uvicorn and Starlette alone get wrong here.

    - A reply sent before the request's body was read whole (a 401, 413, 415 or 408, a 404) says
      `Connection: close`, and uvicorn then closes the connection. Left open, the unread rest of the body would
      hold it open for as long as a client trickles bytes (each restarts the keep-alive timer): a slow client
      past every deadline.
    - With `loopback_only` (the server listens on a loopback address), a Host header that is not a loopback
      name or address is a 400, so a web page whose own name its DNS re-points at 127.0.0.1 (DNS rebinding)
      cannot reach the API. A request without Host (only HTTP/1.0 may leave it out) is no browser's: served.
    - A request a forced stop cuts short before its reply began gets a 503 in the API's error shape, where
      uvicorn would answer a plain-text 500.
    """

    def __init__(self, app: ASGIApp, loopback_only: bool) -> None:
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        unread = int(headers.get("content-length", "0")) > 0 or "transfer-encoding" in headers
        # a client that sent `Expect: 100-continue` uploads nothing until the first read invites it (uvicorn then
        # answers "100 Continue"): refused before that, it hears the reply's head first (no "100 Continue" is sent
        # once a reply has begun), and only then is a body it sent anyway read away
        waits_to_send = headers.get("expect", "").lower() == "100-continue"
        started = False

        async def receive_body() -> Message:
            nonlocal unread, waits_to_send
            waits_to_send = False
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                unread = False  # the body's last piece
            return message

        async def drain() -> None:
            """Read the rest of the body away: a client that writes all of it before reading (http.client, httpx)
            would otherwise have its upload reset and never see the error it is being answered."""
            drained = 0
            while unread and drained <= DRAIN_BYTES:
                message = await receive_body()
                if message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))

        async def send_closing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if unread:
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
                    if waits_to_send:
                        await send(message)
                        message = None
                    with contextlib.suppress(asyncio.TimeoutError):  # a trickling client gets DRAIN_S, no more
                        await asyncio.wait_for(drain(), DRAIN_S)
            if message is not None:
                await send(message)

        host = headers.get("host")
        if self.loopback_only and host is not None and not loopback_host_header(host):
            await error_response(RequestError(f"Host {shown(host)} is not a loopback name or address (localhost, "
                                      "127.0.0.1, [::1]), and this server listens on this machine only",
                                      status=400, code="invalid_host"))(scope, receive_body, send_closing)
            return
        try:
            await self.app(scope, receive_body, send_closing)
        except asyncio.CancelledError:  # a forced stop cancels every request still running
            if started:
                raise
            await JSONResponse(protocol.error_body("the server is stopping: this request was cut short; retry "
                                                   "later", "server_error", code="server_stopping"),
                               status_code=503)(scope, receive_body, send_closing)
