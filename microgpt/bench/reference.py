"""A training step of the GPT written by hand in NumPy: forward, manual backward, Adam; no autograd.

`bench` times it beside the autograd step, so the cost of the autograd itself (graph bookkeeping, the
generic ops' extra passes and copies) is measured in every run. It computes exactly what
`F.cross_entropy(model(idx), targets)`, `backward()` and `Adam.step()` compute for the default architecture
(relu, no norm gain); tests/test_bench_reference.py checks that. The big products and the attention are
split over the cores with the same helper as the autograd's ops, and every buffer is reused across steps,
as a careful hand-written loop would.
"""

from __future__ import annotations

import math

import numpy as np

from microgpt.autograd.attention import turn_qk
from microgpt.autograd.functional import RMS_EPS
from microgpt.autograd.parallel import MAC_WORK, PASS_WORK, run_split
from microgpt.nn import GPT, Adam, OptimSettings


def _gemm(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b, rows of a split over the cores."""

    def rows(lo: int, hi: int) -> None:
        np.matmul(a[lo:hi], b, out=out[lo:hi])

    run_split(rows, a.shape[0], a.shape[0] * b.shape[0] * b.shape[1] * MAC_WORK)
    return out


def _rms(x: np.ndarray, eps: float = RMS_EPS) -> tuple[np.ndarray, np.ndarray]:
    """y = x r with r = (mean(x^2) + eps)^(-1/2) per row."""
    r = 1.0 / np.sqrt((x * x).sum(axis=1, keepdims=True) * (1.0 / x.shape[1]) + eps)
    return x * r, r


def _rms_back(g: np.ndarray, y: np.ndarray, r: np.ndarray) -> np.ndarray:
    """dL/dx = r (g - y mean(g y))."""
    return r * (g - y * ((g * y).sum(axis=1, keepdims=True) * (1.0 / y.shape[1])))


class ReferenceStep:
    """A copy of `model` trained by hand-written NumPy; call it with (idx, targets) for one Adam step."""

    def __init__(self, model: GPT, lr: float = 1e-3,
                 betas: tuple[float, float] = (OptimSettings.beta1, OptimSettings.beta2)) -> None:
        c = model.config
        if c.activation != "relu" or c.norm_gain:
            raise ValueError("the reference step covers the default architecture (relu, no norm gain)")
        self.config = c
        self.model = GPT(c, dtype=model.wte.weight.dtype)
        self.model.load_state_dict(model.state_dict())
        self.adam = Adam(self.model.parameters(), lr=lr, betas=betas)
        self.w = self._views(self.adam.flat)
        self._buffers: dict[str, np.ndarray] = {}

    def _views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Each parameter's view of one of Adam's flat buffers (weights or gradients), by name; wq, wk and wv sit
        one after another, so they are also one (3C, C) matrix, `...attn_wqkv`."""
        offset, views = 0, {}
        for name, p in self.model.named_parameters():
            views[name] = flat[offset:offset + p.size].reshape(p.shape)
            if name.endswith("attn_wq"):
                views[name[:-1] + "qkv"] = flat[offset:offset + 3 * p.size].reshape(-1, p.shape[1])
            offset += p.size
        return views

    def _buffer(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A work array reused from step to step (a fresh big array costs page faults)."""
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape:
            buf = self._buffers[name] = np.empty(shape, dtype=self.adam.flat.dtype)
        return buf

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """P = softmax(q k^T / sqrt(D) + causal mask), O = P v on (B*H, T, D) slices."""
        n, T, D = q.shape
        P = self._buffer(f"P{layer}", (n, T, T))
        O = self._buffer(f"O{layer}", (n, T, D))
        mask = np.triu(np.full((T, T), -np.inf, dtype=q.dtype), k=1)
        scale = 1.0 / math.sqrt(D)

        def part(lo: int, hi: int) -> None:
            S = P[lo:hi]
            np.matmul(q[lo:hi], k[lo:hi].transpose(0, 2, 1), out=S)
            S *= scale
            S += mask
            S -= S.max(axis=2, keepdims=True)
            np.exp(S, out=S)
            S /= S.sum(axis=2, keepdims=True)
            np.matmul(S, v[lo:hi], out=O[lo:hi])

        run_split(part, n, 12 * P.size * PASS_WORK)
        return P, O

    @staticmethod
    def _attention_back(dO: np.ndarray, q: np.ndarray, k: np.ndarray, v: np.ndarray, P: np.ndarray,
                        O: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """dV = P^T dO, dS = P (dO V^T - rowsum(dO O)), dQ = dS K / sqrt(D), dK = dS^T Q / sqrt(D)."""
        dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
        scale = 1.0 / math.sqrt(q.shape[2])

        def part(lo: int, hi: int) -> None:
            np.matmul(P[lo:hi].transpose(0, 2, 1), dO[lo:hi], out=dv[lo:hi])
            dS = np.matmul(dO[lo:hi], v[lo:hi].transpose(0, 2, 1))
            dS -= (dO[lo:hi] * O[lo:hi]).sum(axis=2, keepdims=True)
            dS *= P[lo:hi]
            dS *= scale
            np.matmul(dS, k[lo:hi], out=dq[lo:hi])
            np.matmul(dS.transpose(0, 2, 1), q[lo:hi], out=dk[lo:hi])

        run_split(part, q.shape[0], 12 * P.size * PASS_WORK)
        return dq, dk, dv

    def __call__(self, idx: np.ndarray, targets: np.ndarray) -> float:
        self.g = self._views(self.adam.flat_grad)  # this step's gradient buffer (Adam gives a fresh one each step)
        for name, p in self.model.named_parameters():
            p.grad = self.g[name]  # every one is written below: Adam takes them as they are
        c, w, g = self.config, self.w, self.g
        B, T = idx.shape
        C, H, V = c.n_embd, c.n_head, c.vocab_size
        D, N = C // H, B * T
        g["wte"].fill(0)  # the only gradient added to rather than written (the others are products' outputs)
        ids = idx.reshape(-1)
        # ----- forward, keeping what the backward needs
        turns = self.model.rotary_turns(slice(0, T))  # None with a learned position table
        x, r0 = _rms((w["wte"][idx] if turns is not None else w["wte"][idx] + w["wpe"][:T]).reshape(N, C))
        embedded = x
        saved = []
        for i in range(c.n_layer):
            p = f"layer{i}."
            h1, r1 = _rms(x)
            qkv = _gemm(h1, w[p + "attn_wqkv"].T, self._buffer(f"qkv{i}", (N, 3 * C)))
            if turns is not None:
                qkv = turn_qk(qkv.reshape(B, T, 3 * C), turns).reshape(N, 3 * C)
            q, k, v = (np.ascontiguousarray(qkv[:, j * C:(j + 1) * C].reshape(B, T, H, D).transpose(0, 2, 1, 3))
                       .reshape(B * H, T, D) for j in range(3))
            P, O = self._attention(q, k, v, i)
            y = O.reshape(B, H, T, D).transpose(0, 2, 1, 3).reshape(N, C)
            x1 = x + _gemm(y, w[p + "attn_wo"].T, self._buffer(f"ao{i}", (N, C)))
            h2, r2 = _rms(x1)
            a = _gemm(h2, w[p + "mlp_fc1"].T, self._buffer(f"a{i}", (N, 4 * C)))
            np.maximum(a, 0, out=a)
            x2 = x1 + _gemm(a, w[p + "mlp_fc2"].T, self._buffer(f"mo{i}", (N, C)))
            saved.append((h1, r1, q, k, v, P, O, y, h2, r2, a))
            x = x2
        logits = _gemm(x, w["lm_head"].T, self._buffer("logits", (N, V)))
        t = targets.reshape(-1)
        rows = np.arange(N)
        top = logits.max(axis=1, keepdims=True)
        picked = logits[rows, t]
        logits -= top
        np.exp(logits, out=logits)
        total = logits.sum(axis=1)
        loss = float(np.mean(np.log(total) + top[:, 0] - picked))
        # ----- backward: dlogits = (softmax - onehot) / N, written over the logits
        logits *= (1.0 / (N * total))[:, None].astype(logits.dtype)
        logits[rows, t] -= 1.0 / N
        _gemm(logits.T, x, g["lm_head"])
        dx = _gemm(logits, w["lm_head"], self._buffer("dx", (N, C)))
        for i in reversed(range(c.n_layer)):
            p = f"layer{i}."
            h1, r1, q, k, v, P, O, y, h2, r2, a = saved[i]
            _gemm(dx.T, a, g[p + "mlp_fc2"])
            da = _gemm(dx, w[p + "mlp_fc2"], self._buffer("da", (N, 4 * C)))
            da *= a > 0
            _gemm(da.T, h2, g[p + "mlp_fc1"])
            dx = dx + _rms_back(_gemm(da, w[p + "mlp_fc1"], self._buffer("dh", (N, C))), h2, r2)
            _gemm(dx.T, y, g[p + "attn_wo"])
            dy = _gemm(dx, w[p + "attn_wo"], self._buffer("dy", (N, C)))
            dO = np.ascontiguousarray(dy.reshape(B, T, H, D).transpose(0, 2, 1, 3)).reshape(B * H, T, D)
            dq, dk, dv = self._attention_back(dO, q, k, v, P, O)
            dqkv = np.concatenate([d.reshape(B, H, T, D).transpose(0, 2, 1, 3).reshape(N, C) for d in (dq, dk, dv)],
                                  axis=1)
            if turns is not None:  # turned back: a rotation's transpose
                dqkv = turn_qk(dqkv.reshape(B, T, 3 * C), np.conj(turns)).reshape(N, 3 * C)
            _gemm(dqkv.T, h1, g[p + "attn_wqkv"])
            dx = dx + _rms_back(_gemm(dqkv, w[p + "attn_wqkv"], self._buffer("dh", (N, C))), h1, r1)
        dx = _rms_back(dx, embedded, r0)
        np.add.at(g["wte"].reshape(-1), (ids[:, None] * C + np.arange(C)).reshape(-1), dx.reshape(-1))
        if turns is None:
            g["wpe"][:T] = dx.reshape(B, T, C).sum(axis=0)
            g["wpe"][T:] = 0
        self.adam.step()
        return loss
