"""Small commands the original has: `microgpt tui` as an alias, gpu-check's per-GPU driver and memory; and
the command line's own mistakes, said in one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from microgpt import hardware
from microgpt.__main__ import main


def test_tui_alias_refuses_a_non_terminal_like_the_module(capsys) -> None:
    assert main(["tui", "--no-splash"]) == 2  # stdout is captured here, so it is no terminal
    assert "needs a terminal" in capsys.readouterr().err


def _fake_smi(folder: Path, body: str) -> None:
    smi = folder / "nvidia-smi"
    smi.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)


def test_gpu_check_shows_driver_and_memory_per_gpu(tmp_path: Path, monkeypatch) -> None:
    _fake_smi(tmp_path, 'case "$1" in --query-gpu*) echo "0, NVIDIA H200, 580.159.03, 143771, 12"; '
                        'echo "1, NVIDIA H200, 580.159.03, 143771, 0";; *) exit 1;; esac')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert hardware.nvidia_gpus() == ["0: NVIDIA H200, driver 580.159.03, memory 143771 MiB (12 MiB used)",
                                       "1: NVIDIA H200, driver 580.159.03, memory 143771 MiB (0 MiB used)"]


def test_gpu_check_falls_back_to_the_list_when_the_query_fails(tmp_path: Path, monkeypatch) -> None:
    _fake_smi(tmp_path, 'case "$1" in -L) echo "GPU 0: Tesla T4 (UUID: GPU-1)";; *) exit 9;; esac')
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    assert hardware.nvidia_gpus() == ["GPU 0: Tesla T4 (UUID: GPU-1)"]


@pytest.mark.parametrize(("argv", "fragment"), [
    (["eval", "x.npz", "--stride", "0"], "microgpt eval: error: argument --stride: 0 must be at least 1"),
    (["bench", "--windows", "0"], "microgpt bench: error: argument --windows: 0 must be at least 1"),
    (["train", "--num-steps"], "microgpt train: error: argument --num-steps: expected one argument"),
    (["chat-once", "x.npz", "--bogus"], "microgpt chat-once: error: unrecognized arguments: --bogus"),
    (["data", "get"], "microgpt data get: error: the following arguments are required"),
    (["train", "--num-step", "5"], ("microgpt train: error: unrecognized arguments: --num-step 5 (did you mean "
                                   "--num-steps?)")),
    (["eval", "x.npz", "--max-record=3"], ("microgpt eval: error: unrecognized arguments: --max-record=3 (did you "
                                          "mean --max-records?)")),
    (["frobnicate"], "microgpt: error: argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_a_command_line_mistake_is_one_line_naming_the_command_and_exit_2(capsys, argv: list[str],
                                                                          fragment: str) -> None:
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith(fragment), err
    assert err.rstrip().endswith("--help`)")


def test_a_shortened_option_is_not_read_as_a_longer_one(capsys) -> None:
    """argparse would take `--lr 0.1` as --lr-schedule (and `bench --s` as --serve): options are spelled out."""
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--lr", "0.1"])
    assert stopped.value.code == 2 and "unrecognized arguments: --lr 0.1" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the data command's own sub-commands too
        main(["data", "get", "dolly", "--sha", "", "--o", "x.jsonl"])
    assert "unrecognized arguments: --sha  --o x.jsonl" in capsys.readouterr().err
