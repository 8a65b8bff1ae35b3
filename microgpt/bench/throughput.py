"""Training and generation throughput of our GPT, timed window by window against PyTorch eager.

Protocol (see ../shared/perf-notes.md for why): warm up; then alternate ours and PyTorch, each timed window
preceded by a short pause (BLAS worker threads spin for a while after a burst and slow whoever runs next),
the order flipped every window; report the median tokens/s over the windows.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from microgpt.nn import GPT, Adam, GPTConfig, SamplingSettings, generate


@dataclass(frozen=True)
class BenchConfig:
    """A named model size and batch for the benchmark table."""

    name: str
    model: GPTConfig
    batch: int
    steps_per_window: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch * self.model.block_size


C1 = GPTConfig(vocab_size=2048, n_layer=1, n_embd=48, n_head=4, block_size=96)
C2 = GPTConfig(vocab_size=8192, n_layer=4, n_embd=128, n_head=8, block_size=256)
CONFIGS = {
    "c1-b1": BenchConfig("c1-b1", C1, 1, 100),
    "c1-b16": BenchConfig("c1-b16", C1, 16, 20),
    "c2-b8": BenchConfig("c2-b8", C2, 8, 2),
}


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _ours_train_step(cfg: BenchConfig, seed: int = 0) -> Callable[[], None]:
    model = GPT(cfg.model, seed=seed)
    optimizer = Adam(model.parameters(), lr=1e-3)
    batch = np.random.default_rng(seed).integers(0, cfg.model.vocab_size, (cfg.batch, cfg.model.block_size + 1))
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        optimizer.zero_grad()
        loss = model.loss(x, y)  # what the trainer runs: lm_head and cross-entropy fused
        loss.backward()
        optimizer.step()

    return step


def _torch_train_step(cfg: BenchConfig, seed: int = 0) -> Callable[[], None]:
    import torch
    import torch.nn.functional as TF

    from microgpt.bench.torch_gpt import TorchGPT

    torch.set_num_threads(2)
    model = TorchGPT(cfg.model, GPT(cfg.model, seed=seed).state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.85, 0.99), eps=1e-8)
    batch = torch.tensor(np.random.default_rng(seed).integers(0, cfg.model.vocab_size,
                                                               (cfg.batch, cfg.model.block_size + 1)))
    x, y = batch[:, :-1], batch[:, 1:]

    def step() -> None:
        optimizer.zero_grad()
        loss = TF.cross_entropy(model(x).reshape(-1, cfg.model.vocab_size), y.reshape(-1))
        loss.backward()
        optimizer.step()

    return step


def _ours_generate(cfg: BenchConfig, new_tokens: int) -> Callable[[], None]:
    model = GPT(cfg.model, seed=0)
    settings = SamplingSettings(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                                max_new_tokens=new_tokens)
    prompt = list(range(1, 9))

    def run() -> None:
        for _ in generate(model, prompt, settings):
            pass

    return run


def _torch_generate(cfg: BenchConfig, new_tokens: int) -> Callable[[], None]:
    import torch

    from microgpt.bench.torch_gpt import TorchGPT

    torch.set_num_threads(2)
    model = TorchGPT(cfg.model, GPT(cfg.model, seed=0).state_dict())
    prompt = torch.arange(1, 9).reshape(1, -1)

    @torch.no_grad()
    def run() -> None:
        cache: list = [None] * cfg.model.n_layer
        logits = model(prompt, cache)
        for _ in range(new_tokens):
            token = logits[0, -1].argmax().reshape(1, 1)
            logits = model(token, cache)

    return run


def _windows(contestants: dict[str, Callable[[], None]], repeats: int, windows: int, warmup: int,
             pause: float) -> dict[str, list[float]]:
    """Seconds per call of each contestant, one entry per timed window, order alternating."""
    for fn in contestants.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in contestants}
    names = list(contestants)
    for w in range(windows):
        for name in names if w % 2 == 0 else reversed(names):
            time.sleep(pause)
            start = time.perf_counter()
            for _ in range(repeats):
                contestants[name]()
            seconds[name].append((time.perf_counter() - start) / repeats)
    return seconds


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_config(cfg: BenchConfig, windows: int = 7, with_torch: bool = True, gen_tokens: int = 64,
                 pause: float = 0.3) -> dict:
    """One row of the table: training and generation tokens/s (median over windows), ours and torch's."""
    row: dict = {"config": cfg.name, "batch": cfg.batch, "block_size": cfg.model.block_size,
                 "parameters": GPT(cfg.model, seed=0).num_parameters()}
    train = {"ours": _ours_train_step(cfg)}
    gen = {"ours": _ours_generate(cfg, gen_tokens)}
    if with_torch:
        train["torch"] = _torch_train_step(cfg)
        gen["torch"] = _torch_generate(cfg, gen_tokens)
    for label, contestants, repeats, per_call in (
        ("train", train, cfg.steps_per_window, cfg.tokens_per_step),
        ("generate", gen, 5, gen_tokens),  # 5 replies per window: one is too short to time
    ):
        seconds = _windows(contestants, repeats, windows, warmup=2, pause=pause)
        for name, values in seconds.items():
            row[f"{label}_{name}_tok_s"] = per_call / float(np.median(values))
        if with_torch:
            row[f"{label}_ratio"] = row[f"{label}_ours_tok_s"] / row[f"{label}_torch_tok_s"]
    row["peak_rss_mb"] = peak_rss_mb()
    return row
