"""microgpt: a from-scratch GPT you can read top to bottom and train on a laptop."""

__version__ = "0.1.0"
