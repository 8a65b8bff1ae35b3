"""`microgpt export` and export folders attacked: special files, self-contradicting tokenizer.json, odd OUT_DIRs.

Each case must be one line naming the file or OUT_DIR and exit 2, with nothing written where it should not be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("safetensors", reason="the serve extra installs safetensors")

from microgpt.__main__ import main
from microgpt.data.tokenizer import CharTokenizer
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def exported(tmp_path: Path, capsys: pytest.CaptureFixture) -> Path:
    tokenizer = CharTokenizer("abcdefgh :\n")
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=16), seed=1)
    ckpt = save_checkpoint(tmp_path / "m.npz", model, tokenizer, {"step": 1})
    assert main(["export", str(ckpt), str(tmp_path / "out")]) == 0
    capsys.readouterr()
    return tmp_path / "out"


def _one_line(capsys: pytest.CaptureFixture, argv: list[str], *names: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert all(name in err for name in names), err
    return err


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_weights_that_are_a_fifo_are_one_line_not_a_hang(exported: Path) -> None:
    (exported / "model.safetensors").unlink()
    os.mkfifo(exported / "model.safetensors")
    result = subprocess.run([sys.executable, "-m", "microgpt", "chat-once", str(exported), "hi"], check=False,
                            cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2 and "model.safetensors" in result.stderr and "not a regular file" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize("field, value", [("vocab_size", 3), ("bos_id", 5), ("kind", "bpe"),
                                          ("tokens_hex", ["00"]), ("tokens_hex", None)])
def test_a_tokenizer_json_that_contradicts_its_own_state_is_refused(exported: Path, capsys, field: str,
                                                                    value: object) -> None:
    path = exported / "tokenizer.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved[field] = value
    path.write_text(json.dumps(saved), encoding="utf-8")
    _one_line(capsys, ["chat-once", str(exported), "hi"], "tokenizer.json", field)


def test_a_tokens_hex_entry_changed_is_refused(exported: Path, capsys) -> None:
    path = exported / "tokenizer.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["tokens_hex"][3] = "ff"
    path.write_text(json.dumps(saved), encoding="utf-8")
    _one_line(capsys, ["chat-once", str(exported), "hi"], "tokens_hex")


@pytest.mark.parametrize("target", ["a_file", "a_file/below", "/dev/full", "/dev/null/x"])
def test_an_out_dir_that_cannot_be_a_folder_is_one_line_and_nothing_is_written(exported: Path, capsys,
                                                                               target: str) -> None:
    (exported.parent / "a_file").write_bytes(b"keep me")
    out = target if target.startswith("/") else str(exported.parent / target)
    before = sorted(p.name for p in exported.parent.iterdir())
    _one_line(capsys, ["export", str(exported.parent / "m.npz"), out], "OUT_DIR")
    assert sorted(p.name for p in exported.parent.iterdir()) == before
    assert (exported.parent / "a_file").read_bytes() == b"keep me"


def _rewrite_header(path: Path, edit) -> None:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + size])
    new = edit(header)
    data = json.dumps(new).encode() if isinstance(new, dict) else new
    path.write_bytes(len(data).to_bytes(8, "little") + data + raw[8 + size:])


@pytest.mark.parametrize("lie", ["huge_shape", "past_the_end", "shape_vs_config", "header_length"])
def test_a_safetensors_header_that_lies_is_one_line_before_any_allocation(exported: Path, capsys, lie: str) -> None:
    path = exported / "model.safetensors"

    def edit(header: dict) -> dict:
        if lie == "huge_shape":
            header["wte"]["shape"] = [10**12, 8]
        elif lie == "past_the_end":
            begin, _ = header["wte"]["data_offsets"]
            header["wte"]["data_offsets"] = [begin, begin + (1 << 40)]
        else:  # consistent offsets, but not the shape config.json implies
            header["wte"]["shape"] = list(reversed(header["wte"]["shape"]))
        return header

    if lie == "header_length":
        raw = path.read_bytes()
        path.write_bytes((1 << 62).to_bytes(8, "little") + raw[8:])
    else:
        _rewrite_header(path, edit)
    _one_line(capsys, ["chat-once", str(exported), "hi"], "model.safetensors")
