"""The TUI remembers its settings between launches in one JSON file.

Where: `$MICROGPT_TUI_CONFIG` if set, else `~/.config/microgpt/tui.json`. The file is replaced
atomically (write a temporary sibling, then rename), so a crash mid-save never leaves half a file;
a missing or damaged file simply means "start from the defaults" (with a message saying so), and the
dashboard renames a file it could not use to `tui.json.bad` (`set_aside`), so saving never destroys it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from microgpt.atomic import atomic_write_json
from microgpt.safe_io import read_capped

try:  # the user database, for a home when HOME is empty (POSIX only)
    import pwd
except ImportError:
    pwd = None  # type: ignore[assignment]

ENV_VAR = "MICROGPT_TUI_CONFIG"


def config_path(env: dict[str, str] | None = None) -> Path:
    """The settings file this launch reads and writes."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR, "").strip():  # empty or spaces: unset, as every variable
        return Path(env[ENV_VAR]).expanduser()
    home = env.get("HOME", "").strip() or _home_from_user_database()
    return Path(home) / ".config" / "microgpt" / "tui.json"  # an empty HOME is no home: "/" was used


def _home_from_user_database() -> str:
    """This user's home folder from the user database, for an empty HOME; the working folder when there is none
    (a container run as a uid without an entry)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_dir if pwd else str(Path.home())
    except KeyError:
        return os.getcwd()


MAX_STATE_BYTES = 1 << 20  # the settings are a few kB; anything bigger is not ours
STATE_SHAPE: dict[str, type] = {"knobs": dict, "preset": str, "dataset_dirs": list, "chat": dict}


def load_state(path: str | os.PathLike[str]) -> tuple[dict[str, Any], str | None]:
    """The saved settings and None; or {} and why the file was ignored (absent counts as fine).

    Whatever the file holds (not JSON, bad UTF-8, nested 100,000 deep, a FIFO, /dev/zero) the
    answer is the defaults and one message, never an exception.
    """
    try:
        data = json.loads(read_capped(path, MAX_STATE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        return {}, f"ignored the settings in {path}: {exc.strerror}"
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return {}, f"ignored the settings in {path}: not readable JSON ({type(exc).__name__})"
    if not isinstance(data, dict):
        return {}, f"ignored the settings in {path}: not a JSON object"
    wrong = [key for key, kind in STATE_SHAPE.items() if key in data and not isinstance(data[key], kind)]
    for key in wrong:
        del data[key]
    return data, (f"ignored {', '.join(wrong)} in {path}: wrong type" if wrong else None)


def set_aside(path: str | os.PathLike[str]) -> Path | None:
    """Rename an unusable settings file to <name>.bad (or .bad2, .bad3...), never replacing an earlier one.

    Returns the new name, or None when the file is not a regular file or cannot be renamed.
    """
    path = Path(path)
    try:
        if not path.is_file():
            return None
        for n in range(1, 100):
            aside = path.with_name(path.name + (".bad" if n == 1 else f".bad{n}"))
            if not os.path.lexists(aside):
                path.rename(aside)
                return aside
    except (OSError, ValueError):  # ValueError: a NUL in $MICROGPT_TUI_CONFIG
        pass
    return None


def save_state(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write the settings in one atomic step (the folder is created when needed)."""
    atomic_write_json(path, state)
