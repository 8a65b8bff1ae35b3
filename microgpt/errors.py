"""The project's user-facing errors: each one becomes a single line on stderr and an exit code, never a traceback."""

import unicodedata


def shown(value: object, limit: int = 60) -> str:
    """A value for an error message: its repr, cut short (a 1 MiB string or a 400-digit number is not echoed)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def one_line(text: str) -> str:
    """text with every unprintable character (newline, NUL, backspace...) written as its escape: it stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def clipped(text: str, limit: int = 120) -> str:
    """text on one line (see one_line), cut in the middle to at most `limit` characters when longer: a 20,000
    character path or value stays readable in a message, its start and its end kept."""
    text = one_line(text)
    return text if len(text) <= limit else f"{text[:limit // 2 - 1]}…{text[len(text) - limit // 2:]}"


def no_controls(text: str) -> str:
    """text with its control characters but newline and tab (ESC, NUL, BEL, carriage return...) written as
    escapes: a prompt or a reply shown on a terminal, or in a log read there, cannot move the cursor, retitle
    the window or clear the screen. Other characters stay, zero-width joiners in emoji included."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in text)


class MicrogptError(Exception):
    """Base class: the message is shown as one line; `exit_code` is what the CLI returns."""

    exit_code = 2


class ConfigError(MicrogptError):
    """A knob has a bad value; the message names the knob and the value."""


class DatasetError(MicrogptError):
    """A dataset cannot be used; `problems` holds every `PATH:LINE: message` found."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class WriteFailed(MicrogptError):
    """A file could not be written (a full disk, a quota, a size limit): exit code 1, as for every failed
    write, where bad input is 2."""

    exit_code = 1


class CheckpointError(MicrogptError):
    """A checkpoint is missing, damaged, truncated or of an unknown format version."""


def counted(n: int, noun: str) -> str:
    """'1 problem', '2 problems', '1,200 records': a count with its noun in the right number."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
