"""`python -m microgpt train`: resolve the config, then run (or resume) a training run.

The knob flags live here: one per knob (--n-layer), plus --config and --preset; load_config layers them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from microgpt.commands import positive_int
from microgpt.config import GROUPS, KNOBS, PRESET_HELP, Knob, TrainConfig, format_value, load_config
from microgpt.errors import ConfigError, DatasetError
from microgpt.storage import checkpoint_name
from microgpt.train.resume import ignored_environment_note, resume_config
from microgpt.train.trainer import Trainer


def _metavar(knob: Knob) -> str:
    if knob.choices:
        return "{" + ",".join(knob.choices) + "}"
    return {int: "N", float: "X", bool: "BOOL"}.get(knob.type, "TEXT")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config, --preset and one flag per knob (e.g. --n-layer); values are parsed by load_config."""
    source = parser.add_argument_group("config sources (defaults < preset < file < env < flags)")
    source.add_argument("--config", metavar="FILE", help="JSON object of knob names to values")
    source.add_argument(
        "--preset", metavar="NAME",  # checked by load_config: an unknown one is one line, not argparse's usage
        help="start from a named profile: " + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
    )
    groups = {group: parser.add_argument_group(group) for group in GROUPS}
    for knob in KNOBS:
        help_text = f"[{knob.name}, default {format_value(knob.default) or '(empty)'}] {knob.help}"
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if knob.type is bool else {}
        groups[knob.group].add_argument(
            knob.flag, dest=knob.field, default=None, type=str, metavar=_metavar(knob),
            help=help_text.replace("%", "%%"), **extra,
        )


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The knob flags that were actually given, as {KNOB_NAME: text}."""
    return {knob.name: value for knob in KNOBS if (value := getattr(args, knob.field, None)) is not None}


def load_config_from_args(args: argparse.Namespace, env: dict[str, str] | None = None,
                          check_paths: bool = True) -> TrainConfig:
    """load_config fed from a namespace built by a parser that `add_config_arguments` extended."""
    return load_config(cli=cli_overrides(args), config_file=args.config, preset=args.preset, env=env,
                       check_paths=check_paths)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("Every knob can also be set as an environment variable of the name in brackets.\nTokenized "
                     "datasets are cached in .cache/microgpt under the working folder (MICROGPT_CACHE_DIR moves it).")
    parser.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint (its config "
                        "is used; flags given here override it, but for those of its model, tokenizer, data split, "
                        "seed, optimizer and run name)")
    parser.add_argument("--stop-after", type=positive_int, metavar="STEP",
                        help="stop after this step as if interrupted (saves latest_checkpoint; for resume tests)")
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.resume is not None and not args.resume.strip():
        raise ConfigError("--resume: the path is empty; give the checkpoint to continue, such as "
                          f"{TrainConfig.model_dir}/{checkpoint_name('latest')}")
    if args.resume and (args.config or args.preset):
        raise ConfigError(f"{'--config' if args.config else '--preset'} does not apply to --resume: a resumed run "
                          "keeps its checkpoint's settings; change one with its flag (e.g. --num-steps)")
    if args.resume:
        cfg, checkpoint = resume_config(args.resume, cli_overrides(args))
        note = ignored_environment_note(cli_overrides(args), cfg)
        if note:
            print(note, flush=True)
    else:
        cfg, checkpoint = load_config_from_args(args), None
    try:
        trainer = Trainer(cfg, resume=args.resume, stop_after=args.stop_after, checkpoint=checkpoint)
    except DatasetError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise
    return trainer.run()
