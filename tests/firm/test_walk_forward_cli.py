"""``firm walk-forward`` as a user runs it: the table, the progress lines, the report files, the same bytes twice."""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIRM = [sys.executable, "-m", "firm.cli"]


def _config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["data"].update(start="2009-01-02", end="2013-03-01")
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    raw["agents"]["options_vol"]["params"] = {"train_window": 504, "refit_every": 63}
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


def test_help_lists_walk_forward():
    out = subprocess.run([*FIRM, "--help"], capture_output=True, text=True, check=True).stdout
    assert "walk-forward" in out
    sub = subprocess.run([*FIRM, "walk-forward", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--config", "--agents", "--out", "--test-window"):
        assert flag in sub


def test_walk_forward_prints_the_table_and_writes_the_same_report_twice(tmp_path):
    config = _config(tmp_path)
    cmd = [*FIRM, "walk-forward", "--config", str(config), "--agents", "options_vol,index_spread,stat_arb"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    header = first.stdout.splitlines()[0].split()
    assert header == ["agent", "instrument", "windows", "metric", "IS", "mean", "OOS", "mean", "degradation", "OOS", "worse"]
    rows = {tuple(line.split()[:4]) for line in first.stdout.splitlines()[2:] if line.strip()}
    for row in (("options_vol", "AAPL", "9", "qlike"), ("index_spread", "COMP/SPX", "45", "resid_sd"),
                ("stat_arb", "MSFT/IBM", "38", "ic_pooled")):
        assert row in rows, first.stdout
    assert "[1/9] options_vol AAPL" in first.stderr and "[9/9] index_spread COMP/SPX" in first.stderr
    out = tmp_path / "runs" / "walk_forward" / "short"  # the default: under run.output_dir, no timestamp
    assert f"report: {out / 'walk_forward.json'}" in first.stdout
    report = json.loads((out / "walk_forward.json").read_text())
    assert report["data"]["start"] == "2009-01-02" and report["data"]["sessions"] == 1047
    vol = report["agents"]["options_vol"]
    assert vol["params"]["refit_every"] == 63
    # 1047 sessions: returns from row 1, first refit at 505, then every 63 rows
    assert len(vol["instruments"]["AAPL"]["windows"]) == len(range(505, 1047, 63))
    assert "| stat_arb | AAPL/GOOG |" in (out / "walk_forward.md").read_text()
    before = (out / "walk_forward.json").read_bytes()
    second = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert second.returncode == 0 and second.stderr.count("\n") == 1  # the opening line only
    assert (out / "walk_forward.json").read_bytes() == before


def test_walk_forward_rejects_an_agent_without_a_validator(tmp_path):
    proc = subprocess.run(
        [*FIRM, "walk-forward", "--config", str(_config(tmp_path)), "--agents", "momentum", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "no walk-forward validator for momentum" in proc.stderr
    assert not (tmp_path / "o").exists()
