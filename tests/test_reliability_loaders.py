"""Reliability, loaders: whatever a file holds, each loader answers with its one-line error (or, for the
TUI's listings and settings, a row or a message saying the file is unreadable), never an exception.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import test_tui_app
from test_tui_app import make_app, press, screen

from microgpt.tui.disk import checkpoints
from microgpt.tui.persist import load_state

project = test_tui_app.project  # a project folder with small datasets, as the TUI tests use
DEEP = "[" * 100_000 + "]" * 100_000


def npz_with_meta(path: Path, meta_text: str) -> Path:
    """An .npz that looks like a checkpoint on the outside, with `meta_text` as its metadata."""
    buffer = io.BytesIO()
    np.savez(buffer, format_version=np.asarray(1), meta=np.frombuffer(meta_text.encode(), dtype=np.uint8))
    path.write_bytes(buffer.getvalue())
    return path


# --- the TUI's checkpoint list ---------------------------------------------------------------------------------
def test_one_bad_checkpoint_is_listed_as_unreadable_and_the_rest_still_show(project: Path) -> None:
    models = project / "models"
    models.mkdir()
    npz_with_meta(models / "deep.npz", DEEP)
    npz_with_meta(models / "list.npz", "[1, 2]")
    npz_with_meta(models / "good.npz", json.dumps({"run_id": "20250101-120000_good", "step": 7}))
    (models / "zip.npz").write_bytes(zipfile.ZipFile.__doc__.encode()[:100])  # not even a zip
    rows = {row.path.name: row for row in checkpoints(models)}
    assert set(rows) == {"deep.npz", "list.npz", "good.npz", "zip.npz"}
    assert rows["good.npz"].run == "20250101-120000_good" and rows["good.npz"].step == 7
    assert rows["deep.npz"].kind in ("unreadable", "damaged")
    app = make_app(project)  # the dashboard starts and lists all four
    press(app, "5")
    text = screen(app)
    assert "20250101-120000_good" in text and "deep.npz" in text


# --- the TUI's settings file -----------------------------------------------------------------------------------
@pytest.mark.parametrize("content, why", [
    (b"{broken", "not readable JSON"),
    (DEEP.encode(), "not readable JSON"),
    (b'{"a": "\xff\xfe"}', "not readable JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"chat": [1], "knobs": 5, "dataset_dirs": 7, "preset": {}}', "wrong type"),
])
def test_a_bad_settings_file_is_ignored_with_a_message(project: Path, content: bytes, why: str) -> None:
    (project / "tui.json").write_bytes(content)
    state, problem = load_state(project / "tui.json")
    assert problem is not None and why in problem and "tui.json" in problem
    assert all(key not in state for key in ("chat", "knobs", "dataset_dirs", "preset"))
    app = make_app(project)
    assert why in screen(app, width=400)  # shown in the message row; the dashboard starts from the defaults
    for tab in "123456":
        press(app, tab)
        screen(app)


def test_a_settings_file_that_never_ends_is_not_read_whole(tmp_path: Path) -> None:
    big = tmp_path / "tui.json"
    big.write_bytes(b"{" + b" " * (2 << 20) + b"}")
    state, problem = load_state(big)
    assert state == {} and "limit" in problem
