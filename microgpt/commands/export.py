"""`python -m microgpt export CKPT OUT_DIR`: the model as model.safetensors + config.json + tokenizer.json.

Needs the safetensors package (the serve extra). The folder loads back anywhere a checkpoint does (chat-once,
chat, eval, serve), and in PyTorch with the README's snippet.
"""

from __future__ import annotations

import argparse

from microgpt.commands import CHECKPOINT_HELP, layers_words
from microgpt.errors import ConfigError, one_line
from microgpt.storage import load_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help=CHECKPOINT_HELP)
    parser.add_argument("out_dir", metavar="OUT_DIR", help="folder to write, whole or not at all (created if "
                        "needed; an existing one must be empty, or hold an earlier export and --force be given)")
    parser.add_argument("--force", action="store_true", help="replace the earlier export in OUT_DIR (atomically: "
                        "the old one stays until the new one is complete)")


def run(args: argparse.Namespace) -> int:
    try:  # optional dependency: the serve extra
        from microgpt.storage.export import save_export
    except ImportError:
        raise ConfigError("export needs the safetensors package: pip install -e \".[serve]\"") from None
    checkpoint = load_checkpoint(args.checkpoint)
    out = save_export(checkpoint, args.out_dir, source=args.checkpoint, replace=args.force)
    c = checkpoint.model.config
    print(f"exported {one_line(args.checkpoint)} to {one_line(str(out))}/ (model.safetensors, config.json, tokenizer.json): "
          f"{layers_words(c)}, {checkpoint.model.num_parameters():,} parameters")
    return 0
