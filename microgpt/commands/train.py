"""`python -m microgpt train`: resolve the config, then run (or resume) a training run."""

from __future__ import annotations

import argparse

from microgpt.errors import ConfigError, DatasetError

# the checkpoint's model and tokenizer decide these: a resume cannot change them
FIXED_ON_RESUME = ("N_LAYER", "N_EMBD", "N_HEAD", "BLOCK_SIZE", "TOKENIZER", "TOKEN_VOCAB_SIZE", "BPE_ENCODING",
                   "BPE_FILE", "VAL_SPLIT", "SEED")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from microgpt.train.config import add_config_arguments

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "Every knob can also be set as an environment variable of the name in brackets."
    parser.add_argument("--resume", metavar="CKPT", help="continue the run saved in this checkpoint "
                        "(its config is used; flags given here override it)")
    parser.add_argument("--stop-after", type=int, metavar="STEP",
                        help="stop after this step as if interrupted (saves latest_checkpoint; for resume tests)")
    add_config_arguments(parser)


def resume_config(checkpoint_path: str, args: argparse.Namespace):
    """The checkpoint and its stored config, with the knob flags given on this command line applied on top."""
    from microgpt.storage import load_checkpoint
    from microgpt.train.config import TrainConfig, cli_overrides, load_config

    checkpoint = load_checkpoint(checkpoint_path)
    stored = checkpoint.meta.get("train_config")
    if stored is None:
        from microgpt.errors import CheckpointError

        raise CheckpointError(f"{checkpoint_path}: holds no training state to resume (not a training checkpoint)")
    base = TrainConfig.from_dict(stored).to_dict()
    resumed = load_config(cli={**{k.upper(): v for k, v in base.items()}, **cli_overrides(args)}, env={})
    for knob in FIXED_ON_RESUME:
        if getattr(resumed, knob.lower()) != base[knob.lower()]:
            raise ConfigError(f"{knob}={getattr(resumed, knob.lower())}: a resumed run keeps its model and "
                              f"tokenizer ({knob}={base[knob.lower()]}); start a new run to change it")
    return resumed, checkpoint


def run(args: argparse.Namespace) -> int:
    import sys

    from microgpt.train.config import load_config_from_args
    from microgpt.train.trainer import Trainer

    cfg, checkpoint = resume_config(args.resume, args) if args.resume else (load_config_from_args(args), None)
    try:
        trainer = Trainer(cfg, resume=args.resume, stop_after=args.stop_after, checkpoint=checkpoint)
    except DatasetError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        raise
    return trainer.run()
