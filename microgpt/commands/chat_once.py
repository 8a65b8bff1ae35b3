"""`python -m microgpt chat-once CKPT "prompt"`: print one reply and exit.

`--prompts-file FILE` answers each line of FILE instead (blank lines and `#` comments skipped), each as a
fresh conversation with the same settings, printed as `> prompt` then the reply: a quick look at a model.

Reproducible by default: the sampling seed is fixed (as the original's rand.Seed(42)), so the same
checkpoint, prompt and settings give the same reply; `--seed` changes it. `--log` also writes the exchange
to LOG_DIR/chat/chat_once_<session>.log and chat_latest.log, as `chat` does.
"""

from __future__ import annotations

import argparse
import codecs

from microgpt.chat.session import ChatSession
from microgpt.commands import CHECKPOINT_HELP
from microgpt.commands.chat import add_sampling_arguments, chat_log, sampling_from_args
from microgpt.errors import ConfigError, no_controls
from microgpt.safe_io import read_capped

MAX_PROMPTS_BYTES = 1 << 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help=CHECKPOINT_HELP)
    parser.add_argument("prompt", nargs="*", help="what you ask (before or after the options)")
    parser.set_defaults(words_after_options="prompt")
    parser.add_argument("--prompts-file", metavar="FILE",
                        help="answer every line of FILE (one prompt a line; # comments and blank lines skipped)")
    parser.add_argument("--log", action="store_true",
                        help="also write the exchange to LOG_DIR/chat/ (chat_once_<session>.log, chat_latest.log)")
    add_sampling_arguments(parser)


def _prompts(args: argparse.Namespace) -> list[str]:
    if bool(args.prompt) == bool(args.prompts_file):
        raise ConfigError("give a prompt or --prompts-file FILE (one of the two)")
    if not args.prompts_file:
        prompt = " ".join(args.prompt)
        if not prompt.strip():
            raise ConfigError("the prompt is empty; give some text to answer")
        return [prompt]
    try:
        raw = read_capped(args.prompts_file, MAX_PROMPTS_BYTES)
        text = raw.removeprefix(codecs.BOM_UTF8).decode("utf-8")  # Notepad starts a file with a BOM
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"--prompts-file {args.prompts_file}:{line}: not UTF-8 text; save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"--prompts-file {args.prompts_file}: {exc.strerror or exc}") from None
    lines = text.split("\n")  # not splitlines(): a prompt may hold U+2028 and other line separators
    prompts = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ConfigError(f"--prompts-file {args.prompts_file}: holds no prompts (one a line)")
    return prompts


def run(args: argparse.Namespace) -> int:
    settings = sampling_from_args(args)
    prompts = _prompts(args)
    session = ChatSession.from_checkpoint(args.checkpoint)
    log = chat_log("chat_once") if args.log else None
    if log:
        log.context(args.checkpoint, settings)
    for number, prompt in enumerate(prompts):
        session.reset()
        if log and number:  # each prompt is a conversation of its own, as the log says
            log.note("conversation reset")
        reply = session.reply(prompt, settings)
        print(no_controls(f"> {prompt}\n{reply}\n" if args.prompts_file else reply), flush=True)
        if log:
            log.turn("user", prompt)
            log.turn("assistant", reply)
    return 0
