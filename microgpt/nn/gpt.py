"""The microgpt model: token + position embeddings, a stack of pre-norm transformer blocks, a linear head.

x = wte[idx] + wpe[pos]; x = rmsnorm(x)
for each layer:  x = x + Wo attn(rmsnorm(x));  x = x + W2 act(W1 rmsnorm(x))   (act: relu, or gelu)
logits = lm_head(x)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from microgpt.autograd import Tensor
from microgpt.autograd import functional as F
from microgpt.nn.layers import Block, Embedding, KVCache, Linear
from microgpt.nn.module import Module, Parameter


@dataclass
class GPTConfig:
    """Everything that fixes the model's shape; stored inside every checkpoint."""

    vocab_size: int = 2048
    n_layer: int = 1
    n_embd: int = 48
    n_head: int = 4
    block_size: int = 96
    activation: str = "relu"  # "gelu" is an option beyond the original
    norm_gain: bool = False  # a learnable RMSNorm gain, beyond the original
    init_std: float = 0.08

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"activation must be 'relu' or 'gelu', not {self.activation!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def _original_name(path: str) -> str:
    """Module path -> the original Go checkpoint's name: 'layer0.attn.wq.weight' -> 'layer0.attn_wq'."""
    return path.removesuffix(".weight").replace(".attn.", ".attn_").replace(".mlp.", ".mlp_")


class GPT(Module):
    """A decoder-only transformer whose parameter names match the original project's checkpoints."""

    def __init__(self, config: GPTConfig, dtype: np.dtype = np.float32, seed: int | None = None) -> None:
        super().__init__()
        self.config = config
        rng = np.random.default_rng(seed)
        dt = np.dtype(dtype)
        C, std = config.n_embd, config.init_std
        self.wte = Embedding(config.vocab_size, C, rng=rng, std=std, dtype=dt)
        self.wpe = Embedding(config.block_size, C, rng=rng, std=std, dtype=dt)
        for i in range(config.n_layer):
            setattr(self, f"layer{i}", Block(C, config.n_head, activation=config.activation,
                                             norm_gain=config.norm_gain, rng=rng, std=std, dtype=dt))
        self.lm_head = Linear(C, config.vocab_size, rng=rng, std=std, dtype=dt)

    @property
    def blocks(self) -> list[Block]:
        return [getattr(self, f"layer{i}") for i in range(self.config.n_layer)]

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:  # type: ignore[override]
        """Names exactly as in the original checkpoint `state`: wte, wpe, lm_head, layer{i}.attn_wq, ..."""
        return [(_original_name(name), p) for name, p in super().named_parameters(prefix)]

    def hidden(self, idx: np.ndarray, cache: KVCache | None = None) -> Tensor:
        """Token ids (B, T) -> the last block's output (B, T, C), the input of lm_head."""
        idx = np.asarray(idx)
        if idx.ndim == 1:
            idx = idx[None, :]
        T = idx.shape[1]
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        pos = cache.positions(T) if cache is not None else slice(0, T)  # a slice, or (B, T) ids when rows differ
        x = self.wte(idx) + self.wpe.weight[pos]  # (B, T, C)
        x = F.rms_norm(x)
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.advance(T)
        return x

    def forward(self, idx: np.ndarray, cache: KVCache | None = None) -> Tensor:
        """Token ids (B, T) -> logits (B, T, vocab). With a cache, idx holds only the new positions."""
        return self.lm_head(self.hidden(idx, cache))  # (B, T, vocab)

    def loss(self, idx: np.ndarray, targets: np.ndarray) -> Tensor:
        """Mean next-token cross-entropy, equal to F.cross_entropy(self(idx), targets); lm_head and the loss
        are fused (F.linear_cross_entropy), so the (B, T, vocab) logits are never stored."""
        return F.linear_cross_entropy(self.hidden(idx), self.lm_head.weight, targets)

    def new_cache(self, batch: int = 1) -> KVCache:
        """An empty KV cache for generating `batch` sequences at once."""
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head, self.wte.weight.dtype)
