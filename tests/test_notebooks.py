"""The step-through notebooks in notebooks/: each runs top to bottom in a fresh kernel, and none is committed
with outputs.

Each notebook is executed headlessly with nbclient and the "python3" (ipykernel) kernel, from notebooks/ as
its working directory, the way a learner opens it; any cell error fails the test and shows the cell's
traceback. Notebooks 04 and 05 keep their files under tempfile.gettempdir()/microgpt_notebooks, so the kernels
started here get a TMPDIR of their own: 05 finds the checkpoint 04 wrote in this run, never one left by an
earlier run. Run alone (`-k 05`), notebook 05 trains its own tiny model.

Exercises: a code cell whose first line is `# EXERCISE n` holds a stub the learner fills in (it raises
NotImplementedError), and a later cell starting `# CHECK n` asserts the answer, printing "exercise n: passed",
or "exercise n: skipped" while the stub is untouched. notebooks/solutions/<notebook>.py holds the answers, one
chunk per `# EXERCISE n` line. Each notebook runs twice: as shipped (every check must say skipped) and with
each exercise cell replaced by its solution chunk (every check must say passed).

The exercises that build a piece the notebook goes on to use (Value.backward's graph walk, causal attention,
Adam's update, the KV-cache step, ...) sit in the section that needs them; while such a one is unsolved, its
check runs the answer from solutions/ instead (notebooks/exercise_answers.py), so the cells after it still run.
The others close the notebook, after an '## Exercises' heading. Every exercise cell follows a markdown cell
that says what to write ("Exercise n").

Without the notebook tooling (pip install -e '.[notebooks]') the execution tests are skipped, with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))  # numbered names: sorted is reading order, 04 before 05
EXPECTED = ("01_autograd_from_scratch", "02_ops_of_a_transformer", "03_building_the_gpt", "04_training",
            "05_sampling_and_chat")
KERNEL = "python3"
CELL_TIMEOUT_S = 300
TOOLING = ("nbclient", "nbformat", "ipykernel", "jupyter_client")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
SOLUTIONS_DIR = NOTEBOOKS_DIR / "solutions"
MARK = re.compile(r"# (EXERCISE|CHECK) (\d+)\b")  # on the first line of an exercise or check cell
MAX_EXERCISES = 6


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def marked_cells(cells: list, kind: str) -> dict[int, int]:
    """Exercise (or check) number -> index of its cell, for cells whose first line is '# EXERCISE n'."""
    found = {}
    for i, cell in enumerate(cells):
        match = MARK.match("".join(cell["source"])) if cell["cell_type"] == "code" else None
        if match and match.group(1) == kind:
            found[int(match.group(2))] = i
    return found


def solution_chunks(path: Path) -> dict[int, str]:
    """notebooks/solutions/<stem>.py split at its '# EXERCISE n' lines: n -> that chunk's source."""
    text = (SOLUTIONS_DIR / f"{path.stem}.py").read_text(encoding="utf-8")
    parts = re.split(r"^(# EXERCISE \d+\b.*)$", text, flags=re.MULTILINE)
    return {int(MARK.match(head).group(2)): (head + body).strip() + "\n"
            for head, body in zip(parts[1::2], parts[2::2])}


def test_every_numbered_notebook_exists() -> None:
    present = {path.stem for path in NOTEBOOKS}
    missing = [name for name in EXPECTED if name not in present]
    assert not missing, f"missing notebooks in {NOTEBOOKS_DIR}: {', '.join(missing)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    nb = read_notebook(path)
    assert nb.get("nbformat") == 4, f"{path.name}: nbformat {nb.get('nbformat')}, expected 4"
    dirty = [i for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: code cells {dirty} carry outputs or execution counts; clear them before "
                       f"committing (Jupyter: Edit > Clear Outputs of All Cells, then save)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_opens_with_goals_and_closes_with_exercises(path: Path) -> None:
    cells = read_notebook(path)["cells"]
    assert cells[0]["cell_type"] == "markdown" and "What you will learn" in "".join(cells[0]["source"]), \
        f"{path.name}: the first cell should be markdown listing 'What you will learn'"
    headings = [i for i, cell in enumerate(cells)
                if cell["cell_type"] == "markdown" and re.search(r"^## Exercises", "".join(cell["source"]), re.MULTILINE)]
    assert headings, f"{path.name}: no markdown cell with an '## Exercises' heading"
    exercises = marked_cells(cells, "EXERCISE")
    assert exercises and max(exercises.values()) > headings[0], \
        f"{path.name}: the notebook should close with exercises, after its '## Exercises' heading"
    for n, i in exercises.items():
        told = [cell for cell in cells[:i] if cell["cell_type"] == "markdown"][-1:]
        assert told and f"Exercise {n}" in "".join(told[0]["source"]), \
            f"{path.name}: the markdown cell before exercise {n} should say what to write ('Exercise {n}')"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_exercises_come_with_checks_and_solutions(path: Path) -> None:
    cells = read_notebook(path)["cells"]
    exercises, checks = marked_cells(cells, "EXERCISE"), marked_cells(cells, "CHECK")
    assert 2 <= len(exercises) <= MAX_EXERCISES, \
        f"{path.name}: {len(exercises)} exercise cells, expected 2 to {MAX_EXERCISES}"
    order = [n for n, _ in sorted(exercises.items(), key=lambda item: item[1])]
    assert order == sorted(order), f"{path.name}: exercises appear in the order {order}, expected 1, 2, ..."
    assert sorted(exercises) == list(range(1, len(exercises) + 1)), f"{path.name}: exercises {sorted(exercises)}"
    assert sorted(checks) == sorted(exercises), f"{path.name}: exercises {sorted(exercises)}, checks {sorted(checks)}"
    late = [n for n in exercises if checks[n] < exercises[n]]
    assert not late, f"{path.name}: the check cells of exercises {late} come before the exercise"
    assert sorted(solution_chunks(path)) == sorted(exercises), \
        f"{path.name}: solutions/{path.stem}.py has exercises {sorted(solution_chunks(path))}"


def test_a_check_whose_exercise_cell_failed_says_not_checked_instead_of_testing_the_answer(capsys) -> None:
    spec = importlib.util.spec_from_file_location("exercise_answers", NOTEBOOKS_DIR / "exercise_answers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def stub(root):  # the shipped exercise cell
        raise NotImplementedError

    namespace: dict = {"topological_order": stub}
    answers = module.Answers("01_autograd_from_scratch", namespace)
    assert not answers.left_over(1)  # nothing loaded yet: the check goes on
    answers.use(1)  # first pass: unsolved, so the answer takes the stub's place
    assert answers.left_over(1)  # second pass, the learner's cell failed before its def: not tested
    assert "exercise 1: not checked: topological_order is still the answer" in capsys.readouterr().out
    namespace["topological_order"] = lambda root: [root]  # the learner's cell ran: checked again
    assert not answers.left_over(1)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory):
    """The environment for every kernel of this module: a private TMPDIR, and a python3 kernel spec for this
    interpreter if Jupyter knows none."""
    missing = [name for name in TOOLING if importlib.util.find_spec(name) is None]
    if missing:
        reason = f"notebook tooling not installed ({', '.join(missing)}): pip install -e '.[notebooks]'"
        print(reason, file=sys.stderr)
        pytest.skip(reason)
    from jupyter_client.kernelspec import find_kernel_specs

    with pytest.MonkeyPatch.context() as mp:
        if KERNEL not in find_kernel_specs():
            data_dir = tmp_path_factory.mktemp("jupyter")
            spec_dir = data_dir / "kernels" / KERNEL
            spec_dir.mkdir(parents=True)
            spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                    "display_name": "Python 3", "language": "python"}
            (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
            mp.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(data_dir), os.environ.get("JUPYTER_PATH")])))
        env = dict(os.environ)
        env["TMPDIR"] = str(tmp_path_factory.mktemp("notebook-tmp"))
        yield env


@pytest.mark.parametrize("solved", [False, True], ids=["as-shipped", "with-solutions"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, solved: bool, kernel_env: dict[str, str]) -> None:
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    if solved:
        chunks = solution_chunks(path)
        for n, i in marked_cells(nb.cells, "EXERCISE").items():
            nb.cells[i].source = chunks[n]
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOKS_DIR)}})
    started = time.perf_counter()
    failure = None
    try:
        client.execute(env=kernel_env)
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        failure = ANSI_ESCAPE.sub("", str(exc))  # the kernel's traceback, without its terminal colours
    elapsed = time.perf_counter() - started
    if failure is not None:
        pytest.fail(f"{path.name} failed after {elapsed:.0f} s:\n{failure}", pytrace=False)
    verdict = "passed" if solved else "skipped"
    for n, i in marked_cells(nb.cells, "CHECK").items():
        printed = "".join(out.get("text", "") for out in nb.cells[i].outputs if out.get("output_type") == "stream")
        assert f"exercise {n}: {verdict}" in printed, \
            f"{path.name}: check {n} should print 'exercise {n}: {verdict}', it printed {printed!r}"
    print(f"{path.name} ({'with solutions' if solved else 'as shipped'}): {elapsed:.1f} s")
