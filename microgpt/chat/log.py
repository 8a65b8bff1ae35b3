"""Chat logs: every conversation written down, so a user can find what their model said.

A `ChatLog` appends timestamped turns to two files under LOG_DIR/chat/: one per session
(`tui_chat_<session>.log` for the TUI, `chat_<session>.log` for `chat`, `chat_once_<session>.log` for
`chat-once --log`) and `chat_latest.log`, which each new session starts afresh (a new file in its place) and
then owns: an older session still running goes on in its own file only, so the latest log never mixes two
conversations. The
first lines name the checkpoint and the sampling settings; a later change of either is written when the next
turn is.

Logs are appended and flushed turn by turn (a crash loses at most the turn being written, never what is
already there); they are notes, not state, so they are not written atomically. A failed write never
stops the chat: `warn` is told once and the log stays off for the rest of the session.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from microgpt.atomic import LineFile, atomic_write_text
from microgpt.errors import no_controls, one_line

LATEST = "chat_latest.log"


def session_stamp(now: datetime | None = None) -> str:
    """A session name that sorts by time and differs between processes: 20260226-101500_4242."""
    return f"{(now or datetime.now()).strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"


def describe_settings(settings: Any) -> str:
    """Sampling settings as `name=value` pairs (lists such as stop tokens left out)."""
    fields = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(vars(settings))
    return " ".join(f"{name}={value}" for name, value in fields.items() if not isinstance(value, (list, tuple)))


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


class ChatLog:
    """One session's log; `turn` records a message, `note` anything else (a reset, a new checkpoint)."""

    def __init__(self, log_dir: str | os.PathLike[str], prefix: str, session: str | None = None,
                 warn: Callable[[str], None] = _warn_stderr) -> None:
        self.folder = Path(log_dir) / "chat"
        self.path = self.folder / f"{prefix}_{session or session_stamp()}.log"
        self.latest = self.folder / LATEST
        self.warn = warn
        self.failed = False
        self._started = False
        self._context = ""  # the checkpoint and settings last written
        # chat_latest.log as this session made it, held open for the session: while it is open its inode cannot
        # be reused, so a file at that path with another inode is a newer session's
        self._latest_fd: int | None = None

    def _owns_latest(self) -> bool:
        """Whether chat_latest.log is still the file this session made, not a newer session's."""
        try:
            now, held = os.stat(self.latest), os.fstat(self._latest_fd)  # type: ignore[arg-type]
        except (OSError, TypeError):
            return False
        return (now.st_ino, now.st_dev) == (held.st_ino, held.st_dev)

    def _write(self, text: str) -> None:
        """Append `text` to the session's file and, while this session owns it, to chat_latest.log; the first
        write of a session puts a new chat_latest.log (a new file, so a new inode) in place of the last one."""
        if self.failed:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            paths = [self.path, *([self.latest] if self._owns_latest() else [])]
            if not self._started:
                atomic_write_text(self.latest, "")
                self._latest_fd = os.open(self.latest, os.O_RDONLY)
                paths.append(self.latest)
            for path in paths:
                log = LineFile(path)  # a turn is written whole or not at all
                try:  # text from a terminal that sent bytes that are not UTF-8 holds lone surrogates: escaped
                    log.append(text)
                finally:
                    log.close(sync=False)
            self._started = True
        except OSError as exc:
            self.failed = True
            for path in (self.path, self.latest):  # a log the full disk left empty is not kept
                with contextlib.suppress(OSError):
                    if path.stat().st_size == 0:
                        path.unlink()
            self.warn(f"chat log {self.path} cannot be written ({exc.strerror or exc}); the chat goes on unlogged")

    def context(self, checkpoint: str, settings: Any) -> None:
        """Say which checkpoint and settings the next turns use (written only when they change)."""
        line = f"checkpoint {checkpoint} | {describe_settings(settings)}"
        if line != self._context:
            self._context = line
            self.note(line)

    def note(self, text: str) -> None:
        """A line of the log's own (`# ...`), on one line whatever it quotes (a checkpoint path may hold any byte)."""
        self._write(f"[{datetime.now().isoformat(timespec='seconds')}] # {one_line(text)}\n")

    def turn(self, role: str, text: str) -> None:
        """One message: `[2026-02-26T10:15:00] user: ...`; continuation lines are indented."""
        body = no_controls(text).replace("\n", "\n    ")
        self._write(f"[{datetime.now().isoformat(timespec='seconds')}] {role}: {body}\n")
