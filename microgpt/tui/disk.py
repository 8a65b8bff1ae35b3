"""What is on disk: past runs (from their manifests), checkpoints, and datasets to pick from.

Read-only and quick: each function is called when a tab opens or `r` is pressed, never per frame.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from microgpt.atomic import process_alive
from microgpt.data.records import check_record, record_type_of
from microgpt.safe_io import open_regular, unique_keys
from microgpt.storage import checkpoint_info
from microgpt.train.artifacts import read_events, run_file

# (label, key in the manifest's "paths" and in RUN_FILES, where the file lives when the manifest does not say)
ARTIFACTS: tuple[tuple[str, str], ...] = (
    ("train log", "train_log"), ("system CSV", "system_csv"), ("eval CSV", "eval_csv"), ("manifest", "manifest"),
    ("events", "events"),
)


def run_id(manifest: dict[str, Any]) -> str:
    """The id a manifest belongs to (`run_id`, else `run`)."""
    return str(manifest.get("run_id") or manifest.get("run") or "?")


def artifacts(
    manifest: dict[str, Any], root: str | os.PathLike[str], log_dir: str | os.PathLike[str]
) -> list[tuple[str, Path, int | None]]:
    """(label, path, size or None when missing) for each file a run leaves.

    The manifest lists its files under "paths" (relative to the project `root`); a manifest
    without that list gets the standard layout under `log_dir`.
    """
    listed = manifest.get("paths") if isinstance(manifest.get("paths"), dict) else {}
    out = []
    for label, key in ARTIFACTS:
        standard = run_file(log_dir, run_id(manifest), key)
        path = Path(root, listed[key]) if isinstance(listed.get(key), str) else standard
        if key == "manifest" and isinstance(manifest.get("manifest_path"), str):  # the file it was read from
            path = Path(manifest["manifest_path"])
        try:
            size: int | None = path.stat().st_size
        except (OSError, ValueError):  # missing, or a name no file system takes
            size = None
        out.append((label, path, size))
    return out


def run_state(manifest: dict[str, Any]) -> str:
    """How a run ended (its stop reason), or "running"; a run whose manifest still says running but whose
    process is gone was killed (kill -9, a second signal, a power cut) and says so."""
    state = str(manifest.get("stop_reason") or manifest.get("status") or "-")
    pid = manifest.get("pid")
    if manifest.get("status") != "running" or type(pid) is not int or pid <= 0:
        return state
    if pid >= 2**31:  # a pid no system hands out: the manifest is damaged
        return "damaged"
    return state if process_alive(pid) else "killed"


def _seconds(value: Any) -> float | None:
    """A JSON number as a float; None for anything else, or an integer too big for one (1 and 400 zeros)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _timestamp(value: Any) -> float | None:
    """Unix seconds from a number or an ISO-8601 string."""
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except (ValueError, OverflowError, OSError):  # not a date, or one the platform cannot convert
            return None
    return _seconds(value)


def duration_s(manifest: dict[str, Any]) -> float | None:
    """How long the run took: its `duration_s`, else end_time - start_time when both are known."""
    if (seconds := _seconds(manifest.get("duration_s"))) is not None:
        return seconds
    start, end = _timestamp(manifest.get("start_time")), _timestamp(manifest.get("end_time"))
    return end - start if start is not None and end is not None else None


def load_events(log_dir: str | os.PathLike[str], rid: str) -> list[dict[str, Any]]:
    """The events a finished (or running) run wrote, up to MAX_EVENTS_READ bytes of them (a bigger file is no
    run's: read whole on the screen's thread, it froze the dashboard); empty when its events file is missing."""
    events, _ = read_events(run_file(log_dir, rid, "events"))
    return events


@dataclass(frozen=True)
class CheckpointRow:
    """One checkpoint file as the Models tab lists it."""

    path: Path
    run: str
    step: int | None
    val_loss: float | None
    kind: str  # latest, best, step, other, or damaged (metadata unreadable)
    size_bytes: int
    modified: float


def checkpoints(model_dir: str | os.PathLike[str]) -> list[CheckpointRow]:
    """Checkpoints under `model_dir` (*.npz, and the Go edition's *.json), newest first.

    `checkpoint_info` reads the metadata stored inside each file, not the weights, so listing
    is quick even for large models; a damaged or unreadable file is still listed, so it can be deleted.
    """
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    rows = []
    for path in folder.iterdir():
        if path.suffix not in (".npz", ".json") or not path.is_file():
            continue
        try:
            info = _info_of(path)
        except FileNotFoundError:  # deleted between listing and reading
            continue
        except Exception:  # noqa: BLE001 - whatever one file holds, the listing shows the rest (and this one)
            info = {"kind": "unreadable", "size_bytes": _size(path), "modified": _mtime(path)}
        rows.append(CheckpointRow(
            path, str(info.get("run") or ""), info.get("step"), info.get("val_loss"),
            str(info.get("kind") or ""), int(info["size_bytes"]), float(info["modified"]),
        ))
    rows.sort(key=lambda row: row.modified, reverse=True)
    return rows


_INFO_CACHE: dict[tuple[str, int, int, int], dict[str, Any]] = {}  # (path, inode, size, mtime) -> its info


def _info_of(path: Path) -> dict[str, Any]:
    """checkpoint_info, read again only when the file changed: the tab lists the folder every 2 s, and a file's
    metadata may be megabytes of JSON."""
    stat = path.stat()
    key = (str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _INFO_CACHE:
        if len(_INFO_CACHE) > 1024:  # files come and go over a long session: forget the old ones
            _INFO_CACHE.clear()
        _INFO_CACHE[key] = checkpoint_info(path)
    return _INFO_CACHE[key]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def is_folder(path: Path) -> bool:
    """path.is_dir(), False for a path no file system takes (too long, a NUL) where is_dir() raises."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def is_file(path: Path) -> bool:
    """path.is_file(), False for a path no file system takes (too long, a NUL) where is_file() raises."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def dataset_files(folders: list[str | os.PathLike[str]], base: str | os.PathLike[str] = ".") -> list[str]:
    """Every .jsonl file under the given folders (recursively), as paths relative to `base` where possible."""
    found: set[str] = set()
    root = Path(base).resolve()
    for folder in folders:
        top = Path(base, folder)
        if not is_folder(top):
            continue
        for path in top.rglob("*.jsonl"):
            if not path.is_file():
                continue
            resolved = path.resolve()
            found.add(str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved))
    return sorted(found)


@dataclass(frozen=True)
class DatasetSummary:
    """Record counts of a JSONL file, judged by the trainer's own schema (`microgpt.data.records`)."""

    records: int  # valid records
    invalid: int  # lines that are not JSON or break the schema
    blank: int
    size_bytes: int
    by_type: dict[str, int]  # valid records per record_type (qa, chat, dolly...)
    truncated: bool  # only the first `max_bytes` were counted


def summarize_dataset(path: str | os.PathLike[str], max_bytes: int = 16 * 1024 * 1024) -> DatasetSummary:
    """Count the records of a JSONL dataset; reads at most `max_bytes`, so a huge file cannot stall the UI."""
    records = invalid = blank = 0
    by_type: dict[str, int] = {}
    with open_regular(path) as handle:  # OSError for a FIFO or a device: the picker says it cannot be read
        size = os.fstat(handle.fileno()).st_size
        for raw in handle.read(max_bytes).splitlines():
            if not raw.strip():
                blank += 1
                continue
            try:
                record = json.loads(raw, object_pairs_hook=unique_keys)  # as validate-dataset reads it
            except (ValueError, RecursionError):  # not JSON, or nested too deep to parse
                invalid += 1
                continue
            if check_record(record):
                invalid += 1
                continue
            records += 1
            kind = record_type_of(record)
            by_type[kind] = by_type.get(kind, 0) + 1
    return DatasetSummary(records, invalid, blank, size, by_type, size > max_bytes)
