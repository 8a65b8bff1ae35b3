"""`microgpt export`: a safetensors folder that loads back exactly, and into PyTorch with the README's snippet."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="the serve extra installs safetensors")

from test_storage import write_go_checkpoint

from microgpt.__main__ import main
from microgpt.autograd import no_grad
from microgpt.data.tokenizer import CharTokenizer, rank_table
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import export, load_checkpoint, save_checkpoint
from microgpt.storage.checkpoint import EXPORT_FILES

README = Path(__file__).resolve().parents[1] / "README.md"
CHARS = "abcdefghijklmnopqrstuvwxyz .,?'\nUA:"


def is_export(path: Path) -> bool:
    """A folder that holds every file of an export."""
    return path.is_dir() and all((path / name).is_file() for name in EXPORT_FILES)


def _checkpoint(folder: Path, **shape) -> Path:
    tokenizer = CharTokenizer(CHARS)
    config = GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=2, n_embd=16, n_head=2, block_size=32, **shape)
    return save_checkpoint(folder / "model.npz", GPT(config, seed=5), tokenizer, {"run_id": "r", "step": 3})


def _export(capsys, ckpt: Path, out: Path) -> None:
    assert main(["export", str(ckpt), str(out)]) == 0
    assert "exported" in capsys.readouterr().out


def test_export_round_trip_is_exact(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path)
    _export(capsys, ckpt, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["config.json", "model.safetensors",
                                                                    "tokenizer.json"]
    original, exported = load_checkpoint(ckpt), load_checkpoint(tmp_path / "out")
    for name, value in original.model.state_dict().items():
        np.testing.assert_array_equal(exported.model.state_dict()[name], value)
    assert exported.model.config == original.model.config
    tokens = json.loads((tmp_path / "out" / "tokenizer.json").read_text(encoding="utf-8"))
    assert tokens["bos_id"] == 0 and len(tokens["tokens_hex"]) == original.tokenizer.vocab_size
    assert bytes.fromhex(tokens["tokens_hex"][ord("a") + 1]) == b"a"  # byte ids are 1 + the byte
    replies = []
    for source in (ckpt, tmp_path / "out"):
        assert main(["chat-once", str(source), "hello there", "--max-new-tokens", "20"]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1] and replies[0].strip()


@pytest.mark.parametrize("vocabulary", ["char", "bpe"])
def test_a_go_checkpoint_exports_and_loads_back_the_same(tmp_path: Path, capsys, vocabulary: str) -> None:
    if vocabulary == "char":
        fields: dict = {"vocab": list("abc ")}
        size = 5
    else:
        fields = {"bpe_token_ids": [int(r) for r in rank_table().encode(["hello world, a cat"])[0]]}
        size = len(fields["bpe_token_ids"]) + 2  # UNK and BOS after them
    config = GPTConfig(zero_init=False, vocab_size=size, n_layer=1, n_embd=8, n_head=2, block_size=16,
                       positions="learned")
    go = write_go_checkpoint(tmp_path / "go.json", GPT(config, seed=3), **fields)
    _export(capsys, go, tmp_path / "out")
    original, exported = load_checkpoint(go), load_checkpoint(tmp_path / "out")
    for name, value in original.model.state_dict().items():
        np.testing.assert_array_equal(exported.model.state_dict()[name], value)
    assert type(exported.tokenizer) is type(original.tokenizer)
    text = "hello cab, a world"
    assert exported.tokenizer.encode(text) == original.tokenizer.encode(text)
    assert exported.tokenizer.decode(range(size)) == original.tokenizer.decode(range(size))
    replies = []
    for source in (go, tmp_path / "out"):
        assert main(["chat-once", str(source), "a cab", "--max-new-tokens", "12"]) == 0
        replies.append(capsys.readouterr().out)
    assert replies[0] == replies[1]


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_a_file_of_an_export_given_alone_points_to_its_folder(tmp_path: Path, capsys, name: str) -> None:
    _export(capsys, _checkpoint(tmp_path), tmp_path / "out")
    assert main(["chat-once", str(tmp_path / "out" / name), "hi"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"one file of an export; give its folder, {str(tmp_path / 'out')!r}" in err


def test_a_broken_export_is_one_line(tmp_path: Path, capsys) -> None:
    _export(capsys, _checkpoint(tmp_path), tmp_path / "out")
    (tmp_path / "out" / "model.safetensors").write_bytes(b"\x00" * 20)
    assert main(["chat-once", str(tmp_path / "out"), "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors" in err
    (tmp_path / "out" / "config.json").write_text('{"format": "other"}', encoding="utf-8")
    assert main(["chat-once", str(tmp_path / "out"), "hi"]) == 2
    assert "not a microgpt export" in capsys.readouterr().err


@pytest.mark.parametrize(("field", "value", "fragment"), [
    ("version", 99, "export format version 99, this microgpt reads version 1"),
    ("version", True, "export format version true"), ("version", None, "export format version null"),
    ("init_std", -1, "model: init_std must be at least 0"),
])
def test_an_export_of_another_version_or_a_negative_init_std_is_named(tmp_path: Path, capsys, field: str,
                                                                       value: object, fragment: str) -> None:
    _export(capsys, _checkpoint(tmp_path), tmp_path / "out")
    path = tmp_path / "out" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    (config if field == "version" else config["model"])[field] = value
    path.write_text(json.dumps(config), encoding="utf-8")
    assert main(["chat-once", str(tmp_path / "out"), "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and fragment in err, err


@pytest.mark.parametrize(("name", "fragment"), [("o" * 256, "its name is 256 bytes, more than 255"),
                                               ("", "empty; give a folder path"), (" ", "empty; give a folder path")])
def test_an_out_dir_no_file_system_takes_is_one_line_and_nothing_written(tmp_path: Path, capsys, name: str,
                                                                         fragment: str, monkeypatch) -> None:
    ckpt = _checkpoint(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(ckpt), name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_an_out_dir_named_as_long_as_a_name_may_be_is_exported(tmp_path: Path, capsys) -> None:
    _export(capsys, _checkpoint(tmp_path), tmp_path / ("o" * 255))
    assert load_checkpoint(tmp_path / ("o" * 255)).model.config.n_layer == 2


@pytest.mark.parametrize("shape", [{}, {"tie_embeddings": True, "norm_gain": True, "activation": "gelu",
                                          "positions": "learned"}])
def test_the_readme_pytorch_snippet_reproduces_our_logits(tmp_path: Path, capsys, shape: dict) -> None:
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (CI installs the CPU build)")
    snippet = re.search(r"<!-- export-snippet -->\n```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)
    assert snippet, "README.md lost its export snippet"
    namespace: dict = {}
    exec(snippet.group(1), namespace)  # noqa: S102 - the README's own code, as a reader would run it
    ckpt = _checkpoint(tmp_path, **shape)
    _export(capsys, ckpt, tmp_path / "out")
    cfg, weights = namespace["load_exported"](str(tmp_path / "out"))
    idx = np.random.default_rng(0).integers(0, cfg["vocab_size"], size=(2, 11))
    with torch.no_grad():
        theirs = namespace["logits"](cfg, weights, torch.from_numpy(idx)).numpy()
    with no_grad():
        ours = load_checkpoint(ckpt).model(idx).data
    np.testing.assert_allclose(theirs, ours, atol=2e-5)


def test_an_exports_source_cannot_inject_metadata(tmp_path: Path, capsys) -> None:
    _export(capsys, _checkpoint(tmp_path), tmp_path / "out")
    config_file = tmp_path / "out" / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["source"] = {"format": "npz", "step": "x", "run_id": "r1", "train_config": {"dataset_path": "/etc/passwd"}}
    config_file.write_text(json.dumps(config), encoding="utf-8")
    checkpoint = load_checkpoint(tmp_path / "out")
    assert checkpoint.meta == {"run_id": "r1", "format": "export"} and checkpoint.step == 0


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("earlier", [False, True])
def test_a_failure_mid_export_leaves_no_half_written_folder(tmp_path: Path, capsys, monkeypatch, earlier: bool) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "out"
    if earlier:  # an earlier export, replaced with --force: it must survive the failed attempt whole
        (tmp_path / "other").mkdir()
        _export(capsys, _checkpoint(tmp_path / "other", tie_embeddings=True), out)
        before = _files(out)
    written = []

    def fails_on_the_last_file(path, obj) -> None:
        written.append(Path(path).name)
        if Path(path).name == "tokenizer.json":
            raise OSError(28, "No space left on device")
        real_write_json(path, obj)

    real_write_json = export.atomic_write_json
    monkeypatch.setattr(export, "atomic_write_json", fails_on_the_last_file)
    with pytest.raises(OSError, match="No space left"):
        export.save_export(load_checkpoint(ckpt), out, replace=True)
    assert written == ["config.json", "tokenizer.json"]  # it failed after two of its three files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.npz", *(["other", "out"] if earlier else [])])
    if earlier:
        assert _files(out) == before
    monkeypatch.undo()
    export.save_export(load_checkpoint(ckpt), out, replace=True)  # a second try succeeds, whole
    assert load_checkpoint(out).model.config == load_checkpoint(ckpt).model.config


def test_an_empty_out_dir_is_filled_in_place_and_a_link_is_followed(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "volume"  # as a mount point would be: the folder itself must stay, with its mode
    out.mkdir()
    out.chmod(0o2770)
    before = out.stat()
    _export(capsys, ckpt, out)
    after = out.stat()
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode) and is_export(out)
    (tmp_path / "target").mkdir()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "target", target_is_directory=True)
    _export(capsys, ckpt, link)
    assert link.is_symlink() and is_export(tmp_path / "target")
    assert main(["export", str(ckpt), str(link), "--force"]) == 0  # an earlier export behind a link: replaced
    assert link.is_symlink() and is_export(tmp_path / "target")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "model.npz", "target", "volume"]


def test_an_existing_out_dir_is_taken_empty_replaced_with_force_and_never_if_it_holds_other_files(
        tmp_path: Path, capsys) -> None:
    (tmp_path / "s").mkdir()
    small, large = _checkpoint(tmp_path / "s", tie_embeddings=True), _checkpoint(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    _export(capsys, small, out)  # an empty folder is taken
    first = _files(out)
    assert main(["export", str(large), str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds an export" in err and "--force" in err
    assert _files(out) == first
    assert main(["export", str(large), str(out), "--force"]) == 0
    assert _files(out) != first and not load_checkpoint(out).model.config.tie_embeddings
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "out", "s"]  # nothing left beside it
    (out / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["export", str(large), str(out), "--force"]) == 2
    assert "holds files that are not an export's ('notes.txt');" in capsys.readouterr().err  # the only one
    (out / "more.txt").write_text("also mine", encoding="utf-8")
    assert main(["export", str(large), str(out), "--force"]) == 2
    assert "holds files that are not an export's ('more.txt', ...);" in capsys.readouterr().err
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_existing_out_dir_needs_only_itself_writable_and_a_mount_point_is_replaced_in_place(
        tmp_path: Path, capsys, monkeypatch) -> None:
    ckpt, out = _checkpoint(tmp_path), tmp_path / "volume"
    out.mkdir()
    probed = []
    real_probe = export.writable_folder
    monkeypatch.setattr(export, "writable_folder", lambda knob, folder, value=None: probed.append(Path(folder))
                        or real_probe(knob, folder, value))
    _export(capsys, ckpt, out)
    assert probed == [out]  # a mount point's parent is often not writable: it is not asked to be
    assert main(["export", str(ckpt), str(out), "--force"]) == 0
    assert probed[-1] == tmp_path  # replaced whole: the new folder is made beside it, so there must be room
    monkeypatch.setattr(export.os.path, "ismount", lambda path: Path(path) == out)
    inode = out.stat().st_ino
    assert main(["export", str(ckpt), str(out), "--force"]) == 0  # no rename can replace a mount point
    assert out.stat().st_ino == inode and is_export(out)


def test_sigterm_mid_export_leaves_no_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    """SIGTERM (or a closed terminal's SIGHUP) stops an export as Ctrl-C does: exit 130, nothing left behind."""
    ckpt = _checkpoint(tmp_path)

    def terminated_on_the_last_file(path, obj) -> None:
        if Path(path).name == "tokenizer.json":
            os.kill(os.getpid(), signal.SIGTERM)
        real_write_json(path, obj)

    real_write_json = export.atomic_write_json
    monkeypatch.setattr(export, "atomic_write_json", terminated_on_the_last_file)
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]


def test_paths_with_escape_sequences_are_printed_as_escapes(tmp_path: Path, capsys) -> None:
    """Success lines name the user's paths too: a path's ESC or newline must not reach the terminal raw."""
    ckpt = _checkpoint(tmp_path / "m\x1b[31m")
    assert main(["export", str(ckpt), str(tmp_path / "out\x1b]0;title\x07\nx")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1 and "\\x1b[31m" in out
    records = tmp_path / "d\x1b[2J.jsonl"
    records.write_text('{"id": "a", "record_type": "memory", "text": "t"}\n', encoding="utf-8")
    main(["validate-dataset", str(records)])
    assert "\x1b" not in capsys.readouterr().out
