"""TrainConfig: the settings of one training run, composed of the parts each layer owns.

`model` is the GPT's shape (nn.GPTConfig), `optim` how the weights move (nn.OptimSettings), `sampling` how
text is generated (nn.SamplingSettings); the data and run fields sit beside them. Every default is written
once, in the dataclass that owns the field. Outside code (config files, environment variables, flags,
checkpoints, manifests) names settings flat, as the original did: `FLAT_PATHS` says where each flat name
lives, so N_EMBD / --n-embd / "n_embd" all reach `model.n_embd`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from microgpt.data.tokenizer import CL100K
from microgpt.nn import GPTConfig, OptimSettings, SamplingSettings

PARTS = ("model", "optim", "sampling")

# flat name -> "part.field" for the settings that live inside a part; every other flat name is a field of its own
FLAT_PATHS: dict[str, str] = {
    "token_vocab_size": "model.vocab_size", "n_layer": "model.n_layer", "n_embd": "model.n_embd",
    "n_head": "model.n_head", "block_size": "model.block_size", "dropout": "model.dropout",
    "tie_embeddings": "model.tie_embeddings", "activation": "model.activation", "norm_gain": "model.norm_gain",
    "zero_init": "model.zero_init", "positions": "model.positions",
    "optimizer": "optim.optimizer", "learning_rate": "optim.lr", "lr_schedule": "optim.lr_schedule", "warmup_steps": "optim.warmup_steps",
    "decay_fraction": "optim.decay_fraction",
    "beta1": "optim.beta1", "beta2": "optim.beta2", "eps_adam": "optim.eps", "weight_decay": "optim.weight_decay",
    "grad_clip": "optim.grad_clip",
    "temperature": "sampling.temperature", "top_k": "sampling.top_k", "top_p": "sampling.top_p",
    "repetition_penalty": "sampling.repetition_penalty", "min_new_tokens": "sampling.min_new_tokens",
    "repeat_last_n": "sampling.repeat_last_n", "sample_max_new_tokens": "sampling.max_new_tokens",
}


@dataclass
class TrainConfig:
    """The resolved settings of one training run (see microgpt.config.knobs for what each one means)."""

    model: GPTConfig = field(default_factory=GPTConfig)
    optim: OptimSettings = field(default_factory=OptimSettings)
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    # dataset & tokenizer (TOKEN_VOCAB_SIZE is model.vocab_size: the tokenizer's budget, and the model's size)
    dataset_path: str = "datasets/starter/starter.jsonl"
    tokenizer: str = "bpe"
    bpe_encoding: str = CL100K
    bpe_file: str = ""
    val_split: float = 0.10
    train_doc_sampling: str = "random"
    # the run
    batch_size: int = 32
    num_steps: int = 2000
    eval_interval: int = 100
    eval_steps: int = 8
    early_stop_patience: int = 8
    early_stop_min_delta: float = 0.0005
    sample_count: int = 2
    train_device: str = "cpu"
    threads: int = 0
    seed: int = 1337
    run_name: str = "run"
    metric_interval: int = 25
    log_level: str = "info"
    verbose: bool = False
    model_out_path: str = ""
    model_best_path: str = ""
    model_dir: str = "models"
    log_dir: str = "logs"

    def get(self, name: str) -> Any:
        """The value of a flat name: cfg.get("n_embd") is cfg.model.n_embd."""
        part, _, leaf = path_of(name).rpartition(".")
        return getattr(getattr(self, part) if part else self, leaf)

    def to_dict(self) -> dict[str, Any]:
        """Flat name -> value, ready for JSON (checkpoints and manifests carry this)."""
        return {name: self.get(name) for name in flat_names()}

    @classmethod
    def from_flat(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Place already-checked flat values (see microgpt.config.parse) into a config; the rest are defaults."""
        default = cls()
        parts: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        top: dict[str, Any] = {}
        for name, value in values.items():
            part, _, leaf = path_of(name).rpartition(".")
            (parts[part] if part else top)[leaf] = value
        return replace(default, **top, **{part: replace(getattr(default, part), **parts[part]) for part in PARTS})


def path_of(name: str) -> str:
    """Where a flat name lives: "n_embd" -> "model.n_embd"; KeyError for a name that is not a setting."""
    if name in FLAT_PATHS:
        return FLAT_PATHS[name]
    if name in PARTS or name not in {f.name for f in fields(TrainConfig)}:
        raise KeyError(name)
    return name


def flat_names() -> list[str]:
    """Every flat name, the parts' first (in FLAT_PATHS order), then the run's own fields."""
    return [*FLAT_PATHS, *(f.name for f in fields(TrainConfig) if f.name not in PARTS)]
