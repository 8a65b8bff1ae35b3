"""Settings: one home for every default, one table of knobs, one way to read values from outside.

    train_config.py  TrainConfig = model (nn.GPTConfig) + optim (nn.OptimSettings) + sampling
                     (nn.SamplingSettings) + data and run fields; flat names (n_embd) -> paths (model.n_embd)
    knobs.py         every knob as data: name, group, limits, help and explanation (defaults come from above)
    presets.py       named starting points (--preset)
    parse.py         parse_value, validate_config, load_config: defaults < preset < file < env < flags
    sampling.py      SamplingSettings from CHAT_* variables, flags or a request, with the knobs' limits

The argparse glue sits beside the commands that use it (commands/train.py, commands/chat.py).
"""

from microgpt.config.knobs import (
    GROUPS,
    KNOB_BY_CHAT_ENV,
    KNOB_BY_FIELD,
    KNOB_BY_NAME,
    KNOBS,
    PATH_KNOBS,
    Knob,
)
from microgpt.config.parse import (
    config_from_dict,
    find_knob,
    format_config,
    format_value,
    knob_from_env,
    load_config,
    parse_value,
    read_config_file,
    to_env,
    validate_config,
)
from microgpt.config.presets import NUMBERED, PRESET_HELP, PRESETS
from microgpt.config.sampling import (
    SAMPLING_KNOBS,
    chat_env_entries,
    parse_sampling_value,
    sampling_from_env,
    sampling_from_mapping,
)
from microgpt.config.train_config import FLAT_PATHS, TrainConfig

__all__ = [
    "FLAT_PATHS",
    "GROUPS",
    "KNOBS",
    "KNOB_BY_CHAT_ENV",
    "KNOB_BY_FIELD",
    "KNOB_BY_NAME",
    "NUMBERED",
    "PATH_KNOBS",
    "PRESETS",
    "PRESET_HELP",
    "SAMPLING_KNOBS",
    "Knob",
    "TrainConfig",
    "chat_env_entries",
    "config_from_dict",
    "find_knob",
    "format_config",
    "format_value",
    "knob_from_env",
    "load_config",
    "parse_sampling_value",
    "parse_value",
    "read_config_file",
    "sampling_from_env",
    "sampling_from_mapping",
    "to_env",
    "validate_config",
]
