"""The project's user-facing errors: each one becomes a single line on stderr and an exit code, never a traceback."""


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


class CheckpointError(MicrogptError):
    """A checkpoint is missing, damaged, truncated or of an unknown format version."""
