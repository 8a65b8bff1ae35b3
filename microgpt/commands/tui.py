"""`python -m microgpt tui`: the terminal dashboard, the same as `python -m microgpt.tui`."""

from microgpt.tui.__main__ import add_arguments, run

__all__ = ["add_arguments", "run"]
