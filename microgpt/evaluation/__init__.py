"""How good a checkpoint is on text it never trained on, an interface beside the commands.

    heldout.py    scoring held-out datasets (loss, perplexity, bits per byte) and a run's validation split
    baseline.py   the xz anchor: what a compressor that read the training data needs per byte
"""
