"""The tutorials run: each notebook (jupytext pair .py/.ipynb) is in sync and executes without error."""

from __future__ import annotations

from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
#: Where the executed tutorials go (gitignored): docs/conf.py renders them with their outputs.
EXECUTED = ROOT / "build" / "executed-notebooks"


def _sources(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source.strip()) for c in nb.cells]


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 2


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_pair_in_sync_and_runs(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    script = jupytext.read(path)
    paired = path.with_suffix(".ipynb")
    assert paired.is_file(), f"{paired.name} missing: run `jupytext --sync {path.name}`"
    assert _sources(jupytext.read(paired)) == _sources(script), f"{path.name} and {paired.name} differ: jupytext --sync"
    # the inline backend: figures become image/png outputs of the executed notebook (headless)
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # the tutorials work in tempfile.mkdtemp() directories (studies, BIDS, caches: ~0.5 GB each): under pytest's
    # tmp_path they are cleaned up with it instead of piling up in /tmp run after run (it filled the disk once)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    client = NotebookClient(script, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError naming the failing cell
    errors = [o for c in script.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # the executed notebook, outputs and figures included, for the documentation (docs/conf.py uses it while its
    # cells are those of the notebook)
    figures = [o for c in script.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, f"{path.name} draws no figure"
    EXECUTED.mkdir(parents=True, exist_ok=True)
    tmp = EXECUTED / f".tmp-{paired.name}"  # jupytext writes by extension
    jupytext.write(script, tmp, fmt="ipynb")
    tmp.replace(EXECUTED / paired.name)
