"""The firm command as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FIRM = [sys.executable, "-m", "firm.cli"]


def test_help_explains_every_command():
    out = subprocess.run([*FIRM, "--help"], capture_output=True, text=True, check=True).stdout
    assert "run" in out and "check" in out
    run_help = subprocess.run([*FIRM, "run", "--help"], capture_output=True, text=True, check=True).stdout
    for flag in ("--config", "--address", "--batch", "--seed"):
        assert flag in run_help


def test_firm_run_prints_the_summary(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["data"].update(start="2012-01-03", end="2012-06-29")
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [*FIRM, "run", "--config", str(config), "--batch", "32", "--seed", "11"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for needle in ("firm run summary", "2012-01-03 .. 2012-06-29", "AAPL, MSFT, IBM, GOOG, SPX, COMP", "order log        sha256",
                   "Sharpe", "max drawdown", "run directory"):
        assert needle in out, out
    assert "[100.0%] done" in proc.stderr  # progress lines
    run_dir = Path(out.split("run directory")[1].split()[0])
    assert (run_dir / "journal.jsonl").stat().st_size > 0
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["run"]["seed"] == 11


def test_firm_check_reports_the_data():
    proc = subprocess.run([*FIRM, "check"], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "config is valid" in proc.stdout
    assert "6 instruments, 2,148 sessions, 12,888 valid bars, 0 quarantined, 0 sessions missing" in proc.stdout
