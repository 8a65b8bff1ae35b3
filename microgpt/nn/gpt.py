"""The microgpt model: token embeddings, a stack of pre-norm transformer blocks, a linear head.

x = wte[idx] (+ wpe[pos] with positions "learned"); x = rmsnorm(x)
for each layer:  x = x + Wo attn(rmsnorm(x));  x = x + W2 act(W1 rmsnorm(x))   (act: relu, or gelu)
logits = lm_head(x)        (or x @ wte^T when the input and output embeddings are tied)

With positions "rope" (the default) there is no wpe: attention turns each head's q and k by their
positions instead (F.rotary), so it sees how far apart two tokens are. Beyond the original, also: RoPE
and zero-initialised residual outputs and output layer (both on by default, chosen by measurement); and,
off unless asked for, dropout on the embeddings and on each residual branch while training, GELU, a
learnable RMSNorm gain, and tied embeddings.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from microgpt.autograd import Tensor, is_grad_enabled
from microgpt.autograd import functional as F
from microgpt.autograd.functional import LOSS_BLOCK_CALLS, LOSS_BLOCK_ROWS
from microgpt.autograd.parallel import MAC_WORK, PASS_WORK, split_parts
from microgpt.nn.layers import INIT_STD, Block, Dropout, Embedding, KVCache, Linear, check_ids
from microgpt.nn.module import Module, Parameter

ACTIVATIONS = ("relu", "gelu")  # the MLP's nonlinearity: relu (the original's, fused) or gelu
POSITIONS = ("rope", "learned")  # rotary turns of q and k, or the original's table added to the input
OLD_POSITIONS = "learned"  # what a config saved before `positions` existed used: the position table


@dataclass
class GPTConfig:
    """Everything that fixes the model's shape; stored inside every checkpoint.

    These defaults are the trainer's (N_LAYER, N_EMBD, ... in microgpt.config): this is their one home.
    """

    vocab_size: int = 8192
    n_layer: int = 4
    n_embd: int = 96
    n_head: int = 4
    block_size: int = 64
    activation: str = "relu"  # "gelu" is an option beyond the original
    norm_gain: bool = False  # a learnable RMSNorm gain, beyond the original
    init_std: float = INIT_STD
    zero_init: bool = True  # residual outputs and lm_head start at zero, beyond the original (measured: README)
    dropout: float = 0.0  # probability of zeroing an activation while training, beyond the original
    tie_embeddings: bool = False  # lm_head reuses wte (fewer parameters to learn), beyond the original
    positions: str = "rope"  # "learned": a table added to the input (the original's); "rope": q and k turned

    def __post_init__(self) -> None:
        if not isinstance(self.n_head, (int, np.integer)) or self.n_head < 1:
            raise ValueError(f"n_head must be a whole number >= 1, not {self.n_head!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {', '.join(map(repr, ACTIVATIONS))}, not {self.activation!r}")
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(map(repr, POSITIONS))}, not {self.positions!r}")
        if self.positions == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"positions 'rope' turns pairs of a head's dims: n_embd / n_head "
                             f"({self.n_embd // self.n_head}) must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        if isinstance(self.init_std, (int, float)) and not self.init_std >= 0:  # (other types: nn.bounds)
            raise ValueError(f"init_std must be at least 0 (a standard deviation), not {self.init_std!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name -> shape of every weight GPT.__init__ creates, named as `GPT.named_parameters` names them: wte
        (V, C), wpe (T, C) unless rope, per block four C x C attention matrices and the MLP's fc1 (4C, C) and
        fc2 (C, 4C) (two C-wide gains with norm_gain), and lm_head (V, C) unless it is wte itself. No biases."""
        v, c, t = self.vocab_size, self.n_embd, self.block_size
        shapes: dict[str, tuple[int, ...]] = {"wte": (v, c)}
        if self.positions == "learned":
            shapes["wpe"] = (t, c)
        for i in range(self.n_layer):
            layer = f"layer{i}"
            if self.norm_gain:
                shapes[f"{layer}.attn_norm"] = (c,)
            shapes.update({f"{layer}.attn_{w}": (c, c) for w in ("wq", "wk", "wv", "wo")})
            if self.norm_gain:
                shapes[f"{layer}.mlp_norm"] = (c,)
            shapes.update({f"{layer}.mlp_fc1": (4 * c, c), f"{layer}.mlp_fc2": (c, 4 * c)})
        if not self.tie_embeddings:
            shapes["lm_head"] = (v, c)
        return shapes

    def num_parameters(self) -> int:
        """Weights in a GPT of this shape (12 C^2 a block, plus the embeddings): see parameter_shapes."""
        return sum(math.prod(shape) for shape in self.parameter_shapes().values())

    def training_memory_mb(self, batch_size: int) -> float:
        """Rough training memory in MiB: float32 weights, gradients, Adam's two moments and its scratch buffer,
        plus one batch's activations: per block about 20 B*T*C numbers (projections, MLP, norms, residuals) and
        one B*H*T*T attention map (the weights the backward reuses); the output layer with its loss, fused
        (F.linear_cross_entropy), holds no (B*T, V) logits, only each thread's (V, tokens) block and dL/dW."""
        b, t, c, h, v = batch_size, self.block_size, self.n_embd, self.n_head, self.vocab_size
        weights = 5 * self.num_parameters()
        parts = split_parts(b * t, b * t * v * (3 * c * MAC_WORK + 3 * PASS_WORK), LOSS_BLOCK_CALLS)  # as the loss does
        output = parts * v * (min(-(-b * t // parts), LOSS_BLOCK_ROWS) + c) + 2 * b * t * c
        activations = self.n_layer * (b * t * c * 20 + b * h * t * t) + output
        return (weights + activations) * 4 / 2**20

    def inference_memory_mb(self, batch_size: int) -> float:
        """Rough memory in MiB of one forward pass without gradients: the weights, one block's activations
        (about 12 B*T*C numbers and two B*H*T*T maps; earlier blocks' are freed) and the B*T*V logits."""
        b, t, c, h, v = batch_size, self.block_size, self.n_embd, self.n_head, self.vocab_size
        return (self.num_parameters() + b * t * c * 12 + b * h * t * t * 2 + b * t * v) * 4 / 2**20


def _entropy(seed: object) -> list[int] | None:
    """A seed (None, an int, or a tuple of ints) as the entropy list SeedSequence takes."""
    if seed is None:
        return None
    return [int(s) & 0xFFFFFFFF for s in (seed if isinstance(seed, tuple) else (seed,))]


@functools.lru_cache(maxsize=16)
def _turn_table(block_size: int, head_dim: int, n_head: int, dtype: str) -> np.ndarray:
    """F.rotary_turns of every position 0..block_size-1, made once per shape: each step slices its rows."""
    table = F.rotary_turns(np.arange(block_size), head_dim, n_head, np.dtype(dtype))
    table.flags.writeable = False  # shared by every model of this shape
    return table


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
        if dt not in (np.float32, np.float64):
            raise ValueError(f"a GPT computes in float32 or float64, not {dt}")
        C, std = config.n_embd, config.init_std
        self.wte = Embedding(config.vocab_size, C, rng=rng, std=std, dtype=dt)
        if config.positions == "learned":
            self.wpe = Embedding(config.block_size, C, rng=rng, std=std, dtype=dt)
        self.drop = Dropout(config.dropout)
        for i in range(config.n_layer):
            setattr(self, f"layer{i}", Block(C, config.n_head, activation=config.activation,
                                             norm_gain=config.norm_gain, dropout=config.dropout,
                                             rng=rng, std=std, dtype=dt))
        if not config.tie_embeddings:
            self.lm_head = Linear(C, config.vocab_size, rng=rng, std=std, dtype=dt)
        if config.zero_init:
            self._zero_outputs()
        self.seed_dropout(seed)

    def _zero_outputs(self) -> None:
        """Zero each block's attention output (wo) and MLP output (fc2), and lm_head unless tied.

        Every block then starts as the identity (x + 0) and, with untied embeddings, the first logits are all
        equal, so the first loss is exactly ln(vocab). Learning still starts, from the output backwards:
        lm_head's gradient (x, the error) is not zero, so it moves on step 1; the residual stream's gradient
        then passes through it to wo and fc2 and, straight down the stream, to the embeddings on step 2, and
        through wo and fc2 to the blocks' other weights on step 3."""
        for block in self.blocks:
            block.attn.wo.weight.data[...] = 0
            block.mlp.fc2.weight.data[...] = 0
        if not self.config.tie_embeddings:
            self.lm_head.weight.data[...] = 0

    @property
    def blocks(self) -> list[Block]:
        return [getattr(self, f"layer{i}") for i in range(self.config.n_layer)]

    def hidden_matrices(self) -> list[Parameter]:
        """The blocks' 2-D weights (attention and MLP projections): the matrices Muon updates."""
        return [p for block in self.blocks for p in block.parameters() if p.ndim == 2]

    @property
    def head_weight(self) -> Parameter:
        """The output layer's (vocab, C) weight: lm_head's, or wte itself when the embeddings are tied."""
        return self.wte.weight if self.config.tie_embeddings else self.lm_head.weight

    def seed_dropout(self, seed: object) -> None:
        """Give every Dropout its own generator derived from `seed` (an int, or a tuple such as (seed, step)),
        so a resumed run draws exactly the masks the uninterrupted run would have."""
        drops = [m for m in self.modules() if isinstance(m, Dropout)]
        for drop, child in zip(drops, np.random.SeedSequence(_entropy(seed)).spawn(len(drops))):
            drop.rng = np.random.default_rng(child)

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Parameter]]:  # type: ignore[override]
        """Names exactly as in the original checkpoint `state`: wte, wpe, lm_head, layer{i}.attn_wq, ..."""
        return [(_original_name(name), p) for name, p in super().named_parameters(prefix)]

    def hidden(self, idx: np.ndarray, cache: KVCache | None = None) -> Tensor:
        """Token ids (B, T) -> the last block's output (B, T, C), the input of lm_head."""
        idx = check_ids(idx, self.config.vocab_size)
        if idx.ndim == 1:
            idx = idx[None, :]
        if idx.ndim != 2:
            raise ValueError(f"token ids of shape {idx.shape}: give one sequence (T,) or a batch (B, T)")
        T = idx.shape[1]
        if T == 0:
            raise ValueError("an empty sequence: give at least one token id")
        if T > self.config.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.config.block_size}")
        pos = cache.positions(T) if cache is not None else slice(0, T)  # a slice, or (B, T) ids when rows differ
        turns = self.rotary_turns(pos)
        if cache is not None and T == 1 and not is_grad_enabled():  # generation's step: Block.step, plain arrays
            x = self.wte.weight.data[idx]
            if turns is None:
                x = x + self.wpe.weight.data[pos]
            x = F.rms_rows(x)
            for i, block in enumerate(self.blocks):
                x = block.step(x, cache, i, turns)
            cache.advance(1)
            return Tensor(x, requires_grad=False)
        x = self.wte(idx) if turns is not None else self.wte(idx) + self.wpe.weight[pos]  # (B, T, C)
        x = F.rms_norm(self.drop(x))
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i, turns)
        if cache is not None:
            cache.advance(T)
        return x

    def rotary_turns(self, pos: slice | np.ndarray) -> np.ndarray | None:
        """With positions "rope", the turns of q and k at positions `pos` (a slice or ids); None with "learned"."""
        c = self.config
        if c.positions != "rope":
            return None
        return _turn_table(c.block_size, c.n_embd // c.n_head, c.n_head, self.wte.weight.dtype.str)[pos]

    def forward(self, idx: np.ndarray, cache: KVCache | None = None) -> Tensor:
        """Token ids (B, T) -> logits (B, T, vocab). With a cache, idx holds only the new positions."""
        return F.linear(self.hidden(idx, cache), self.head_weight)  # (B, T, vocab)

    def loss(self, idx: np.ndarray, targets: np.ndarray) -> Tensor:
        """Mean next-token cross-entropy, equal to F.cross_entropy(self(idx), targets); lm_head and the loss
        are fused (F.linear_cross_entropy), so the (B, T, vocab) logits are never stored."""
        return F.linear_cross_entropy(self.hidden(idx), self.head_weight, targets)

    def new_cache(self, batch: int = 1) -> KVCache:
        """An empty KV cache for generating `batch` sequences at once."""
        c = self.config
        return KVCache(c.n_layer, batch, c.n_head, c.block_size, c.n_embd // c.n_head, self.wte.weight.dtype)
