"""The step-through notebooks in notebooks/: each runs top to bottom in a fresh kernel, and none is committed
with outputs.

Each notebook is executed headlessly with nbclient and the "python3" (ipykernel) kernel, from notebooks/ as
its working directory, the way a learner opens it; any cell error fails the test and shows the cell's
traceback. Notebooks 04 and 05 keep their files under tempfile.gettempdir()/microgpt_notebooks, so the kernels
started here get a TMPDIR of their own: 05 finds the checkpoint 04 wrote in this run, never one left by an
earlier run. Run alone (`-k 05`), notebook 05 trains its own tiny model.

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


def read_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


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
    first, last = "".join(cells[0]["source"]), "".join(cells[-1]["source"])
    assert cells[0]["cell_type"] == "markdown" and "What you will learn" in first, \
        f"{path.name}: the first cell should be markdown listing 'What you will learn'"
    assert cells[-1]["cell_type"] == "markdown" and "Exercises" in last, \
        f"{path.name}: the last cell should be markdown with the exercises"


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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path: Path, kernel_env: dict[str, str]) -> None:
    import nbclient
    import nbformat
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
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
    print(f"{path.name}: {elapsed:.1f} s")
