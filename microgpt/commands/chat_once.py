"""`python -m microgpt chat-once CKPT "prompt"`: print one reply and exit.

Reproducible by default: the sampling seed is fixed (as the original's rand.Seed(42)), so the same
checkpoint, prompt and settings give the same reply; `--seed` changes it.
"""

from __future__ import annotations

import argparse

from microgpt.chat import ChatSession
from microgpt.commands.chat import add_sampling_arguments, sampling_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .npz checkpoint (or the original Go project's .json)")
    parser.add_argument("prompt", nargs="+", help="what you ask")
    add_sampling_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    print(session.reply(" ".join(args.prompt), settings))
    return 0
