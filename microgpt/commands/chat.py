"""`python -m microgpt chat CKPT`: an interactive multi-turn chat that streams the reply as it is written."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from microgpt.chat import add_decoding_arguments

    parser.add_argument("checkpoint", help="a .npz checkpoint (or the original Go project's .json)")
    add_decoding_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from microgpt.chat import ChatSession, settings_from_args

    settings = settings_from_args(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    print(f"chatting with {args.checkpoint} (temperature {settings.temperature}, up to {settings.max_new_tokens} "
          "tokens). /reset starts over, /quit or Ctrl-D leaves.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            session.reset()
            print("(conversation cleared)")
            continue
        if not line:
            continue
        sys.stdout.write("assistant> ")
        for piece in session.stream_reply(line, settings):
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
