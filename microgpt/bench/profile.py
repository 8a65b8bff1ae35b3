"""`bench --profile`: where one training step's time goes, op by op, forward and backward.

Every op ends by wrapping its result with `Tensor._result`; while profiling, that function is swapped for one
that charges the time since the previous op ended to this op (its forward) and wraps the op's backward in a
timer. The step is the fused path (`GPT.loss`) or the public one (`F.cross_entropy(model(idx), targets)`);
Adam and the graph walk are timed as a whole. With the wall clock, split ops include their helper threads;
`bench --profile --threads 1 --cpu-time` uses this thread's CPU time, steady on a shared machine.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from microgpt.autograd import Tensor
from microgpt.autograd import functional as F
from microgpt.bench.throughput import BenchConfig, batches
from microgpt.nn import GPT, Adam


def _op_name(backward: Callable) -> str:
    """'linear.<locals>.backward' -> 'linear'; 'Tensor.__add__.<locals>.<lambda>' -> 'Tensor.__add__'."""
    return backward.__qualname__.split(".<locals>")[0]


def profile_step(cfg: BenchConfig, fused: bool = True, steps: int = 5,
                 clock: Callable[[], float] = time.perf_counter) -> dict:
    """Milliseconds per step: forward and backward per op, plus the totals, Adam and the graph walk."""
    model = GPT(cfg.model, seed=0)
    optimizer = Adam(model.parameters(), lr=1e-3)
    stream = batches(cfg)
    forward: Counter[str] = Counter()
    backward: Counter[str] = Counter()
    last = [0.0]
    plain_result = Tensor._result

    def timed_result(data, parents, backward_fn):
        now = clock()
        name = _op_name(backward_fn)
        forward[name] += now - last[0]

        def timed_backward(g, fn=backward_fn, name=name):
            start = clock()
            grads = fn(g)
            backward[name] += clock() - start
            return grads

        timed_backward.__dict__.update(backward_fn.__dict__)  # what the op attached (linear: its inputs)
        out = plain_result(data, parents, timed_backward)
        last[0] = clock()
        return out

    def step() -> tuple[float, float]:
        x, y = next(stream)
        optimizer.zero_grad()
        last[0] = clock()
        loss = model.loss(x, y) if fused else F.cross_entropy(model(x), y)
        start = clock()
        loss.backward()
        middle = clock()
        optimizer.step()
        return middle - start, clock() - middle

    step()  # warm up
    Tensor._result = staticmethod(timed_result)
    try:
        totals = np.array([step() for _ in range(steps)]).sum(axis=0)
    finally:
        Tensor._result = staticmethod(plain_result)
    ms = 1000.0 / steps
    ops = {name: {"forward_ms": forward[name] * ms, "backward_ms": backward[name] * ms}
           for name in sorted(set(forward) | set(backward), key=lambda n: -(forward[n] + backward[n]))}
    return {"config": cfg.name, "path": "fused" if fused else "public",
            "forward_ms": sum(forward.values()) * ms, "backward_ms": totals[0] * ms, "adam_ms": totals[1] * ms,
            "graph_walk_ms": (totals[0] - sum(backward.values())) * ms, "ops": ops}


def format_profile(result: dict) -> str:
    """A table: one line per op, its share of the step."""
    step = result["forward_ms"] + result["backward_ms"] + result["adam_ms"]
    lines = [(f"{result['config']} ({result['path']} path): {step:.1f} ms per step = forward "
              f"{result['forward_ms']:.1f} + backward {result['backward_ms']:.1f} + Adam {result['adam_ms']:.1f}"),
             f"  {'op':<32} {'forward ms':>10} {'backward ms':>11} {'share':>6}"]
    rows = [(name, t["forward_ms"], t["backward_ms"]) for name, t in result["ops"].items()]
    rows += [("(graph walk)", 0.0, result["graph_walk_ms"]), ("(Adam)", 0.0, result["adam_ms"])]
    for name, f, b in rows:
        lines.append(f"  {name:<32} {f:>10.2f} {b:>11.2f} {100 * (f + b) / step:>5.1f}%")
    return "\n".join(lines)
