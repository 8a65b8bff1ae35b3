"""Reliability, bounds before allocation: an absurd shape, a checkpoint that declares one, a zip bomb or an
.npy header that lies is refused in one line before any big allocation happens.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from test_reliability_security import rewrite_checkpoint
from test_training import assert_one_line_error, microgpt, write_dataset

from microgpt.config import load_config
from microgpt.data.tokenizer import CharTokenizer
from microgpt.errors import CheckpointError, ConfigError, MicrogptError
from microgpt.nn import GPT, GPTConfig, bounds
from microgpt.nn.bounds import LIMITS, checked_model_config
from microgpt.safe_io import inspect_npz
from microgpt.storage import load_checkpoint, save_checkpoint
from microgpt.train import outputs

SMALL = {"vocab_size": 300, "n_layer": 1, "n_embd": 8, "n_head": 2, "block_size": 8}


@pytest.mark.parametrize("extra", [{}, {"norm_gain": True}, {"tie_embeddings": True}, {"n_layer": 3},
                                   {"positions": "learned"}])
def test_parameter_shapes_are_what_the_model_builds(extra: dict) -> None:
    config = GPTConfig(**{**SMALL, **extra})
    built = {name: p.shape for name, p in GPT(config, seed=0).named_parameters()}
    assert config.parameter_shapes() == built
    assert sum(int(np.prod(s)) for s in built.values()) == config.num_parameters()


@pytest.mark.parametrize("field, value", [
    ("n_layer", 10**7), ("n_layer", 0), ("n_embd", -8), ("n_head", 0), ("block_size", 1), ("vocab_size", 2**40),
    ("n_layer", "4"), ("n_embd", 8.0), ("n_head", True), ("n_layer", None),
])
def test_a_shape_outside_the_limits_is_one_line_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(CheckpointError) as error:
        checked_model_config({**SMALL, field: value}, "m.npz: model_config", CheckpointError)
    message = str(error.value)
    assert "\n" not in message and message.startswith("m.npz: model_config: ") and f"{field}=" in message


@pytest.mark.parametrize("values", [[1, 2], {**SMALL, "n_head": 3}, {**SMALL, "colour": "red"},
                                    {**SMALL, "init_std": float("nan")}, {**SMALL, "activation": "tanh"}])
def test_other_malformed_model_configs_are_one_line(values: object) -> None:
    with pytest.raises(CheckpointError) as error:
        checked_model_config(values, "m.npz: model_config", CheckpointError)
    assert "\n" not in str(error.value)


def test_a_model_bigger_than_free_memory_is_refused_before_it_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bounds.psutil, "virtual_memory", lambda: SimpleNamespace(available=10_000))
    with pytest.raises(ConfigError, match=r"needs about .* GiB, but only .* GiB of memory is free"):
        checked_model_config(SMALL, "model shape", ConfigError)


def test_preflight_counts_the_training_footprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(cli={"DATASET_PATH": "data.jsonl", "N_LAYER": "1", "N_EMBD": "16", "N_HEAD": "2"}, env={})
    weights_only = 4 * cfg.model.num_parameters()
    monkeypatch.setattr(bounds.psutil, "virtual_memory", lambda: SimpleNamespace(available=2 * weights_only))
    with pytest.raises(ConfigError, match="BATCH_SIZE"):  # weights fit; with Adam and activations they do not
        outputs.preflight(cfg, cfg.model, tmp_path / "cache")


@pytest.mark.parametrize("flags, knob", [
    (("--n-embd", "100000", "--n-head", "1"), "N_EMBD"),
    (("--n-layer", "99999999999999999999"), "N_LAYER"),
    (("--block-size", "10000000"), "BLOCK_SIZE"),
    (("--token-vocab-size", str(LIMITS["vocab_size"][1] + 1)), "TOKEN_VOCAB_SIZE"),
])
def test_absurd_shape_flags_are_one_line_exit_2(tmp_path: Path, flags: tuple[str, ...], knob: str) -> None:
    write_dataset(tmp_path)
    assert_one_line_error(microgpt(tmp_path, "train", *flags), knob)


def test_a_config_file_that_never_ends_is_one_line(tmp_path: Path) -> None:
    write_dataset(tmp_path)
    assert_one_line_error(microgpt(tmp_path, "train", "--config", "/dev/zero"), "/dev/zero", "not a regular file")
    (tmp_path / "big.json").write_text("{" + " " * (2 << 20) + "}")
    assert_one_line_error(microgpt(tmp_path, "train", "--config", "big.json"), "big.json", "limit")


# --- checkpoints that declare more than they hold -------------------------------------------------------------
@pytest.fixture
def small_checkpoint(tmp_path: Path) -> Path:
    tokenizer = CharTokenizer("abc")
    model = GPT(GPTConfig(**{**SMALL, "vocab_size": tokenizer.vocab_size}), seed=0)
    return save_checkpoint(tmp_path / "small.npz", model, tokenizer, {"step": 3})


def test_a_checkpoint_declaring_ten_million_layers_is_refused_at_once(small_checkpoint: Path) -> None:
    rewrite_checkpoint(small_checkpoint, small_checkpoint, lambda meta: meta["model_config"].update(n_layer=10**7))
    with pytest.raises(CheckpointError, match="n_layer=10000000"):
        load_checkpoint(small_checkpoint)


def test_a_checkpoint_whose_weights_do_not_match_its_config_names_the_weight(small_checkpoint: Path) -> None:
    rewrite_checkpoint(small_checkpoint, small_checkpoint, lambda meta: meta["model_config"].update(n_embd=16))
    with pytest.raises(CheckpointError, match=r"param/\w+ is float32 \(\d+, 8\); model_config implies"):
        load_checkpoint(small_checkpoint)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, format_version=np.asarray(1), meta=np.frombuffer(b"{}", np.uint8),
                        **{"param/wte": np.zeros((4000, 4000), np.float32)})  # 64 MB of zeros in a few kB
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(CheckpointError, match="zip bomb"):
        load_checkpoint(bomb)


def test_an_npy_header_that_claims_373_gib_is_not_believed(small_checkpoint: Path, tmp_path: Path) -> None:
    liar = tmp_path / "liar.npz"
    with zipfile.ZipFile(small_checkpoint) as source, zipfile.ZipFile(liar, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "param/wte.npy":
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                              "shape": (100_000_000_000,)})
                data = header.getvalue() + data[len(header.getvalue()):]
            target.writestr(info, data)
    with pytest.raises(ValueError, match=r"param/wte: its header declares \(100000000000,\)"):
        inspect_npz(liar, max_bytes=1 << 40)
    with pytest.raises(CheckpointError, match="param/wte"):
        load_checkpoint(liar)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
def test_a_fifo_where_the_token_cache_sits_is_rebuilt_not_waited_on(tmp_path: Path) -> None:
    """Opening a FIFO to read blocks until a writer comes: the cache reader must not open one."""
    fifo = tmp_path / "tokens-0.npz"
    os.mkfifo(fifo)
    code = ("import sys; from pathlib import Path; from microgpt.data.token_cache import _read; "
            "print(_read(Path(sys.argv[1])))")
    done = subprocess.run([sys.executable, "-c", code, str(fifo)], check=False, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "None", done.stderr
    with pytest.raises(ValueError, match="not a regular file"):
        inspect_npz(fifo, max_bytes=1 << 20)


@pytest.mark.parametrize("value, fragment", [(np.nan, "holds NaN"), (-np.inf, "holds NaN or infinite")])
def test_nan_or_infinite_weights_are_refused_at_load(small_checkpoint: Path, tmp_path: Path, value: float,
                                                     fragment: str) -> None:
    with np.load(small_checkpoint) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["param/layer0.attn_wq"] = np.full_like(arrays["param/layer0.attn_wq"], value)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError, match=re.escape(f"param/layer0.attn_wq {fragment}")):
        load_checkpoint(tmp_path / "bad.npz")


def test_a_go_checkpoint_declaring_ten_million_layers_is_one_line(tmp_path: Path) -> None:
    rows = [[0.1] * 8 for _ in range(4)]
    go = {"config": {"n_layer": 10**7, "n_embd": 8, "n_head": 2, "block_size": 8}, "vocab": list("abc"),
          "state": {"wte": rows}}
    path = tmp_path / "go.json"
    path.write_text(json.dumps(go))
    with pytest.raises(MicrogptError, match="n_layer=10000000"):
        load_checkpoint(path)


@pytest.mark.parametrize("shape, batch", [
    ({"vocab_size": 4096, "n_layer": 1, "n_embd": 32, "n_head": 2, "block_size": 64}, 16),  # output layer dominates
    ({"vocab_size": 256, "n_layer": 2, "n_embd": 32, "n_head": 4, "block_size": 256}, 8),  # attention maps dominate
])
def test_the_training_memory_estimate_is_near_what_a_step_takes(shape: dict, batch: int) -> None:
    """The estimate that refuses runs too big for memory is within 0.7-1.5x of a real step's peak (tracemalloc
    sees NumPy's arrays): neither refusing runs that fit nor waving through ones that do not."""
    import tracemalloc

    from microgpt.autograd.parallel import set_threads
    from microgpt.nn import GPT, Adam, GPTConfig

    config = GPTConfig(**shape)
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (batch, config.block_size + 1))
    set_threads(2)  # the parts the loss is split into count, and a many-core machine splits into more
    tracemalloc.start()
    try:
        model = GPT(config, seed=0)
        optimizer = Adam(model.parameters())
        for _ in range(2):
            optimizer.zero_grad()
            model.loss(tokens[:, :-1], tokens[:, 1:]).backward()
            optimizer.step()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
        set_threads(0)
    assert 0.7 * peak <= config.training_memory_mb(batch) <= 1.5 * peak
