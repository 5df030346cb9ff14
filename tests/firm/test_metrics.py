"""firm's metrics on a real Ray head's Prometheus endpoint equal the run's own counts.

A head of its own with a metrics export port (``ray start --head --metrics-export-port``, token auth on);
a driver process (this file run as a script) replays the default config on 2008 H1 with three of its agents
and one that raises on one batch (IBM restricted and a tight sector limit, so both validators reject), then stresses the run's final book (the VaR gauge) and stays connected while the test
scrapes the endpoint with urllib until the ``firm_`` metrics of its run appear, then compares them with
summary.json, the journal and stress.json.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_head import ROOT, RayHead  # noqa: E402

from strategies.base import Advice, Panel, Strategy  # noqa: E402
from strategies.registry import register  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
BATCH = 32
CRASH_AT = 96  # history length (a batch end) at which the test agent raises
SCRAPE_DEADLINE_S = 60
AGENTS = ("momentum", "mean_reversion", "regime")


@register
class Crashy(Strategy):
    """Sign of the 5-bar change; raises once, on the batch that ends at row CRASH_AT."""

    name = "test_metrics_crashy"

    @property
    def warmup(self) -> int:
        return 5

    def compute(self, panel: Panel) -> Advice:
        if len(panel) == CRASH_AT:
            raise RuntimeError("feed handler crashed")
        close = panel.close
        strength = np.full(close.shape, np.nan)
        strength[5:] = np.tanh(20 * (close[5:] / close[:-5] - 1))
        return Advice(strength, np.where(np.isnan(strength), 0.0, 0.6), {})


def drive(address: str, out: str) -> None:
    """The driver: one run and one stress test on the cluster, then connected until stdin closes."""
    from firm.cli import main
    from firm.config import load_config
    from firm.pipeline import run

    base = load_config(
        DEFAULT_CONFIG,
        {"run.output_dir": out, "run.progress_every_s": 3600, "run.batch": BATCH,
         "data.start": "2008-01-02", "data.end": "2008-06-30",
         "compliance.restricted": ["IBM"], "risk.max_sector_weight": 0.2},  # rejections by both validators
    )  # fmt: skip
    agents = {a: base.agents[a] for a in AGENTS}
    agents[Crashy.name] = base.agents["momentum"].model_copy(update={"weight": 0.5, "params": {}})
    cfg = base.model_copy(update={"agents": agents})
    result = run(cfg, config_name="metrics-test", address=address, progress=False)
    stress_out = Path(out) / "stress"
    code = main(
        ["stress", "--config", str(DEFAULT_CONFIG), "--run-dir", str(result.run_dir), "--scenarios", "vol_x2",
         "--out", str(stress_out), "--address", address]
    )  # fmt: skip
    print("DRIVER " + json.dumps({"run_dir": str(result.run_dir), "stress": str(stress_out), "code": code}), flush=True)
    sys.stdin.read()


SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> list[tuple[str, dict[str, str], float]]:
    """The firm_ samples of Ray's Prometheus text endpoint, as (name, labels, value)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = []
    for line in text.splitlines():
        if not line.startswith("ray_firm_"):
            continue
        m = SAMPLE.match(line)
        assert m, line
        out.append((m.group(1), dict(LABEL.findall(m.group(2) or "")), float(m.group(3))))
    return out


def totals(samples, name: str, run: str, by: tuple[str, ...] = ()) -> dict:
    """Sum of a metric's samples for one run (over Ray's worker labels), keyed by the ``by`` labels."""
    out: Counter = Counter()
    for n, labels, value in samples:
        if n == name and labels.get("run", run) == run:
            out[tuple(labels[k] for k in by)] += value
    return dict(out)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    head = RayHead(tmp).start()
    driver = None
    try:
        driver = subprocess.Popen(
            [sys.executable, __file__, head.address, str(tmp / "runs")],
            cwd=ROOT, env=head.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        info = None
        for line in driver.stdout:
            if line.startswith("DRIVER "):
                info = json.loads(line[len("DRIVER ") :])
                break
        assert info is not None, f"the driver exited with {driver.wait()}:\n{driver.stderr.read()[-4000:]}"
        assert info["code"] == 0, info
        run_dir = Path(info["run_dir"])
        summary = json.loads((run_dir / "summary.json").read_text())
        expected = expectations(run_dir, summary, Path(info["stress"]))
        # poll until every expected figure is exported (the exporter pushes every few seconds), or the deadline
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while True:
            samples = scrape(head.metrics_port)
            got = observed(samples, run_dir.name, expected)
            if got == expected or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        yield summary, expected, got, samples, run_dir.name
    finally:
        if driver is not None:
            driver.stdin.close()
            try:
                driver.wait(timeout=30)
            except subprocess.TimeoutExpired:
                driver.kill()
        head.stop()


def expectations(run_dir: Path, summary: dict, stress_dir: Path) -> dict:
    """What the metrics must say, from summary.json, stress.json and the equity curve."""
    equity = np.loadtxt(run_dir / "equity.csv", delimiter=",", skiprows=1, usecols=1)
    peak = max(summary["initial_equity"], float(equity.max()))
    stress = json.loads((stress_dir / "stress.json").read_text())
    (vol_x2,) = [s for s in stress["scenarios"] if s["name"] == "vol_x2"]
    return {
        "bars": summary["bars"],
        "sessions": summary["sessions"],
        "batches": math.ceil(summary["sessions"] / BATCH),
        "barrier_count": math.ceil(summary["sessions"] / BATCH),
        "decisions": summary["decisions"],
        "orders": summary["orders"],
        "fills": summary["fills"],
        "rejections": dict(summary["rejections"]),
        "late": dict(summary["late_by_agent"]),
        "equity": round(float(equity[-1]), 2),
        "drawdown": round(1.0 - float(equity[-1]) / peak, 9),
        "book_var": summary["book_var_1d_99"],
        "var": {
            "unstressed": round(vol_x2["details"]["var_unstressed"], 2),
            "vol_x2": round(vol_x2["details"]["var_stressed"], 2),
        },
    }


def observed(samples, run: str, expected: dict) -> dict:
    def total(name: str) -> int:
        return int(sum(totals(samples, name, run).values()))

    equity = totals(samples, "ray_firm_equity_dollars", run)
    drawdown = totals(samples, "ray_firm_drawdown", run)
    var = totals(samples, "ray_firm_var_dollars", run, ("book", "scenario"))
    return {
        "bars": total("ray_firm_bars_total"),
        "sessions": total("ray_firm_sessions_total"),
        "batches": total("ray_firm_batches_total"),
        "barrier_count": total("ray_firm_barrier_wait_seconds_count"),
        "decisions": total("ray_firm_decisions_total"),
        "orders": total("ray_firm_orders_total"),
        "fills": total("ray_firm_fills_total"),
        "rejections": {
            f"{v}/{r}": int(n) for (v, r), n in totals(samples, "ray_firm_rejections_total", run, ("validator", "rule")).items()
        },
        "late": {a: int(n) for (a,), n in totals(samples, "ray_firm_late_signals_total", run, ("agent",)).items()},
        "equity": round(next(iter(equity.values()), float("nan")), 2),
        "drawdown": round(next(iter(drawdown.values()), float("nan")), 9),
        "book_var": round(next(iter(totals(samples, "ray_firm_book_var_dollars", run).values()), float("nan")), 2),
        "var": {s: round(v, 2) for (book, s), v in var.items() if book == run},
    }


def test_the_firm_metrics_equal_the_runs_own_counts(scraped):
    summary, expected, got, _, _ = scraped
    assert got == expected
    # the run did something worth counting, and the failing agent was counted as the summary counts it
    assert summary["orders"] > 0 and summary["fills"] > 0 and summary["decisions"] > 0
    assert expected["late"] == {Crashy.name: 1}
    assert {k.split("/")[0] for k in expected["rejections"]} == {"risk", "compliance"}, expected["rejections"]


def test_the_counts_are_those_of_the_journal(scraped):
    summary, _, got, _, run = scraped
    from firm.journal import read_jsonl

    journal = read_jsonl(Path(summary["run_dir"]) / "journal.jsonl")
    kinds = Counter(r["type"] for r in journal)
    assert got["bars"] == kinds["MarketDataEvent"]
    assert got["decisions"] == kinds["DecisionEvent"]
    assert got["orders"] == kinds["OrderEvent"]
    assert got["fills"] == kinds["FillEvent"]
    # a decision's last validator event carries every verdict it got; count its rejections once
    final = {r["decision"]["id"]: r for r in journal if r["type"] == "ValidatedDecisionEvent"}
    rejected = Counter(
        f"{v['validator']}/{v['rule']}" for r in final.values() for v in r["verdicts"] if not v["approved"]
    )
    assert got["rejections"] == dict(rejected)
    late = Counter(r["agent"] for r in journal if r["type"] == "LateSignalEvent")
    assert got["late"] == dict(late)


def test_barrier_wait_histogram_and_labels(scraped):
    _, expected, _, samples, run = scraped
    buckets = sorted(
        (float(labels["le"]), value)
        for name, labels, value in samples
        if name == "ray_firm_barrier_wait_seconds_bucket" and labels.get("run") == run
    )
    assert buckets and buckets[-1] == (math.inf, expected["batches"])
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))  # cumulative
    for name, labels, _ in samples:
        if labels.get("run") == run:
            assert labels["config"] == "metrics-test", (name, labels)
    kinds = {labels["kind"] for name, labels, _ in samples if name == "ray_firm_late_signals_total"}
    assert kinds == {"failed"}


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])
