"""Sampling settings from outside (CHAT_* environment variables, chat flags, a request's fields), checked
against the sampling knobs' limits, so every way in accepts exactly what the trainer's knobs accept.

    SamplingSettings() defaults  <  CHAT_* environment  <  flags (or a request's fields)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from microgpt.config.knobs import KNOB_BY_CHAT_ENV, Knob
from microgpt.config.parse import parse_value
from microgpt.errors import ConfigError
from microgpt.nn import SamplingSettings

# SamplingSettings field -> its knob (max_new_tokens is SAMPLE_MAX_NEW_TOKENS), for the fields a user may set
SAMPLING_KNOBS: dict[str, Knob] = {knob.path.partition(".")[2]: knob for knob in KNOB_BY_CHAT_ENV.values()}
SEED_KNOB = "SEED"


def parse_sampling_value(field: str, raw: Any, label: str, default: Any) -> Any:
    """One SamplingSettings field's value checked by its knob (the seed as SEED); a range error names `label`
    and `default`, the value it has where it is being set (None: none to name)."""
    if field == "seed":
        return None if raw is None else parse_value(SEED_KNOB, raw, label=label, default=default)
    return parse_value(SAMPLING_KNOBS[field].name, raw, label=label, default=default)


def _lay_over(base: SamplingSettings | None, entries: Mapping[str, tuple[str, Any]], where: str,
              name_of: Callable[[str], str] = str, check_order: bool = True) -> SamplingSettings:
    """`base` with each field in `entries` (field -> (label, raw value)) parsed by its knob and set;
    `name_of(field)` names a field that was not given in the min/max message. `check_order=False` leaves
    min <= max to a layer still to come (the flags laid over CHAT_* variables may put them in order)."""
    base = base or SamplingSettings()
    changes: dict[str, Any] = {}
    for key, (label, raw) in entries.items():
        try:
            changes[key] = parse_sampling_value(key, raw, label, getattr(base, key))
        except ConfigError as exc:
            raise ConfigError(f"{exc}{where}") from None
    settings = replace(base, **changes)
    if check_order and settings.min_new_tokens > settings.max_new_tokens:
        sides = ("min_new_tokens", "max_new_tokens")
        low, high = (entries.get(k, (name_of(k), None))[0] for k in sides)
        given = [k in entries for k in sides]
        origin = where.strip(" ()")  # "from command line"
        one = origin and any(given) and not all(given)  # one side from here, the other from a layer below
        low_from = f" ({origin})" if one and given[0] else ""
        high_from = f", {origin}" if one and given[1] else ""
        raise ConfigError(f"{low}={settings.min_new_tokens}{low_from}: must not exceed {high} "
                          f"({settings.max_new_tokens}{high_from}){where if all(given) else ''}")
    return settings


def sampling_from_mapping(values: Mapping[str, Any], base: SamplingSettings | None = None,
                          source: str = "", name_of: Callable[[str], str] = str,
                          label_of: Callable[[str], str] = str) -> SamplingSettings:
    """`base` (default: SamplingSettings()) with `values` laid over it, each checked by its knob.

    Keys are SamplingSettings field names: temperature, top_k, top_p, repetition_penalty, repeat_last_n,
    min_new_tokens, max_new_tokens, and seed (None: fresh randomness). Values may be text or JSON values.
    Raises ConfigError with one line naming the field (as `label_of` writes it: the flag a user typed), the
    value and the allowed range, followed by `(from SOURCE)` when `source` is given; an unknown key is an
    error too.
    """
    where = f" (from {source})" if source else ""
    for key in values:
        if key != "seed" and key not in SAMPLING_KNOBS:
            raise ConfigError(f"{key}: not a sampling setting (use {', '.join([*SAMPLING_KNOBS, 'seed'])}){where}")
    return _lay_over(base, {key: (label_of(key), raw) for key, raw in values.items()}, where, name_of)


def chat_env_entries(env: Mapping[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """The CHAT_* variables set (an empty one counts as unset), as field -> (variable, raw value);
    `env=None` reads os.environ."""
    environ = os.environ if env is None else env
    return {knob.path.partition(".")[2]: (name, environ[name])
            for name, knob in KNOB_BY_CHAT_ENV.items() if environ.get(name, "").strip()}


def sampling_from_env(env: Mapping[str, str] | None = None, base: SamplingSettings | None = None,
                      check_order: bool = True) -> SamplingSettings:
    """`base` (default: SamplingSettings()) with the CHAT_* environment variables laid over it (an empty one
    counts as unset). `env=None` reads os.environ. A bad value is one ConfigError line naming the variable;
    `check_order=False` leaves min <= max to the flags laid over these (see _lay_over)."""
    return _lay_over(base, chat_env_entries(env), " (from environment)",
                     lambda field: SAMPLING_KNOBS[field].chat_env or field, check_order)
