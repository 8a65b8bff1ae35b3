"""Run artifacts: the files a training run leaves behind, each one readable at any moment while it runs.

Layout under `log_dir` (default `logs/`) for a run id such as `20250101-120000_run`:

    train/train_<id>.log            human log, one timestamped line per message
    train_latest.log                the same lines for the newest run (truncated when a run starts)
    eval/eval_metrics_<id>.csv      one row per evaluation (columns: EVAL_COLUMNS)
    system/system_metrics_<id>.csv  one row per system sample (columns: SYSTEM_COLUMNS)
    events/events_<id>.jsonl        one JSON object per line: the machine-readable story of the run
    runs/run_<id>.json              the manifest, replaced atomically: what `list_runs` reads

Why "readable at any moment": every line is written with one `write` call and flushed, CSV headers
are written when the file is created, and the manifest is swapped in whole. A reader that follows
`events_<id>.jsonl` only has to ignore a last line that does not end in a newline yet (`read_events`
does that).

Event types the trainer emits. Every event also has "type" and "time" (unix seconds):

    start       run, config, total_steps, parameters, dataset, tokenizer, step, resumed_from
    step        step, loss, lr, tokens_per_sec, steps_per_sec, elapsed_s, eta_s, total_steps
    eval        step, train_loss, val_loss, val_ppl, gap, best_val_loss, patience_used, patience, improved
    system      step, cpu_percent, ram_used_mb, ram_percent, rss_mb, threads
    sample      step, prompt, text
    checkpoint  step, path, kind (latest | best | final)
    stop        step, reason (completed | early_stop | interrupted | stopped_after | nan_loss), best_val_loss

A loss that diverged (NaN or infinite) is written as `null`: the files stay strict JSON that any reader takes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from microgpt.atomic import LineFile, atomic_write_bytes, atomic_write_text
from microgpt.config import TrainConfig
from microgpt.config.knobs import MAX_RUN_NAME
from microgpt.safe_io import open_regular, read_capped

LATEST_LOG = "train_latest.log"  # under LOG_DIR: the newest run's log lines
RUN_FILES = {  # a run's files under LOG_DIR, by the name its manifest's "paths" gives them ({id}: the run id)
    "train_log": "train/train_{id}.log",
    "system_csv": "system/system_metrics_{id}.csv",
    "eval_csv": "eval/eval_metrics_{id}.csv",
    "manifest": "runs/run_{id}.json",
    "events": "events/events_{id}.jsonl",
}


def run_file(log_dir: str | os.PathLike[str], run_id: str, kind: str) -> Path:
    """Where run `run_id` keeps its file of `kind` (a RUN_FILES name) under `log_dir`."""
    return Path(log_dir) / RUN_FILES[kind].format(id=run_id)


EVAL_COLUMNS: tuple[str, ...] = (
    "step", "train_loss", "val_loss", "val_ppl", "gap", "best_val_loss",
    "lr", "tokens_per_sec", "elapsed_s", "patience_used",
)
SYSTEM_COLUMNS: tuple[str, ...] = (
    "time", "elapsed_s", "step", "cpu_percent", "ram_used_mb", "ram_percent", "rss_mb", "threads",
)
LOG_LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warning": 30, "error": 40}

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
# a run id read from a file (a checkpoint's meta): what make_run_id makes, in characters and length, or a
# name of that alphabet of an earlier version's (up to 200 characters); it becomes part of file names
SAFE_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def sanitize_run_name(run_name: str) -> str:
    """Keep only characters that are safe in a file name on every OS (anything else becomes '-'), and at most
    MAX_RUN_NAME of them."""
    return _UNSAFE.sub("-", run_name)[:MAX_RUN_NAME].strip("-.") or "run"


def make_run_id(run_name: str, log_dir: str | os.PathLike[str] = TrainConfig.log_dir, now: datetime | None = None,
                reserve: bool = False) -> str:
    """`YYYYmmdd-HHMMSS_<name>`, with a `-2`, `-3`, ... suffix when a run with that id already left files.

    With `reserve` the id is claimed by creating its (empty) events file, which only one process can do: runs
    started in the same second into one LOG_DIR (a sweep) each get their own id and files."""
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    base = f"{stamp}_{sanitize_run_name(run_name)}"
    root = Path(log_dir)
    if reserve:
        run_file(root, base, "events").parent.mkdir(parents=True, exist_ok=True)
    candidate, n = base, 1
    while True:
        events = run_file(root, candidate, "events")
        if not run_file(root, candidate, "manifest").exists() and not events.exists():
            try:
                if reserve:
                    os.close(os.open(events, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return candidate
            except FileExistsError:  # another run took it between the check and the claim
                pass
        n += 1
        candidate = f"{base}-{n}"


def release_run_id(run_id: str, log_dir: str | os.PathLike[str]) -> None:
    """Give back an id that `make_run_id(reserve=True)` claimed for a run that never started (its events file
    is still empty)."""
    events = run_file(log_dir, run_id, "events")
    with contextlib.suppress(OSError):
        if events.stat().st_size == 0:
            events.unlink()


def _to_json(value: Any) -> Any:
    """JSON fallback for paths."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _strict(value: Any) -> Any:
    """value for strict JSON: NumPy scalars and arrays as Python ones (without importing NumPy here), and a
    NaN or an infinity (a loss not measured yet, or diverged) as null, which every JSON reader takes."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def _json(value: Any, **options: Any) -> str:
    """value as strict JSON text (see _strict)."""
    return json.dumps(_strict(value), default=_to_json, allow_nan=False, **options)


class RunArtifacts:
    """Owns every file of one run; the trainer calls `log`, `eval_row`, `system_row`, `event`, `write_manifest`.

    Files are opened in append mode, so re-opening the same run id continues them; a CSV header is
    written only when its file is new. Text that is not valid Unicode (a path of undecodable bytes)
    is written with backslash escapes, so the files stay UTF-8. `log_level` filters `log` for both the files and stdout.
    Safe to call from a monitoring thread alongside the training loop; call `close()` in a `finally`.
    """

    def __init__(
        self,
        run_id: str,
        log_dir: str | os.PathLike[str] = TrainConfig.log_dir,
        echo: bool = True,
        log_level: str = TrainConfig.log_level,
        console: IO[str] | None = None,
        started: float | None = None,
    ) -> None:
        """`console` is where `echo` prints (sys.stdout when None), e.g. a ProgressLine that keeps a status line;
        `started` is the time the run's clock counts from (now when None; earlier for a resumed run)."""
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}; got {log_level!r}")
        self.run_id = run_id
        self.log_dir = Path(log_dir)
        self.echo = echo
        self.console = console
        self.threshold = LOG_LEVELS[log_level]
        self.train_log, self.system_csv, self.eval_csv, self.manifest, self.events = (
            run_file(log_dir, run_id, kind) for kind in ("train_log", "system_csv", "eval_csv", "manifest", "events"))
        self.latest_log = self.log_dir / LATEST_LOG
        for path in (self.train_log, self.latest_log, self.system_csv, self.eval_csv, self.manifest, self.events):
            path.parent.mkdir(parents=True, exist_ok=True)

        self._lock = threading.Lock()
        self._started = time.time() if started is None else started
        self._files: list[LineFile] = []
        try:  # if one open fails, the ones before it are closed again
            for path, fresh in ((self.train_log, False), (self.latest_log, True), (self.events, False),
                                (self.eval_csv, False), (self.system_csv, False)):
                self._files.append(LineFile(path, truncate=fresh))
        except OSError:
            for opened in self._files:
                opened.close(sync=False)
            raise
        self._log_file, self._latest_file, self._events_file, self._eval_file, self._system_file = self._files
        for handle, columns in ((self._eval_file, EVAL_COLUMNS), (self._system_file, SYSTEM_COLUMNS)):
            if handle.size == 0:  # a new file gets its header at once, so it parses even before the first row
                handle.append(self._csv_line(dict(zip(columns, columns)), columns))
        self.closed = False

    @staticmethod
    def _csv_line(row: dict[str, Any], columns: tuple[str, ...]) -> str:
        """One CSV row as text (missing columns empty; an unknown column is a programming error)."""
        text = io.StringIO()
        csv.DictWriter(text, fieldnames=columns, restval="", extrasaction="raise").writerow(row)
        return text.getvalue()

    def paths(self) -> dict[str, str]:
        """Every artifact path of this run, as strings (the manifest carries this so readers can find them)."""
        return {
            "train_log": str(self.train_log),
            "latest_log": str(self.latest_log),
            "eval_csv": str(self.eval_csv),
            "system_csv": str(self.system_csv),
            "events": str(self.events),
            "manifest": str(self.manifest),
        }

    def log(self, message: str, level: str = "info") -> None:
        """Write `message` (every line of it) with a timestamp and level, if `level` passes the threshold."""
        if LOG_LEVELS.get(level, LOG_LEVELS["info"]) < self.threshold:
            return
        stamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        text = "".join(f"{stamp} {level.upper():<7} {line}\n" for line in str(message).splitlines() or [""])
        with self._lock:
            for handle in (self._log_file, self._latest_file):
                handle.append(text)
            if self.echo:
                console = self.console or sys.stdout
                console.write(text)
                console.flush()

    def eval_row(self, row: dict[str, Any]) -> None:
        """Append one evaluation row; missing columns stay empty, an unknown column is a programming error."""
        line = self._csv_line(row, EVAL_COLUMNS)
        with self._lock:
            self._eval_file.append(line)

    def system_row(self, row: dict[str, Any]) -> None:
        """Append one system sample; `time` and `elapsed_s` are filled in when the caller leaves them out."""
        now = time.time()
        full = {"time": datetime.fromtimestamp(now).isoformat(timespec="seconds"),
                "elapsed_s": round(now - self._started, 1), **row}
        line = self._csv_line(full, SYSTEM_COLUMNS)
        with self._lock:
            self._system_file.append(line)

    def event(self, type: str, **fields: Any) -> None:
        """Append one JSON line `{"type": type, "time": <unix seconds>, **fields}` and flush it."""
        record = {"type": type, "time": round(time.time(), 3), **fields}
        line = _json(record) + "\n"
        with self._lock:
            self._events_file.append(line)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Replace the manifest atomically; `run_id`, `paths` and `updated_at` are added unless given."""
        document = {"run_id": self.run_id, "paths": self.paths(), "updated_at": round(time.time(), 3), **manifest}
        atomic_write_text(self.manifest, _json(document, indent=2) + "\n")

    def close(self) -> None:
        """Flush and fsync every file, then close them; calling it twice is harmless."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            errors = []
            for handle in self._files:  # every file is closed, even after one fails to sync
                try:
                    handle.close()
                except OSError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]


MAX_EVENTS_READ = 32 << 20  # bytes of events one call reads: a long run writes a few MiB; a GiB file is no run's


def read_events(path: str | os.PathLike[str], offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Read complete event lines from byte `offset`, at most MAX_EVENTS_READ bytes of them; return them and the
    offset to resume from.

    A follower calls it repeatedly with the returned offset. A last line without its newline is a
    write in progress and is left for the next call; a complete line that is not JSON is skipped, and so is
    a "line" longer than a whole read (no event is that long).
    """
    try:
        with open_regular(path) as handle:  # a FIFO or a device named like an events file never blocks
            handle.seek(offset)
            chunk = handle.read(MAX_EVENTS_READ)
    except (OSError, ValueError):  # missing, not a file, or a name no file system takes (a crafted run id)
        return [], offset
    end = chunk.rfind(b"\n") + 1
    if end == 0 and len(chunk) == MAX_EVENTS_READ:
        return [], offset + len(chunk)
    events: list[dict[str, Any]] = []
    for raw in chunk[:end].splitlines():
        try:
            record = json.loads(raw)
        except (ValueError, RecursionError):  # not JSON, or arrays nested too deep to parse
            continue
        if isinstance(record, dict):
            events.append(record)
    return events, offset + end


def _step_of(line: bytes, step_column: int | None, kind: str | None = None) -> int | None:
    """The step a log line records: an event's "step" (with `kind`, only of a checkpoint event of that kind
    of save), or a CSV row's step column; None for a line that records none (a header, a torn or foreign line)."""
    try:
        if step_column is None:
            record = json.loads(line)
            wanted = kind is None or (isinstance(record, dict) and record.get("type") == "checkpoint"
                                      and record.get("kind") == kind)
            value = record.get("step") if isinstance(record, dict) and wanted else None
        else:
            value = int(next(csv.reader([line.decode("utf-8", errors="replace")]))[step_column])
    except (ValueError, IndexError, RecursionError, StopIteration):
        return None
    return value if type(value) is int else None


def rewind_run_logs(log_dir: str | os.PathLike[str], run_id: str, step: int) -> tuple[int, int | None]:
    """Before a run resumes at `step`: cut its events and eval and system CSVs back to that step.

    A session stopped hard (kill -9, a second signal, a failed write) logged steps that its last checkpoint
    does not hold; the resumed run computes them again, bit for bit, and would log them twice. They are
    removed (each file replaced atomically), and how many lines that was is returned with None. When a later
    latest or final checkpoint of the run was saved (a run resumed from an older checkpoint: a rollback or a
    fork), nothing is removed, since those lines describe weights that exist: the returned step is its.
    """
    files = {run_file(log_dir, run_id, "events"): None, run_file(log_dir, run_id, "eval_csv"): "step",
             run_file(log_dir, run_id, "system_csv"): "step"}
    contents: dict[Path, list[bytes]] = {}
    for path in files:
        with contextlib.suppress(OSError):  # a file not written yet holds nothing past the checkpoint
            contents[path] = path.read_bytes().splitlines(keepends=True)
    events = contents.get(next(iter(files)), [])
    # a later best alone is no branch: at an improving evaluation best is saved before latest, and a run killed
    # between the two resumes from the latest before it, to compute that same best again
    saved = [s for kind in ("latest", "final") for s in (_step_of(line, None, kind) for line in events)
             if s is not None and s > step]
    if saved:
        return 0, max(saved)
    dropped = 0
    for path, lines in contents.items():
        header = next(csv.reader([lines[0].decode("utf-8", errors="replace")]), []) if lines else []
        if files[path] is not None and files[path] not in header:
            continue  # not a table of ours: left as it is
        column = None if files[path] is None else header.index("step")
        kept = [line for line in lines if (_step_of(line, column) or 0) <= step]
        if len(kept) < len(lines):
            dropped += len(lines) - len(kept)
            atomic_write_bytes(path, b"".join(kept))
    return dropped, None


MAX_MANIFEST_BYTES = 16 << 20  # a manifest is a few KiB; a bigger file in runs/ is not one


def repoint_checkpoint(log_dir: str | os.PathLike[str], run_id: str, old: Path, new: Path) -> bool:
    """In run `run_id`'s manifest under `log_dir`, name `new` where it named `old` (a checkpoint moved by a later
    run), so the dashboard's entry for that run still leads to its files; True if the manifest changed. A
    manifest that is missing, unreadable or not ours is left alone."""
    if not SAFE_RUN_ID.fullmatch(run_id):
        return False
    path = run_file(log_dir, run_id, "manifest")
    try:
        manifest = json.loads(read_capped(path, MAX_MANIFEST_BYTES).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    files = manifest.get("checkpoints") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        return False
    moved = {kind: str(new) for kind, where in files.items()
             if isinstance(where, str) and where and Path(where).absolute() == old.absolute()}
    if moved:
        atomic_write_text(path, _json({**manifest, "checkpoints": {**files, **moved}}, indent=2) + "\n")
    return bool(moved)


def list_runs(log_dir: str | os.PathLike[str] = TrainConfig.log_dir) -> list[dict[str, Any]]:
    """Every readable run manifest under `log_dir/runs`, newest first; damaged manifests are skipped.

    Each dict gains `manifest_path`. Run ids start with a timestamp, so they sort by start time.
    """
    runs: list[tuple[tuple[str, float], dict[str, Any]]] = []
    for path in Path(log_dir).glob(RUN_FILES["manifest"].format(id="*")):
        try:
            manifest = json.loads(read_capped(path, MAX_MANIFEST_BYTES).decode("utf-8"))
            mtime = path.stat().st_mtime
        except (OSError, ValueError, RecursionError):  # unreadable, a FIFO or device, too big, not JSON
            continue
        if not isinstance(manifest, dict):
            continue
        manifest.setdefault("run_id", path.stem.removeprefix("run_"))
        manifest["manifest_path"] = str(path)
        runs.append(((str(manifest["run_id"])[:15], mtime), manifest))
    runs.sort(key=lambda item: item[0], reverse=True)
    return [manifest for _, manifest in runs]
