"""Reliability, loaders: whatever a file holds, each loader answers with its one-line error (or, for the
TUI's listings and settings, a row or a message saying the file is unreadable), never an exception.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import test_training
import test_tui_app
from hypothesis import given
from hypothesis import strategies as st
from test_storage import write_go_checkpoint
from test_training import assert_one_line_error, microgpt
from test_tui_app import make_app, press, screen

from microgpt.config import config_from_dict, read_config_file
from microgpt.data.dataset import validate_dataset
from microgpt.data.token_cache import cache_path, load_cached_tokenizer, tokenize_cached
from microgpt.data.tokenizer import CharTokenizer
from microgpt.errors import MicrogptError
from microgpt.evaluation.heldout import evaluate_val_split
from microgpt.nn import GPT, Adam, GPTConfig
from microgpt.storage import load_checkpoint, save_checkpoint
from microgpt.train.artifacts import read_events
from microgpt.train.data_pipeline import prepare_data
from microgpt.train.resume import check_training_state, stored_config
from microgpt.tui.disk import checkpoints
from microgpt.tui.persist import load_state

finished_run = test_training.finished_run  # one tiny trained run, shared (read-only) by this module
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


# --- fuzzing: random content into every loader -------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def one_line_error(call) -> str | None:
    """Run `call`; a MicrogptError must be one line (returned), any other exception fails the test."""
    try:
        call()
    except MicrogptError as exc:
        assert "\n" not in str(exc) and str(exc), repr(exc)
        return str(exc)
    return None


@pytest.fixture(scope="module")
def valid_npz(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("npz")
    tokenizer = CharTokenizer("abc ")
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=8), seed=0)
    optimizer = Adam(model.parameters())
    path = save_checkpoint(folder / "valid.npz", model, tokenizer, {"step": 1, "run_id": "r"}, optimizer)
    with np.load(path) as f:
        return path, {name: f[name] for name in f.files}


@given(data=st.binary(max_size=2048), suffix=st.sampled_from([".npz", ".json"]))
def test_random_bytes_as_a_checkpoint_are_one_line(tmp_path_factory, data: bytes, suffix: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / f"c{suffix}"
    path.write_bytes(data)
    assert one_line_error(lambda: load_checkpoint(path)) is not None


META_PATHS = ["model_config", "tokenizer", "model_config.n_head", "model_config.n_embd", "model_config.vocab_size",
              "model_config.tie_embeddings", "tokenizer.chars", "tokenizer.kind", "tokenizer.local_ranks", "step"]


@given(where=st.sampled_from(META_PATHS), value=JSON_VALUES)
def test_random_values_in_a_checkpoints_meta_are_one_line_or_load(valid_npz, tmp_path_factory, where: str,
                                                                  value: object) -> None:
    _, arrays = valid_npz
    meta = json.loads(arrays["meta"].tobytes())
    *parents, leaf = where.split(".")
    target = meta
    for parent in parents:
        target = target[parent]
    target[leaf] = value
    path = tmp_path_factory.mktemp("meta") / "c.npz"
    np.savez(path, **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    one_line_error(lambda: load_checkpoint(path))


SETTINGS = st.dictionaries(st.sampled_from(["n_embd", "N_HEAD", "positions", "num_steps", "lr"]) | st.text(max_size=12),
                           JSON_VALUES, max_size=4)


@given(stored=JSON_VALUES | SETTINGS)
def test_a_checkpoints_training_config_is_checked_by_resume_and_eval(valid_npz, tmp_path_factory,
                                                                    stored: object) -> None:
    """meta.train_config comes from the file: whatever it holds, resume and `eval --split val` stay one line."""
    _, arrays = valid_npz
    meta = {**json.loads(arrays["meta"].tobytes()), "train_config": stored}
    folder = tmp_path_factory.mktemp("stored")
    path = folder / "c.npz"
    np.savez(path, **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    checkpoint = load_checkpoint(path)
    one_line_error(lambda: stored_config(checkpoint))
    one_line_error(lambda: evaluate_val_split(checkpoint, str(folder / "no_such_dataset.jsonl")))


def test_an_odd_rotary_head_width_in_a_checkpoint_is_one_line(valid_npz, tmp_path: Path) -> None:
    """A config no run could save (rotary positions over heads of odd width) is the file's fault, in one line."""
    _, arrays = valid_npz
    meta = {**json.loads(arrays["meta"].tobytes()), "train_config": {"n_embd": 20, "n_head": 4, "positions": "rope"}}
    path = tmp_path / "c.npz"
    np.savez(path, **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    message = one_line_error(lambda: stored_config(load_checkpoint(path)))
    assert message is not None and "N_EMBD / N_HEAD (5) must be even" in message


@given(document=JSON_VALUES, field=st.sampled_from(["config", "state", "vocab", "bpe_token_ids", "tokenization"]))
def test_random_go_json_is_one_line(tmp_path_factory, document: object, field: str) -> None:
    folder = tmp_path_factory.mktemp("go")
    model = GPT(GPTConfig(zero_init=False, vocab_size=4, n_layer=1, n_embd=8, n_head=2, block_size=8,
                          positions="learned"), seed=0)
    good = json.loads(write_go_checkpoint(folder / "good.json", model, vocab=list("abc")).read_text())
    (folder / "whole.json").write_text(json.dumps(document))
    (folder / "field.json").write_text(json.dumps({**good, field: document}))
    assert one_line_error(lambda: load_checkpoint(folder / "whole.json")) is not None
    one_line_error(lambda: load_checkpoint(folder / "field.json"))


@given(data=st.binary(max_size=512) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_random_config_files_are_one_line(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_bytes(data)
    one_line_error(lambda: read_config_file(path))


@given(data=st.binary(max_size=512))
def test_random_tui_settings_never_raise(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("tui") / "tui.json"
    path.write_bytes(data)
    state, problem = load_state(path)
    assert isinstance(state, dict) and (problem is None or "\n" not in problem)


@given(data=st.binary(max_size=512))
def test_a_damaged_token_cache_is_rebuilt(tmp_path_factory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("cache")
    tokenizer = CharTokenizer("abc ")
    cache_path(folder, "k").write_bytes(data)
    assert load_cached_tokenizer(folder, "k") is None
    ids = tokenize_cached(tokenizer, ["abc", "cab"], folder, "k")
    assert [a.tolist() for a in ids] == [tokenizer.encode("abc"), tokenizer.encode("cab")]


@pytest.mark.parametrize("edit", [
    lambda ids: np.full_like(ids, 10**6),  # ids outside the vocabulary
    lambda ids: ids[:-1],  # the last text lost an id: its offsets now point past the end
], ids=["foreign-ids", "offsets-past-the-end"])
def test_an_edited_token_cache_is_rebuilt(tmp_path: Path, edit) -> None:
    tokenizer = CharTokenizer("abc ")
    texts = ["abc", "cab"]
    tokenize_cached(tokenizer, texts, tmp_path, "k")
    with np.load(cache_path(tmp_path, "k")) as f:
        arrays = {name: f[name] for name in f.files}
    arrays["ids"] = edit(arrays["ids"])
    np.savez(cache_path(tmp_path, "k"), **arrays)
    assert [a.tolist() for a in tokenize_cached(tokenizer, texts, tmp_path, "k")] == [tokenizer.encode(t)
                                                                                       for t in texts]


def test_a_cached_tokenization_is_reused_only_for_the_same_split(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key holds VAL_SPLIT and SEED: another split of the same file (the same number of documents)
    must not reuse the first run's vocabulary and token order, which would put validation text in training."""
    data = test_training.write_dataset(tmp_path)
    shared, fresh = tmp_path / "shared", tmp_path / "fresh"
    for seed, split in ((1, 0.1), (2, 0.1), (1, 0.3)):
        cfg = config_from_dict({"dataset_path": str(data), "seed": seed, "val_split": split, "tokenizer": "char",
                                "token_vocab_size": 300})
        monkeypatch.setenv("MICROGPT_CACHE_DIR", str(shared))
        reused = prepare_data(cfg)
        monkeypatch.setenv("MICROGPT_CACHE_DIR", str(fresh / f"{seed}-{split}"))
        alone = prepare_data(cfg)
        assert np.array_equal(reused.train_stream, alone.train_stream), (seed, split)
        assert np.array_equal(reused.val_stream, alone.val_stream), (seed, split)
        assert reused.tokenizer.to_dict() == alone.tokenizer.to_dict()


def test_a_checkpoint_with_a_negative_second_moment_is_refused(finished_run, tmp_path: Path) -> None:
    """sqrt(v) of a negative v is NaN: a crafted or damaged optim/v would ruin every weight on resume."""
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    with np.load(source / "models" / "latest_checkpoint.npz") as f:
        arrays = {name: f[name] for name in f.files}
    arrays["optim/v"] = arrays["optim/v"].copy()
    arrays["optim/v"][0] = -1.0
    np.savez(tmp_path / "c.npz", **arrays)
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    assert_one_line_error(result, "c.npz", "optim/v", "at least 0: squares")


# --- resuming from a checkpoint whose training state is incomplete ----------------------------------------------
@pytest.mark.parametrize("damage", ["step", "rng_state", "recent_losses", "optim/m", "optim/t"])
def test_resume_with_missing_training_state_is_one_line(finished_run, tmp_path: Path, damage: str) -> None:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    with np.load(source / "models" / "latest_checkpoint.npz") as f:
        arrays = {name: f[name] for name in f.files}
    if damage.startswith("optim/"):
        del arrays[damage]
    else:
        meta = json.loads(arrays["meta"].tobytes())
        del meta[damage]
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", **arrays)
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    assert_one_line_error(result, "c.npz", damage if "/" in damage else f"meta.{damage}")


@pytest.mark.parametrize("command", [("train",), ("chat-once", "models/best_checkpoint.npz", "hi")])
def test_a_negative_seed_is_one_line(finished_run, command: tuple[str, ...]) -> None:
    folder, _ = finished_run
    result = microgpt(folder, *command, "--seed", "-1", MODEL_DIR="models-seed", LOG_DIR="logs-seed")
    assert_one_line_error(result, "-1")
    assert "seed" in result.stderr.lower()


def test_token_ids_outside_the_rank_table_are_refused(tmp_path: Path) -> None:
    model = GPT(GPTConfig(zero_init=False, vocab_size=5, n_layer=1, n_embd=8, n_head=2, block_size=8,
                          positions="learned"), seed=0)
    for ids in ([-1, 5, 7], [10**9, 1, 2]):
        path = write_go_checkpoint(tmp_path / "go.json", model, bpe_token_ids=ids, tokenization="bpe_cl100k")
        assert "bpe_token_ids" in one_line_error(lambda p=path: load_checkpoint(p))


@given(name=st.sampled_from(["config.json", "tokenizer.json", "model.safetensors"]),
       data=st.binary(max_size=512) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_random_content_in_an_export_folder_is_one_line(valid_npz, tmp_path_factory, name: str, data: bytes) -> None:
    export = pytest.importorskip("microgpt.storage.export", reason="exports need the safetensors package")
    folder = tmp_path_factory.mktemp("export")
    export.save_export(load_checkpoint(valid_npz[0]), folder)
    (folder / name).write_bytes(data)
    assert one_line_error(lambda: load_checkpoint(folder)) is not None


@given(data=st.binary(max_size=1024))
def test_random_bytes_as_a_dataset_are_reported_by_line(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("data") / "d.jsonl"
    path.write_bytes(data)
    report = validate_dataset(path)
    assert all("\n" not in problem and problem.startswith(str(path)) for problem in report.problems)
    assert report.ok or report.problem_count >= 1


@given(data=st.binary(max_size=1024))
def test_random_bytes_in_an_events_file_are_skipped(tmp_path_factory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("events") / "events_x.jsonl"
    path.write_bytes(data)
    events, offset = read_events(path)
    assert all(isinstance(event, dict) for event in events) and 0 <= offset <= len(data)


# ----- files crafted to get past the checks (a probe of hostile files) -------------------------------------------
def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def test_a_member_named_twice_with_and_without_npy_is_refused(valid_npz, tmp_path: Path) -> None:
    """NumPy reads "meta" where we checked "meta.npy": a 60 MB metadata would slip past the 16 MiB cap."""
    _, arrays = valid_npz
    path = tmp_path / "shadow.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta", _npy(np.frombuffer(b'{"step": 1}', dtype=np.uint8)))
        for name, array in arrays.items():
            archive.writestr(f"{name}.npy", _npy(array))
    message = one_line_error(lambda: load_checkpoint(path))
    assert message is not None and "'meta': two members of the archive go by that name" in message


def test_weights_and_moments_past_float32s_range_are_refused(finished_run, tmp_path: Path) -> None:
    source, _ = finished_run
    with np.load(source / "models" / "latest_checkpoint.npz") as f:
        arrays = {name: f[name] for name in f.files}
    huge = {**arrays, "param/wte": np.full(arrays["param/wte"].shape, 1e300)}  # float64: inf as float32
    np.savez(tmp_path / "w.npz", **huge)
    message = one_line_error(lambda: load_checkpoint(tmp_path / "w.npz"))
    assert message is not None and "param/wte holds NaN or infinite values (or numbers past float32's range" in message
    np.savez(tmp_path / "v.npz", **{**arrays, "optim/v": np.full(arrays["optim/v"].shape, 1e300)})
    message = one_line_error(lambda: check_training_state(load_checkpoint(tmp_path / "v.npz"), "v.npz"))
    assert message is not None and "optim/v is missing or is not" in message


def _go_model(vocab_size: int) -> GPT:
    return GPT(GPTConfig(vocab_size=vocab_size, n_layer=1, n_embd=8, n_head=2, block_size=4, positions="learned"),
               seed=0)


def test_an_original_char_vocabulary_of_anything_but_single_characters_is_refused(tmp_path: Path) -> None:
    for vocab, why in ((["X" * 1000, *"bcdefg"], "single characters"), (["a", "a", *"cdefg"], "twice")):
        path = write_go_checkpoint(tmp_path / "go.json", _go_model(len(vocab) + 1), vocab=vocab)
        message = one_line_error(lambda path=path: load_checkpoint(path))
        assert message is not None and why in message and len(message) < 400


def test_an_original_checkpoint_past_float32_is_one_line_with_no_numpy_warning(tmp_path: Path, recwarn) -> None:
    path = write_go_checkpoint(tmp_path / "go.json", _go_model(5), vocab=list("abcd"))
    document = json.loads(path.read_text())
    document["state"]["wte"][0][0] = 1e39
    path.write_text(json.dumps(document))
    message = one_line_error(lambda: load_checkpoint(path))
    assert message is not None and "state.wte holds NaN or infinite values" in message
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_tokenizer_problem_names_the_checkpoint_and_stays_short(valid_npz, tmp_path: Path) -> None:
    _, arrays = valid_npz
    meta = json.loads(arrays["meta"].tobytes())
    meta["tokenizer"]["kind"] = "K" * 5_000_000
    path = tmp_path / "k.npz"
    np.savez(path, **{**arrays, "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
    message = one_line_error(lambda: load_checkpoint(path))
    assert message is not None and message.startswith(f"{path}: unknown tokenizer kind 'KKK") and len(message) < 400


def test_a_state_with_many_stray_names_is_named_in_a_short_line() -> None:
    model = GPT(GPTConfig(vocab_size=8, n_layer=1, n_embd=8, n_head=2, block_size=4), seed=0)
    state = {**model.state_dict(), **{f"k{i}": np.zeros(1) for i in range(200_000)}}
    with pytest.raises(KeyError) as raised:
        model.load_state_dict(state)
    assert "unexpected keys: k0, k1, k2, k3, k4 and 199,995 more" in str(raised.value)
    assert len(str(raised.value)) < 300


def test_the_models_tab_reads_a_checkpoints_metadata_again_only_when_the_file_changed(
        valid_npz, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from microgpt.tui import disk

    path, _ = valid_npz
    shutil.copy(path, tmp_path / "a.npz")
    reads = []
    real = disk.checkpoint_info
    monkeypatch.setattr(disk, "checkpoint_info", lambda p: reads.append(p) or real(p))
    for _ in range(3):  # the tab lists the folder every 2 s
        assert [row.path.name for row in checkpoints(tmp_path)] == ["a.npz"]
    assert len(reads) == 1
    shutil.copy(path, tmp_path / "a.npz.new")
    (tmp_path / "a.npz.new").replace(tmp_path / "a.npz")  # replaced: read again
    checkpoints(tmp_path)
    assert len(reads) == 2


def test_an_original_checkpoint_of_millions_of_empty_lists_is_bounded_by_its_structure(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """"[]," is 3 bytes of text and about 100 parsed: the memory check counts the lists, not only the bytes."""
    from microgpt.nn import bounds

    path = tmp_path / "lists.json"
    path.write_text('{"config": {}, "state": {"wte": [' + ",".join(["[]"] * 200_000) + "]}}")
    free = 8 * path.stat().st_size + 1_000_000  # enough for the bytes alone, not for 200,000 lists
    monkeypatch.setattr(bounds.psutil, "virtual_memory", lambda: type("Memory", (), {"available": free})())
    message = one_line_error(lambda: load_checkpoint(path))
    assert message is not None and "200,004 lists and objects" in message  # and the 3 objects around them


def test_a_checkpoint_whose_tokenizer_and_model_disagree_on_the_vocabulary_is_refused(tmp_path: Path) -> None:
    """A model with one id more than its tokenizer could sample an id the tokenizer cannot decode."""
    tokenizer = CharTokenizer("abc ")
    model = GPT(GPTConfig(zero_init=False, vocab_size=tokenizer.vocab_size + 1, n_layer=1, n_embd=8, n_head=2,
                          block_size=8), seed=0)
    path = save_checkpoint(tmp_path / "c.npz", model, tokenizer, {"step": 1})
    message = one_line_error(lambda: load_checkpoint(path))
    assert f"the tokenizer has {tokenizer.vocab_size} ids but model_config.vocab_size is " \
           f"{tokenizer.vocab_size + 1}" in message


def test_a_char_vocabulary_that_repeats_a_character_is_refused() -> None:
    with pytest.raises(ValueError, match="distinct characters"):
        CharTokenizer.from_dict({**CharTokenizer("abc").to_dict(), "chars": "abca"})


def test_a_validation_loss_measured_after_the_checkpoints_own_step_is_refused(finished_run, tmp_path: Path) -> None:
    source, _ = finished_run
    shutil.copy(source / "data.jsonl", tmp_path / "data.jsonl")
    with np.load(source / "models" / "latest_checkpoint.npz") as f:
        arrays = {name: f[name] for name in f.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["val_step"] = meta["step"] + 1
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "c.npz", **arrays)
    result = microgpt(tmp_path, "train", "--resume", "c.npz", NUM_STEPS="40")
    assert_one_line_error(result, "c.npz", "meta.val_step")
