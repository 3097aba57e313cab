"""The notebooks in notebooks/ are part of the product: each runs top to bottom (nbclient, the
``python3`` kernel) with the shipped GHN and the CIFAR-10 copy, every plot it shows has a title, axis
labels and a legend, and the committed files carry no outputs.

The slow notebooks run here at smaller sizes: each states its sizes in one cell tagged "parameters"
(papermill's convention), and the test inserts a cell after it that sets the smaller ones (QUICK).
Users run the sizes the notebook states."""
from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
EXPECTED = {"embedding_analysis", "property_prediction", "search_walkthrough", "graph_gallery"}
CELL_TIMEOUT_S = 300  # at full size the slowest cell (embedding ~2,000 nets) takes one to two minutes on 2 cores

# Smaller sizes per notebook (names its "parameters" cell assigns). Every DeepNets-1M split, several
# torchvision models and a Pareto front of several trials remain, so every cell and plot still runs.
QUICK = {
    "embedding_analysis": {"SIZES": {"train": 120, "search": 15, "test": 15, "wide": 15, "deep": 8, "dense": 4,
                                     "bnfree": 13},
                           "TORCHVISION": ["resnet18", "mobilenet_v3_small", "swin_t"], "N_NB201": 30,
                           "N_FLOPS": 12, "N_ACCURACY": 4},
    "property_prediction": {"N_DRAWN": 120},
    "search_walkthrough": {"TRIALS": 8, "N_IMAGES": 64, "SGD_STEPS": 8, "EVAL_BATCHES": 1},
}

# Run first in the kernel: wrap plt.show so that every figure shown is checked before it is drawn.
CHECK_PLOTS = '''
import matplotlib.pyplot as _plt

_show = _plt.show

def _checked_show(*args, **kwargs):
    for fig in map(_plt.figure, _plt.get_fignums()):
        suptitle = fig.get_suptitle() if hasattr(fig, "get_suptitle") else ""  # matplotlib >= 3.8
        for ax in fig.axes:
            if ax.get_label() == "<colorbar>":
                continue
            missing = [what for what, ok in (("a title", ax.get_title() or suptitle),
                                             ("an x label", ax.get_xlabel()), ("a y label", ax.get_ylabel()),
                                             ("a legend", ax.get_legend() or fig.legends)) if not ok]
            if missing:
                raise AssertionError(f"plot {ax.get_title() or suptitle!r} lacks {', '.join(missing)}")
    return _show(*args, **kwargs)

_plt.show = _checked_show
'''


def test_the_four_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == EXPECTED
    assert set(QUICK) <= EXPECTED


def with_quick_sizes(nb, name: str) -> None:
    """Insert a cell setting QUICK[name] after the notebook's "parameters" cell, which must assign every one."""
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1 and nb.cells[tagged[0]].cell_type == "code", f"{name}: expected one code cell tagged 'parameters'"
    assigned = {target.id for node in ast.parse(nb.cells[tagged[0]].source).body if isinstance(node, ast.Assign)
                for t in node.targets for target in (t.elts if isinstance(t, ast.Tuple) else [t])}
    missing = set(QUICK[name]) - assigned
    assert not missing, f"{name}: its parameters cell does not set {sorted(missing)}"
    nb.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in QUICK[name].items())))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# "), "a notebook opens with a titled explanation"
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}, cell {i}: outputs committed (clear them before committing)"
            assert cell.execution_count is None, f"{path.name}, cell {i}: execution count committed"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom(path, cifar_dir, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.setenv("GHN_NAS_DATA", str(cifar_dir))
    # Jupyter's inline backend: Agg-based and non-interactive, and it puts each figure in the outputs.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    if path.stem in QUICK:
        with_quick_sizes(nb, path.stem)
    nb.cells.insert(0, nbformat.v4.new_code_cell(CHECK_PLOTS))
    # Any error in a cell raises CellExecutionError with the cell's traceback.
    NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs if "image/png" in o.get("data", {})]
    assert images, f"{path.name} showed no figure"
    assert not list(tmp_path.iterdir()), f"{path.name} left files in its working folder"
