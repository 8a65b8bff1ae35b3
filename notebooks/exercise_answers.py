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
        self.loaded: dict[int, dict[str, object]] = {}  # exercise -> the names its answer put in place of yours

    def use(self, n: int) -> None:
        source = answer_source(self.notebook, n)
        code = compile(source, str(SOLUTIONS / f"{self.notebook}.py"), "exec")
        before = dict(self.namespace)
        exec(code, self.namespace)  # noqa: S102 -- our own answer file, run in the notebook, as a learner would paste it
        self.loaded[n] = {name: value for name, value in self.namespace.items()
                          if name in before and before[name] is not value}
        print(f"  (the cells below use the answer from notebooks/solutions/{self.notebook}.py until you solve it)")

    def left_over(self, n: int) -> bool:
        """True, saying so, when a name of exercise n still holds the answer `use(n)` put there: your exercise
        cell stopped before defining it (an error in it) or has not been run again, so a check would test the
        answer, not your code."""
        stale = [name for name, value in self.loaded.get(n, {}).items() if self.namespace.get(name) is value]
        if stale:
            print(f"exercise {n}: not checked: {', '.join(stale)} is still the answer from notebooks/solutions/ "
                  "(your exercise cell stopped before defining it, or has not been run again): run it, then this")
        return bool(stale)
