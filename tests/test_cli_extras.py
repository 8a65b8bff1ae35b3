"""Small commands the original has: `microgpt tui` as an alias, gpu-check's per-GPU driver and memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

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
