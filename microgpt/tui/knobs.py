"""The trainer's knobs as the Train tab sees them: one thin adapter over `microgpt.config`.

The TUI never re-implements a rule of the trainer. Typing a value calls the trainer's own
`parse_value`; the whole set is checked by its `validate_config`; the size shown is the model's own
`GPTConfig.num_parameters` / `training_memory_mb`. Values are kept under their env-style names
(N_EMBD, LEARNING_RATE...), the same names the trainer reads from `--config` files.
"""

from __future__ import annotations

from typing import Any

from microgpt import config
from microgpt.config import PATH_KNOBS
from microgpt.errors import MicrogptError


class KnobCatalog:
    """Names, groups, defaults, presets and checks of every knob, read from the trainer's config module."""

    def __init__(self) -> None:
        self.module = config
        self.knobs = tuple(self.module.KNOBS)
        self.by_name = {knob.name: knob for knob in self.knobs}
        self.by_field = {knob.field: knob for knob in self.knobs}
        self.groups: list[str] = list(dict.fromkeys(knob.group for knob in self.knobs))

    def defaults(self) -> dict[str, Any]:
        """Every knob at its default."""
        return {knob.name: knob.default for knob in self.knobs}

    def format(self, value: Any) -> str:
        """A value as the text you would type to get it back (the trainer's own formatting)."""
        return str(self.module.format_value(value))

    def preset_help(self, preset: str) -> str:
        """The trainer's one-line description of a preset ('' when it has none)."""
        return str(self.module.PRESET_HELP.get(preset, ""))

    def preset_names(self) -> list[str]:
        """The presets the trainer defines, in its order."""
        return list(self.module.PRESETS)

    def preset_keys(self, preset: str) -> dict[str, Any]:
        """The knobs a preset names, under their env-style names, with its values."""
        out = {}
        for key, value in self.module.PRESETS[preset].items():
            knob = self.by_name.get(key) or self.by_field.get(key)
            if knob is not None:
                out[knob.name] = value
        return out

    def preset_values(self, preset: str, current: dict[str, Any] | None = None) -> dict[str, Any]:
        """`current` with the preset's own knobs laid over it; the rest keep their values, as in the original.

        The preset that names no knob (`default`) means "back to the defaults": every knob but the file
        locations (DATASET_PATH, LOG_DIR and the like, which say where your files are, not how to train).
        """
        own = self.preset_keys(preset)
        if own:
            return {**(current or self.defaults()), **own}
        values = self.defaults()
        values.update({name: value for name, value in (current or {}).items() if is_location(name)})
        return values

    def numbered_preset(self, digit: str) -> str | None:
        """The preset the Train tab applies for a digit key (1 fast, 2 balanced, 3 max), or None."""
        numbered = tuple(getattr(self.module, "NUMBERED", ()))
        index = int(digit) - 1 if digit.isdigit() else -1
        return numbered[index] if 0 <= index < len(numbered) else None

    def parse(self, name: str, raw: str) -> Any:
        """The trainer's own parser: returns the typed value or raises ConfigError with a one-line reason."""
        return self.module.parse_value(name, raw)

    def to_config(self, values: dict[str, Any]) -> Any:
        """A TrainConfig built from env-style values."""
        fields = {self.by_name[name].field: value for name, value in values.items() if name in self.by_name}
        return self.module.config_from_dict(fields)

    def check(self, values: dict[str, Any], check_paths: bool = False) -> str | None:
        """None when the trainer accepts the whole set, else its one-line complaint."""
        try:
            self.module.validate_config(self.to_config(values), check_paths=check_paths)
        except MicrogptError as exc:
            return str(exc)
        return None

    def estimate(self, values: dict[str, Any]) -> tuple[int, float] | None:
        """(parameter count, memory in MB) for these values, or None while they are not a valid config."""
        try:
            config = self.to_config(values)
            return int(config.model.num_parameters()), float(config.model.training_memory_mb(config.batch_size))
        except MicrogptError:
            return None

    def restore(self, saved: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Defaults overlaid with saved values that still parse, and `NAME=value` for each that does not;
        knobs that no longer exist are dropped."""
        values, rejected = self.defaults(), []
        for name, value in saved.items():
            if name in self.by_name:
                try:
                    values[name] = self.parse(name, value)
                except MicrogptError:
                    rejected.append(f"{name}={value!r}")
        return values, rejected

    def overrides(self, values: dict[str, Any]) -> dict[str, Any]:
        """Only the values that differ from the defaults (what is worth saving)."""
        defaults = self.defaults()
        return {name: value for name, value in values.items() if defaults.get(name) != value}


def is_location(name: str) -> bool:
    """Knobs that say where files are (DATASET_PATH, MODEL_DIR, BPE_FILE...)."""
    return name in PATH_KNOBS


def is_dataset_knob(name: str) -> bool:
    """Knobs that take a dataset file, where `f` opens the dataset picker (DATASET_PATH and kin)."""
    return "DATASET" in name and name.endswith("PATH")
