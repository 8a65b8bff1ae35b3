"""The same GPT written in PyTorch, built from our state_dict: the yardstick for parity tests and `bench`.

PyTorch is never a dependency: import this module only after checking that torch is importable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as TF

from microgpt.autograd.attention import ROPE_BASE
from microgpt.autograd.functional import RMS_EPS
from microgpt.nn.gpt import GPTConfig


class TorchGPT(torch.nn.Module):
    """microgpt's architecture in PyTorch eager: parameters carry our state_dict names ('.' becomes '__')."""

    def __init__(self, config: GPTConfig, state: dict[str, np.ndarray], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.config = config
        self.weights = torch.nn.ParameterDict(
            {name.replace(".", "__"): torch.nn.Parameter(torch.tensor(np.asarray(value), dtype=dtype))
             for name, value in state.items()}
        )

    def w(self, name: str) -> torch.Tensor:
        return self.weights[name.replace(".", "__")]

    def named_grads(self) -> dict[str, np.ndarray]:
        return {name.replace("__", "."): p.grad.detach().numpy() for name, p in self.weights.items()}

    @staticmethod
    def rms_norm(x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + RMS_EPS)

    @staticmethod
    def rotate(x: torch.Tensor, start: int, base: float = ROPE_BASE) -> torch.Tensor:
        """RoPE on (B, H, T, D): dims (2j, 2j + 1) of position start + t turned by (start + t) base^(-2j/D)."""
        T, D = x.shape[-2], x.shape[-1]
        freq = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
        angle = torch.arange(start, start + T, dtype=torch.float64)[:, None] * freq
        cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)

    def forward(self, idx: torch.Tensor, cache: list | None = None) -> torch.Tensor:
        c = self.config
        B, T = idx.shape
        H, D = c.n_head, c.n_embd // c.n_head
        start = 0 if cache is None or not cache[0] else cache[0][0].shape[2]
        rope = c.positions == "rope"
        x = self.w("wte")[idx] if rope else self.w("wte")[idx] + self.w("wpe")[start:start + T]
        x = self.rms_norm(x)
        for i in range(c.n_layer):
            h = self.rms_norm(x)
            q, k, v = (TF.linear(h, self.w(f"layer{i}.attn_w{n}")).view(B, T, H, D).transpose(1, 2) for n in "qkv")
            if rope:
                q, k = self.rotate(q, start), self.rotate(k, start)
            if cache is not None:
                if cache[i]:
                    k = torch.cat([cache[i][0], k], dim=2)
                    v = torch.cat([cache[i][1], v], dim=2)
                cache[i] = (k, v)
            S = k.shape[2]  # query i sits at position S - T + i and sees keys up to there
            mask = torch.ones(T, S, dtype=torch.bool).tril(diagonal=S - T) if T > 1 else None
            y = TF.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            x = x + TF.linear(y.transpose(1, 2).reshape(B, T, c.n_embd), self.w(f"layer{i}.attn_wo"))
            h = self.rms_norm(x)
            x = x + TF.linear(torch.relu(TF.linear(h, self.w(f"layer{i}.mlp_fc1"))), self.w(f"layer{i}.mlp_fc2"))
        return TF.linear(x, self.w("lm_head"))
