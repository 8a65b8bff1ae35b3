"""Tokenizers lose nothing: decode(encode(s)) == s for any string, offline, with every id below vocab_size."""

import base64
import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from microgpt.data import tokenizer as tokenizer_module
from microgpt.data.go_tokenizer import any_tokenizer_from_dict
from microgpt.data.token_cache import cache_key, cache_path, load_cached_tokenizer, tokenize_cached
from microgpt.data.tokenizer import (
    BPETokenizer,
    CharTokenizer,
    build_tokenizer,
    tokenizer_from_dict,
)
from microgpt.errors import ConfigError
from microgpt.nn import GPT, GPTConfig
from microgpt.storage.go_json import load_go_checkpoint

TRAINING_TEXTS = [
    "User: hello there\nAssistant: Hello! How can I help you today?",
    "Question: What is attention?\nAnswer: A weighted average over positions.",
    "the quick brown fox jumps over the lazy dog " * 5,
]
HARD = [
    "😀",
    "👨‍👩‍👧‍👦",
    "🏳️‍🌈",
    "東京",
    "日本語のテキスト",
    "\x00",
    "\u0301",
    "e\u0301",
    "\r\n",
    "\t",
    "<|endoftext|>",
    "ß",
    "\ufeff",
]
hard_text = st.lists(st.sampled_from(HARD) | st.text(max_size=8), max_size=12).map("".join)
any_text = st.text() | hard_text


@pytest.fixture(scope="module")
def bpe():
    return build_tokenizer("bpe", vocab_size=300, texts=TRAINING_TEXTS)


@pytest.fixture(scope="module")
def char():
    return build_tokenizer("char", vocab_size=280, texts=TRAINING_TEXTS)


@settings(max_examples=300, deadline=None)
@given(text=any_text)
def test_bpe_round_trips_any_text_with_ids_below_vocab_size(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    assert all(0 < i < 300 for i in ids)


@settings(max_examples=300, deadline=None)
@given(text=any_text)
def test_char_round_trips_any_text(char, text):
    ids = char.encode(text)
    assert char.decode(ids) == text
    assert all(0 < i < char.vocab_size for i in ids)


@settings(max_examples=50, deadline=None)
@given(texts=st.lists(any_text, max_size=6))
def test_encode_batch_matches_encode(bpe, char, texts):
    for tok in (bpe, char):
        assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]


def test_bpe_builds_offline_with_sockets_disabled(monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    tokenizer_module._load_ranks.cache_clear()
    tok = build_tokenizer("bpe", vocab_size=300, texts=TRAINING_TEXTS)
    text = "offline 👨‍👩‍👧 東京 \x00"
    assert tok.decode(tok.encode(text)) == text
    assert tokenizer_from_dict(json.loads(json.dumps(tok.to_dict()))).encode(text) == tok.encode(text)


def test_local_vocabulary_holds_the_most_frequent_tokens(bpe):
    assert bpe.vocab_size <= 300
    assert bpe.decode(bpe.encode(" the")) == " the"
    assert len(bpe.encode(" the quick brown fox")) == 4  # frequent: one local id each
    assert not bpe.is_fallback(bpe.encode(" the quick brown fox")).any()
    assert bpe.is_fallback(bpe.encode("😀")).all()  # unseen: its 4 UTF-8 bytes


def test_layout_and_bos(bpe):
    assert bpe.bos_id == 0
    assert bpe.decode([0, *bpe.encode("hi"), 0]) == "hi"  # BOS is a separator, dropped by decode
    assert bpe.decode_bytes(bpe.encode("é")) == "é".encode()
    with pytest.raises(ValueError, match="outside this vocabulary"):
        bpe.decode([bpe.vocab_size])


def test_to_dict_is_compact_json_and_rebuilds_the_same_tokenizer(bpe, char):
    for tok in (bpe, char):
        d = json.loads(json.dumps(tok.to_dict()))
        rebuilt = tokenizer_from_dict(d)
        assert type(rebuilt) is type(tok) and rebuilt.vocab_size == tok.vocab_size
        assert rebuilt.encode("hello 東京 😀") == tok.encode("hello 東京 😀")
    assert len(json.dumps(bpe.to_dict())) < 1000
    assert type(bpe).from_dict(bpe.to_dict()).local_ranks == bpe.local_ranks
    assert isinstance(char, CharTokenizer) and isinstance(bpe, BPETokenizer)


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="vocab_size=100 is too small"):
        build_tokenizer("bpe", vocab_size=100)
    with pytest.raises(ConfigError, match="o200k_base.*not available offline"):
        build_tokenizer("bpe", encoding="o200k_base")
    with pytest.raises(ConfigError, match="unknown tokenizer kind"):
        build_tokenizer("wordpiece")
    fake = tmp_path / "cl100k_base.tiktoken"
    fake.write_text("YQ== 0\n")
    with pytest.raises(ConfigError, match="sha256"):
        build_tokenizer("bpe", bpe_file=str(fake))


def test_another_encoding_from_its_own_rank_file(tmp_path):
    ranks = tmp_path / "tiny.tiktoken"
    lines = [f"{base64.b64encode(bytes([b])).decode()} {b}" for b in range(256)]
    lines.append(f"{base64.b64encode(b'ab').decode()} 256")
    ranks.write_text("\n".join(lines) + "\n")
    tok = build_tokenizer("bpe", 300, ["abab ab"], encoding="tiny", bpe_file=str(ranks))
    assert tok.decode(tok.encode("abc ab 😀")) == "abc ab 😀"
    assert tokenizer_from_dict(tok.to_dict(), bpe_file=str(ranks)).encode("ab") == tok.encode("ab")
    with pytest.raises(ConfigError, match="set BPE_FILE"):  # the path the dict names is never opened
        tokenizer_from_dict(tok.to_dict())
    tokenize_cached(tok, ["ab"], tmp_path / "cache", "key")  # a second run finds the vocabulary it built
    assert load_cached_tokenizer(tmp_path / "cache", "key", str(ranks)).to_dict() == tok.to_dict()

    model = GPT(GPTConfig(vocab_size=4, n_layer=1, n_embd=8, n_head=2, block_size=8, positions="learned"), seed=0)
    go = {"config": {"n_layer": 1, "n_embd": 8, "n_head": 2, "block_size": 8}, "tokenization": "bpe_cl100k",
          "bpe_token_ids": [97, 256], "bpe_encoding": "tiny",
          "state": {k: v.tolist() for k, v in model.state_dict().items()}}
    (tmp_path / "go.json").write_text(json.dumps(go))
    checkpoint = load_go_checkpoint(tmp_path / "go.json", str(ranks))  # the original's checkpoint of that encoding
    assert checkpoint.tokenizer.encode("ab a") == [1, 2, 0]  # "ab" is id 1; " a" is " " (not listed: UNK 2), "a"
    assert any_tokenizer_from_dict(checkpoint.tokenizer.to_dict(), str(ranks)).encode("ab") == [1]


def test_empty_texts_give_a_bytes_only_vocabulary():
    tok = build_tokenizer("bpe", vocab_size=2048, texts=[])
    assert tok.vocab_size == 257 and tok.is_fallback(tok.encode("hi")).all()
    assert tok.encode("A\x00") == [1 + 65, 1 + 0]  # byte b is id 1 + b


def test_token_cache_stores_once_and_reuses(tmp_path, bpe, monkeypatch):
    texts = ["hello world", "", "東京 😀"]
    key = cache_key("abc123", {"kind": "bpe", "vocab_size": 300, "split": "train"})
    assert key != cache_key("abc123", {"kind": "bpe", "vocab_size": 301, "split": "train"})
    first = tokenize_cached(bpe, texts, tmp_path, key)
    assert [a.dtype for a in first] == [np.int32] * 3
    assert [a.tolist() for a in first] == bpe.encode_batch(texts)
    assert not list(tmp_path.glob("*.tmp"))

    def fail(*args):
        raise AssertionError("should have been read from the cache")

    monkeypatch.setattr(type(bpe), "encode_concat", fail)
    again = tokenize_cached(bpe, texts, tmp_path, key)
    assert [a.tolist() for a in again] == [a.tolist() for a in first]
    assert load_cached_tokenizer(tmp_path, key).to_dict() == bpe.to_dict()
    monkeypatch.undo()

    cache_path(tmp_path, key).write_bytes(b"truncated garbage")
    assert load_cached_tokenizer(tmp_path, key) is None
    rebuilt = tokenize_cached(bpe, texts, tmp_path, key)
    assert [a.tolist() for a in rebuilt] == [a.tolist() for a in first]


def test_a_rare_token_is_spelled_with_the_fewest_local_pieces_not_byte_by_byte() -> None:
    tokenizer = build_tokenizer("bpe", vocab_size=400, texts=["the guide to the best line ever " * 20])
    ranks = tokenizer._ranks.encode([" guideline"])[0]  # cl100k has " guideline" as one token, ours has not
    assert len(ranks) == 1 and tokenizer._rank_to_id[ranks[0]] < 0
    ids = tokenizer.encode(" guideline")
    pieces = [tokenizer.decode([i]) for i in ids]
    assert pieces[0] == " guide" and "".join(pieces) == " guideline"  # a known word first, then what is left
    assert len(ids) < len(" guideline") - 4
    old = tokenizer_from_dict({k: v for k, v in tokenizer.to_dict().items() if k != "fallback"})
    assert old.fallback == "bytes" and len(old.encode(" guideline")) == len(" guideline")  # saved before: bytes
    assert tokenizer_from_dict(tokenizer.to_dict()).encode(" guideline") == ids


@settings(max_examples=100, deadline=None)
@given(text=any_text)
def test_piece_fallback_round_trips_and_never_uses_more_ids_than_bytes(bpe, text):
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    old = tokenizer_from_dict({**bpe.to_dict(), "fallback": "bytes"})
    assert len(ids) <= len(old.encode(text))


def test_encoding_from_many_threads_gives_what_one_thread_gives() -> None:
    import threading

    words = [f" {w}{i}" for i, w in enumerate(["guideline", "domestic", "kedgeree", "whatsoever"] * 150)]
    shared = build_tokenizer("bpe", vocab_size=400, texts=["the guide to the best line ever " * 20])
    alone = tokenizer_from_dict(shared.to_dict())
    results: dict[int, list[list[int]]] = {}

    def encode(part: int) -> None:
        results[part] = [shared.encode(w) for w in words[part::8]]

    threads = [threading.Thread(target=encode, args=(part,)) for part in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for part in range(8):
        assert results[part] == [alone.encode(w) for w in words[part::8]]


def _rank_lines(pairs: list[tuple[bytes, int]]) -> bytes:
    return b"".join(base64.b64encode(token) + b" %d\n" % rank for token, rank in pairs)


BYTES = [(bytes([b]), b) for b in range(256)]  # a minimal valid rank file: every byte, ranks 0..255


def test_a_rank_file_may_end_with_blank_lines_as_tiktokens_own_reader_allows(tmp_path) -> None:
    path = tmp_path / "r.tiktoken"
    path.write_bytes(_rank_lines([*BYTES, (b"ab", 256)]) + b"\n\n")
    assert tokenizer_module._load_ranks.__wrapped__(str(path), "custom").token_bytes(256) == b"ab"


@pytest.mark.parametrize("content, fragment", [
    (_rank_lines([*BYTES, (b"ab", -5)]), "ranks must be distinct whole numbers from 0 to"),
    (_rank_lines([*BYTES, (b"ab", 99_999_999_999)]), "ranks must be distinct whole numbers from 0 to"),
    (_rank_lines([*BYTES, (b"ab", 255)]), "ranks must be distinct whole numbers from 0 to"),  # two tokens, one rank
    (_rank_lines([*BYTES, (b"a", 256)]), "line 257: the token is listed twice"),
    (_rank_lines([(bytes([b]), b) for b in range(200)]), "56 single bytes (such as 0xc8) are not tokens"),
    (_rank_lines([*BYTES, (b"a" * 257, 256)]), "line 257: a token of 257 bytes; at most 256"),  # spelling: n^2
])
def test_a_custom_rank_file_tiktoken_would_panic_on_is_one_config_error(tmp_path, content: bytes, fragment: str) -> None:
    path = tmp_path / "custom.tiktoken"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        tokenizer_module._load_ranks.__wrapped__(str(path), "custom")
    path.write_bytes(_rank_lines([*BYTES, (b"ab", 257)]))  # a gap, as p50k_base has at 50256: it loads
    table = tokenizer_module._load_ranks.__wrapped__(str(path), "custom")
    ranks, offsets = table.encode(["abab"])
    assert table.size == 258 and ranks.tolist() == [257, 257] and offsets.tolist() == [0, 2]


def test_a_checkpoints_vocabulary_never_becomes_the_one_a_fresh_run_builds(tmp_path, monkeypatch):
    """eval or a fine-tuning resume tokenizes dataset B with A's vocabulary; a fresh run on B must still build
    B's own (both share B's cache key but for the vocabulary they were given)."""
    from microgpt.config import TrainConfig
    from microgpt.nn import GPTConfig
    from microgpt.train.data_pipeline import prepare_data

    def dataset(name: str, text: str) -> TrainConfig:
        path = tmp_path / name
        path.write_text("".join(json.dumps({"id": f"r{i}", "record_type": "knowledge", "text": f"{text} {i}"}) + "\n"
                                for i in range(20)), encoding="utf-8")
        return TrainConfig(dataset_path=str(path), tokenizer="char", model=GPTConfig(vocab_size=300))

    english, other = dataset("en.jsonl", "plain words here"), dataset("cjk.jsonl", "今天天气很好 🌞")
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cold"))
    own = prepare_data(other)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "shared"))
    foreign = prepare_data(english).tokenizer
    assert foreign.to_dict() != own.tokenizer.to_dict()
    given = prepare_data(other, foreign)  # what eval and `train --resume ... --dataset-path` do
    assert given.tokenizer is foreign and given.train_stream.tolist() != own.train_stream.tolist()
    fresh = prepare_data(other)
    assert fresh.tokenizer.to_dict() == own.tokenizer.to_dict()
    assert fresh.train_stream.tolist() == own.train_stream.tolist()
    assert prepare_data(other, foreign).train_stream.tolist() == given.train_stream.tolist()


def test_the_cache_folder_variable_empty_is_unset_and_with_a_control_character_is_refused(monkeypatch) -> None:
    from microgpt.train.data_pipeline import cache_dir

    monkeypatch.setenv("MICROGPT_CACHE_DIR", "  ")
    assert cache_dir() == Path(".cache/microgpt")
    monkeypatch.setenv("MICROGPT_CACHE_DIR", "my\xa0cache/می\u200cرو")  # a no-break space, a Persian name: names
    assert cache_dir() == Path("my\xa0cache/می\u200cرو")
    monkeypatch.setenv("MICROGPT_CACHE_DIR", "c\x1b[31m\nx")
    with pytest.raises(ConfigError, match=r"MICROGPT_CACHE_DIR=.*holds a control character"):
        cache_dir()


def test_a_rank_file_named_from_the_home_folder_is_found_whoever_passes_it(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--bpe-file=~/x (no shell expands ~ after =) or BPE_FILE='~/x' from resume, chat or eval, not only train."""
    installed, _ = tokenizer_module._rank_file("cl100k_base", None)
    (tmp_path / "cl.tiktoken").write_bytes(Path(installed).read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tokenizer_module._rank_file("cl100k_base", " ~/cl.tiktoken ") == (str(tmp_path / "cl.tiktoken"),
                                                                            "cl100k_base")
    assert tokenizer_module.rank_table("cl100k_base", "~/cl.tiktoken") is not None


@pytest.mark.parametrize("kind", ["bpe", "char"])
def test_encode_concat_over_several_chunks_places_every_text_where_it_is(kind: str) -> None:
    """The token cache's layout: more texts than one chunk (BATCH) must keep each text's ids at its offsets."""
    texts = [f"doc {i} {'hello ' * (i % 5)}" for i in range(tokenizer_module.BATCH + 300)]
    tok = build_tokenizer(kind, 400, texts[:50])
    ids, offsets = tok.encode_concat(texts)
    assert len(offsets) == len(texts) + 1 and offsets[-1] == len(ids)
    for i in (0, tokenizer_module.BATCH - 1, tokenizer_module.BATCH, len(texts) - 1):
        assert tok.decode(ids[offsets[i]:offsets[i + 1]].tolist()) == texts[i]
