"""The TUI remembers its settings between launches in one JSON file.

Where: `$MICROGPT_TUI_CONFIG` if set, else `~/.config/microgpt/tui.json`. The file is replaced
atomically (write a temporary sibling, then rename), so a crash mid-save never leaves half a file;
a missing or damaged file simply means "start from the defaults".
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from microgpt.atomic import atomic_write_json

ENV_VAR = "MICROGPT_TUI_CONFIG"


def config_path(env: dict[str, str] | None = None) -> Path:
    """The settings file this launch reads and writes."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR):
        return Path(env[ENV_VAR]).expanduser()
    return Path.home() / ".config" / "microgpt" / "tui.json"


def load_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved settings, or {} when there are none or they cannot be read."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the settings in one atomic step (the folder is created when needed)."""
    atomic_write_json(path, state)
