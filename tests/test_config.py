"""Trainer config: layered precedence, one-line errors that name the knob, and complete knob metadata."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from microgpt.commands.train import add_config_arguments, cli_overrides, load_config_from_args
from microgpt.config import (
    GROUPS,
    KNOB_BY_NAME,
    KNOBS,
    NUMBERED,
    PRESET_HELP,
    PRESETS,
    TrainConfig,
    config_from_dict,
    format_config,
    load_config,
    parse_value,
    to_env,
    validate_config,
)
from microgpt.errors import ConfigError
from microgpt.nn import GPT, GPTConfig
from microgpt.train.data_pipeline import cache_dir

REQUIRED = (
    "DATASET_PATH", "TOKENIZER", "BPE_ENCODING", "BPE_FILE", "TOKEN_VOCAB_SIZE", "N_LAYER", "N_EMBD",
    "N_HEAD", "BLOCK_SIZE", "BATCH_SIZE", "NUM_STEPS", "LEARNING_RATE", "LR_SCHEDULE", "WARMUP_STEPS",
    "BETA1", "BETA2", "EPS_ADAM", "WEIGHT_DECAY", "GRAD_CLIP", "VAL_SPLIT", "EVAL_INTERVAL", "EVAL_STEPS",
    "EARLY_STOP_PATIENCE", "EARLY_STOP_MIN_DELTA", "TRAIN_DEVICE", "SEED", "RUN_NAME", "METRIC_INTERVAL",
    "LOG_LEVEL", "VERBOSE", "MODEL_OUT_PATH", "MODEL_DIR", "LOG_DIR", "TEMPERATURE", "TOP_K", "TOP_P",
    "REPETITION_PENALTY", "MIN_NEW_TOKENS", "REPEAT_LAST_N", "SAMPLE_COUNT", "SAMPLE_MAX_NEW_TOKENS", "THREADS",
)


@pytest.fixture
def dataset(tmp_path: Path) -> str:
    path = tmp_path / "data.jsonl"
    path.write_text('{"id": "1", "record_type": "knowledge", "text": "hi"}\n', encoding="utf-8")
    return str(path)


def write_json(path: Path, obj: object) -> str:
    path.write_text(json.dumps(obj), encoding="utf-8")
    return str(path)


def assert_one_line_error(exc: pytest.ExceptionInfo[ConfigError], *fragments: str) -> None:
    message = str(exc.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


# --- the knob table -------------------------------------------------------------------------------------


def test_every_required_knob_exists_with_help_explain_and_group() -> None:
    assert set(REQUIRED) <= set(KNOB_BY_NAME)
    for knob in KNOBS:
        assert knob.field == knob.name.lower()
        assert knob.group in GROUPS
        assert knob.help and "\n" not in knob.help
        sentences = [s for s in knob.explain.replace("e.g.", "eg").split(". ") if s.strip()]
        assert 2 <= len(sentences) <= 4, knob.name


def test_every_knob_has_one_place_in_train_config_with_its_type_and_default() -> None:
    assert sorted(TrainConfig().to_dict()) == sorted(k.field for k in KNOBS)
    default = TrainConfig()
    for knob in KNOBS:
        part, _, leaf = knob.path.rpartition(".")
        owner = getattr(default, part) if part else default
        annotation = {f.name: f.type for f in dataclasses.fields(owner)}[leaf]
        assert annotation == knob.type.__name__, knob.name
        assert getattr(owner, leaf) == knob.default == default.get(knob.field), knob.name


def test_every_knob_default_passes_its_own_checks() -> None:
    for knob in KNOBS:
        assert parse_value(knob.name, knob.default) == knob.default


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name: str) -> None:
    cfg = load_config(preset=name, env={}, check_paths=False)
    for key, value in PRESETS[name].items():
        assert cfg.get(key.lower()) == value


def test_seed_preset_is_the_original_profile() -> None:
    cfg = load_config(preset="seed", env={}, check_paths=False)
    m = cfg.model
    assert (m.n_layer, m.n_embd, m.n_head, m.block_size, cfg.num_steps, cfg.batch_size) == (1, 48, 4, 96, 800, 1)
    assert not m.zero_init and not m.tie_embeddings and not m.norm_gain and m.activation == "relu"  # original init
    assert m.positions == "learned"  # the original's position table
    assert (cfg.optim.optimizer, cfg.optim.lr_schedule) == ("adam", "linear")  # the original's optimizer


# --- precedence -----------------------------------------------------------------------------------------


def test_precedence_defaults_preset_file_env_cli(tmp_path: Path, dataset: str) -> None:
    config_file = write_json(tmp_path / "c.json", {"N_LAYER": 3, "n_embd": "64", "BLOCK_SIZE": 32, "DATASET_PATH": dataset})
    env = {"N_EMBD": "128", "BLOCK_SIZE": "48", "UNRELATED": "x"}
    cli = {"BLOCK_SIZE": "40"}
    cfg = load_config(cli=cli, config_file=config_file, preset="seed", env=env)
    assert cfg.seed == KNOB_BY_NAME["SEED"].default  # default
    assert cfg.num_steps == 800  # preset
    assert cfg.model.n_layer == 3  # file over preset
    assert cfg.model.n_embd == 128  # env over file
    assert cfg.model.block_size == 40  # cli over env
    assert cfg.dataset_path == dataset


def test_a_leading_tilde_in_a_path_knob_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file's "~/models", or --model-dir=~/models (no shell expands ~ after =), is not ./~/models."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config_file = write_json(tmp_path / "c.json", {"model_dir": "~/mm", "log_dir": "~/ll"})
    cfg = load_config(cli={"MODEL_OUT_PATH": "~/out.npz"}, config_file=config_file, env={}, check_paths=False)
    assert (cfg.model_dir, cfg.log_dir) == (str(tmp_path / "mm"), str(tmp_path / "ll"))
    assert cfg.model_out_path == str(tmp_path / "out.npz")
    assert load_config(cli={"RUN_NAME": "~x"}, env={}, check_paths=False).run_name == "~x"  # not a path
    monkeypatch.setenv("MICROGPT_CACHE_DIR", "~/cache")
    assert cache_dir() == tmp_path / "cache"


def test_empty_environment_variable_counts_as_unset() -> None:
    cfg = load_config(env={"N_LAYER": "  "}, check_paths=False)
    assert cfg.model.n_layer == KNOB_BY_NAME["N_LAYER"].default


def test_values_are_typed_and_normalised() -> None:
    cfg = load_config(
        cli={"VERBOSE": "yes", "TOKENIZER": " CHAR ", "NUM_STEPS": "1e3", "LEARNING_RATE": "3e-3"},
        env={}, check_paths=False,
    )
    assert cfg.verbose is True and cfg.tokenizer == "char"
    assert cfg.num_steps == 1000 and isinstance(cfg.num_steps, int)
    assert cfg.optim.lr == pytest.approx(0.003)
    for text, expected in (("1", True), ("0", False), ("true", True), ("FALSE", False), ("no", False)):
        assert parse_value("VERBOSE", text) is expected


def test_argparse_flags_feed_load_config(dataset: str) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--n-layer", "3", "--dataset-path", dataset, "--verbose", "--preset", "seed"])
    assert cli_overrides(args) == {"N_LAYER": "3", "DATASET_PATH": dataset, "VERBOSE": "true"}
    cfg = load_config_from_args(args, env={"N_LAYER": "5"})
    assert (cfg.model.n_layer, cfg.verbose, cfg.model.n_embd) == (3, True, 48)
    default = KNOB_BY_NAME["N_LAYER"].default
    assert f"--n-layer N [N_LAYER, default {default}]" in " ".join(parser.format_help().split())


def test_round_trips_through_dict_and_env() -> None:
    cfg = load_config(cli={"N_EMBD": "64", "VERBOSE": "1"}, env={}, check_paths=False)
    assert config_from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert load_config(env=to_env(cfg), check_paths=False) == cfg


def test_from_dict_rejects_unknown_fields() -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"n_layer": 2, "n_embed": 64})
    assert_one_line_error(exc, "n_embed")


def test_format_config_groups_and_marks_changes() -> None:
    text = format_config(load_config(cli={"N_LAYER": "3"}, env={}, check_paths=False))
    for group in GROUPS:
        assert f"{group}:" in text
    assert any(line.strip().startswith("* N_LAYER") and line.rstrip().endswith("3") for line in text.splitlines())


def test_estimates_follow_the_architecture() -> None:
    cfg = config_from_dict({"token_vocab_size": 300, "n_embd": 8, "block_size": 4, "n_layer": 2, "n_head": 2})
    assert cfg.model.num_parameters() == 300 * 8 + 300 * 8 + 2 * 12 * 8 * 8  # rope: no position table
    learned = config_from_dict({**cfg.to_dict(), "positions": "learned"})
    assert learned.model.num_parameters() == cfg.model.num_parameters() + 4 * 8
    small, bigger = cfg.model.training_memory_mb(1), cfg.model.training_memory_mb(8)
    assert 0 < small < bigger


@pytest.mark.parametrize("norm_gain,positions", [(False, "rope"), (True, "learned")])
def test_parameter_estimate_is_what_the_model_builds(norm_gain: bool, positions: str) -> None:
    config = GPTConfig(zero_init=False, vocab_size=300, n_layer=3, n_embd=12, n_head=3, block_size=7,
                       norm_gain=norm_gain, positions=positions)
    assert config.num_parameters() == GPT(config, seed=0).num_parameters()


# --- one-line errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "name", "raw", "fragments"),
    [
        ("env", "LEARNING_RATE", "abc", ("LEARNING_RATE='abc'", "not a number", "from environment")),
        ("cli", "N_LAYER", "two", ("N_LAYER='two'", "not a whole number", "from command line")),
        ("cli", "N_LAYER", "0", ("N_LAYER='0'", ">= 1")),
        ("cli", "TOKEN_VOCAB_SIZE", "200", ("TOKEN_VOCAB_SIZE='200'", ">= 258")),
        ("cli", "VAL_SPLIT", "0.7", ("VAL_SPLIT='0.7'", "<= 0.5")),
        ("cli", "VAL_SPLIT", "0", ("VAL_SPLIT='0'", "> 0")),
        ("cli", "BETA2", "1", ("BETA2='1'", "< 1")),
        ("cli", "TOP_P", "nan", ("TOP_P='nan'", "finite")),
        ("env", "TOKENIZER", "wordpiece", ("TOKENIZER='wordpiece'", "bpe, char")),
        ("env", "TRAIN_DEVICE", "tpu", ("TRAIN_DEVICE='tpu'", "cpu, gpu")),
        ("cli", "VERBOSE", "maybe", ("VERBOSE='maybe'", "boolean")),
        ("cli", "RUN_NAME", " ", ("RUN_NAME=' '", "empty")),
        ("env", "RUN_NAME", "x\n2026-01-01 ERROR forged", ("RUN_NAME=", "control character")),  # a log line
        ("env", "MODEL_OUT_PATH", "x\ud800.npz", ("MODEL_OUT_PATH=", "lone surrogate")),  # not from any bytes
        ("env", "NUM_STEPS", "1" * 400, ("NUM_STEPS=", "<= 9007199254740992")),  # every count has a ceiling
        ("env", "TOP_K", "1" * 400, ("TOP_K=", "<= 9007199254740992")),
        ("env", "THREADS", "9223372036854775808", ("THREADS=", "<= 256")),
        ("cli", "N_EMBD", "9" * 5000, ("N_EMBD=", "far too large")),  # past int()'s digits, infinite as a float
        ("cli", "N_EMBD", "-1e400", ("N_EMBD=", "far too small")),
        ("cli", "N_EMBD", "nan", ("N_EMBD=", "not a whole number")),
    ],
)
def test_bad_values_raise_one_line_config_error(source: str, name: str, raw: str, fragments: tuple[str, ...]) -> None:
    kwargs = {"env": {name: raw}} if source == "env" else {"cli": {name: raw}, "env": {}}
    with pytest.raises(ConfigError) as exc:
        load_config(check_paths=False, **kwargs)
    assert_one_line_error(exc, *fragments)


def test_n_embd_must_be_divisible_by_n_head() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(cli={"N_HEAD": "5"}, env={}, check_paths=False)
    assert_one_line_error(exc, "N_HEAD=5", "N_EMBD (96) must be divisible by N_HEAD (5)")


@pytest.mark.parametrize("name", ["datasets/my\xa0data.jsonl", "Screenshot at 10.00\u202fAM.jsonl",
                                  "fam\U0001F468\u200d\U0001F469.jsonl", "caf\udce9.jsonl"])
def test_file_names_people_have_are_taken(name: str) -> None:
    """No-break spaces, joiners, and a byte that is not UTF-8 (read as \\udce9) are text; only control
    characters, line breaks and lone surrogates are refused."""
    assert load_config(cli={"DATASET_PATH": name}, env={}, check_paths=False).dataset_path == name


def test_rotary_heads_must_have_an_even_width() -> None:
    """RoPE turns pairs of a head's dims: 20 / 4 = 5 is refused in one line, and learned positions take it."""
    with pytest.raises(ConfigError) as exc:
        load_config(cli={"N_EMBD": "20", "N_HEAD": "4"}, env={}, check_paths=False)
    assert_one_line_error(exc, "N_HEAD=4", "N_EMBD / N_HEAD (5) must be even", "POSITIONS=learned")
    assert load_config(cli={"N_EMBD": "20", "N_HEAD": "4", "POSITIONS": "learned"}, env={},
                       check_paths=False).model.n_embd == 20


def test_unknown_fields_are_named_on_one_line_and_few() -> None:
    """A checkpoint's config may hold any keys: they are echoed escaped and at most three of them."""
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"a\nb": 1, "x" * 500: 2, "c": 3, "d": 4, "e": 5})
    assert_one_line_error(exc, "unknown config field(s)", "'a\\nb'", "and 2 more")
    assert len(str(exc.value)) < 200


@pytest.mark.parametrize(
    ("cli", "fragment"),
    [
        ({"WARMUP_STEPS": "100", "NUM_STEPS": "100"}, "WARMUP_STEPS=100"),
        ({"MIN_NEW_TOKENS": "50", "SAMPLE_MAX_NEW_TOKENS": "10"}, "MIN_NEW_TOKENS=50"),
        ({"MIN_NEW_TOKENS": "11", "SAMPLE_MAX_NEW_TOKENS": "10"}, "MIN_NEW_TOKENS=11"),  # just past the limit
        ({"WEIGHT_DECAY": "1e300"}, ("WEIGHT_DECAY=1e+300: each step multiplies the weights by 1 - LEARNING_RATE x "
                                    "WEIGHT_DECAY, which must stay above 0: give WEIGHT_DECAY below 250")),
        ({"WEIGHT_DECAY": "10", "LEARNING_RATE": "0.1"}, "WEIGHT_DECAY=10"),
    ],
)
def test_cross_field_checks(cli: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(cli=cli, env={}, check_paths=False)
    assert_one_line_error(exc, fragment)


def test_validate_config_checks_configs_built_in_code() -> None:
    with pytest.raises(ConfigError) as exc:
        validate_config(TrainConfig(model=GPTConfig(n_layer=0)), check_paths=False)
    assert_one_line_error(exc, "N_LAYER=0")
    assert validate_config(TrainConfig(tokenizer="BPE"), check_paths=False).tokenizer == "bpe"


def test_missing_dataset(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError) as exc:
        load_config(cli={"DATASET_PATH": missing}, env={})
    assert_one_line_error(exc, "DATASET_PATH=", "nope.jsonl", "not found")
    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    with pytest.raises(ConfigError) as exc:  # a loop is not "not found": the file is there, its link is wrong
        load_config(cli={"DATASET_PATH": str(tmp_path / "a.jsonl")}, env={})
    assert_one_line_error(exc, "DATASET_PATH=", "a.jsonl", "symbolic links")
    with pytest.raises(ConfigError) as exc:
        load_config(cli={"DATASET_PATH": str(tmp_path)}, env={})
    assert_one_line_error(exc, "DATASET_PATH=", "not a regular file")


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(preset="huge", env={}, check_paths=False)
    assert_one_line_error(exc, "huge", "seed")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "not found"),
        ("{not json", "invalid JSON at line 1"),
        ("[1, 2]", "must be a JSON object"),
        ('{"N_EMBED": 64}', "N_EMBED: unknown knob (did you mean N_EMBD?)"),
        ('{"N_LAYER": "x"}', "N_LAYER='x'"),
        ('{"N_LAYER": true}', "N_LAYER=true: not a whole number"),  # as the file spells it, not Python's True
        ('{"N_LAYER": null}', "N_LAYER=null"), ('{"N_LAYER": {"a": 1}}', 'N_LAYER={"a": 1}'),
        ("null", "not null"),  # JSON's names for types, not Python's
        ('{"NUM_STEPS": ' + "1" * 5000 + "}", "more than 4,300 digits"),  # not Python's advice to raise a limit
        ('{"RUN_NAME": "\\ud800"}', "lone surrogate"),
        ('{"N_LAYER": 2, "N_HEAD": 2, "N_LAYER": 8}', "the key 'N_LAYER' appears twice in one object; keep one"),
        ('{"num_steps": 5, "NUM_STEPS": 6}', "'num_steps' and 'NUM_STEPS' both set NUM_STEPS; keep one"),  # two spellings
    ],
)
def test_bad_config_file(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(config_file=str(path), env={}, check_paths=False)
    assert_one_line_error(exc, "bad.json", fragment)


def test_the_original_presets_fast_balanced_max_are_there_with_its_values() -> None:
    assert NUMBERED == ("fast", "balanced", "max")
    fast, balanced, big = (load_config(preset=name, env={}, check_paths=False) for name in NUMBERED)
    shape = [(c.model.vocab_size, c.model.n_layer, c.model.n_embd, c.model.block_size, c.num_steps)
             for c in (fast, balanced, big)]
    assert shape == [(1536, 1, 32, 64, 400), (2048, 1, 48, 96, 800), (3072, 2, 64, 128, 1800)]
    assert (fast.optim.lr, balanced.optim.lr, big.optim.lr) == (0.0045, 0.004, 0.0038)
    assert all(name in PRESET_HELP for name in PRESETS)


def test_a_preset_sets_only_its_own_keys_over_the_layers_below() -> None:
    cfg = load_config(preset="fast", env={"BATCH_SIZE": "3", "N_LAYER": "2"}, check_paths=False)
    assert cfg.batch_size == 3  # not named by the preset: the environment's value
    assert cfg.model.n_layer == 2  # the environment outranks the preset
    assert cfg.model.n_embd == 32  # the preset's own key


def test_a_very_long_folder_value_is_cut_short_in_its_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as exc:
        from microgpt.safe_io import writable_folder
        writable_folder("LOG_DIR", tmp_path / "file" / ("a" * 5000))
    assert len(str(exc.value)) < 400 and str(exc.value).startswith("LOG_DIR='")
