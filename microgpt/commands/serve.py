"""`python -m microgpt serve [CKPT]`: an OpenAI-compatible HTTP server and a chat page for one checkpoint.

Needs the serve extra (`pip install -e ".[serve]"`: Starlette and uvicorn). The original's MODEL_PATH and PORT
environment variables work too; flags win over them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import sys
from dataclasses import replace
from typing import Any

from microgpt.commands import layers_words
from microgpt.config import TrainConfig, sampling_from_env
from microgpt.errors import ConfigError, one_line, shown
from microgpt.nn.bounds import check_free_memory
from microgpt.nn.slots import slot_cache_bytes
from microgpt.serve.engine import Engine
from microgpt.serve.settings import ServeSettings
from microgpt.storage import checkpoint_name, checkpoint_stem, load_checkpoint

DEFAULT_CHECKPOINT = f"{TrainConfig.model_dir}/{checkpoint_name('best')}"
DEFAULT_PORT = 7860
LIMITS = ServeSettings()

EPILOG = """\
endpoints: GET / (chat page), GET /health, GET /v1/models, POST /v1/chat/completions, POST /v1/completions
examples:
  python -m microgpt serve models/best_checkpoint.npz
  curl http://127.0.0.1:7860/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{"messages": [{"role": "user", "content": "How do I make tea?"}]}'
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("checkpoint", nargs="?", metavar="CKPT",
                        help=f"checkpoint to serve (default: $MODEL_PATH, else {DEFAULT_CHECKPOINT})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    parser.add_argument("--port", help=f"port (default: $PORT, else {DEFAULT_PORT})")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1/* (default: $MICROGPT_API_KEY)")
    parser.add_argument("--max-batch", type=int, default=LIMITS.max_batch,
                        help=f"sequences decoded together (default {LIMITS.max_batch})")
    parser.add_argument("--max-waiting", type=int, default=LIMITS.max_waiting,
                        help="requests that may wait for a free row; more get a 503 with Retry-After "
                             f"(default {LIMITS.max_waiting})")
    parser.add_argument("--max-reply-tokens", type=int, default=LIMITS.max_reply_tokens, metavar="N",
                        help="the longest reply: a larger max_tokens is capped, and the reply says so in its "
                             f"X-Microgpt-Max-Tokens header (default {LIMITS.max_reply_tokens})")
    parser.add_argument("--keep-alive", type=float, default=LIMITS.keep_alive_s, metavar="S",
                        help=f"close a connection idle this long between requests (default {LIMITS.keep_alive_s:g})")
    parser.add_argument("--header-timeout", type=float, default=LIMITS.header_timeout_s, metavar="S",
                        help="a request line and headers not complete this long after they start get a 408 "
                             f"(default {LIMITS.header_timeout_s:g})")


def _port(args: argparse.Namespace) -> int:
    raw = args.port if args.port is not None else os.environ.get("PORT", "").strip() or str(DEFAULT_PORT)  # "": unset
    source = "--port" if args.port is not None else "PORT"
    if not re.fullmatch(r"[0-9]+", raw):  # int() would also take "1_8910", " 80" and other digits
        raise ConfigError(f"{source}={shown(raw, 30)} is not a port number (1-65535)")
    port = int(raw)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{source}={shown(port, 30)} is out of range: give 1-65535")
    return port


def _checkpoint_path(args: argparse.Namespace) -> str:
    """The checkpoint to serve: the argument, else $MODEL_PATH (blank: unset; ~ is the home folder, as in the
    path knobs), else the default."""
    return args.checkpoint or os.path.expanduser(os.environ.get("MODEL_PATH", "").strip()) or DEFAULT_CHECKPOINT


def _api_key(args: argparse.Namespace) -> str | None:
    """--api-key or $MICROGPT_API_KEY; it travels in an HTTP header, so printable ASCII without spaces only.
    An empty one is refused: a key from an unset variable (`--api-key "$KEY"`) must not leave the server open."""
    source = "--api-key" if args.api_key is not None else "MICROGPT_API_KEY"
    key = args.api_key if args.api_key is not None else os.environ.get("MICROGPT_API_KEY")
    if key == "":
        raise ConfigError(f"{source} is empty, which would turn authentication off; give a key, or leave "
                          f"{source} out to serve without one")
    if key is not None and not (key.isascii() and key.isprintable() and " " not in key):
        raise ConfigError(f"{source}: an API key must be printable ASCII without spaces (it is sent as "
                          "'Authorization: Bearer KEY'); choose another key")
    return key


def _limits(args: argparse.Namespace) -> ServeSettings:
    """The flags' limits, each checked: a wrong one is one line naming the flag and what to give."""
    if not 1 <= args.max_batch <= 64:
        raise ConfigError(f"--max-batch {args.max_batch}: give 1-64")
    if not 0 <= args.max_waiting <= 10_000:
        raise ConfigError(f"--max-waiting {args.max_waiting}: give 0-10000")
    if not 1 <= args.max_reply_tokens <= 1_000_000:
        raise ConfigError(f"--max-reply-tokens {args.max_reply_tokens}: give 1-1000000")
    for flag, seconds in (("--keep-alive", args.keep_alive), ("--header-timeout", args.header_timeout)):
        if not 0 < seconds <= 3600:  # also refuses nan
            raise ConfigError(f"{flag} {seconds:g}: give a number of seconds above 0 and at most 3600")
    return ServeSettings(max_batch=args.max_batch, max_waiting=args.max_waiting, keep_alive_s=args.keep_alive,
                         header_timeout_s=args.header_timeout, max_reply_tokens=args.max_reply_tokens)


def _check_batch_memory(model: object, max_batch: int) -> None:
    """The decoding batch's KV cache must fit in free memory, or the server would die on its first requests."""
    check_free_memory(slot_cache_bytes(model, max_batch), f"--max-batch {max_batch}: the batch's KV cache for "
                      "this model", "give a smaller --max-batch", ConfigError)


def _listen(host: str, port: int) -> list[socket.socket]:
    """A listening socket on every address `host` resolves to ("localhost": 127.0.0.1 and ::1), as uvicorn
    would bind them; OSError if any cannot be bound (a port in use)."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    both = {family for family, *_ in found} >= {socket.AF_INET, socket.AF_INET6}
    listeners: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(found):
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # IPv6 only where IPv4 has its own socket; "::" alone takes both
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(both))
            listener.bind(address)
            listener.listen(socket.SOMAXCONN)
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def run(args: argparse.Namespace) -> int:
    try:  # optional dependencies: only `serve` needs a web stack
        import uvicorn

        from microgpt.serve.app import Server, uvicorn_config
        from microgpt.serve.http import is_loopback
    except ImportError as exc:
        raise ConfigError(f"serve needs the serve extra ({exc.name} is missing): pip install -e \".[serve]\"") from None

    if not args.host.strip():  # `--host "$HOST"` with HOST unset must not listen on every address
        raise ConfigError("--host is empty: give an address (127.0.0.1: this machine; 0.0.0.0 or :: every one)")
    port = _port(args)
    limits = _limits(args)
    api_key = _api_key(args)
    path = _checkpoint_path(args)
    checkpoint = load_checkpoint(path)
    _check_batch_memory(checkpoint.model, limits.max_batch)
    # The one sampling type's defaults and CHAT_* variables; a request without "seed" gets fresh randomness,
    # as the OpenAI API does (chat-once stays reproducible with its fixed seed).
    defaults = replace(sampling_from_env(), seed=None)
    engine = Engine(checkpoint.model, checkpoint.tokenizer, max_batch=limits.max_batch,
                    max_waiting=limits.max_waiting)
    name = checkpoint_stem(path)
    app_server = Server(engine, name, defaults, api_key, limits)
    config = checkpoint.model.config
    try:  # bound here, before the banner: a port in use is one line, not a banner and then uvicorn's error
        listeners = _listen(args.host, port)
    except (OSError, UnicodeError, TypeError) as exc:  # the last two: a host name IDNA cannot encode
        engine.stop()
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"cannot listen on {args.host}:{port} ({reason}); choose another --port, or a --host "
                          "of this machine") from None
    shown = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL: brackets
    print(f"microgpt serve: http://{shown}:{port}/  (model {one_line(name)} from {one_line(path)}: {layers_words(config)}, "
          f"context {config.block_size} tokens; OpenAI API at /v1; "
          f"{'API key required' if api_key else 'no API key'})", flush=True)
    if not is_loopback(args.host) and not api_key:
        print(f"warning: listening on {shown} without --api-key: anyone who can reach this machine can use "
              "the model", file=sys.stderr, flush=True)
    # _serve_until_stopped stops the engine: no lifespan task to cancel
    _serve_until_stopped(uvicorn.Server(uvicorn_config(app_server, args.host, port, lifespan="off")), listeners,
                         engine, f"{args.host}:{port}")
    print("microgpt serve: stopped", flush=True)
    return 0


def _serve_until_stopped(server: Any, listeners: list[socket.socket], engine: Engine, where: str) -> None:
    """Run uvicorn's `server` on the bound sockets until a signal: the first lets replies in flight finish,
    a second cuts them short; then the engine and the sockets are let go. ConfigError if it could not serve."""
    server.capture_signals = contextlib.nullcontext  # our handlers below: a clean stop exits 0, not by the signal

    def stop(signum: int, frame: object) -> None:
        if server.should_exit:  # a second signal: stop waiting for replies in flight (app.CutShortReplies
            server.force_exit = True  # keeps their CancelledError tracebacks out of the log)
        server.should_exit = True

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    try:
        server.run(sockets=listeners)
    except SystemExit as exc:  # uvicorn exits when it cannot serve on the sockets
        raise ConfigError(f"cannot listen on {where} (in use, or not an address of this machine)") from exc
    finally:
        engine.stop()
        for listener in listeners:
            listener.close()
    if not server.started:
        raise ConfigError(f"cannot listen on {where} (in use, or not an address of this machine)")
