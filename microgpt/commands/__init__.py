"""One module per `python -m microgpt` subcommand, plus the argument types they share."""

from __future__ import annotations

import argparse
from typing import Any

CHECKPOINT_HELP = "a .npz checkpoint, an export folder, or the original Go project's .json"


def layers_words(config: Any) -> str:
    """'1 layer x 16, vocab 60': a model's size as the export and serve summaries say it."""
    return f"{config.n_layer} layer{'s' * (config.n_layer != 1)} x {config.n_embd}, vocab {config.vocab_size}"


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (counts, sizes, steps)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value
