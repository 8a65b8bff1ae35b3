"""A run owns its output folder: `MODEL_DIR/.microgpt-run.lock` names the process and run that write there.

Two trainers writing `best_checkpoint.npz` into one folder would silently overwrite each other's work, so
a second trainer refuses to start, with one line naming the run that holds the folder. The lock file is
created with O_EXCL (exactly one process can create it) and holds JSON: pid, run id, start time. A lock
whose process is dead (a killed run) is stale and is taken over; `release` removes only our own lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from microgpt.atomic import process_alive
from microgpt.errors import ConfigError

LOCK_NAME = ".microgpt-run.lock"


def claim_lock(file: str | os.PathLike[str], run_id: str, knob: str) -> RunLock:
    """The lock by which a run claims one file outside its MODEL_DIR (MODEL_BEST_PATH's, MODEL_OUT_PATH's):
    `.<name>.microgpt-claim` beside it, so a later run that would write that name there (as its MODEL_DIR's
    best or latest, or as its own MODEL_BEST_PATH) is refused while this one lives."""
    path = Path(file)
    return RunLock(path.parent, run_id, knob, os.fspath(file), name=f".{path.name}.microgpt-claim")


class RunLock:
    """Held from `acquire()` to `release()` by one trainer; `path` is the lock file."""

    def __init__(self, folder: str | os.PathLike[str], run_id: str, knob: str = "MODEL_DIR",
                 value: str | None = None, name: str = LOCK_NAME) -> None:
        """`value` is what the user gave `knob` when that is a file in `folder` (MODEL_BEST_PATH), for messages;
        `name` the lock file's (a claim on one file: see claim_lock)."""
        self.path = Path(folder) / name
        self.run_id = run_id
        self.knob = knob
        self.label = f"{knob}={str(folder)!r}" if value is None else f"{knob}={value!r} (its folder {str(folder)!r})"
        self.held = False

    def acquire(self) -> RunLock:
        """Take the folder, taking over a dead run's lock; ConfigError when a live run holds it."""
        for _ in range(20):  # a stale lock removed by us, a rival starting at the same moment, a lock being written
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None and self._age_s() < 2.0:  # its writer may be between create and write
                    time.sleep(0.1)
                    continue
                self._refuse_a_live_holder(holder)
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                continue
            except OSError as exc:
                raise ConfigError(f"{self.label}: cannot create {self.path.name} "
                                  f"({exc.strerror})") from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump({"pid": os.getpid(), "run_id": self.run_id, "started": round(time.time(), 3)}, handle)
            self.held = True
            return self
        raise ConfigError(f"{self.label}: another trainer keeps taking the folder")

    def check_free(self) -> None:
        """ConfigError when another live run holds this folder; nothing is taken (for a folder a run writes a
        single file into, MODEL_OUT_PATH's or MODEL_BEST_PATH's: another run's MODEL_DIR is not ours)."""
        if self.path.exists():
            self._refuse_a_live_holder(self._holder())

    def _refuse_a_live_holder(self, holder: dict | None) -> None:
        started = holder.get("started") if holder is not None else None
        if holder is not None and holder.get("pid") != os.getpid() and process_alive(
                holder["pid"], started if type(started) in (int, float) else None):
            raise ConfigError(
                f"{self.label} is in use by run {holder.get('run_id', '?')} "
                f"(pid {holder['pid']}, its lock {self.path.name}); wait for it to finish, stop it, or "
                f"give this run another {self.knob}") from None

    def _holder(self) -> dict | None:
        """The lock's content; None when it is unreadable or half-written (treated as stale)."""
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(holder, dict) or not isinstance(holder.get("pid"), int) or holder["pid"] <= 0:
            return None
        return holder

    def _age_s(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    def release(self) -> None:
        """Remove the lock if it is still ours; harmless to call twice."""
        if self.held:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                with contextlib.suppress(OSError):
                    self.path.unlink()
            self.held = False
