"""`python -m microgpt chat CKPT`: an interactive multi-turn chat that streams the reply as it is written.

The sampling flags live here and `chat-once` shares them: SamplingSettings defaults < CHAT_* environment
variables < flags, each value checked by its knob (microgpt.config). Every conversation is written to
LOG_DIR/chat/chat_<session>.log and LOG_DIR/chat/chat_latest.log (`--no-log` turns that off). Ctrl-C during a
reply stops that reply (kept, as far as it got, in the conversation and the log); at the prompt it leaves.
On a terminal the line is edited with readline where Python has it: arrow keys, history, long lines, and a
pasted text of several lines sent as one message.
"""

from __future__ import annotations

import argparse
import os
import sys

from microgpt.chat.log import ChatLog
from microgpt.chat.session import ChatSession
from microgpt.commands import CHECKPOINT_HELP
from microgpt.config import (
    SAMPLING_KNOBS,
    chat_env_entries,
    format_value,
    knob_from_env,
    sampling_from_env,
    sampling_from_mapping,
)
from microgpt.console import StopSignal
from microgpt.errors import no_controls, one_line
from microgpt.nn import SamplingSettings


def flag_of(field: str) -> str:
    """The chat flag that sets a sampling field: top_p -> --top-p."""
    return "--" + field.replace("_", "-")


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """--temperature, --top-k, ... (one per sampling knob) and --seed, for chat-once and chat."""
    group = parser.add_argument_group("sampling (defaults < CHAT_* environment < flags)")
    for name, knob in SAMPLING_KNOBS.items():
        help_text = f"[{knob.chat_env}, default {format_value(knob.default)}] {knob.help}"
        group.add_argument(flag_of(name), dest=name, metavar={int: "N", float: "X"}[knob.type],
                           help=help_text.replace("%", "%%"))
    group.add_argument("--seed", help=f"sampling seed: the same seed and prompt give the same reply "
                                      f"(default {SamplingSettings.seed})")


def sampling_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> SamplingSettings:
    """The settings of a reply: defaults, then CHAT_* variables (`env=None`: os.environ), then the flags given."""
    flags = {name: value for name in (*SAMPLING_KNOBS, "seed") if (value := getattr(args, name)) is not None}
    variables = chat_env_entries(env)  # a min and max out of order are one error, once the flags are laid over

    def name_of(field: str) -> str:  # the side no flag gave: its variable, unless the other side is a flag
        if field in variables or not {"min_new_tokens", "max_new_tokens"} & set(flags):
            return SAMPLING_KNOBS[field].chat_env or field
        return flag_of(field)

    base = sampling_from_env(env, check_order=False)
    return sampling_from_mapping(flags, base=base, source="command line", name_of=name_of, label_of=flag_of)


def chat_log(prefix: str) -> ChatLog:
    """A session log under LOG_DIR/chat (the LOG_DIR variable, else the knob's default folder)."""
    return ChatLog(knob_from_env("LOG_DIR"), prefix)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("--no-log", action="store_true",
                        help="do not write the conversation to LOG_DIR/chat/ (chat_<session>.log, chat_latest.log)")
    add_sampling_arguments(parser)


COMMANDS = {"/reset": "start the conversation over", "/quit": "leave (also /exit, Ctrl-D)",
            "/help": "list these commands"}


def _line_editing() -> None:
    """input() edits lines with GNU readline where Python has it (not on Windows): arrow keys, history, lines
    longer than the terminal's 4 KiB, and a pasted text of several lines arriving as one message (bracketed
    paste, which Python turns off for its own prompt). Not on a terminal that takes no escapes (TERM=dumb)."""
    try:
        import readline
    except ImportError:
        return
    if os.environ.get("TERM") == "dumb":  # its paste mode's escapes would be printed around every prompt
        return
    if "libedit" not in (readline.__doc__ or ""):  # macOS's stand-in has no such setting
        readline.parse_and_bind("set enable-bracketed-paste on")


def run(args: argparse.Namespace) -> int:
    _line_editing()
    settings = sampling_from_args(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    log = None if args.no_log else chat_log("chat")
    if log is not None:
        log.context(args.checkpoint, settings)
    print(f"chatting with {one_line(args.checkpoint)} (temperature {settings.temperature}, up to {settings.max_new_tokens} "
          "tokens). /reset starts over, /quit or Ctrl-D leaves." + (f" Log: {log.path}" if log and not log.failed else ""))
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, RuntimeError):  # Ctrl-D, or stdin or stdout closed (input() raises RuntimeError)
            print()
            return 0
        except KeyboardInterrupt:  # Ctrl-C at the prompt leaves, on a line of its own (not over the typed text)
            print()
            raise
        if line in ("/quit", "/exit"):
            return 0
        if line == "/reset":
            session.reset()
            if log is not None:
                log.note("conversation reset")
            print("(conversation cleared)")
            continue
        if line.startswith("/") and len(line.split()) == 1:  # a command word, not a message that starts with "/"
            unknown = "" if line == "/help" else f"unknown command {no_controls(line)}; "
            print(unknown + "commands: " + "; ".join(f"{name} {what}" for name, what in COMMANDS.items()))
            continue
        if not line:
            continue
        if log is not None:  # when it is sent: a crash during the reply keeps it
            log.turn("user", line)
        sys.stdout.write("assistant> ")
        pieces: list[str] = []
        stopped = ""
        reply = session.stream_reply(line, settings)
        try:
            for piece in reply:
                pieces.append(piece)
                sys.stdout.write(no_controls(piece))
                sys.stdout.flush()
            sys.stdout.write("\n")
        except KeyboardInterrupt as stop:  # Ctrl-C stops this reply, kept as far as it got; SIGTERM/SIGHUP all
            reply.close()
            stopped = "SIGTERM or SIGHUP ended the chat" if isinstance(stop, StopSignal) else "Ctrl-C"
            if isinstance(stop, StopSignal):
                raise
            print(" [stopped]")
        finally:
            if log is not None:
                log.turn("assistant", "".join(pieces))
                if stopped:
                    log.note(f"the reply above was stopped ({stopped})")
