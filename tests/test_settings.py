"""Every setting has one home: its default is written once, and every entry point that samples text starts
from the same SamplingSettings defaults, layered the same way (defaults < CHAT_* environment < flags)."""

from __future__ import annotations

import ast
import dataclasses
import math
from pathlib import Path

import pytest
from test_tui_fakes import wait_until

from microgpt.__main__ import main
from microgpt.chat.session import ChatSession
from microgpt.config import KNOBS, SAMPLING_KNOBS, TrainConfig, config_from_dict, sampling_from_mapping
from microgpt.data.tokenizer import build_tokenizer
from microgpt.errors import ConfigError
from microgpt.nn import GPT, GPTConfig, OptimSettings, SamplingSettings
from microgpt.storage import save_checkpoint
from microgpt.train.trainer import Trainer
from microgpt.tui.base import Context
from microgpt.tui.chat_tab import ChatTab
from microgpt.tui.chat_worker import ChatWorker
from microgpt.tui.knobs import KnobCatalog

PACKAGE = Path(__file__).resolve().parent.parent / "microgpt"
OWNERS = {"": TrainConfig, "model": GPTConfig, "optim": OptimSettings, "sampling": SamplingSettings}


def is_literal(node: ast.AST | None) -> bool:
    """A default written as a value (1337, "logs", (0.85, 0.99), -1), not a name; None means 'not given'."""
    if isinstance(node, ast.Constant):
        return node.value is not None
    if isinstance(node, ast.UnaryOp):
        return is_literal(node.operand)
    return isinstance(node, (ast.Tuple, ast.List)) and all(is_literal(e) for e in node.elts)


def literal_defaults() -> list[tuple[str, str, str, object]]:
    """(name, where, file:line, value) for every literal default in the package: dataclass/class fields,
    function parameters and argparse `default=`."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        file = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and is_literal(item.value):
                        found.append((item.target.id, node.name, f"{file}:{item.lineno}", ast.literal_eval(item.value)))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = [*args.posonlyargs, *args.args]
                pairs = [*zip(positional[len(positional) - len(args.defaults):], args.defaults),
                         *zip(args.kwonlyargs, args.kw_defaults)]
                found += [(arg.arg, f"{node.name}()", f"{file}:{arg.lineno}", ast.literal_eval(default))
                          for arg, default in pairs if is_literal(default)]
            elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
                flags = [a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")]
                for keyword in node.keywords:
                    if flags and keyword.arg == "default" and is_literal(keyword.value):
                        found.append((flags[0][2:].replace("-", "_"), "argparse", f"{file}:{node.lineno}",
                                      ast.literal_eval(keyword.value)))
    return found


def test_each_knob_default_is_written_once_in_its_owner() -> None:
    """A setting's default value may be written as a literal only in the dataclass that owns it (any other
    place refers to that field, e.g. `log_dir=TrainConfig.log_dir`); a literal with the knob's name and
    the knob's value anywhere else (a field, a parameter, an argparse default) is a second copy."""
    defaults = literal_defaults()
    problems = []
    for knob in KNOBS:
        part, _, leaf = knob.path.rpartition(".")
        owner = OWNERS[part].__name__
        copies = [f"{where} ({line})" for name, where, line, value in defaults
                  if name in (leaf, knob.field) and value == knob.default and where != owner]
        if copies:
            problems.append(f"{knob.name}: default {knob.default!r} written again at {copies}")
    assert not problems, "\n".join(problems)


def test_the_literal_finder_sees_fields_parameters_and_flags() -> None:
    found = {(name, where, value) for name, where, _, value in literal_defaults()}
    assert ("log_dir", "TrainConfig", "logs") in found  # the home itself
    assert ("atol", "gradcheck()", 1e-7) in found  # a parameter
    assert ("windows", "argparse", 7) in found  # an argparse default


# --- one sampling type, the same defaults everywhere ---------------------------------------------------

@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[SamplingSettings]:
    """Every SamplingSettings a reply is asked for, by any entry point; the 'reply' is a fixed word."""
    seen: list[SamplingSettings] = []

    def fake_stream_reply(self, user_text, settings=None):
        seen.append(settings)
        yield "ok"

    monkeypatch.setattr(ChatSession, "stream_reply", fake_stream_reply)
    for knob in SAMPLING_KNOBS.values():
        monkeypatch.delenv(knob.chat_env, raising=False)
    return seen


@pytest.fixture
def checkpoint(tmp_path: Path) -> str:
    tokenizer = build_tokenizer("char", 300, ["hello there"])
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=16), seed=0)
    return str(save_checkpoint(tmp_path / "tiny.npz", model, tokenizer, {"step": 0}))


def reply_in_tui_chat_tab(checkpoint: str, tmp_path: Path) -> None:
    """Load the checkpoint in the TUI's chat tab (real worker thread) and send one message."""
    ctx = Context(tmp_path, KnobCatalog(), {}, runner=None)
    tab = ChatTab(ctx, ChatWorker())
    tab.load(checkpoint)
    assert wait_until(lambda: tab.loaded, tab.tick), tab.messages
    tab.draft.set("hi")
    tab.send()
    assert wait_until(lambda: not tab.streaming, tab.tick), tab.messages


def start_every_chat_entry_point(checkpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["chat-once", checkpoint, "hi"]) == 0
    lines = iter(["hi"])
    monkeypatch.setattr("builtins.input", lambda prompt="": _next_or_eof(lines))
    assert main(["chat", checkpoint]) == 0
    reply_in_tui_chat_tab(checkpoint, tmp_path)


def _next_or_eof(lines):
    """The next typed line, then end of input (Ctrl-D) as `input()` reports it."""
    try:
        return next(lines)
    except StopIteration:
        raise EOFError from None


def test_chat_once_chat_and_the_tui_chat_tab_start_from_the_same_defaults(captured, checkpoint, tmp_path,
                                                                          monkeypatch) -> None:
    start_every_chat_entry_point(checkpoint, tmp_path, monkeypatch)
    assert captured == [SamplingSettings()] * 3


def test_chat_variables_reach_every_chat_entry_point(captured, checkpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CHAT_TEMPERATURE", "0.2")
    monkeypatch.setenv("CHAT_MAX_NEW_TOKENS", "7")
    start_every_chat_entry_point(checkpoint, tmp_path, monkeypatch)
    assert captured == [SamplingSettings(temperature=0.2, max_new_tokens=7)] * 3


def test_trainer_samples_use_the_same_defaults(captured, tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(f'{{"id": "{i}", "record_type": "knowledge", "text": "fact {i}."}}\n' for i in range(20)))
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    cfg = config_from_dict({"dataset_path": str(data), "tokenizer": "char", "token_vocab_size": 300, "n_layer": 1,
                            "n_embd": 8, "n_head": 2, "block_size": 16, "batch_size": 2, "num_steps": 2,
                            "eval_interval": 2, "eval_steps": 1, "sample_count": 2,
                            "model_dir": str(tmp_path / "models"), "log_dir": str(tmp_path / "logs")})
    assert Trainer(cfg).run() == 0  # one evaluation, at step 2, with two samples
    assert [s.seed for s in captured] == [cfg.seed + 2, cfg.seed + 3]  # each sample seeded by the run and step
    assert [dataclasses.replace(s, seed=SamplingSettings.seed) for s in captured] == [SamplingSettings()] * 2


def test_eval_reads_a_runs_settings_through_the_same_types(checkpoint) -> None:
    """`eval` scores text and never samples; the settings it rebuilds from a run carry the same defaults."""
    assert config_from_dict(TrainConfig().to_dict()).sampling == SamplingSettings()


# --- sampling_from_mapping: what a server will call with a request's fields ----------------------------

def test_sampling_from_mapping_lays_checked_values_over_a_base() -> None:
    base = SamplingSettings(top_k=5)
    settings = sampling_from_mapping({"temperature": 0, "max_new_tokens": "12", "seed": None}, base=base)
    assert settings == SamplingSettings(top_k=5, temperature=0.0, max_new_tokens=12, seed=None)
    assert sampling_from_mapping({}) == SamplingSettings()


@pytest.mark.parametrize(("values", "fragment"), [
    ({"temperature": math.nan}, "temperature=nan: must be a finite number (from request)"),
    ({"temperature": math.inf}, "temperature=inf: must be a finite number"),
    ({"temperature": -0.1}, "temperature=-0.1: must be >= 0"),
    ({"top_p": 0}, "top_p=0: must be > 0 and <= 1"),
    ({"top_k": True}, "top_k=true: not a whole number"),
    ({"max_new_tokens": 0}, "max_new_tokens=0: must be >= 1"),
    ({"repetition_penalty": "strong"}, "repetition_penalty='strong': not a number"),
    ({"min_new_tokens": 9, "max_new_tokens": 8}, "min_new_tokens=9: must not exceed max_new_tokens (8)"),
    ({"seed": -1}, "seed=-1: must be >= 0"),
    ({"temprature": 1}, "temprature: not a sampling setting"),
])
def test_sampling_from_mapping_refuses_bad_values_in_one_line(values: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        sampling_from_mapping(values, source="request")
    assert "\n" not in str(exc.value) and fragment in str(exc.value), str(exc.value)


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_a_sampling_seed_out_of_range_names_the_sampling_default_not_the_trainings(seed: int) -> None:
    with pytest.raises(ConfigError) as exc:
        sampling_from_mapping({"seed": seed}, source="command line")
    assert f"seed={seed}: must be >= 0 and <= 4294967295 (default {SamplingSettings.seed})" in str(exc.value)
    assert SamplingSettings.seed != TrainConfig().seed  # else this test could not tell them apart


def test_a_min_from_the_environment_and_a_max_from_a_flag_are_checked_together_once() -> None:
    import argparse

    from microgpt.commands.chat import sampling_from_args

    def args(**flags: str) -> argparse.Namespace:
        return argparse.Namespace(**{name: flags.get(name) for name in (*SAMPLING_KNOBS, "seed")})

    settings = sampling_from_args(args(max_new_tokens="500"), env={"CHAT_MIN_NEW_TOKENS": "200"})
    assert (settings.min_new_tokens, settings.max_new_tokens) == (200, 500)  # valid once both are laid on
    with pytest.raises(ConfigError, match=r"^CHAT_MIN_NEW_TOKENS=200: must not exceed CHAT_MAX_NEW_TOKENS \(128\)$"):
        sampling_from_args(args(), env={"CHAT_MIN_NEW_TOKENS": "200"})
    # the side from the command line says so; the other's name says it is the environment's
    with pytest.raises(ConfigError, match=r"^--min-new-tokens=30 \(from command line\): must not exceed "
                                          r"CHAT_MAX_NEW_TOKENS \(20\)$"):
        sampling_from_args(args(min_new_tokens="30"), env={"CHAT_MAX_NEW_TOKENS": "20"})
    with pytest.raises(ConfigError, match=r"^CHAT_MIN_NEW_TOKENS=500: must not exceed --max-new-tokens \(5, "
                                          r"from command line\)$"):
        sampling_from_args(args(max_new_tokens="5"), env={"CHAT_MIN_NEW_TOKENS": "500"})
