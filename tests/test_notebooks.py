"""Every notebook runs top to bottom against a firm run on a real Ray cluster.

A head of the test's own (``tests/firm/ray_head.py``: explicit ports, its own temp dir, token auth on),
``firm run --address`` on it (2010, three agents), then each notebook in a fresh kernel whose environment
has ``RAY_ADDRESS``, the cluster's token and ``FIRM_RUN_DIR``: the run report reads the run directory, the
cluster notebook attaches to the finished CIO, plots and stress-tests its book as Ray tasks.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent / "firm"))
from ray_head import RayHead  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIRM = str(Path(sys.executable).with_name("firm"))
AGENTS = ("mean_reversion", "momentum", "ttm_squeeze")


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("notebooks")
    cfg = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    cfg["run"].update(output_dir=str(tmp / "runs"), progress_every_s=3600)
    cfg["data"].update(start="2010-01-04", end="2010-12-31")  # ends holding MSFT, IBM and COMP: a book to stress
    cfg["compliance"]["restricted"] = ["GOOG"]  # so that the report has a refusal to show
    for name, agent in cfg["agents"].items():
        agent["enabled"] = name in AGENTS
    path = tmp / "notebooks.yaml"
    path.write_text(yaml.safe_dump(cfg))
    head = RayHead(tmp).start()
    try:
        done = subprocess.run([FIRM, "run", "--config", str(path), "--address", head.address, "--quiet"],
                              cwd=ROOT, env=head.env, capture_output=True, text=True, timeout=600)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        (run_dir,) = (tmp / "runs").iterdir()
        yield head, run_dir
    finally:
        head.stop()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, cluster_run):
    head, run_dir = cluster_run
    env = {**head.env, "RAY_ADDRESS": head.address, "FIRM_RUN_DIR": str(run_dir)}
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}})
    client.execute(env=env)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [f"{o.ename}: {o.evalue}" for o in outputs if o.output_type == "error"]
    assert not errors
    pngs = [base64.b64decode(o.data["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    if path.name == "run_report.ipynb":
        assert (run_dir / "equity.png").stat().st_size > 1000
    if path.name == "cluster.ipynb":
        text = "".join(o.get("text", "") for o in outputs)
        assert "finished run of config 'notebooks'" in text, text
        assert "scenarios as" in text and "Ray tasks" in text, text  # the stress test ran on the cluster
        assert len(pngs) == 4  # positions, equity and drawdown, signals, stress
        assert all(p.startswith(b"\x89PNG") and len(p) > 5000 for p in pngs)
