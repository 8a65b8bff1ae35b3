"""Chatting with a checkpoint: the `chat-once` and `chat` commands, and ChatSession's streaming, stop markers,
history and prompt template.

The command tests use a tiny model trained in this module. The session tests replace `generate` with a
script of fixed text, so what the model "says" is known exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import microgpt.chat.session as chat_module
from microgpt.chat.session import STOP_MARKERS, ChatSession, ReplyText, held_back
from microgpt.config import KNOB_BY_CHAT_ENV, KNOB_BY_NAME, load_config
from microgpt.data.templates import chat_prompt, render_record
from microgpt.data.tokenizer import build_tokenizer
from microgpt.errors import no_controls
from microgpt.nn import SamplingSettings
from microgpt.train.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "DATASET_PATH": "data.jsonl", "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": "300", "N_LAYER": "1",
    "N_EMBD": "16", "N_HEAD": "2", "BLOCK_SIZE": "64", "BATCH_SIZE": "4", "NUM_STEPS": "20",
    "EVAL_INTERVAL": "10", "EVAL_STEPS": "2", "SAMPLE_COUNT": "0", "LOG_DIR": "logs", "MODEL_DIR": "models",
}
DECODE = ["--seed", "3", "--max-new-tokens", "24"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-step model trained on chat, qa and knowledge records."""
    folder = tmp_path_factory.mktemp("chat")
    records = []
    for i in range(30):
        records.append([
            {"id": f"c{i}", "record_type": "chat", "input": f"hello {i}", "output": f"hi there, friend {i}."},
            {"id": f"q{i}", "record_type": "qa", "question": f"what is {i}?", "answer": f"{i} is a number."},
            {"id": f"k{i}", "record_type": "knowledge", "text": f"Item {i} sits on shelf {i % 7}."},
        ][i % 3])
    (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        mp.setenv("MICROGPT_CACHE_DIR", str(folder / "cache"))
        assert Trainer(load_config(cli=TINY, env={})).run() == 0
    return folder / "models" / "latest_checkpoint.npz"


def run_cli(*args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess:
    """Run a command; stdout and stderr come back as UTF-8 text exactly as written (a reply may hold a '\\r')."""
    env = {k: v for k, v in os.environ.items() if k not in KNOB_BY_NAME and k not in KNOB_BY_CHAT_ENV}
    env.update(extra_env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONIOENCODING"] = "utf-8"
    result = subprocess.run([sys.executable, "-m", "microgpt", *args], env=env, capture_output=True,
                            input=None if stdin is None else stdin.encode("utf-8"), timeout=300, check=False)
    result.stdout, result.stderr = result.stdout.decode("utf-8"), result.stderr.decode("utf-8")
    return result


def settings() -> SamplingSettings:
    """The same decoding as DECODE on the command line."""
    return SamplingSettings(seed=3, max_new_tokens=24)


# --- the commands --------------------------------------------------------------------------------------

def test_chat_once_prints_the_sessions_reply(checkpoint: Path) -> None:
    result = run_cli("chat-once", str(checkpoint), "hello", "3", *DECODE)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello 3", settings()))
    assert expected  # the tiny model says something
    assert result.stdout == expected + "\n"


def test_chat_once_takes_the_prompt_before_between_or_after_the_options(checkpoint: Path) -> None:
    expected = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello 3", settings())) + "\n"
    for args in (["hello", "3", *DECODE], [*DECODE, "hello", "3"], ["--seed", "3", "hello", "--max-new-tokens", "24",
                                                                     "3"]):
        result = run_cli("chat-once", str(checkpoint), *args)
        assert (result.returncode, result.stdout) == (0, expected), (args, result.stderr)
    result = run_cli("chat-once", str(checkpoint), *DECODE, "--", "hello", "3")  # after "--" all is the prompt
    assert (result.returncode, result.stdout) == (0, expected), result.stderr
    minus = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello -3", settings())) + "\n"
    for args in (["hello", "-3", *DECODE], [*DECODE, "hello", "-3"], [*DECODE, "--", "hello", "-3"]):
        result = run_cli("chat-once", str(checkpoint), *args)
        assert (result.returncode, result.stdout) == (0, minus), (args, result.stderr)
    both = run_cli("chat-once", str(checkpoint), "--prompts-file", "p.txt", "also")
    assert both.returncode == 2 and "give a prompt or --prompts-file FILE (one of the two)" in both.stderr


def test_control_characters_reach_neither_the_terminal_nor_the_log_raw(checkpoint: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a\x1b]0;PWNED\x07b\x1b[2J\r\n", encoding="utf-8")
    result = run_cli("chat-once", str(checkpoint), "--prompts-file", str(prompts), "--log", *DECODE,
                     LOG_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("> a\\x1b]0;PWNED\\x07b\\x1b[2J\n")
    [log] = (tmp_path / "chat").glob("chat_once_*.log")
    shown = result.stdout + log.read_text(encoding="utf-8")
    assert "] user: a\\x1b]0;PWNED\\x07b\\x1b[2J\n" in shown
    assert not [c for c in shown if unicodedata.category(c) == "Cc" and c not in "\n\t"], shown


def test_chat_once_answers_every_prompt_of_a_file_as_a_fresh_conversation(checkpoint: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\ufeff# a comment\nHow do I make tea?\n\nWhat is a budget?\n", encoding="utf-8")  # BOM
    both = run_cli("chat-once", str(checkpoint), "--prompts-file", str(prompts), "--max-new-tokens", "12", "--log",
                   LOG_DIR=str(tmp_path))
    assert both.returncode == 0, both.stderr
    [log] = (tmp_path / "chat").glob("chat_once_*.log")
    turns = [line.split("] ", 1)[1].split(":")[0] for line in log.read_text(encoding="utf-8").splitlines()
             if line.startswith("[")]
    assert turns[1:] == ["user", "assistant", "# conversation reset", "user", "assistant"], turns
    singles = [run_cli("chat-once", str(checkpoint), q, "--max-new-tokens", "12").stdout.strip()
               for q in ("How do I make tea?", "What is a budget?")]
    assert both.stdout == f"> How do I make tea?\n{singles[0]}\n\n> What is a budget?\n{singles[1]}\n\n"
    for args, fragment in [((str(tmp_path / "none.txt"),), "No such file"), ((), "give a prompt or --prompts-file")]:
        extra = ["--prompts-file", *args] if args else []
        bad = run_cli("chat-once", str(checkpoint), *extra)
        assert bad.returncode == 2 and fragment in bad.stderr and "Traceback" not in bad.stderr


def test_chat_once_is_reproducible_and_chat_variables_change_it(checkpoint: Path) -> None:
    first, again = (run_cli("chat-once", str(checkpoint), "hello", "3") for _ in range(2))
    assert first.returncode == again.returncode == 0, first.stderr
    assert first.stdout == again.stdout  # a fixed default seed, as the original's rand.Seed(42)
    assert first.stdout == no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello 3")) + "\n"
    cooler = run_cli("chat-once", str(checkpoint), "hello", "3", CHAT_TEMPERATURE="0.2")
    assert cooler.returncode == 0, cooler.stderr
    cool = SamplingSettings(temperature=0.2)
    expected = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello 3", cool))
    assert cooler.stdout == expected + "\n" != first.stdout
    flagged = run_cli("chat-once", str(checkpoint), "hello", "3", "--temperature", "0.5", CHAT_TEMPERATURE="0.2")
    assert flagged.stdout == first.stdout  # a flag beats the environment


@pytest.mark.parametrize(("name", "value", "fragment"), [
    ("CHAT_TEMPERATURE", "warm", "not a number"),
    ("CHAT_TEMPERATURE", "nan", "finite"),
    ("CHAT_TOP_P", "1.5", "<= 1"),
    ("CHAT_MAX_NEW_TOKENS", "0", ">= 1"),
    ("CHAT_TOP_K", "2.5", "whole number"),
    ("CHAT_MIN_NEW_TOKENS", "500", "must not exceed CHAT_MAX_NEW_TOKENS"),
])
def test_a_bad_chat_variable_is_one_line_and_exit_2(checkpoint: Path, name: str, value: str, fragment: str) -> None:
    result = run_cli("chat-once", str(checkpoint), "hello", **{name: value})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{name}=" in result.stderr and fragment in result.stderr, result.stderr


def test_a_bad_sampling_flag_is_one_line_and_exit_2(checkpoint: Path) -> None:
    result = run_cli("chat-once", str(checkpoint), "hello", "--temperature", "inf")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "error: --temperature='inf': must be a finite number (from command line)" in result.stderr  # as typed
    result = run_cli("chat-once", str(checkpoint), "hello", "--temperature", "1e300")  # a 300-digit setting
    assert result.returncode == 2 and "--temperature='1e300': must be >= 0 and <= 100" in result.stderr


def test_chat_reads_turns_from_stdin_and_reset_forgets_them(checkpoint: Path) -> None:
    logs = checkpoint.parent.parent / "logs"
    result = run_cli("chat", str(checkpoint), *DECODE, stdin="hello\n/reset\nhi\n/quit\n", LOG_DIR=str(logs))
    assert result.returncode == 0, result.stderr
    # After /reset, "hi" is answered as a first turn: the same reply a fresh session gives.
    first = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hello", settings()))
    fresh = no_controls(ChatSession.from_checkpoint(str(checkpoint)).reply("hi", settings()))
    header, rest = result.stdout.split("\n", 1)
    assert header.startswith(f"chatting with {checkpoint}")
    assert rest == (f"you> assistant> {first}\n"
                    "you> (conversation cleared)\n"
                    f"you> assistant> {fresh}\n"
                    "you> ")
    # the conversation is in its session log and in chat_latest.log, with the checkpoint and settings
    session = [p for p in (logs / "chat").glob("chat_*.log") if p.name != "chat_latest.log"]
    assert len(session) == 1 and session[0].name in header
    text = (logs / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    assert text == session[0].read_text(encoding="utf-8")
    assert f"# checkpoint {checkpoint} | temperature=" in text and "seed=3" in text
    assert "] user: hello\n" in text and "# conversation reset" in text and "] user: hi\n" in text
    assert text.count("] assistant: ") == 2 and text.index("user: hello") < text.index("reset") < text.index("user: hi")


def test_chat_no_log_and_chat_once_log(checkpoint: Path, tmp_path: Path) -> None:
    assert run_cli("chat", str(checkpoint), "--no-log", *DECODE, stdin="hello\n", LOG_DIR=str(tmp_path)).returncode == 0
    assert not (tmp_path / "chat").exists()
    assert run_cli("chat-once", str(checkpoint), "hello", *DECODE, LOG_DIR=str(tmp_path)).returncode == 0
    assert not (tmp_path / "chat").exists()  # chat-once logs only when asked
    result = run_cli("chat-once", str(checkpoint), "hello", "--log", *DECODE, LOG_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    [log] = (tmp_path / "chat").glob("chat_once_*.log")
    reply = result.stdout.rstrip().replace("\n", "\n    ")  # a reply's later lines are indented in the log
    assert f"] assistant: {reply}\n" in log.read_text(encoding="utf-8")


def test_chat_ends_at_end_of_input(checkpoint: Path) -> None:
    result = run_cli("chat", str(checkpoint), *DECODE, stdin="hello\n", LOG_DIR=str(checkpoint.parent.parent / "logs"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("assistant> ") == 1


def test_input_that_is_not_utf8_is_chatted_and_logged_escaped(checkpoint: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in KNOB_BY_NAME and k not in KNOB_BY_CHAT_ENV}
    env.update(PYTHONPATH=str(REPO_ROOT), LOG_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "microgpt", "chat", str(checkpoint), *DECODE], env=env,
                            input=b"caf\xe9\n", capture_output=True, timeout=300, check=False)
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr
    [log] = (tmp_path / "chat").glob("chat_2*.log")
    assert "] user: caf\\udce9\n" in log.read_text(encoding="utf-8")  # the odd byte, escaped: still UTF-8


def test_chat_with_its_input_closed_ends_as_at_end_of_input(checkpoint: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "microgpt", "chat", str(checkpoint), "--no-log"], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=300, check=False,
                            preexec_fn=lambda: os.close(0))  # no stdin at all, as `chat <&-`
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("signal_name", ["SIGHUP", "SIGTERM"])
def test_a_closed_terminal_or_sigterm_ends_chat_as_ctrl_c_does(checkpoint: Path, signal_name: str) -> None:
    import signal as signals

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "microgpt", "chat", str(checkpoint), "--no-log"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.read(len("chatting with")) == b"chatting with"  # at the prompt, waiting for a line
        proc.send_signal(getattr(signals, signal_name))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.decode().strip() == "interrupted"


def _read_until(proc: subprocess.Popen, marker: bytes, seconds: float = 120) -> bytes:
    """What the process writes to stdout up to and including `marker`; fails after `seconds`."""
    import select
    import time

    seen, deadline = b"", time.monotonic() + seconds
    while marker not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} within {seconds} s: {seen[-300:]!r}"
        chunk = os.read(proc.stdout.fileno(), 4096)
        assert chunk, f"stdout closed before {marker!r}: {seen[-300:]!r}"
        seen += chunk
    return seen


def test_ctrl_c_during_a_reply_stops_that_reply_and_the_chat_goes_on(checkpoint: Path, tmp_path: Path) -> None:
    import signal as signals

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1", "LOG_DIR": str(tmp_path)}
    endless = ["--max-new-tokens", "1000000", "--min-new-tokens", "1000000", "--temperature", "1"]
    # `python -m microgpt`, with Ctrl-C's handler set first: a suite started in the background (`... &`) ignores
    # SIGINT, and so would the chat it starts
    launch = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
              "sys.argv[0] = 'microgpt'; runpy.run_module('microgpt', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", launch, "chat", str(checkpoint), *endless], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for turn, stop in (("hello", signals.SIGINT), ("again", signals.SIGINT), ("last", signals.SIGTERM)):
            proc.stdin.write(f"{turn}\n".encode())
            proc.stdin.flush()
            _read_until(proc, b"assistant> ")
            _read_until(proc, b" ")  # the reply is being written
            assert f"] user: {turn}\n" in (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
            proc.send_signal(stop)
            if stop == signals.SIGINT:
                assert _read_until(proc, b"you> ").endswith(b" [stopped]\nyou> ")
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130 and err.decode().strip() == "interrupted"  # SIGTERM ends the whole chat
    log = (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    for turn in ("hello", "again", "last"):
        assert f"] user: {turn}\n" in log
    replies = [line for line in log.splitlines() if "] assistant: " in line]
    assert len(replies) == 3 and all(line.split("] assistant: ", 1)[1].strip() for line in replies), log
    assert log.count("# the reply above was stopped (Ctrl-C)") == 2  # the two Ctrl-C's; SIGTERM ended the chat
    assert log.rstrip().endswith("# the reply above was stopped (SIGTERM or SIGHUP ended the chat)"), log[-300:]


def test_chat_commands_are_listed_and_an_unknown_one_is_not_sent_to_the_model(checkpoint: Path, tmp_path: Path) -> None:
    result = run_cli("chat", str(checkpoint), *DECODE, stdin="/help\n/hepl\n/usr/bin is a folder?\n",
                     LOG_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("you> ")
    assert lines[1].startswith("commands: /reset start the conversation over; /quit")
    assert lines[2].startswith("unknown command /hepl; commands: /reset")
    assert result.stdout.count("assistant> ") == 1  # a message that only starts with "/" is sent
    log = (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    assert "user: /usr/bin is a folder?" in log and "/help" not in log and "/hepl" not in log


def test_a_prompts_file_keeps_unicode_line_separators_and_names_a_bad_line(checkpoint: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\u2028two\n", encoding="utf-8")
    result = run_cli("chat-once", str(checkpoint), "--prompts-file", str(prompts), "--max-new-tokens", "2")
    assert result.returncode == 0 and result.stdout.count("> ") == 1, result.stdout  # one prompt, not two
    prompts.write_bytes(b"fine\nalso fine\nbad \xff\n")
    result = run_cli("chat-once", str(checkpoint), "--prompts-file", str(prompts))
    assert result.returncode == 2 and f"{prompts}:3: not UTF-8" in result.stderr


# --- ChatSession with a scripted model -----------------------------------------------------------------

@pytest.fixture
def tokenizer():
    return build_tokenizer("char", 300, ["Sure thing. User: Assistant: hello again, how are you? 42"])


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch, tokenizer) -> dict:
    """Replace generate: it yields the ids of state["text"] and records each prompt and how far it was read."""
    state: dict = {"text": "", "prompts": [], "consumed": 0}

    def fake_generate(model, prompt_ids, sampling) -> Iterator[int]:
        state["prompts"].append(list(prompt_ids))
        state["consumed"] = 0
        for token in tokenizer.encode(state["text"]):
            state["consumed"] += 1
            yield token

    monkeypatch.setattr(chat_module, "generate", fake_generate)
    return state


def session_for(tokenizer) -> ChatSession:
    return ChatSession(model=None, tokenizer=tokenizer)  # the scripted generate never touches the model


@pytest.mark.parametrize("marker", STOP_MARKERS)
def test_a_stop_marker_ends_the_reply(tokenizer, script: dict, marker: str) -> None:
    script["text"] = f" Sure thing.{marker} again"
    session = session_for(tokenizer)
    pieces = list(session.stream_reply("hello"))
    assert "".join(pieces) == "Sure thing."
    assert script["consumed"] == len(tokenizer.encode(f" Sure thing.{marker}"))  # generation stopped there
    assert session.history == [("hello", "Sure thing.")]


@pytest.mark.parametrize("text, expected", [
    (" Sure thing.", "Sure thing."),
    (" Sure thing. \n", "Sure thing."),  # trailing white space, then the end
    (" Sure thing. \nUser: again", "Sure thing."),  # trailing white space, then a marker
    (" Sure\nUsual 42", "Sure\nUsual 42"),  # looks like a marker for a while, then is not
    (" hello\nUser", "hello"),  # the end arrives while a marker is still possible: the label's start is not text
])
def test_streamed_pieces_add_up_to_the_reply(tokenizer, script: dict, text: str, expected: str) -> None:
    script["text"] = text
    pieces = list(session_for(tokenizer).stream_reply("hello"))
    reply = session_for(tokenizer).reply("hello")
    assert "".join(pieces) == reply == expected
    assert all(pieces)


def test_history_grows_per_turn_and_reset_clears_it(tokenizer, script: dict) -> None:
    session = session_for(tokenizer)
    script["text"] = " hello again"
    session.reply("hello")
    script["text"] = " 42"
    session.reply("how are you?")
    assert session.history == [("hello", "hello again"), ("how are you?", "42")]
    expected = chat_prompt([("hello", "hello again")], "how are you?")
    assert script["prompts"][1] == [tokenizer.bos_id, *tokenizer.encode(expected)]

    session.reset()
    assert session.history == []
    session.reply("hello")
    assert script["prompts"][2] == script["prompts"][0]


def test_the_prompt_is_the_training_template_up_to_the_reply(tokenizer) -> None:
    session = session_for(tokenizer)
    session.history = [("hello", "hi there")]
    ids = session.prompt_ids("how are you?")
    assert ids[0] == tokenizer.bos_id
    prompt = tokenizer.decode(ids[1:])
    assert prompt == chat_prompt(session.history, "how are you?")
    # The same conversation as a training document continues the prompt with " " + the reply.
    document = render_record({"id": "m", "record_type": "messages", "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi there"},
        {"role": "user", "content": "how are you?"}, {"role": "assistant", "content": "fine"}]})
    assert document == prompt + " fine"
    first_turn = render_record({"id": "c", "record_type": "chat", "input": "hello", "output": "hi there"})
    assert first_turn == tokenizer.decode(session_for(tokenizer).prompt_ids("hello")[1:]) + " hi there"


class ByteTokens:
    """A byte-level tokenizer: token t is the byte t, so tokens end inside characters."""

    @staticmethod
    def decode_bytes(ids: list[int]) -> bytes:
        return bytes(ids)


def _streamed_and_final(text: str, stops: list[str]) -> tuple[list[str], str]:
    """What a stream (ReplyText) sends piece by piece and the reply it ends with, for `text` arriving byte by
    byte."""
    reply, sent = ReplyText(ByteTokens(), stops, strip=False), []
    for byte in text.encode("utf-8"):
        if reply.add(byte):
            break
        sent.append(reply.certain())
    sent.append(reply.rest())
    return sent, reply.text


CHARS_SOME_WIDE = st.sampled_from(["a", "e", " ", "é", "ï", "🎉", "😀", "日"])


@given(text=st.lists(CHARS_SOME_WIDE, max_size=12).map("".join),
       stops=st.lists(st.lists(CHARS_SOME_WIDE, min_size=1, max_size=3).map("".join), min_size=1, max_size=3))
def test_a_stream_never_sends_text_that_a_stop_string_later_cuts(text: str, stops: list[str]) -> None:
    sent, final = _streamed_and_final(text, stops)
    assert "".join(sent) == final  # the pieces add up to the reply
    assert not any(stop in final for stop in stops) and text.startswith(final)
    for piece in sent[:-1]:  # never half a character while the stream goes on
        assert "\ufffd" not in piece


@given(text=st.lists(CHARS_SOME_WIDE, min_size=1, max_size=12).map("".join), data=st.data())
def test_a_reply_cut_mid_character_ends_before_that_character_not_in_a_broken_glyph(text: str, data) -> None:
    raw = text.encode("utf-8")
    cut = data.draw(st.integers(1, len(raw)))  # the token limit came after `cut` bytes
    reply = ReplyText(ByteTokens(), [], strip=False)
    sent = []
    for byte in raw[:cut]:
        reply.add(byte)
        sent.append(reply.certain())
    sent.append(reply.rest())
    assert "".join(sent) == reply.text == raw[:cut].decode("utf-8", errors="ignore")


def test_a_reply_the_token_limit_cuts_in_a_turn_label_ends_before_that_label() -> None:
    for stops, final in ((STOP_MARKERS, "Boil water."), (["\nUser: me"], "Boil water.\nUser")):  # labels only
        sent, text = _streamed_and_final("Boil water.\nUser", list(stops))
        assert "".join(sent) == text == final
    assert _streamed_and_final("Boil water.\nUse a kettle", list(STOP_MARKERS))[1] == "Boil water.\nUse a kettle"
    completion = ReplyText(ByteTokens(), ["\nUser:"], strip=False, labels=())  # a completion's own stop string
    for byte in b"The list:\nUs":
        completion.add(byte)
        completion.certain()
    completion.rest()
    assert completion.text == "The list:\nUs"  # kept: "\nUser:" is the caller's stop here, not a template label


def test_held_back_keeps_a_character_in_progress_and_what_a_stop_could_continue_with_it() -> None:
    assert held_back("naïve \ufffd", ["e 🎉"]) == 3  # "e " and the emoji's first bytes
    assert held_back("naïve \ufffd", ["xyz"]) == 1  # only the character in progress
    assert held_back("naïve e", ["e 🎉"]) == 1 and held_back("naïve", ["xyz"]) == 0


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: this test types into a terminal")
def test_in_a_terminal_the_line_is_edited_and_a_pasted_text_of_several_lines_is_one_message(
        checkpoint: Path, tmp_path: Path) -> None:
    from microgpt.bench.tui import TmuxTUI

    env = {"PYTHONPATH": str(REPO_ROOT), "LOG_DIR": str(tmp_path), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    chat = TmuxTUI(tmp_path, 100, 30, env, args=("-m", "microgpt", "chat", str(checkpoint), *DECODE))
    try:
        chat.wait_for("you>")  # the screen as captured: no trailing spaces
        chat.type("abc")
        chat.keys("Left", "Left")  # the cursor moves: the arrows are not typed into the message
        chat.type("X")
        chat.keys("Enter")
        chat.wait_for(r"assistant> [^\n]*\n(.*\n)*you>")
        chat.tmux("set-buffer", "Summarise this:\nline two of the text\nline three")
        chat.tmux("paste-buffer", "-p", "-t", "tui")  # bracketed, as a terminal pastes when asked to
        chat.keys("Enter")
        chat.wait_for(r"(you>(.*\n)*){3}", timeout=60)
        chat.type("/quit")
        chat.keys("Enter")
        log = (tmp_path / "chat" / "chat_latest.log").read_text(encoding="utf-8")
    finally:
        chat.close()
    assert "] user: aXbc\n" in log
    assert "] user: Summarise this:\n    line two of the text\n    line three\n" in log
    assert log.count("] user: ") == 2


@pytest.mark.parametrize(("term", "asked"), [("xterm-256color", True), ("dumb", False)])
def test_bracketed_paste_is_asked_for_only_where_the_terminal_takes_escapes(monkeypatch: pytest.MonkeyPatch,
                                                                            term: str, asked: bool) -> None:
    """On TERM=dumb (Emacs' shell) readline's paste mode would print its escapes around every prompt."""
    readline = pytest.importorskip("readline", reason="no GNU readline in this Python (Windows)")
    if "libedit" in (readline.__doc__ or ""):
        pytest.skip("macOS's libedit has no bracketed paste setting")
    from microgpt.commands import chat as chat_command

    bound: list[str] = []
    monkeypatch.setattr(readline, "parse_and_bind", bound.append)
    monkeypatch.setenv("TERM", term)
    chat_command._line_editing()
    assert bound == (["set enable-bracketed-paste on"] if asked else [])


def test_a_checkpoint_path_with_control_characters_is_one_escaped_line_in_the_log(tmp_path: Path) -> None:
    from microgpt.chat.log import ChatLog

    log = ChatLog(tmp_path, "chat", session="s")
    log.context("ck\npt\x1b[31m.npz", SamplingSettings())
    log.note("reset\r\x07")
    lines = log.path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and "checkpoint ck\\npt\\x1b[31m.npz | " in lines[0] and lines[1].endswith("# reset\\r\\x07")
