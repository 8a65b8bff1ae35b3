"""The layers of a GPT, each a small Module over the autograd Tensor."""

from __future__ import annotations

import numpy as np

from microgpt.autograd import Tensor, concatenate, is_grad_enabled
from microgpt.autograd import functional as F
from microgpt.nn.module import Module, Parameter

INIT_STD = 0.08  # the standard deviation weights start with (the original's); GPTConfig.init_std reads it


def normal_init(rng: np.random.Generator, shape: tuple[int, ...], std: float, dtype: np.dtype) -> Parameter:
    """A weight drawn from N(0, std^2), as the original microgpt initialises every matrix."""
    return Parameter(rng.normal(0.0, std, size=shape).astype(dtype), dtype=dtype)


class Linear(Module):
    """y = x @ W.T (+ b), with W stored (out_features, in_features)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False, *,
                 rng: np.random.Generator, std: float = INIT_STD, dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.weight = normal_init(rng, (out_features, in_features), std, dtype)
        self.bias = Parameter(np.zeros(out_features, dtype=dtype), dtype=dtype) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = F.linear(x, self.weight)
        return y if self.bias is None else y + self.bias


class Embedding(Module):
    """A lookup table: row i is the vector for token (or position) i."""

    def __init__(self, num_embeddings: int, dim: int, *, rng: np.random.Generator, std: float = INIT_STD,
                 dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.weight = normal_init(rng, (num_embeddings, dim), std, dtype)

    def forward(self, idx: np.ndarray) -> Tensor:
        return self.weight[check_ids(idx, self.weight.shape[0])]


def check_ids(idx: np.ndarray, count: int) -> np.ndarray:
    """idx as an integer array, every id in [0, count); ValueError naming the first that is not (NumPy would
    read -1 as the last row without a word)."""
    if isinstance(idx, Tensor):
        raise TypeError("token ids are a NumPy array or list of integers, not a Tensor (they have no gradient)")
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, not {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= count):
        bad = idx[(idx < 0) | (idx >= count)].flat[0]
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {count})")
    return idx


class RMSNorm(Module):
    """x / rms(x) over the last dim; the learnable gain is optional and off by default (as the original)."""

    def __init__(self, dim: int, learnable: bool = False, eps: float = F.RMS_EPS, dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=dtype), dtype=dtype) if learnable else None

    def forward(self, x: Tensor) -> Tensor:
        return F.rms_norm(x, self.weight, self.eps)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """The same on a plain array, with no graph (generation's step)."""
        return F.rms_rows(x, None if self.weight is None else self.weight.data, self.eps)


class Dropout(Module):
    """Randomly zero activations while training (F.dropout). It is the identity in eval() mode and whenever no
    graph is recorded (under no_grad: validation, held-out evaluation, sampling), so no caller can forget it."""

    def __init__(self, p: float, seed: int | None = None) -> None:
        super().__init__()
        self.p = p
        self.rng = np.random.default_rng(seed)

    def forward(self, x: Tensor) -> Tensor:
        active = self.training and self.p > 0 and is_grad_enabled()
        return F.dropout(x, self.p, self.rng) if active else x


class KVCache:
    """Keys and values of the positions seen so far, one buffer pair per layer, so a new token costs
    one position's work instead of a re-run of the whole prefix."""

    def __init__(self, n_layer: int, batch: int, n_head: int, block_size: int, head_dim: int,
                 dtype: np.dtype) -> None:
        shape = (batch, n_head, block_size, head_dim)
        self.keys = [np.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.values = [np.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.length = 0  # positions already stored
        self._qkv_weights: dict[int, Tensor] = {}

    def qkv_weight(self, layer: int, wq: Tensor, wk: Tensor, wv: Tensor) -> Tensor:
        """The layer's q, k, v weights side by side (3C, C), joined on first use: one product per new token
        instead of three. Generation runs under no_grad with the weights fixed for the cache's lifetime."""
        if layer not in self._qkv_weights:
            self._qkv_weights[layer] = Tensor(np.concatenate([wq.data, wk.data, wv.data]), requires_grad=False)
        return self._qkv_weights[layer]

    def positions(self, T: int) -> slice:
        """The positions of the next T tokens, the same for every row; ValueError past the block size."""
        end = self.length + T
        if end > self.keys[0].shape[2]:
            raise ValueError(f"sequence of {end} tokens is longer than block_size {self.keys[0].shape[2]}")
        return slice(self.length, end)

    def append(self, layer: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Store this step's k, v (B, H, T, D) after the cached ones; return everything so far."""
        end = self.length + k.shape[2]
        self.keys[layer][:, :, self.length:end] = k
        self.values[layer][:, :, self.length:end] = v
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Causal attention of the new queries over every cached position plus the new ones."""
        k_all, v_all = self.append(layer, k.data, v.data)
        keys, values = Tensor(k_all, requires_grad=False), Tensor(v_all, requires_grad=False)
        return F.scaled_dot_product_attention(q, keys, values, causal=True)

    def attend_step(self, layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        """attend() for generation's step on plain arrays: one new query per row, which sees every key."""
        k_all, v_all = self.append(layer, k, v)
        return F.attend_newest(q, k_all, v_all)

    def advance(self, T: int) -> None:
        """Count the T positions every layer has just stored."""
        self.length += T


class CausalSelfAttention(Module):
    """Multi-head self-attention where each position sees only itself and earlier positions."""

    def __init__(self, n_embd: int, n_head: int, *, rng: np.random.Generator, std: float = INIT_STD,
                 dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.n_head = n_head
        self.wq = Linear(n_embd, n_embd, rng=rng, std=std, dtype=dtype)
        self.wk = Linear(n_embd, n_embd, rng=rng, std=std, dtype=dtype)
        self.wv = Linear(n_embd, n_embd, rng=rng, std=std, dtype=dtype)
        self.wo = Linear(n_embd, n_embd, rng=rng, std=std, dtype=dtype)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                turns: np.ndarray | None = None) -> Tensor:
        """x (B, T, C) -> (B, T, C); `turns` (F.rotary_turns of the positions) when the model uses RoPE."""
        B, T, C = x.shape
        H, D = self.n_head, C // self.n_head
        # q, k, v from one (3C, C) product, packed; generation's cache keeps the joined weights
        joined = cache is None or is_grad_enabled()
        qkv = F.linear(x, concatenate([self.wq.weight, self.wk.weight, self.wv.weight]) if joined
                       else cache.qkv_weight(layer, self.wq.weight, self.wk.weight, self.wv.weight))
        if turns is not None:
            qkv = F.rotary(qkv, turns)
        if cache is None:  # the heads handled in one fused op
            return self.wo(F.causal_self_attention(qkv, H))
        heads = qkv.reshape(B, T, 3, H, D).transpose(2, 0, 3, 1, 4)  # (3, B, H, T, D)
        q, k, v = heads[0], heads[1], heads[2]
        y = cache.attend(layer, q, k, v)  # (B, H, T, D): a KVCache, or a SlotCache whose rows differ in length
        return self.wo(y.transpose(0, 2, 1, 3).reshape(B, T, C))  # heads side by side again


class MLP(Module):
    """Two linear maps with a non-linearity between them, 4x wider in the middle."""

    def __init__(self, n_embd: int, *, activation: str, rng: np.random.Generator, std: float = INIT_STD,
                 dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.activation = activation
        self.fc1 = Linear(n_embd, 4 * n_embd, rng=rng, std=std, dtype=dtype)
        self.fc2 = Linear(4 * n_embd, n_embd, rng=rng, std=std, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if self.activation == "relu":  # one fused op: the same as fc2(fc1(x).relu()), fewer passes
            return F.relu_mlp(x, self.fc1.weight, self.fc2.weight)
        return self.fc2(self.fc1(x).gelu())


class Block(Module):
    """One transformer layer: x + attn(norm(x)), then x + mlp(norm(x)) (pre-norm residual stream)."""

    def __init__(self, n_embd: int, n_head: int, *, activation: str, norm_gain: bool, dropout: float,
                 rng: np.random.Generator, std: float = INIT_STD, dtype: np.dtype = np.float32) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(n_embd, learnable=norm_gain, dtype=dtype)
        self.attn = CausalSelfAttention(n_embd, n_head, rng=rng, std=std, dtype=dtype)
        self.mlp_norm = RMSNorm(n_embd, learnable=norm_gain, dtype=dtype)
        self.mlp = MLP(n_embd, activation=activation, rng=rng, std=std, dtype=dtype)
        self.attn_drop = Dropout(dropout)
        self.mlp_drop = Dropout(dropout)

    def forward(self, x: Tensor, cache: KVCache | None = None, layer: int = 0,
                turns: np.ndarray | None = None) -> Tensor:
        x = x + self.attn_drop(self.attn(self.attn_norm(x), cache, layer, turns))
        return x + self.mlp_drop(self.mlp(self.mlp_norm(x)))

    def step(self, x: np.ndarray, cache: KVCache, layer: int, turns: np.ndarray | None = None) -> np.ndarray:
        """forward() for generation's step, one new token per row (B, 1, C), with no graph: the same arithmetic
        on plain arrays, because at one token a Tensor per op costs more than the op (tests/test_gpt.py).
        The wide products are made as W h^T, (out, B), rather than h W^T: for so few rows OpenBLAS runs that
        form faster (it packs the whole of W^T for the other; c2's MLP at batch 8: 46 -> 34 us)."""
        B, _, C = x.shape
        attn, mlp = self.attn, self.mlp
        H = attn.n_head
        h = self.attn_norm.apply(x).reshape(B, C)
        qkv = (cache.qkv_weight(layer, attn.wq.weight, attn.wk.weight, attn.wv.weight).data @ h.T).T  # (B, 3C)
        if turns is not None:
            qkv = F.turn_qk(qkv, turns.reshape(-1, turns.shape[-1]))
        q, k, v = qkv.reshape(B, 3, H, 1, C // H).transpose(1, 0, 2, 3, 4)  # each (B, H, 1, D)
        y = cache.attend_step(layer, q, k, v).reshape(B, C)  # heads side by side again
        x = x + (y @ attn.wo.weight.data.T)[:, None]
        h = self.mlp_norm.apply(x).reshape(B, C)
        a = mlp.fc1.weight.data @ h.T  # (4C, B)
        a = np.maximum(a, 0, out=a) if mlp.activation == "relu" else Tensor(a, requires_grad=False).gelu().data
        return x + (mlp.fc2.weight.data @ a).T[:, None]
