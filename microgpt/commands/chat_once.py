"""`python -m microgpt chat-once CKPT "prompt"`: print one reply and exit.

Reproducible by default: the sampling seed is fixed (as the original's rand.Seed(42)), so the same
checkpoint, prompt and settings give the same reply; `--seed` changes it. `--log` also writes the exchange
to LOG_DIR/chat/chat_once_<session>.log and chat_latest.log, as `chat` does.
"""

from __future__ import annotations

import argparse

from microgpt.chat import ChatSession
from microgpt.commands.chat import add_sampling_arguments, chat_log, sampling_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a .npz checkpoint (or the original Go project's .json)")
    parser.add_argument("prompt", nargs="+", help="what you ask")
    parser.add_argument("--log", action="store_true",
                        help="also write the exchange to LOG_DIR/chat/ (chat_once_<session>.log, chat_latest.log)")
    add_sampling_arguments(parser)


def run(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    prompt = " ".join(args.prompt)
    reply = session.reply(prompt, settings)
    print(reply)
    if args.log:
        log = chat_log("chat_once")
        log.context(args.checkpoint, settings)
        log.turn("user", prompt)
        log.turn("assistant", reply)
    return 0
