"""`python -m microgpt.tui`: the terminal dashboard (train, watch, browse runs and models, chat).

It works from the project root, the nearest folder at or above the current one that holds
pyproject.toml or datasets/: relative paths (datasets/, logs/, models/) mean the project's folders
wherever it was launched from, and the trainer it starts runs there too.
"""

from __future__ import annotations

import argparse
import curses
import locale
import os
import sys

from microgpt.console import stop_signals_interrupt
from microgpt.errors import MicrogptError
from microgpt.tui.app import MIN_HEIGHT, MIN_WIDTH, App, main_loop
from microgpt.tui.persist import config_path
from microgpt.tui.system import project_root
from microgpt.tui.terminal import colours_wanted, terminal_speaks_utf8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The dashboard's flags, shared by `python -m microgpt.tui` and `python -m microgpt tui`."""
    parser.add_argument("--no-splash", action="store_true", help="skip the start screen")
    parser.add_argument("--ascii", action="store_true", help="draw with ASCII only (no UTF-8 glyphs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m microgpt.tui", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Set up the terminal (locale for UTF-8, a short ESC delay), run the dashboard, restore the terminal.

    Whatever happens inside (a bug, a terminal that goes away), a running trainer is stopped before the
    dashboard exits, and the error is one line, never a traceback.
    """
    if not sys.stdout.isatty() or os.environ.get("TERM", "dumb") == "dumb":
        print("python -m microgpt.tui needs a terminal that can move its cursor (TERM is unset or dumb)",
              file=sys.stderr)
        return 2
    try:
        locale.setlocale(locale.LC_ALL, "")
        unicode = not args.ascii and terminal_speaks_utf8()
    except locale.Error:  # LC_ALL or LANG names a locale this system lacks: draw with ASCII
        unicode = False
    os.environ.setdefault("ESCDELAY", "25")  # esc reacts in 25 ms instead of curses' default 1 s
    root = project_root()
    os.chdir(root)  # so that a relative path typed in any tab means the same file the trainer opens
    try:
        app = App(root, config_path(), splash_s=0 if args.no_splash else 1.5, unicode=unicode)
    except MicrogptError as exc:
        print(f"microgpt tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    problem, code = "", 0
    try:
        with stop_signals_interrupt():  # a closed terminal quits as `q` does: a running trainer is stopped, saved
            curses.wrapper(main_loop, app, colours_wanted())
    except KeyboardInterrupt:
        pass
    except curses.error as exc:  # TERM names no known terminal, or the terminal has no size at all
        problem = (f"the terminal cannot be used ({exc}; TERM={os.environ.get('TERM')!r}); "
                   f"try TERM=xterm-256color and a window of at least {MIN_WIDTH}x{MIN_HEIGHT}")
        code = 2
    except Exception as exc:  # noqa: BLE001 - a bug in the dashboard: one line once the trainer is stopped
        problem, code = f"the dashboard failed: {type(exc).__name__}: {exc}", 1
    finally:
        app.shutdown()  # a no-op when the main loop already did it
    if problem:
        print(f"microgpt tui: error: {problem}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
