"""stdout and stderr that cannot crash the program: a closed pipe, a full disk or a narrow encoding.

`guard_std_streams()` (the CLI calls it first) wraps both streams. Any character the terminal's encoding
cannot show is written as a backslash escape instead of raising UnicodeEncodeError. The first OSError on
a stream (the reader of `| head` went away, `> /dev/full`, a closed terminal) points the stream's file
descriptor at /dev/null, so every later write and the final flush at exit succeed silently, and then:

- inside `output_may_fail()` (the trainer) nothing more happens: the run goes on, its log files still
  get every line;
- elsewhere the write raises `OutputClosed`, which the CLI turns into exit code 0 for a closed pipe
  (the reader had all it wanted) or one line on stderr and exit code 1 for any other failure.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any, TextIO

from microgpt.errors import MicrogptError

_tolerant = {"on": False}  # process-wide: a monitoring thread's output counts too


class OutputClosed(MicrogptError):
    """stdout or stderr stopped accepting text; `quiet` when it was a closed pipe (nothing to report)."""

    exit_code = 1

    def __init__(self, name: str, exc: OSError) -> None:
        super().__init__(f"cannot write to {name}: {exc.strerror or exc}")
        self.quiet = exc.errno == errno.EPIPE


class GuardedStream(io.TextIOBase):
    """A text stream that survives its file going away (see the module docstring)."""

    def __init__(self, stream: TextIO, name: str) -> None:
        self.stream = stream
        self.name = name
        self.failed: OSError | None = None

    def write(self, text: str) -> int:
        if self.failed is None:
            self._guard(self.stream.write, text)
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            self._guard(self.stream.flush)

    def _guard(self, action: Any, *args: Any) -> None:
        try:
            action(*args)
        except OSError as exc:
            self.failed = exc
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())  # the buffered rest and the flush at exit go nowhere
                os.close(devnull)
            if not _tolerant["on"]:
                raise OutputClosed(self.name, exc) from None

    def isatty(self) -> bool:
        return self.failed is None and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self.stream.encoding

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return self.stream.errors

    def __getattr__(self, attribute: str) -> Any:  # reconfigure, buffer, ... of the wrapped stream
        return getattr(self.stream, attribute)


def guard_std_streams() -> None:
    """Wrap sys.stdout and sys.stderr once; unencodable characters become backslash escapes. A stream the
    process was started without (`>&-`: Python makes it None) writes to /dev/null: print() to a missing stderr
    would fall back to stdout and spoil its JSON, and a library asking it isatty() would crash."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if isinstance(stream, GuardedStream):
            continue
        if stream is None:
            stream = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        if isinstance(stream, io.TextIOWrapper) and stream.errors in ("strict", "surrogateescape"):
            stream.reconfigure(errors="backslashreplace")  # the C locale's streams use surrogateescape
        setattr(sys, name, GuardedStream(stream, name))


@contextlib.contextmanager
def output_may_fail() -> Iterator[None]:
    """Inside this block a failing stdout/stderr is silently dropped instead of raising OutputClosed."""
    before = _tolerant["on"]
    _tolerant["on"] = True
    try:
        yield
    finally:
        _tolerant["on"] = before


class StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: like Ctrl-C, but for the whole command (a chat that takes Ctrl-C as "stop this
    reply" still ends on it)."""


def stop_signals() -> list[int]:
    """SIGTERM and SIGHUP, less one the process was started ignoring: `nohup` ignores SIGHUP so that a
    command outlives the terminal it was started from, and it should."""
    found = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    return [sig for sig in found if signal.getsignal(sig) is not signal.SIG_IGN]


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Inside this block SIGTERM and SIGHUP (a closed terminal) stop the command as Ctrl-C does: a
    KeyboardInterrupt (a StopSignal), which the CLI turns into "interrupted" and exit code 130. For commands
    with nothing to save (a chat): the default for those signals ends the process without a word or its
    cleanup."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = stop_signals()
    before = {sig: signal.getsignal(sig) for sig in stops}

    def interrupt(signum: int, frame: Any) -> None:
        raise StopSignal

    for sig in stops:
        signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def flush_std_streams() -> None:
    """Flush both streams now, so a failure shows up while it can still be reported (not at exit)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def print_error(text: str) -> None:
    """One line on stderr that can never raise (stderr may be the stream that failed)."""
    with output_may_fail():
        print(text, file=sys.stderr, flush=True)
