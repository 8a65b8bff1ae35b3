"""Run artifacts stay readable while the run is going, and atomic writes never leave half a file."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from microgpt.atomic import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text
from microgpt.train.artifacts import (
    EVAL_COLUMNS,
    SYSTEM_COLUMNS,
    RunArtifacts,
    list_runs,
    make_run_id,
    read_events,
    release_run_id,
    sanitize_run_name,
)
from microgpt.train.system_monitor import SystemMonitor


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[RunArtifacts]:
    artifacts = RunArtifacts("20250101-000000_test", log_dir=tmp_path, echo=False)
    yield artifacts
    artifacts.close()


# --- run artifacts --------------------------------------------------------------------------------------


def test_layout(run: RunArtifacts, tmp_path: Path) -> None:
    rid = run.run_id
    assert run.train_log == tmp_path / "train" / f"train_{rid}.log"
    assert run.latest_log == tmp_path / "train_latest.log"
    assert run.system_csv == tmp_path / "system" / f"system_metrics_{rid}.csv"
    assert run.eval_csv == tmp_path / "eval" / f"eval_metrics_{rid}.csv"
    assert run.manifest == tmp_path / "runs" / f"run_{rid}.json"
    assert run.events == tmp_path / "events" / f"events_{rid}.jsonl"


def test_csv_files_parse_while_still_open(run: RunArtifacts) -> None:
    assert read_csv(run.eval_csv) == [] and read_csv(run.system_csv) == []
    with run.eval_csv.open(encoding="utf-8") as handle:
        assert handle.readline().strip() == ",".join(EVAL_COLUMNS)

    run.eval_row({"step": 50, "train_loss": 3.25, "val_loss": 3.5, "lr": 0.004, "patience_used": 0})
    run.eval_row({"step": 100, "train_loss": 2.75, "val_loss": float("nan")})
    rows = read_csv(run.eval_csv)
    assert [r["step"] for r in rows] == ["50", "100"]
    assert float(rows[0]["val_loss"]) == 3.5 and rows[0]["gap"] == ""
    assert math.isnan(float(rows[1]["val_loss"]))

    run.system_row({"step": 7, **SystemMonitor().sample()})
    (row,) = read_csv(run.system_csv)
    assert list(row) == list(SYSTEM_COLUMNS)
    assert row["step"] == "7" and row["time"] and float(row["rss_mb"]) > 0


def test_unknown_csv_column_is_an_error(run: RunArtifacts) -> None:
    with pytest.raises(ValueError):
        run.eval_row({"step": 1, "val_los": 2.0})


def test_events_are_json_lines(run: RunArtifacts) -> None:
    run.event("start", run=run.run_id, config={"n_layer": 2}, total_steps=10, parameters=np.int64(1234))
    run.event("step", step=1, loss=np.float32(3.5), lr=0.004)
    run.event("stop", step=1, reason="done", best_val_loss=float("inf"), losses=[np.float32("nan"), 2.0])
    lines = run.events.read_text(encoding="utf-8").splitlines()
    events = [json.loads(line, parse_constant=lambda name: pytest.fail(f"{name} is not JSON")) for line in lines]
    assert [e["type"] for e in events] == ["start", "step", "stop"]
    assert events[0]["parameters"] == 1234 and events[1]["loss"] == 3.5
    assert all(isinstance(e["time"], float) for e in events)
    assert events[2]["best_val_loss"] is None and events[2]["losses"] == [None, 2.0]  # not measured: null


def test_read_events_follows_and_skips_a_partial_line(run: RunArtifacts) -> None:
    run.event("step", step=1)
    events, offset = read_events(run.events)
    assert [e["step"] for e in events] == [1]
    with run.events.open("a", encoding="utf-8") as handle:
        handle.write('{"type": "step", "st')
    assert read_events(run.events, offset) == ([], offset)
    with run.events.open("a", encoding="utf-8") as handle:
        handle.write('ep": 2}\n')
    events, _ = read_events(run.events, offset)
    assert [e["step"] for e in events] == [2]
    assert read_events(run.events.with_name("missing.jsonl")) == ([], 0)


def test_a_huge_events_file_is_read_a_bounded_chunk_at_a_time(run: RunArtifacts, monkeypatch) -> None:
    import microgpt.train.artifacts as artifacts_module

    monkeypatch.setattr(artifacts_module, "MAX_EVENTS_READ", 64)
    with run.events.open("a", encoding="utf-8") as handle:
        handle.write('{"step": 1}\n{"step": 2}\n' + "x" * 200 + '\n{"step": 3}\n')
    events, offset = read_events(run.events)
    assert [e["step"] for e in events] == [1, 2] and offset == 24  # the lines complete within 64 bytes
    seen = []
    while True:  # a follower goes on from there: a 200-byte "line" is passed over, not waited on for ever
        events, after = read_events(run.events, offset)
        if after == offset:
            break
        seen += [e["step"] for e in events]
        offset = after
    assert seen == [3] and offset == run.events.stat().st_size


def test_log_writes_run_log_latest_log_and_respects_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    artifacts = RunArtifacts("r1", log_dir=tmp_path, echo=True, log_level="info")
    artifacts.log("hello\nworld")
    artifacts.log("hidden detail", level="debug")
    artifacts.log("careful", level="warning")
    run_lines = artifacts.train_log.read_text(encoding="utf-8").splitlines()
    assert artifacts.latest_log.read_text(encoding="utf-8").splitlines() == run_lines
    assert len(run_lines) == 3 and "INFO" in run_lines[0] and run_lines[1].endswith("world")
    assert "WARNING" in run_lines[2] and "hidden" not in "".join(run_lines)
    assert capsys.readouterr().out.splitlines() == run_lines
    artifacts.close()
    artifacts.close()

    second = RunArtifacts("r2", log_dir=tmp_path, echo=False)
    second.log("new run")
    assert "new run" in second.latest_log.read_text(encoding="utf-8")
    assert "hello" not in second.latest_log.read_text(encoding="utf-8")
    second.close()


def test_reopening_a_run_appends_without_a_second_header(tmp_path: Path) -> None:
    for step in (1, 2):
        artifacts = RunArtifacts("again", log_dir=tmp_path, echo=False)
        artifacts.eval_row({"step": step})
        artifacts.close()
    assert [r["step"] for r in read_csv(tmp_path / "eval" / "eval_metrics_again.csv")] == ["1", "2"]


def test_manifest_is_atomic_and_listed_newest_first(tmp_path: Path) -> None:
    for rid in ("20250101-000000_a", "20250301-000000_c", "20250201-000000_b"):
        artifacts = RunArtifacts(rid, log_dir=tmp_path, echo=False)
        artifacts.write_manifest({"status": "running", "best_val_loss": np.float64(2.5)})
        artifacts.write_manifest({"status": "finished"})
        artifacts.close()
    (tmp_path / "runs" / "run_damaged.json").write_text("{half", encoding="utf-8")
    (tmp_path / "runs" / "run_list.json").write_text("[1]", encoding="utf-8")

    assert [p.name for p in (tmp_path / "runs").iterdir() if p.name.endswith(".tmp")] == []
    runs = list_runs(tmp_path)
    assert [r["run_id"] for r in runs] == ["20250301-000000_c", "20250201-000000_b", "20250101-000000_a"]
    assert runs[0]["status"] == "finished" and runs[0]["paths"]["events"].endswith("events_20250301-000000_c.jsonl")
    assert Path(runs[0]["manifest_path"]).is_file()
    assert list_runs(tmp_path / "nowhere") == []


def test_make_run_id_is_safe_and_unique(tmp_path: Path) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5)
    first = make_run_id("my run/../x", tmp_path, now=when)
    assert first == "20250102-030405_my-run-..-x"
    assert sanitize_run_name("??") == "run"
    RunArtifacts(first, log_dir=tmp_path, echo=False).close()
    second = make_run_id("my run/../x", tmp_path, now=when)
    assert second == first + "-2"
    RunArtifacts(second, log_dir=tmp_path, echo=False).write_manifest({})
    assert make_run_id("my run/../x", tmp_path, now=when) == first + "-3"


def test_runs_started_in_the_same_second_claim_different_ids(tmp_path: Path) -> None:
    when = datetime(2025, 1, 2, 3, 4, 5)
    claimed = [make_run_id("sweep", tmp_path, now=when, reserve=True) for _ in range(3)]
    assert claimed == ["20250102-030405_sweep", "20250102-030405_sweep-2", "20250102-030405_sweep-3"]
    release_run_id(claimed[1], tmp_path)  # never started: its id is free again
    assert make_run_id("sweep", tmp_path, now=when) == claimed[1]
    (tmp_path / "events" / f"events_{claimed[2]}.jsonl").write_text("{}\n")
    release_run_id(claimed[2], tmp_path)  # a run that wrote events keeps its file
    assert (tmp_path / "events" / f"events_{claimed[2]}.jsonl").read_text() == "{}\n"


def test_system_monitor_sample_has_every_field() -> None:
    sample = SystemMonitor().sample()
    assert set(sample) == {"cpu_percent", "ram_used_mb", "ram_percent", "rss_mb", "threads"}
    assert sample["rss_mb"] > 0 and sample["threads"] >= 1


# --- atomic writes --------------------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_writes_replace_the_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "f.json"
    atomic_write_json(target, {"a": 1})
    assert json.loads(target.read_text(encoding="utf-8")) == {"a": 1}
    atomic_write_text(target, "text")
    assert target.read_text(encoding="utf-8") == "text"
    atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert leftovers(target.parent) == []
    assert os.stat(target).st_mode & 0o777 == 0o644


def test_atomic_open_keeps_the_old_file_when_the_writer_raises(tmp_path: Path) -> None:
    target = tmp_path / "weights.npz"
    with atomic_open(target) as handle:
        np.savez(handle, w=np.arange(3))
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half a checkpoint")
        raise RuntimeError("disk full")
    with np.load(target) as data:
        assert data["w"].tolist() == [0, 1, 2]
    assert leftovers(tmp_path) == []


def test_atomic_write_json_fails_before_touching_the_file(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    atomic_write_json(target, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": True}
    assert leftovers(tmp_path) == []
