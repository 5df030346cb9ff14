"""Every notebook runs top to bottom against a real run directory."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from firm.config import load_config
from firm.pipeline import run

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, ray_local):
    overrides = {
        "run.output_dir": str(tmp_path_factory.mktemp("runs")),
        "data.start": "2008-01-02",
        "data.end": "2008-12-31",
        "compliance.restricted": ["GOOG"],
    }
    return run(load_config(ROOT / "configs" / "default.yaml", overrides), progress=False).run_dir


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, run_dir, monkeypatch):
    monkeypatch.setenv("FIRM_RUN_DIR", str(run_dir))
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert (run_dir / "equity.png").stat().st_size > 1000
