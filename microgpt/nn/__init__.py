"""Neural-network pieces built only on microgpt.autograd: modules, the GPT, Adam, and sampling."""

from microgpt.nn.gpt import GPT, GPTConfig
from microgpt.nn.layers import MLP, Block, CausalSelfAttention, Embedding, KVCache, Linear, RMSNorm
from microgpt.nn.module import Module, Parameter
from microgpt.nn.optim import Adam, OptimSettings, clip_grad_norm, learning_rate
from microgpt.nn.sampling import SamplingSettings, generate, next_token_distribution

__all__ = [
    "GPT", "MLP", "Adam", "Block", "CausalSelfAttention", "Embedding", "GPTConfig", "KVCache", "Linear",
    "Module", "OptimSettings", "Parameter", "RMSNorm", "SamplingSettings", "clip_grad_norm", "generate", "learning_rate",
    "next_token_distribution",
]
