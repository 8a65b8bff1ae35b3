"""Model storage: checkpoints of the original Go project load into our GPT with a matching vocabulary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microgpt.autograd import no_grad
from microgpt.chat.session import ChatSession
from microgpt.data.go_tokenizer import GoBPETokenizer, GoCharTokenizer
from microgpt.data.tokenizer import CharTokenizer, rank_table
from microgpt.errors import CheckpointError
from microgpt.nn import GPT, GPTConfig
from microgpt.storage import checkpoint_info, load_checkpoint, save_checkpoint


def write_go_checkpoint(path: Path, model: GPT, **vocabulary: object) -> Path:
    """The original's JSON layout: config, the vocabulary fields, and every weight as a list of rows."""
    c = model.config
    assert c.positions == "learned", "the original's checkpoints hold a position table (wpe)"
    raw = {"version": "0.0.4", "config": {"n_layer": c.n_layer, "n_embd": c.n_embd, "n_head": c.n_head,
                                          "block_size": c.block_size},
           "state": {name: value.tolist() for name, value in model.state_dict().items()}, **vocabulary}
    path.write_text(json.dumps(raw), encoding="utf-8")
    return path


def test_a_go_char_checkpoint_loads_with_the_same_weights_and_vocabulary(tmp_path: Path) -> None:
    vocab = list("abc ")
    model = GPT(GPTConfig(zero_init=False, vocab_size=len(vocab) + 1, n_layer=1, n_embd=8, n_head=2, block_size=8,
                        positions="learned"), seed=3)
    checkpoint = load_checkpoint(write_go_checkpoint(tmp_path / "go.json", model, vocab=vocab))
    assert isinstance(checkpoint.tokenizer, GoCharTokenizer) and checkpoint.meta["format"] == "go-json"
    tok = checkpoint.tokenizer
    assert tok.bos_id == 4 and tok.encode("ab?c") == [0, 1, 2] and tok.decode([0, 4, 3, 2]) == "a c"
    with no_grad():
        np.testing.assert_array_equal(checkpoint.model(np.array([[0, 1, 2]])).data, model(np.array([[0, 1, 2]])).data)
    assert isinstance(ChatSession(checkpoint.model, tok).reply("ab"), str)
    assert checkpoint_info(tmp_path / "go.json")["kind"] == "other"


def test_a_go_bpe_vocabulary_maps_cl100k_ids_and_unknowns() -> None:
    table = rank_table()
    hello, world = (int(r) for r in table.encode(["hello world"])[0])
    tok = GoBPETokenizer([hello])
    assert (tok.unk_id, tok.bos_id, tok.vocab_size) == (1, 2, 3)
    assert tok.encode("hello world") == [0, tok.unk_id]  # " world" is not in this vocabulary
    assert tok.decode([0, tok.unk_id, tok.bos_id]) == "hello"
    assert world != hello


def test_a_go_checkpoint_whose_vocabulary_does_not_fit_is_one_line(tmp_path: Path) -> None:
    model = GPT(GPTConfig(zero_init=False, vocab_size=9, n_layer=1, n_embd=8, n_head=2, block_size=8,
                          positions="learned"), seed=0)
    path = write_go_checkpoint(tmp_path / "bad.json", model, vocab=list("ab"))
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value) and "wte has 9 rows but the tokenizer has 3 ids" in str(exc.value)


def test_a_checkpoint_saved_before_positions_existed_keeps_its_position_table(tmp_path: Path) -> None:
    """Files written before POSITIONS existed name no positions in their model config; they hold a wpe."""
    tokenizer = CharTokenizer("abcdefg")
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2,
                          block_size=8, positions="learned"), seed=0)
    path = save_checkpoint(tmp_path / "old.npz", model, tokenizer, {"step": 0})
    with np.load(path) as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["meta"].tobytes())
    del meta["model_config"]["positions"]
    np.savez(path, **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    loaded = load_checkpoint(path)
    assert loaded.model.config.positions == "learned"
    with no_grad():
        np.testing.assert_array_equal(loaded.model(np.array([[1, 2, 3]])).data, model(np.array([[1, 2, 3]])).data)
