"""How `microgpt serve` behaves under load and toward slow clients: the one home of its limits (where it
listens, host and port, is the command's, in commands/serve.py).

The command's flags, the app, the decoding engine and `bench --serve` all read these defaults from here. No
web framework is imported, so the command can name the defaults in its help before the serve extra loads.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits. Times are in seconds.

    A request that arrives while `max_batch` sequences are decoding waits for a free row; once `max_waiting`
    requests wait, more are refused at once (503 with Retry-After) instead of piling up behind a queue that
    could not be served before their clients give up.
    """

    max_batch: int = 8  # sequences decoded together, one forward pass per step for all of them
    max_waiting: int = 64  # requests waiting for a free row; past this a request gets a 503
    retry_after_s: int = 1  # the Retry-After a 503 carries: about how long a row takes to come free
    max_reply_tokens: int = 4096  # a longer max_tokens is capped (and the reply says so): a row is not held for ever
    max_body_bytes: int = 1 << 20  # 1 MiB: far more than a context window of text; past it a 413
    body_timeout_s: float = 30.0  # a body that trickles in slower than this (a slowloris client) gets a 408
    header_timeout_s: float = 10.0  # a request line and headers not complete this long after their first byte
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    graceful_shutdown_s: float = 30.0  # SIGTERM: stop accepting, let replies in flight finish for this long
    disconnect_poll_s: float = 0.25  # how often a waiting non-streamed reply checks that its client is there
