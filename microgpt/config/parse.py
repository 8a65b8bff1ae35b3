"""Reading settings from outside: text or JSON values -> checked, typed values -> a TrainConfig.

A training value is resolved in layers, each one overriding the last:

    knob defaults  <  --preset  <  --config FILE  <  environment  <  command-line flags

Every value passes through `parse_value`, which turns text into the knob's type and checks its limits;
`validate_config` then checks what involves several knobs (N_EMBD divisible by N_HEAD, the dataset file
exists, ...). Both raise `ConfigError` with one line that names the knob, the value and the fix.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import stat
import unicodedata
from collections.abc import Mapping
from typing import Any

from microgpt.config.knobs import GROUPS, KNOB_BY_FIELD, KNOB_BY_NAME, KNOBS, PATH_KNOBS, Knob
from microgpt.config.presets import PRESETS
from microgpt.config.train_config import TrainConfig
from microgpt.errors import ConfigError, one_line, shown
from microgpt.safe_io import json_type, parse_json, read_capped

MAX_CONFIG_BYTES = 1 << 20  # a config file names a few dozen knobs
_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "off"})


def format_value(value: Any) -> str:
    """A value as it would be written in the environment: true/false, 0.004, 1e-08, plain text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def find_knob(key: str) -> Knob:
    """Look a knob up by env name (N_EMBD) or field name (n_embd); suggest the closest on a typo."""
    knob = KNOB_BY_NAME.get(key) or KNOB_BY_FIELD.get(key)
    if knob is None:
        close = difflib.get_close_matches(key.upper(), KNOB_BY_NAME, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{one_line(key)[:60]}: unknown knob{hint}")
    return knob


def not_text(c: str) -> bool:
    """A control character or line break (it would forge a log line), or a lone surrogate that no bytes decode
    to; a byte that is not UTF-8 (an odd file name, read as \udc80-\udcff) is text, written escaped."""
    category = unicodedata.category(c)
    return category in ("Cc", "Zl", "Zp") or (category == "Cs" and not "\udc80" <= c <= "\udcff")


def _convert(knob: Knob, raw: Any, label: str, default: Any = None) -> Any:
    """Turn `raw` (text, or an already-typed JSON value) into the knob's type; the exception says why not,
    with an example: `default` where given, else the knob's own."""
    example = f"e.g. {label}={format_value(knob.default if default is None else default)}"
    if knob.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("not a boolean (use true/false, yes/no or 1/0)")
    if knob.type is int:
        if isinstance(raw, bool):
            raise ValueError(f"not a whole number ({example})")
        if isinstance(raw, int):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            pass
        try:
            number = float(str(raw).strip())
        except ValueError:
            raise ValueError(f"not a whole number ({example})") from None
        if math.isinf(number):  # 5,000 digits: too long for int(), infinite as a float
            raise ValueError(f"far too {'large' if number > 0 else 'small'} ({example})")
        if not number.is_integer():  # nan too
            raise ValueError(f"not a whole number ({example})")
        return int(number)
    if knob.type is float:
        if isinstance(raw, bool):
            raise ValueError(f"not a number ({example})")
        try:
            number = float(raw if isinstance(raw, (int, float)) else str(raw).strip())
        except ValueError:
            raise ValueError(f"not a number ({example})") from None
        except OverflowError:  # a JSON integer of 400 digits
            raise ValueError("must be a finite number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if not isinstance(raw, str):
        raise TypeError("must be text")
    if "\x00" in raw:  # no file name holds one, and every OS call refuses it
        raise ValueError("holds a NUL character")
    text = raw.strip()
    if any(map(not_text, text)):
        raise ValueError("holds a control character or a lone surrogate; give plain text")
    if knob.choices is not None:
        text = text.lower()
        if text not in knob.choices:
            raise ValueError(f"must be one of {', '.join(knob.choices)}")
    if not text and not knob.allow_empty:
        raise ValueError(f"must not be empty ({example})")
    if knob.name in PATH_KNOBS:  # ~/x from a config file, or --model-dir=~/x (no shell expands it there)
        text = os.path.expanduser(text)
    return text


def _check_limits(knob: Knob, value: float, default: Any) -> None:
    """Raise ValueError naming the allowed range (and `default`, unless None) when `value` is outside it."""
    low_ok = knob.min is None or (value > knob.min if knob.exclusive_min else value >= knob.min)
    high_ok = knob.max is None or (value < knob.max if knob.exclusive_max else value <= knob.max)
    if not (low_ok and high_ok):
        raise ValueError(f"must be {knob.limits}" + ("" if default is None else f" (default {format_value(default)})"))


KNOBS_OWN = object()  # parse_value's `default` when the value's default is its knob's


def parse_value(knob_name: str, raw: Any, label: str | None = None, default: Any = KNOBS_OWN) -> Any:
    """Parse and check one value for the knob named `knob_name` (env or field name).

    `raw` may be text (environment, command line) or a typed JSON value (config file, request). Raises
    ConfigError like `LEARNING_RATE='abc': not a number (e.g. LEARNING_RATE=0.004)`; `label` names the value
    in that message when it came under another name (CHAT_TEMPERATURE, a request's "temperature"), and
    `default` the default it has there when that is not the knob's (a server's CHAT_* value; a sampling seed
    is checked as SEED is), None when there is none to name (a server's seed: fresh randomness).
    """
    knob = find_knob(knob_name)
    label = label or knob.name
    try:
        value = _convert(knob, raw, label, None if default is KNOBS_OWN else default)
        if knob.type in (int, float):
            _check_limits(knob, value, knob.default if default is KNOBS_OWN else default)
    except (ValueError, TypeError) as exc:
        given = _as_json(raw) if raw is None or isinstance(raw, (bool, list, dict)) else shown(raw, 80)
        raise ConfigError(f"{label}={given}: {exc}") from None
    return value


def _as_json(value: Any, limit: int = 80) -> str:
    """A JSON value (a config file's, a request's) as JSON spells it (true, null, {"a": 1}), cut short."""
    try:
        text = json.dumps(value, default=repr, ensure_ascii=False)
    except ValueError:  # an integer past Python's 4,300 digits
        text = f"<a {type(value).__name__} too long to show>"
    return text if len(text) <= limit else f"{text[:limit - 3]}..."


def _check_together(values: Mapping[str, Any]) -> None:
    """What involves several knobs; `values` maps field names to parsed values."""
    if values["n_embd"] % values["n_head"]:
        raise ConfigError(f"N_HEAD={values['n_head']}: N_EMBD ({values['n_embd']}) must be divisible by "
                          f"N_HEAD ({values['n_head']})")
    if values["positions"] == "rope" and (values["n_embd"] // values["n_head"]) % 2:
        raise ConfigError(f"N_HEAD={values['n_head']}: POSITIONS=rope turns pairs of a head's dims, so "
                          f"N_EMBD / N_HEAD ({values['n_embd'] // values['n_head']}) must be even; change N_EMBD "
                          "or N_HEAD, or set POSITIONS=learned")
    if values["warmup_steps"] >= values["num_steps"]:
        raise ConfigError(f"WARMUP_STEPS={values['warmup_steps']}: must be smaller than NUM_STEPS "
                          f"({values['num_steps']})")
    if values["learning_rate"] * values["weight_decay"] >= 1:  # p <- p (1 - lr wd): at 1 or more, zero or flipped
        raise ConfigError(f"WEIGHT_DECAY={format_value(values['weight_decay'])}: each step multiplies the weights by "
                          f"1 - LEARNING_RATE x WEIGHT_DECAY, which must stay above 0: give WEIGHT_DECAY below "
                          f"{1 / values['learning_rate']:g} (1 / LEARNING_RATE)")
    if values["min_new_tokens"] > values["sample_max_new_tokens"]:
        raise ConfigError(f"MIN_NEW_TOKENS={values['min_new_tokens']}: must not exceed SAMPLE_MAX_NEW_TOKENS "
                          f"({values['sample_max_new_tokens']})")


def config_from_dict(data: Mapping[str, Any], check_paths: bool = False) -> TrainConfig:
    """A checked TrainConfig from flat names (n_embd or N_EMBD) to values; the rest take their defaults.

    This is how checkpoints, the TUI and `validate_config` build one; an unknown name is an error.
    """
    unknown = sorted(str(key) for key in data if key not in KNOB_BY_FIELD and key not in KNOB_BY_NAME)
    if unknown:
        more = f" and {len(unknown) - 3} more" if len(unknown) > 3 else ""
        raise ConfigError(f"unknown config field(s): {', '.join(shown(key, 40) for key in unknown[:3])}{more}")
    values = TrainConfig().to_dict()
    values.update({find_knob(key).field: parse_value(key, value) for key, value in data.items()})
    _check_together(values)
    try:
        cfg = TrainConfig.from_flat(values)
    except ValueError as exc:  # what only the model's own checks catch still reads as a config error
        raise ConfigError(str(exc)) from None
    if check_paths:
        _check_paths(cfg)
    return cfg


def _file_problem(path: str) -> str | None:
    """Why `path` is not a regular file to read (not found, a symlink loop, a folder...), or None."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "file not found"
    except OSError as exc:  # a symlink loop, a name too long, no permission to look
        return (exc.strerror or str(exc)).lower()
    return None if stat.S_ISREG(mode) else "not a regular file (a FIFO, device or folder)"


def _check_paths(cfg: TrainConfig) -> None:
    if problem := _file_problem(cfg.dataset_path):
        raise ConfigError(f"DATASET_PATH={shown(cfg.dataset_path, 120)}: {problem} (give a .jsonl path, relative to "
                          f"{os.getcwd()})")
    if cfg.tokenizer == "bpe" and cfg.bpe_file and (problem := _file_problem(cfg.bpe_file)):
        raise ConfigError(f"BPE_FILE={shown(cfg.bpe_file, 120)}: {problem} (leave it empty to load by name)")


def validate_config(cfg: TrainConfig, check_paths: bool = True) -> TrainConfig:
    """Check every field against its knob, then what involves several knobs or the file system.

    A config built in code (or edited in the TUI) gets the same checks as one read by `load_config`.
    Returns a checked copy with text values normalised (e.g. TOKENIZER "BPE" -> "bpe").
    """
    return config_from_dict(cfg.to_dict(), check_paths=check_paths)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object of knob names (N_EMBD or n_embd) to values; any problem names the file."""
    label = f"config file {os.fspath(path)!r}"
    try:
        raw = read_capped(path, MAX_CONFIG_BYTES)  # not a FIFO, not /dev/zero
    except FileNotFoundError:
        raise ConfigError(f"{label}: not found") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        data = parse_json(raw, max_depth=8)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start + 1} is {raw[exc.start]:#04x})") from None
    except ValueError as exc:  # nested too deep, a number too long
        raise ConfigError(f"{label}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: must be a JSON object of knob names to values, not {json_type(data)}")
    for key in data:
        try:
            find_knob(key)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return data


def load_config(
    cli: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    preset: str | None = None,
    env: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> TrainConfig:
    """Resolve every knob: defaults < preset < config file < environment < CLI, then validate.

    `cli` and the config file may use env names or field names; the environment is read only for
    knob names, and an empty variable counts as unset (as in the original). `env=None` reads os.environ.
    """
    environ = os.environ if env is None else env
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: unknown preset (choose from {', '.join(PRESETS)})")
        layers.append((f"preset {preset!r}", PRESETS[preset]))
    if config_file is not None:
        layers.append((f"config file {os.fspath(config_file)!r}", read_config_file(config_file)))
    layers.append(("environment", {k: v for k, v in environ.items() if k in KNOB_BY_NAME and v.strip()}))
    layers.append(("command line", cli or {}))

    values: dict[str, Any] = {}
    for source, layer in layers:
        spelled: dict[str, str] = {}  # knob -> the key that set it in this layer
        for key, raw in layer.items():
            knob = find_knob(key)
            if knob.name in spelled:  # num_steps and NUM_STEPS in one file: which one was meant?
                raise ConfigError(f"{source}: {spelled[knob.name]!r} and {key!r} both set {knob.name}; keep one")
            spelled[knob.name] = key
            try:
                values[knob.field] = parse_value(knob.name, raw)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (from {source})") from None
    return config_from_dict(values, check_paths=check_paths)


def knob_from_env(name: str, env: Mapping[str, str] | None = None) -> Any:
    """One knob as the environment sets it (an empty variable counts as unset), else its default: for the
    commands that read a run's locations (LOG_DIR for chat and eval logs) without loading a whole config."""
    raw = (os.environ if env is None else env).get(name, "")
    return parse_value(name, raw) if raw.strip() else KNOB_BY_NAME[name].default


def to_env(cfg: TrainConfig) -> dict[str, str]:
    """The config as environment variables: what `KNOB=value python -m microgpt train` would need."""
    return {knob.name: format_value(cfg.get(knob.field)) for knob in KNOBS}


def format_config(cfg: TrainConfig) -> str:
    """The resolved config, grouped, one `NAME  value` per line; `*` marks a value that differs from its default."""
    width = max(len(knob.name) for knob in KNOBS)
    lines: list[str] = []
    for group in GROUPS:
        lines.append(f"{group}:")
        for knob in KNOBS:
            if knob.group != group:
                continue
            value = cfg.get(knob.field)
            mark = "*" if value != knob.default else " "
            lines.append(f"  {mark} {knob.name:<{width}}  {format_value(value) or '(empty)'}")
    lines.append("(* = changed from the default)")
    return "\n".join(lines)
