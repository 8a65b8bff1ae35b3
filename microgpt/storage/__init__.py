"""Model storage, below training and every interface: checkpoints in our .npz format and the original Go
project's JSON format, each carrying the tokenizer state the model needs.

    checkpoint.py   Checkpoint (model + tokenizer + meta + optimizer state) and checkpoint file names
    npz.py          our format: save_checkpoint(), load_npz_checkpoint(), read_meta()
    go_json.py      the original's JSON checkpoints (read only)
    export.py       export folders (model.safetensors, config.json, tokenizer.json): save_export(), load_export()
    files.py        load_checkpoint() for any of them, checkpoint_info() for listings
"""

from microgpt.storage.checkpoint import (
    Checkpoint,
    checkpoint_kind,
    checkpoint_name,
    checkpoint_stem,
    step_checkpoint_name,
)
from microgpt.storage.files import checkpoint_info, load_checkpoint
from microgpt.storage.npz import is_npz_checkpoint, save_checkpoint

__all__ = ["Checkpoint", "checkpoint_info", "checkpoint_kind", "checkpoint_name", "checkpoint_stem",
           "is_npz_checkpoint", "load_checkpoint", "save_checkpoint", "step_checkpoint_name"]
