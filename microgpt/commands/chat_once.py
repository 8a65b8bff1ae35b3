"""`python -m microgpt chat-once CKPT "prompt"`: print one reply and exit."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from microgpt.chat import add_decoding_arguments

    parser.add_argument("checkpoint", help="a .npz checkpoint (or the original Go project's .json)")
    parser.add_argument("prompt", nargs="+", help="what you ask")
    add_decoding_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from microgpt.chat import ChatSession, settings_from_args

    settings = settings_from_args(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    print(session.reply(" ".join(args.prompt), settings))
    return 0
