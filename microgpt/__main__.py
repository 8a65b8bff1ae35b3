"""`python -m microgpt <command>`: one entry point, one module per subcommand under microgpt/commands/."""

from __future__ import annotations

import argparse
import contextlib
import difflib
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import NoReturn

from microgpt import __version__
from microgpt.console import (
    OutputClosed,
    flush_std_streams,
    guard_std_streams,
    print_error,
    stop_signals_interrupt,
)
from microgpt.errors import MicrogptError, one_line

# name -> (module under microgpt.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a GPT on a JSONL dataset (or resume a run)"),
    "chat-once": ("chat_once", "answer one prompt with a checkpoint and exit"),
    "chat": ("chat", "interactive multi-turn chat with a checkpoint, streaming tokens"),
    "eval": ("eval", "score a checkpoint on held-out datasets: loss, perplexity, bits per byte"),
    "validate-dataset": ("validate_dataset", "check a JSONL dataset and print its statistics"),
    "data": ("data", "fetch public datasets (data get dolly) or import your own transcripts"),
    "serve": ("serve", "serve a checkpoint over an OpenAI-compatible HTTP API, with a chat page"),
    "export": ("export", "write a checkpoint as model.safetensors + config.json + tokenizer.json"),
    "bench": ("bench", "measure training and generation throughput (against PyTorch when installed)"),
    "tui": ("tui", "the terminal dashboard: configure, train, watch, browse runs and models, chat"),
    "gpu-check": ("gpu_check", "report the compute this machine offers and what TRAIN_DEVICE=gpu does"),
}


NEGATIVE_NUMBER = re.compile(r"-\d+(\.\d*)?|-\.\d+")  # "-1" or "-2.5" among a prompt's words is text, not an option


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser, its mistakes said in one line (`microgpt train: error: ...`) with exit code 2, as
    every other bad input is; the usage block stays with --help."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{self.prog}: error: {one_line(message)} (see `{self.prog} --help`)")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """One sub-parser per command; each command module adds its own arguments."""
    parser = OneLineParser(prog="microgpt", description="A from-scratch GPT you can read and train.")
    parser.add_argument("--version", action="version", version=f"microgpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"microgpt.commands.{module_name}")
        # no abbreviations: `--lr 0.1` would silently be --lr-schedule, and a new flag could change what one means
        command_parser = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        module.add_arguments(command_parser)
        command_parser.set_defaults(run=module.run, parser=command_parser)
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """parser.parse_args, except that words after the options go to the positional a command names in its
    `words_after_options` default (`chat-once CKPT --temperature 0 "a prompt"`: argparse alone would have
    taken the prompt as empty before the option and refused the words after it)."""
    args, extra = parser.parse_known_args(argv)
    into = getattr(args, "words_after_options", None)
    if into and extra:
        cut = extra.index("--") if "--" in extra else len(extra)  # after "--" every word is a word, "-x" too
        words = [w for w in extra[:cut] if not w.startswith("-") or NEGATIVE_NUMBER.fullmatch(w)] + extra[cut + 1:]
        if len(words) == len(extra) - (cut < len(extra)):
            setattr(args, into, [*getattr(args, into), *words])
            extra = []
    if extra:
        command = getattr(args, "parser", parser)
        known = [flag for action in command._actions for flag in action.option_strings]
        near = [match for word in extra if word.startswith("--")
                for match in difflib.get_close_matches(word.split("=")[0], known, n=1, cutoff=0.8)]
        command.error(f"unrecognized arguments: {' '.join(extra)}" + (f" (did you mean {near[0]}?)" if near else ""))
    return args


@contextlib.contextmanager
def _ctrl_c_exits_at_once() -> Iterator[None]:
    """While the command modules import (NumPy among them), exit 130 at once on Ctrl-C: a KeyboardInterrupt
    raised inside an extension module's import can surface as an ImportError with a traceback instead."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    signal.signal(signal.SIGINT, lambda signum, frame: os._exit(130))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch, and turn every MicrogptError into one line on stderr plus its exit code.

    stdout and stderr are guarded first (microgpt.console): a closed pipe ends the command quietly with
    exit code 0, any other failing output is one line and exit code 1, never a traceback. An OSError no
    command turned into its own error (a full disk, a folder that vanished) is one line and exit code 1.
    """
    guard_std_streams()
    command = "microgpt"
    try:
        with _ctrl_c_exits_at_once():
            parser = build_parser()
        args = parse(parser, argv)
        if not getattr(args, "run", None):
            parser.print_help()
            return 2
        command = " ".join(["microgpt", args.command, *([args.action] if getattr(args, "action", None) else [])])
        # SIGTERM and a closed terminal (SIGHUP) stop a command as Ctrl-C does, so its cleanup runs (temporary
        # files go, a dashboard stops its trainer); the trainer and the server (uvicorn) handle them themselves
        with contextlib.nullcontext() if args.command == "serve" else stop_signals_interrupt():
            code = int(args.run(args) or 0)
        flush_std_streams()
        return code
    except OutputClosed as exc:
        if not exc.quiet:
            print_error(f"{command}: error: {one_line(str(exc))}")
        return 0 if exc.quiet else exc.exit_code
    except MicrogptError as exc:  # one line: a path or value in it may hold a newline or an escape sequence
        print_error(f"{command}: error: {one_line(str(exc))}")
        return exc.exit_code
    except OSError as exc:  # the last boundary: a disk, folder or permission problem no command foresaw
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{command}: error: {one_line(where + str(exc.strerror or exc))}")
        return 1
    except KeyboardInterrupt:
        print_error("interrupted")
        return 130


def entry() -> int:
    """`python -m microgpt`: a Ctrl-C at any moment, even while modules are still importing, exits with 130."""
    try:
        return main()
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(entry())
