"""Named starting points for a run (`--preset NAME`): knob values laid over the defaults.

A preset names only the knobs it is about; on the command line the rest keep their defaults (or the
config file, environment and flags above it), and in the TUI the rest keep the values you set. `fast`,
`balanced` and `max` are the original Go edition's 0.0.4 presets, in its order, so the TUI's `1`/`2`/`3`
apply them (`NUMBERED`); `coherent-fast` and `coherent-max` came with its later guide. `long` and `hour` are ours.
"""

from __future__ import annotations

PRESETS: dict[str, dict[str, object]] = {
    "default": {},  # the defaults themselves
    "seed": {
        "TOKEN_VOCAB_SIZE": 2048, "N_LAYER": 1, "N_EMBD": 48, "N_HEAD": 4, "BLOCK_SIZE": 96, "ZERO_INIT": False,
        "POSITIONS": "learned",
        "BATCH_SIZE": 1, "NUM_STEPS": 800, "OPTIMIZER": "adam", "LEARNING_RATE": 0.004, "LR_SCHEDULE": "linear",
        "WARMUP_STEPS": 0, "WEIGHT_DECAY": 0.0, "GRAD_CLIP": 0.0,
        "EVAL_INTERVAL": 50, "EVAL_STEPS": 16, "EARLY_STOP_PATIENCE": 8, "EARLY_STOP_MIN_DELTA": 0.0005,
        "TEMPERATURE": 0.5, "TOP_K": 40, "TOP_P": 0.9, "REPETITION_PENALTY": 1.1, "MIN_NEW_TOKENS": 24,
        "REPEAT_LAST_N": 64, "SAMPLE_COUNT": 20, "SAMPLE_MAX_NEW_TOKENS": 160, "METRIC_INTERVAL": 25,
    },
    "fast": {
        "TOKENIZER": "bpe", "TOKEN_VOCAB_SIZE": 1536, "N_LAYER": 1, "N_EMBD": 32, "N_HEAD": 4, "BLOCK_SIZE": 64,
        "NUM_STEPS": 400, "LEARNING_RATE": 0.0045, "TEMPERATURE": 0.6, "SAMPLE_COUNT": 4,
    },
    "balanced": {
        "TOKENIZER": "bpe", "TOKEN_VOCAB_SIZE": 2048, "N_LAYER": 1, "N_EMBD": 48, "N_HEAD": 4, "BLOCK_SIZE": 96,
        "NUM_STEPS": 800, "LEARNING_RATE": 0.004, "TEMPERATURE": 0.6, "SAMPLE_COUNT": 8,
    },
    "max": {
        "TOKENIZER": "bpe", "TOKEN_VOCAB_SIZE": 3072, "N_LAYER": 2, "N_EMBD": 64, "N_HEAD": 4, "BLOCK_SIZE": 128,
        "NUM_STEPS": 1800, "LEARNING_RATE": 0.0038, "TEMPERATURE": 0.6, "SAMPLE_COUNT": 10,
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
    "long": {
        "N_EMBD": 128, "BLOCK_SIZE": 128, "BATCH_SIZE": 16, "NUM_STEPS": 10000, "LEARNING_RATE": 0.003,
        "EVAL_INTERVAL": 250,
    },
    "hour": {
        "N_LAYER": 6, "N_EMBD": 160, "BLOCK_SIZE": 128, "BATCH_SIZE": 16, "NUM_STEPS": 12000,
        "LEARNING_RATE": 0.003, "EVAL_INTERVAL": 250,
    },
}

PRESET_HELP: dict[str, str] = {
    "default": "microgpt's measured best for a 5-minute run on the starter data: the knob defaults, as listed "
               "below (README: how they were chosen)",
    "seed": "the original Go edition's 0.0.4 defaults: 1 layer, width 48, one 96-token window per step (batch 1)",
    "fast": "the original 0.0.4's quick smoke run (TUI key 1): vocab 1536, 1x32, block 64, 400 steps",
    "balanced": "the original 0.0.4's laptop-safe baseline (TUI key 2): vocab 2048, 1x48, block 96, 800 steps",
    "max": "the original 0.0.4's stronger run (TUI key 3): vocab 3072, 2x64, block 128, 1800 steps",
    "coherent-fast": "the original guide's CPU-feasible coherence profile (vocab 3072, 2x80, 1500 steps)",
    "coherent-max": "the original guide's long CPU run (vocab 4096, 2x96, 3000 steps)",
    "long": "the default's recipe made bigger and longer, for replies that stay on topic: 4x128, block 128, "
            "batch 16, 10000 steps, lr 0.003 (about 35 minutes on 2 cores)",
    "hour": "long made deeper and wider and trained longer: 6x160, block 128, batch 16, 12000 steps, lr 0.003 "
            "(about an hour on 2 cores)",
}

# the TUI's Train tab applies these with the keys 1, 2, 3, as the original did
NUMBERED: tuple[str, ...] = ("fast", "balanced", "max")
