"""Named starting points for a run (`--preset NAME`): knob values laid over the defaults."""

from __future__ import annotations

PRESETS: dict[str, dict[str, object]] = {
    "default": {},  # the defaults themselves
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
