"""The notebooks' fallback for an exercise not solved yet: its answer, from notebooks/solutions/.

Some exercises build a piece that the rest of the notebook uses (the graph walk of `Value.backward`, causal
attention, Adam's update, ...). While such an exercise is unsolved, its check cell runs the answer instead, with
a note, so every later cell still runs; once you solve it, the later cells run your version.
"""

from __future__ import annotations

import re
from pathlib import Path

SOLUTIONS = Path(__file__).resolve().parent / "solutions"
HEADER = re.compile(r"^(# EXERCISE (\d+)\b.*)$", re.MULTILINE)


def answer_source(notebook: str, n: int) -> str:
    """The chunk of solutions/<notebook>.py under its '# EXERCISE n' line, after as many blank lines as come
    before it in the file: a traceback's line numbers are the file's."""
    path = SOLUTIONS / f"{notebook}.py"
    text = path.read_text(encoding="utf-8")
    parts = HEADER.split(text)  # [before, header, number, body, header, ...]
    chunks = {int(number): header + body for header, number, body in zip(parts[1::3], parts[2::3], parts[3::3])}
    if n not in chunks:
        raise KeyError(f"{path} has no '# EXERCISE {n}'")
    return "\n" * text[:text.index(chunks[n])].count("\n") + chunks[n]


class Answers:
    """`Answers("03_building_the_gpt", globals()).use(2)` defines exercise 2's answer in the notebook."""

    def __init__(self, notebook: str, namespace: dict) -> None:
        self.notebook, self.namespace = notebook, namespace

    def use(self, n: int) -> None:
        source = answer_source(self.notebook, n)
        code = compile(source, str(SOLUTIONS / f"{self.notebook}.py"), "exec")
        exec(code, self.namespace)  # noqa: S102 -- our own answer file, run in the notebook, as a learner would paste it
        print(f"  (the cells below use the answer from notebooks/solutions/{self.notebook}.py until you solve it)")
