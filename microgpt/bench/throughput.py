"""Training and generation throughput of our GPT, timed window by window against PyTorch eager.

Protocol (see ../shared/perf-notes.md for why): warm up; then alternate ours and PyTorch, each timed window
preceded by a short pause (BLAS worker threads spin for a while after a burst and slow whoever runs next),
the order flipped every window; report the median tokens/s over the windows.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from microgpt.autograd import functional as F
from microgpt.autograd import no_grad
from microgpt.autograd.parallel import set_threads
from microgpt.bench.reference import ReferenceStep
from microgpt.config import TrainConfig
from microgpt.hardware import blas_kernels, cpu_model, usable_cores
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


# the comparison shapes, with the original's position table (the figures before RoPE stay comparable)
C1 = GPTConfig(vocab_size=2048, n_layer=1, n_embd=48, n_head=4, block_size=96, positions="learned")
C2 = GPTConfig(vocab_size=8192, n_layer=4, n_embd=128, n_head=8, block_size=256, positions="learned")
TRAINED = TrainConfig()  # what `microgpt train` trains when nothing else is said
# steps per timed window: about half a second each on a 2-core VM (c1-b1's 0.2 s windows put its %ref anywhere
# from 77% to 109% in runs minutes apart; 0.5 s windows, 91-96%)
CONFIGS = {
    "c1-b1": BenchConfig("c1-b1", C1, 1, 250),
    "c1-b16": BenchConfig("c1-b16", C1, 16, 35),
    "c2-b8": BenchConfig("c2-b8", C2, 8, 2),
    "default": BenchConfig("default", TRAINED.model, TRAINED.batch_size, 4),  # the shape people train
}
GENERATION_BATCHES = (1, 8)
BATCH_POOL_TOKENS = 1 << 18  # random tokens the training steps go through (2 MiB; c1-b1: 2,702 batches, a
# run of 7 windows takes 1,752 of them)
MIN_POOL_BATCHES = 64  # however big a batch, never fewer batches than this in the stream


def describe_model(m: GPTConfig) -> str:
    """A model's shape in words, read from the config itself (the help text and the docs never restate it)."""
    return (f"vocab {m.vocab_size}, {m.n_layer} layer{'s' * (m.n_layer > 1)}, n_embd {m.n_embd}, "
            f"{m.n_head} heads, block {m.block_size}")


def describe(cfg: BenchConfig) -> str:
    """A benchmark config in words: the model's shape and the batch."""
    note = " (the default preset: what `microgpt train` trains)" if cfg.name == "default" else ""
    return f"{describe_model(cfg.model)}, batch {cfg.batch}{note}"


THREADS = 2  # threads for both sides of the comparison unless `bench --threads` says otherwise


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _batch_pool(cfg: BenchConfig, seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Random (inputs, targets) batches holding BATCH_POOL_TOKENS tokens, drawn once for every contestant."""
    return _random_batches(cfg.model.vocab_size, cfg.batch, cfg.model.block_size, seed)


@functools.lru_cache(maxsize=1)
def _random_batches(vocab: int, batch: int, block: int, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    count = max(MIN_POOL_BATCHES, BATCH_POOL_TOKENS // (batch * (block + 1)))
    tokens = np.random.default_rng(seed).integers(0, vocab, (count, batch, block + 1))
    tokens.flags.writeable = False
    return tuple((t[:, :-1], t[:, 1:]) for t in tokens)


def batches(cfg: BenchConfig, seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The batches a contestant trains on, step after step: each step a new one, as in training. One batch
    repeated is learnt by heart within about 1,000 steps of c1-b1 (loss 0, then logits past -100), and a
    step's cost would then hang on that state (probably subnormal floats and the fused loss's shifted exp),
    not on the model's size."""
    return itertools.cycle(_batch_pool(cfg, seed))


def ours_train_step(cfg: BenchConfig, fused: bool = True, seed: int = 0) -> Callable[[], None]:
    """One Adam step. fused: `GPT.loss` (what the trainer runs: lm_head and cross-entropy fused); otherwise the
    public path a learner writes: F.cross_entropy(model(idx), targets), backward(), step()."""
    model = GPT(cfg.model, seed=seed)
    optimizer = Adam(model.parameters(), lr=1e-3)
    data = batches(cfg, seed)

    def step() -> None:
        x, y = next(data)
        optimizer.zero_grad()
        loss = model.loss(x, y) if fused else F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def reference_train_step(cfg: BenchConfig, seed: int = 0) -> Callable[[], None]:
    """The same step in hand-written NumPy (microgpt.bench.reference): no autograd at all."""
    step = ReferenceStep(GPT(cfg.model, seed=seed))
    data = batches(cfg, seed)
    return lambda: step(*next(data))


def torch_train_step(cfg: BenchConfig, seed: int = 0, threads: int = THREADS) -> Callable[[], None]:
    import torch
    import torch.nn.functional as TF

    from microgpt.bench.torch_gpt import TorchGPT

    torch.set_num_threads(threads)
    model = TorchGPT(cfg.model, GPT(cfg.model, seed=seed).state_dict())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.85, 0.99), eps=1e-8)
    # the same stream as batches(), turned into tensors before any window: no conversion inside the timing
    data = itertools.cycle([(torch.tensor(x), torch.tensor(y).reshape(-1)) for x, y in _batch_pool(cfg, seed)])

    def step() -> None:
        x, y = next(data)
        optimizer.zero_grad()
        loss = TF.cross_entropy(model(x).reshape(-1, cfg.model.vocab_size), y)
        loss.backward()
        optimizer.step()

    return step


PROMPT_TOKENS = 8


def ours_generate(cfg: BenchConfig, new_tokens: int, batch: int = 1) -> Callable[[], None]:
    """Greedy KV-cached generation: batch 1 through `generate` (what chat runs), a batch through the model."""
    model = GPT(cfg.model, seed=0)
    prompt = np.tile(np.arange(1, PROMPT_TOKENS + 1), (batch, 1))
    if batch == 1:
        settings = SamplingSettings(temperature=0.0, top_k=0, top_p=1.0, repetition_penalty=1.0,
                                    max_new_tokens=new_tokens)

        def run_one() -> None:
            for _ in generate(model, prompt[0].tolist(), settings):
                pass

        return run_one

    def run_batch() -> None:
        with no_grad():
            cache = model.new_cache(batch)
            logits = model(prompt, cache).data
            for _ in range(new_tokens):
                logits = model(logits[:, -1].argmax(axis=-1)[:, None], cache).data

    return run_batch


def torch_generate(cfg: BenchConfig, new_tokens: int, batch: int = 1, threads: int = THREADS) -> Callable[[], None]:
    import torch

    from microgpt.bench.torch_gpt import TorchGPT

    torch.set_num_threads(threads)
    model = TorchGPT(cfg.model, GPT(cfg.model, seed=0).state_dict())
    prompt = torch.arange(1, PROMPT_TOKENS + 1).repeat(batch, 1)

    @torch.no_grad()
    def run() -> None:
        cache: list = [None] * cfg.model.n_layer
        logits = model(prompt, cache)
        for _ in range(new_tokens):
            logits = model(logits[:, -1].argmax(dim=-1, keepdim=True), cache)

    return run


def _windows(contestants: dict[str, Callable[[], None]], repeats: int, windows: int, warmup: int,
             pause: float, clock: Callable[[], float] = time.perf_counter) -> dict[str, list[float]]:
    """Seconds per call of each contestant, one entry per timed window, order alternating.

    clock: the wall clock, or time.process_time (this process's CPU time, all threads): on a machine shared
    with other programs the CPU time of a one-thread run is far steadier than its wall time."""
    for fn in contestants.values():
        for _ in range(warmup):
            fn()
    seconds: dict[str, list[float]] = {name: [] for name in contestants}
    names = list(contestants)
    for w in range(windows):
        for name in names if w % 2 == 0 else reversed(names):
            time.sleep(pause)
            start = clock()
            for _ in range(repeats):
                contestants[name]()
            seconds[name].append((clock() - start) / repeats)
    return seconds


def ratio_interval(ours: list[float], other: list[float], resamples: int = 2000) -> tuple[float, float]:
    """A 95% interval for the ratio of two contestants' speeds, from their seconds per call window by window.

    The ratio printed is median(other) / median(ours). Window w of each was timed moments apart, so the pairs
    are resampled together (a bootstrap): the middle 95% of the ratio over the resamples is how far another
    run on this machine, in its present state, could put it. A slow drift of the machine over minutes is not
    in it (a later run can land outside). Seeded: the same windows always give the same interval.
    """
    a, b = np.asarray(ours), np.asarray(other)
    picks = np.random.default_rng(0).integers(0, len(a), (resamples, len(a)))
    ratios = np.median(b[picks], axis=1) / np.median(a[picks], axis=1)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return float(low), float(high)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_config(cfg: BenchConfig, windows: int = 7, with_torch: bool = True, gen_tokens: int = 64,
                 pause: float = 0.3, threads: int = THREADS, clock: Callable[[], float] = time.perf_counter) -> dict:
    """One row of the table: tokens/s (median over windows) of every contestant, and the ratios.

    train: `fused` (GPT.loss), `public` (F.cross_entropy(model(idx), targets)), `reference` (hand-written
    NumPy, no autograd) and `torch`; generate_b1 / generate_b8: ours and torch's greedy KV-cached generation.
    """
    set_threads(threads)  # our side's split; restored to one part per core afterwards
    try:
        return _bench_config(cfg, windows, with_torch, gen_tokens, pause, threads, clock)
    finally:
        set_threads(0)


def _bench_config(cfg: BenchConfig, windows: int, with_torch: bool, gen_tokens: int, pause: float, threads: int,
                  clock: Callable[[], float]) -> dict:
    row: dict = {"config": cfg.name, "batch": cfg.batch, "block_size": cfg.model.block_size, "threads": threads,
                 "parameters": GPT(cfg.model, seed=0).num_parameters()}
    train = {"fused": ours_train_step(cfg), "public": ours_train_step(cfg, fused=False),
             "reference": reference_train_step(cfg)}
    if with_torch:
        train["torch"] = torch_train_step(cfg, threads=threads)
    runs = [("train", train, cfg.steps_per_window, cfg.tokens_per_step)]
    for b in GENERATION_BATCHES:
        gen = {"ours": ours_generate(cfg, gen_tokens, b)}
        if with_torch:
            gen["torch"] = torch_generate(cfg, gen_tokens, b, threads)
        runs.append((f"generate_b{b}", gen, 5 if b == 1 else 2, gen_tokens * b))  # one reply is too short to time
    timed: dict[str, dict[str, list[float]]] = {}
    for label, contestants, repeats, per_call in runs:
        seconds = timed[label] = _windows(contestants, repeats, windows, warmup=2, pause=pause, clock=clock)
        for name, values in seconds.items():
            row[f"{label}_{name}_tok_s"] = per_call / float(np.median(values))

    def compare(key: str, label: str, ours: str, other: str) -> None:
        """row[key]: ours' tokens/s over other's; row[key + '_interval']: its 95% interval (ratio_interval)."""
        row[key] = row[f"{label}_{ours}_tok_s"] / row[f"{label}_{other}_tok_s"]
        row[f"{key}_interval"] = ratio_interval(timed[label][ours], timed[label][other])

    for path in ("fused", "public"):
        compare(f"train_{path}_vs_reference", "train", path, "reference")
        if with_torch:
            compare(f"train_{path}_ratio", "train", path, "torch")
    if with_torch:
        compare("train_reference_ratio", "train", "reference", "torch")
        for b in GENERATION_BATCHES:
            compare(f"generate_b{b}_ratio", f"generate_b{b}", "ours", "torch")
    row["peak_rss_mb"] = peak_rss_mb()
    return row


@contextlib.contextmanager
def competing_process() -> Iterator[None]:
    """Another program busy on one core for the duration (`bench --busy`): a Python loop that never sleeps."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it get going
        yield
    finally:
        busy.kill()
        busy.wait()


def machine_description() -> str:
    """The CPU model, its cores, and the BLAS library and kernel NumPy uses: a ratio holds only for these."""
    return f"{cpu_model()}, {usable_cores()} cores; numpy {np.__version__} on {blas_kernels()}"
