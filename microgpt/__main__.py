"""`python -m microgpt <command>`: one entry point, one module per subcommand under microgpt/commands/."""

from __future__ import annotations

import argparse
import importlib
import sys

from microgpt import __version__
from microgpt.errors import MicrogptError

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


def build_parser() -> argparse.ArgumentParser:
    """One sub-parser per command; each command module adds its own arguments."""
    parser = argparse.ArgumentParser(prog="microgpt", description="A from-scratch GPT you can read and train.")
    parser.add_argument("--version", action="version", version=f"microgpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"microgpt.commands.{module_name}")
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse, dispatch, and turn every MicrogptError into one line on stderr plus its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except MicrogptError as exc:
        print(f"microgpt {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
