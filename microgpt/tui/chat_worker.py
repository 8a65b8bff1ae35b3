"""Run the chat model on a background thread, so a reply streams in while the UI keeps answering keys.

The UI thread only ever puts commands on one queue and takes results off another; it never
waits. The worker thread does the slow parts (loading a checkpoint, generating tokens) and
posts what it has as it goes:

    ("loaded", path)   ("error", message)   ("piece", text)   ("stopped", "")   ("done", "")   ("idle", "")

"idle" follows every command, so the UI can count what is still pending.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from microgpt.chat.session import ChatSession
from microgpt.errors import MicrogptError


def default_open_session(path: str) -> Any:
    """The real model: `microgpt.chat.ChatSession.from_checkpoint` (called in the worker thread)."""
    return ChatSession.from_checkpoint(path)


class ChatWorker:
    """One thread, one session; commands run in order: load, send, reset."""

    def __init__(self, open_session: Callable[[str], Any] = default_open_session) -> None:
        self.open_session = open_session
        self.session: Any = None
        self.pending = 0  # commands submitted whose "idle" has not been polled yet
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # set: the reply being written ends after its current piece

    def _submit(self, *command: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, daemon=True, name="chat-worker")
            self._thread.start()
        self.pending += 1
        self._commands.put(command)

    @property
    def busy(self) -> bool:
        """True while a command is queued or running."""
        return self.pending > 0

    def load(self, path: str) -> None:
        """Open a checkpoint (replaces the current session)."""
        self._submit("load", path)

    def send(self, text: str, settings: Any) -> None:
        """Ask for a reply to `text`; its pieces arrive through `poll`."""
        self._stop.clear()
        self._submit("send", text, settings)

    def stop(self) -> None:
        """End the reply being written after its current piece ("stopped", then "done"); the session keeps it
        as far as it got, as `chat` does on Ctrl-C."""
        self._stop.set()

    def reset(self) -> None:
        """Forget the conversation history the session keeps."""
        self._submit("reset")

    def poll(self) -> list[tuple[str, str]]:
        """Every result posted since the last call; never blocks."""
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                break
        self.pending -= sum(1 for kind, _ in out if kind == "idle")
        return out

    def _loop(self) -> None:
        """Thread body: take commands forever (blocking on the queue is fine here: this is not the UI)."""
        while True:
            kind, *args = self._commands.get()
            try:
                self._run(kind, *args)
            except MicrogptError as exc:
                self._results.put(("error", str(exc)))
            except Exception as exc:  # noqa: BLE001 -- a broken model must not kill the thread serving the UI
                self._results.put(("error", f"{type(exc).__name__}: {exc}"))
            finally:
                self._results.put(("idle", ""))

    def _run(self, kind: str, *args: Any) -> None:
        if kind == "load":
            self.session = self.open_session(args[0])
            self._results.put(("loaded", args[0]))
        elif kind == "send":
            if self.session is None:
                raise MicrogptError("no model loaded: press L for the latest checkpoint or p for a path")
            reply = self.session.stream_reply(args[0], args[1])
            for piece in reply:
                self._results.put(("piece", piece))
                if self._stop.is_set():
                    reply.close()
                    self._results.put(("stopped", ""))
                    break
            self._results.put(("done", ""))
        elif kind == "reset" and self.session is not None:
            self.session.reset()
