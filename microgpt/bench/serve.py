"""`bench --serve`: what batching buys a server. The same requests, sent by 1, 4 and 8 clients at once, against
the same requests sent one after another, through the real HTTP stack on this machine: the app on uvicorn
exactly as `serve` builds it (`uvicorn_config`), the clients on urllib threads in the same process.

Each request asks for exactly TOKENS new tokens (min_tokens = max_tokens), each with its own seed, so every
run does the same work and every reply can be compared with the one it got alone (they must be equal).
A window sends the requests one at a time, then all at once; the figures are the medians over the windows
(the command's --windows, 7 by default), so one window slowed by another program does not decide them.
The model is random, of the default preset's shape, unless a checkpoint is given: speed depends on the shape,
not on what the weights say.
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from microgpt.bench.throughput import machine_description
from microgpt.data.tokenizer import CharTokenizer
from microgpt.errors import ConfigError
from microgpt.nn import GPT, GPTConfig, SamplingSettings
from microgpt.serve.engine import Engine
from microgpt.serve.settings import ServeSettings
from microgpt.storage import load_checkpoint

TOKENS = 32  # with the short prompts below, this fits the default block of 64 tokens
CLIENTS = (1, 4, 8)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(checkpoint: str | None) -> tuple[Any, Any, str]:
    if checkpoint:
        loaded = load_checkpoint(checkpoint)
        return loaded.model, loaded.tokenizer, checkpoint
    tokenizer = CharTokenizer("".join(chr(c) for c in range(32, 127)) + "\n")
    config = GPTConfig(vocab_size=tokenizer.vocab_size, zero_init=False)  # the default shape, random everywhere
    return GPT(config, seed=0), tokenizer, f"random {config.n_layer} x {config.n_embd} model, block {config.block_size}"


def _ask(url: str, i: int) -> tuple[str, int]:
    body = {"messages": [{"role": "user", "content": f"Hi, {i}!"}],
            "max_tokens": TOKENS, "min_tokens": TOKENS, "seed": 1000 + i, "temperature": 0.8}
    request = urllib.request.Request(f"{url}/v1/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=300) as response:
        reply = json.loads(response.read())
    return reply["choices"][0]["message"]["content"], reply["usage"]["completion_tokens"]


def _timed(url: str, requests: list[int], clients: int) -> tuple[float, list[str]]:
    """Aggregate generated tokens per second, and the replies, for `requests` sent by `clients` at once."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda i: _ask(url, i), requests))
    seconds = time.perf_counter() - start
    return sum(tokens for _, tokens in results) / seconds, [text for text, _ in results]


def run_serve_bench(checkpoint: str | None = None, windows: int = 3) -> dict[str, Any]:
    """tokens/s for 1, 4 and 8 concurrent clients and for the same requests one at a time (median of windows)."""
    import uvicorn  # optional dependencies: the serve extra (uvicorn, and Starlette under serve.app)

    from microgpt.serve.app import Server, uvicorn_config

    model, tokenizer, described = _model(checkpoint)
    limits = ServeSettings(max_batch=max(CLIENTS))
    engine = Engine(model, tokenizer, max_batch=limits.max_batch, max_waiting=limits.max_waiting)
    port = _free_port()
    server = uvicorn.Server(uvicorn_config(Server(engine, "bench", SamplingSettings(), None, limits), "127.0.0.1",
                                           port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}"
    rows = []
    try:
        _timed(url, [0], 1)  # warm up
        for clients in CLIENTS:
            requests = list(range(clients))
            sequential, together, identical = [], [], True
            for _ in range(windows):
                rate, alone = _timed(url, requests, 1)
                sequential.append(rate)
                rate, replies = _timed(url, requests, clients)
                together.append(rate)
                identical &= replies == alone
            seq, con = statistics.median(sequential), statistics.median(together)
            if not seq or not con:  # a model that ends every reply at once: no speed to compare
                raise ConfigError(f"{described}: its replies end at once (no tokens written), so bench --serve has "
                                  "nothing to time; give a checkpoint that writes text")
            rows.append({"clients": clients, "sequential_tok_s": seq, "concurrent_tok_s": con,
                         "speedup": con / seq, "identical_replies": identical})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        engine.stop()
    return {"model": described, "machine": machine_description(), "tokens_per_request": TOKENS, "windows": windows,
            "results": rows}


def format_serve_bench(report: dict[str, Any]) -> str:
    lines = [(f"serve bench: {report['model']}; {report['tokens_per_request']} tokens per request, "
             f"median of {report['windows']} windows; {report['machine']}"),
             f"{'clients':>7}  {'one at a time':>14}  {'together':>10}  {'speedup':>7}  identical replies"]
    for r in report["results"]:
        lines.append(f"{r['clients']:>7}  {r['sequential_tok_s']:>10,.0f} t/s  {r['concurrent_tok_s']:>6,.0f} t/s  "
                     f"{r['speedup']:>6.2f}x  {'yes' if r['identical_replies'] else 'NO'}")
    return "\n".join(lines)
