"""The trainer's own step, in process: a tiny run must bring the loss down, and every training step must
go through GPT.loss and F.linear_cross_entropy, the path that test_fused_loss and test_gpt check."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from microgpt.autograd import functional as F
from microgpt.autograd import is_grad_enabled
from microgpt.config import load_config
from microgpt.nn import GPT
from microgpt.train.trainer import Trainer

TEXTS = ["the cat sat on the mat.", "a dog ran to the park.", "tea is hot and sweet.", "the sun is up."]


def test_a_tiny_run_brings_the_loss_down_through_the_fused_loss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"k{i}", "record_type": "knowledge", "text": TEXTS[i % 4]}) + "\n"
                            for i in range(40)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MICROGPT_CACHE_DIR", str(tmp_path / "cache"))
    calls = {"GPT.loss": [], "F.linear_cross_entropy": 0}
    real_loss, real_fused = GPT.loss, F.linear_cross_entropy

    def spy_loss(self, idx, targets):
        loss = real_loss(self, idx, targets)
        if is_grad_enabled():  # a training step (evaluation runs under no_grad)
            calls["GPT.loss"].append(loss.item())
        return loss

    def spy_fused(*args, **kwargs):
        calls["F.linear_cross_entropy"] += 1
        return real_fused(*args, **kwargs)

    monkeypatch.setattr(GPT, "loss", spy_loss)
    monkeypatch.setattr(F, "linear_cross_entropy", spy_fused)
    steps = 60
    cfg = load_config(cli={
        "DATASET_PATH": str(data), "TOKENIZER": "char", "TOKEN_VOCAB_SIZE": "300", "N_EMBD": "16", "N_HEAD": "2",
        "N_LAYER": "1", "BLOCK_SIZE": "16", "BATCH_SIZE": "8", "NUM_STEPS": str(steps), "EVAL_INTERVAL": "30",
        "EVAL_STEPS": "2", "SAMPLE_COUNT": "0", "LEARNING_RATE": "0.01", "LOG_DIR": "logs", "MODEL_DIR": "models"},
        env={})
    assert Trainer(cfg).run() == 0
    losses = calls["GPT.loss"]
    assert len(losses) == steps  # every optimizer step computed its loss with GPT.loss
    assert calls["F.linear_cross_entropy"] >= steps  # ... which is the fused head and loss
    assert np.all(np.isfinite(losses))
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert first > 2.0  # it started out guessing among the characters
    assert last < first - 0.8, f"loss went from {first:.3f} to {last:.3f} in {steps} steps"
