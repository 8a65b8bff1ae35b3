"""Saving a checkpoint is atomic: the bytes go to a temporary sibling that is fsynced and then renamed over
the target, and a save that fails half way leaves the previous checkpoint intact and loadable."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from microgpt import atomic
from microgpt.data.tokenizer import CharTokenizer
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import load_checkpoint, save_checkpoint
from microgpt.storage import npz as checkpoint_module

TOKENIZER = CharTokenizer("abcdefgh ")
CONFIG = GPTConfig(zero_init=False, vocab_size=TOKENIZER.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=8)


def save(path: Path, seed: int, step: int) -> GPT:
    model = GPT(CONFIG, seed=seed)
    save_checkpoint(path, model, TOKENIZER, {"run_id": "atomic", "step": step})
    return model


def assert_holds(path: Path, model: GPT, step: int) -> None:
    loaded = load_checkpoint(path)
    assert loaded.step == step
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(loaded.model.state_dict()[name], value, err_msg=name)


def test_bytes_go_to_a_fsynced_temp_file_that_is_renamed_over_the_target(tmp_path, monkeypatch):
    target = tmp_path / "models" / "latest_checkpoint.npz"
    save(target, seed=0, step=1)
    events: list[tuple] = []
    real_fsync, real_replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_ino))
        real_fsync(fd)

    def spy_replace(src, dst) -> None:
        src, dst = Path(src), Path(dst)
        events.append(("replace", os.stat(src).st_ino, src, dst, src.stat().st_size))
        assert load_checkpoint(dst).step == 1, "the target changed before the rename"
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    model = save(target, seed=1, step=2)
    renames = [e for e in events if e[0] == "replace"]
    assert len(renames) == 1, events
    _, inode, src, dst, size = renames[0]
    assert dst == target and src.parent == target.parent and src != target
    assert size == target.stat().st_size > 0  # every byte was in the temp file before the rename
    synced_before = [e for e in events[:events.index(renames[0])] if e == ("fsync", inode)]
    assert synced_before, f"the temp file was not fsynced before its rename: {events}"
    folder = ("fsync", target.parent.stat().st_ino)  # the rename itself is made durable: its folder is synced
    assert folder in events[events.index(renames[0]):], f"the folder was not fsynced after the rename: {events}"
    assert not src.exists()
    assert_holds(target, model, step=2)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def fail_in_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    """np.savez as the checkpoint module calls it writes the start of an archive, then the disk 'fills up'."""
    def half_written(file, *args, **kwargs):
        file.write(b"PK\x03\x04" + b"\0" * 4096)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.np, "savez", half_written)


def fail_in_rename(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src, dst) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", refuse)


@pytest.mark.parametrize("inject", [fail_in_writer, fail_in_rename], ids=["writer-fails", "rename-fails"])
def test_a_save_that_fails_midway_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch, inject):
    target = tmp_path / "latest_checkpoint.npz"
    before = save(target, seed=0, step=5)
    original = target.read_bytes()
    with monkeypatch.context() as patch:
        inject(patch)
        with pytest.raises(OSError):
            save(target, seed=1, step=6)
    assert target.read_bytes() == original
    assert_holds(target, before, step=5)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temp file left behind


def test_a_name_as_long_as_a_file_name_may_be_is_saved_and_a_crashed_writers_temp_is_found(tmp_path):
    target = tmp_path / ("漢" * 83 + ".npz")  # 253 bytes: the temporary name cuts it at 200, mid-character
    model = save(target, seed=0, step=1)
    assert_holds(target, model, step=1)
    with atomic.atomic_open(target) as handle:
        (stem,) = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(os.fsencode(stem)) <= 255 and stem.endswith(".tmp")
        dead = tmp_path / stem.replace(f".{os.getpid()}.", ".999999999.")  # a writer that no longer runs
        dead.write_bytes(b"half")
        handle.write(b"whole")
    atomic.remove_stale_temps(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name] and target.read_bytes() == b"whole"
    with atomic.atomic_folder(tmp_path / ("f" * 255)) as folder:
        (folder / "x").write_bytes(b"1")
    assert (tmp_path / ("f" * 255) / "x").read_bytes() == b"1"


def test_a_rewritten_file_keeps_its_permissions_and_a_new_one_is_readable_by_all(tmp_path):
    """A file the user made private (chmod 600) must not become world-readable when it is saved again."""
    private, new = tmp_path / "private.npz", tmp_path / "new.npz"
    save(private, seed=0, step=1)
    os.chmod(private, 0o600)
    save(private, seed=1, step=2)
    save(new, seed=0, step=1)
    assert (private.stat().st_mode & 0o777, new.stat().st_mode & 0o777) == (0o600, 0o644)


def test_a_folder_whose_new_version_cannot_be_renamed_in_is_put_back(tmp_path, monkeypatch):
    """atomic_folder moves a non-empty folder aside before renaming the new one in: if that rename fails, the
    old folder returns whole and no temporary folder is left."""
    target = tmp_path / "export"
    target.mkdir()
    (target / "config.json").write_text("old")
    real_replace, calls = os.replace, []

    def second_fails(src, dst) -> None:
        calls.append((Path(src), Path(dst)))
        if len(calls) == 2:  # the first moves the old folder aside, the second would bring the new one in
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(OSError, match="Input/output error"), atomic.atomic_folder(target) as tmp:
        (tmp / "config.json").write_text("new")
    assert (target / "config.json").read_text() == "old" and len(calls) == 3  # the third put it back
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]
