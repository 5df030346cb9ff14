"""Stress tests: historical P&L against a hand computation from the raw files, the proxy rule, the shocks
against closed forms, the kernels against plain numpy, Ray tasks against the loop, and ``firm stress``."""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.stats import norm

from firm.cli import main
from firm.data.source import SampleDataSource
from risk import stress as S
from actors import stress as T

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"]


@pytest.fixture(scope="module")
def history() -> S.History:
    return S.load_history(SYMBOLS + ["XYZ"], [SampleDataSource()])


@pytest.fixture(scope="module")
def raw() -> dict[str, pd.Series]:
    """Adjusted closes read straight from the packages' files with pandas (no firm code)."""
    path = importlib.resources.files("bokeh_sampledata") / "_data" / "stocks.csv.gz"
    with importlib.resources.as_file(path) as local:
        stocks = pd.read_csv(local, parse_dates=["Date"])
    out = {t: g.set_index("Date")["Adj Close"].sort_index() for t, g in stocks.groupby("Ticker")}
    arch_dir = Path(next(iter(importlib.util.find_spec("arch").submodule_search_locations))) / "data"
    for sym, name in (("SPX", "sp500"), ("COMP", "nasdaq")):
        f = pd.read_csv(arch_dir / name / f"{name}.csv.gz", parse_dates=["Date"]).set_index("Date").sort_index()
        out[sym] = f["Adj Close"]
    return out


def _book(history, positions, cash=0.0, as_of="2013-03-01"):
    return S.build_portfolio(positions, cash, as_of, history, "test book")


def _one(scenario, pf, history) -> S.ScenarioResult:
    return S.evaluate(S.prepare(scenario, pf, history))


def test_historical_pnl_equals_a_hand_computation(history, raw):
    pf = _book(history, [("AAPL", "value", 100_000.0), ("MSFT", "quantity", 1_000.0), ("SPX", "value", -50_000.0)], 25_000.0)
    msft_value = 1_000.0 * raw["MSFT"].loc["2013-03-01"]
    assert pf.values[1] == pytest.approx(msft_value, rel=1e-12)
    assert pf.equity == pytest.approx(100_000 + msft_value - 50_000 + 25_000)
    r = _one(S.SCENARIOS["lehman_2008_2009"], pf, history)
    days = raw["SPX"].loc["2008-09-12":"2009-03-09"].index
    value = {"AAPL": 100_000.0, "MSFT": msft_value, "SPX": -50_000.0}
    paths = {s: raw[s].reindex(days) / raw[s].loc["2008-09-12"] - 1.0 for s in value}
    pnl = sum(value[s] * paths[s] for s in value)
    assert r.window == ("2008-09-12", "2009-03-09") and r.details["sessions"] == len(days) - 1
    assert r.pnl == pytest.approx(pnl.iloc[-1], rel=1e-12)
    assert r.pnl_pct == pytest.approx(pnl.iloc[-1] / pf.equity, rel=1e-12)
    assert r.worst_point == pytest.approx(min(0.0, pnl.min()), rel=1e-12)
    peak = np.maximum.accumulate(np.maximum(pnl.to_numpy(), 0.0))
    assert r.max_drawdown == pytest.approx((peak - pnl.to_numpy()).max(), rel=1e-12)
    for s in value:
        assert r.by_instrument[s] == pytest.approx(value[s] * paths[s].iloc[-1], rel=1e-12)
    assert r.worst_instrument == min(value, key=lambda s: value[s] * paths[s].iloc[-1])
    assert r.proxies == ()  # all three have data over the window


def test_flash_crash_is_one_session_close_to_close(history, raw):
    pf = _book(history, [("SPX", "value", 1_000_000.0)])
    r = _one(S.SCENARIOS["flash_crash_2010"], pf, history)
    move = raw["SPX"].loc["2010-05-06"] / raw["SPX"].loc["2010-05-05"] - 1.0
    assert r.pnl == pytest.approx(1e6 * move, rel=1e-12) and -0.04 < move < -0.03


def test_proxy_rule_before_after_and_no_data(history, raw):
    spx_r = raw["SPX"].pct_change()
    pf = _book(history, [("AAPL", "value", 100_000.0), ("GOOG", "value", 50_000.0), ("XYZ", "value", 10_000.0)])

    # 2018: no stock data (it ends 2013-03-01): beta on the last 504 returns before the base date
    r = _one(S.SCENARIOS["volmageddon_2018"], pf, history)
    px = {p.symbol: p for p in r.proxies}
    assert set(px) == {"AAPL", "GOOG", "XYZ"}
    a = raw["AAPL"].pct_change().dropna()
    a = a[a.index <= "2018-01-26"].iloc[-504:]
    beta = np.polyfit(spx_r.reindex(a.index).to_numpy(), a.to_numpy(), 1)[0]
    assert px["AAPL"].beta == pytest.approx(beta, rel=1e-9) and px["AAPL"].n_obs == 504
    assert px["AAPL"].estimated_on == f"{a.index[0].date()}..2013-03-01" and "before the window" in px["AAPL"].reason
    assert px["XYZ"].beta == 1.0 and "no data in any source" in px["XYZ"].reason
    spx_move = raw["SPX"].loc["2018-02-08"] / raw["SPX"].loc["2018-01-26"] - 1.0
    assert r.by_instrument["AAPL"] == pytest.approx(100_000 * beta * spx_move, rel=1e-9)
    assert r.by_instrument["XYZ"] == pytest.approx(10_000 * spx_move, rel=1e-9)

    # dot-com: GOOG listed 2004: beta on its first 504 returns after the window
    r = _one(S.SCENARIOS["dotcom_2000_2002"], pf, history)
    px = {p.symbol: p for p in r.proxies}
    assert "AAPL" not in px  # AAPL's data starts 2000-03-01, before the NASDAQ peak
    g = raw["GOOG"].pct_change().dropna().iloc[:504]
    beta = np.polyfit(spx_r.reindex(g.index).to_numpy(), g.to_numpy(), 1)[0]
    assert px["GOOG"].beta == pytest.approx(beta, rel=1e-9) and "after the window" in px["GOOG"].reason
    aapl = raw["AAPL"].loc["2002-10-09"] / raw["AAPL"].loc["2000-03-10"] - 1.0
    assert r.by_instrument["AAPL"] == pytest.approx(100_000 * aapl, rel=1e-12)

    # reported: JSON and markdown name the proxy and its beta
    report = S.report_dict(pf, [r])
    assert report["scenarios"][0]["proxies"][0]["symbol"] == "GOOG"
    assert f"GOOG ~ SPX beta {beta:.3f}" in S.markdown(report)


def test_hypothetical_shocks_against_closed_forms(history, raw):
    pf = _book(history, [("AAPL", "value", 200_000.0), ("IBM", "value", -80_000.0), ("SPX", "value", 100_000.0),
                         ("COMP", "value", 50_000.0)], 100_000.0, as_of="2012-12-31")
    days = raw["SPX"].loc[:"2012-12-31"].index[-505:]
    R = np.column_stack([raw[s].reindex(days).pct_change().to_numpy()[1:] for s in pf.symbols])
    v = np.asarray(pf.values)
    rs = R[:, 2]
    betas = np.array([np.polyfit(rs, R[:, i], 1)[0] for i in range(4)])
    eq = _one(S.SCENARIOS["equity_down_20"], pf, history)
    assert eq.pnl == pytest.approx(-0.2 * (v * betas).sum(), rel=1e-9)
    assert eq.details["betas"]["SPX"] == pytest.approx(1.0, rel=1e-12)
    assert eq.by_instrument["AAPL"] == pytest.approx(-0.2 * 200_000 * betas[0], rel=1e-9)

    cov = np.cov(R, rowvar=False)
    z = norm.ppf(0.99)
    assert S.Z_99 == pytest.approx(z, rel=1e-15)
    base = z * math.sqrt(v @ cov @ v)
    vol = _one(S.SCENARIOS["vol_x2"], pf, history)
    assert vol.details["var_unstressed"] == pytest.approx(base, rel=1e-9)
    assert vol.pnl == pytest.approx(-2.0 * base, rel=1e-9)  # covariance x4: VaR x2
    assert sum(vol.by_instrument.values()) == pytest.approx(vol.pnl, rel=1e-9)  # Euler contributions
    one = _one(S.SCENARIOS["correlation_one"], pf, history)
    sd = np.sqrt(np.diag(cov))
    assert one.pnl == pytest.approx(-z * abs(v @ sd), rel=1e-9)
    assert sum(one.by_instrument.values()) == pytest.approx(one.pnl, rel=1e-9)


def test_kernels_against_plain_numpy(history):
    rng = np.random.default_rng(3)
    path = np.vstack([np.zeros(4), np.cumsum(rng.normal(0, 0.02, (200, 4)), axis=0)])
    v = rng.normal(0, 1e5, 4)
    pnl, dd, i, j = S.path_pnl_kernel(v, path)
    ref = path @ v
    assert np.allclose(pnl, ref, rtol=1e-12, atol=1e-6)
    peak = np.maximum.accumulate(np.maximum(ref, 0.0))
    assert dd == pytest.approx((peak - ref).max(), rel=1e-12) and j == int(np.argmax(peak - ref))
    assert pnl[i] == pytest.approx(max(peak[j], 0.0), abs=1e-6)

    pf = _book(history, [("AAPL", "value", 1e5), ("GOOG", "value", 5e4), ("COMP", "value", -3e4)])
    sc = S.Scenario("scan", "scan", "test", "2007-01-03", "2009-12-31", horizon=15)
    job = S.prepare(sc, pf, history)
    r = S.evaluate(job)
    lv, h = job.path, 15
    ends, dds = [], []
    for s in range(len(lv) - h):
        p = ((lv[s + 1 : s + h + 1] / lv[s] - 1.0) @ job.values)
        ends.append(p[-1])
        peaks = np.maximum.accumulate(np.maximum(p, 0.0))
        dds.append((peaks - p).max())
    k = int(np.argmin(ends))
    assert r.pnl == pytest.approx(ends[k], rel=1e-10) and r.details["worst_window"][0] == job.dates[k]
    assert r.max_drawdown == pytest.approx(max(dds), rel=1e-10)
    assert r.proxies == ()  # all three have data 2007..2009


def test_select_and_plan():
    assert [s.name for s in S.select("vol_x2, worst_20d")] == ["vol_x2", "worst_20d_1999_2018"]
    assert len(S.select(None)) == 8
    with pytest.raises(KeyError, match="unknown scenario 'nope'"):
        S.select("nope")
    assert T.chunk_size(100, 0.010, 2) == 2 and T.chunk_size(100, 0.030, 2) == 1
    assert T.chunk_size(100, 50e-6, 2) == 12  # 4 tasks per CPU beats 20 ms per task here
    assert T.plan(100, 50e-6, 2).mode == "local"  # 5 ms of work cannot win on Ray
    heavy = T.plan(100, 0.010, 2)
    assert heavy.mode == "ray" and heavy.tasks == 50


def _jobs(history):
    pf = _book(history, [("AAPL", "value", 1e5), ("MSFT", "value", 8e4), ("GOOG", "quantity", 100.0),
                         ("SPX", "value", -5e4), ("COMP", "value", 3e4), ("XYZ", "value", 1e4)], 5e4)
    scenarios = [*S.select(None), S.scan_scenario(60), S.scan_scenario(120)]
    return [S.prepare(s, pf, history) for s in scenarios]


def test_ray_results_identical_to_the_loop(ray_local, history):
    jobs = _jobs(history)
    reference = [r.to_dict() for r in S.run_local(jobs)]
    for mode, chunk in (("ray", 1), ("ray", 3), ("ray", None), ("auto", None)):
        got, plan = T.run(jobs, mode=mode, chunk=chunk)
        assert [r.to_dict() for r in got] == reference, (mode, chunk)
        if mode == "ray":
            assert plan.mode == "ray" and plan.tasks >= 1
    # a light batch stays in the loop under auto
    _, plan = T.run(jobs[:8], mode="auto")
    assert plan.mode == "local"


# ------------------------------------------------------------------------------------------------ files


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.csv", "symbol,quantity\nAAPL,10\nMSFT,ten\n", "line 3: quantity = 'ten': must be a number"),
        ("b.csv", "symbol,quantity,value\nAAPL,10,\nMSFT,5,100\n", "line 3: MSFT: give exactly one of quantity"),
        ("c.csv", "ticker,shares\nAAPL,10\n", "line 1: header 'ticker,shares': expected symbol and quantity"),
        ("d.csv", "symbol,value\nAAPL,10\nAAPL,20\n", "line 3: AAPL is listed twice (first at"),
        ("e.csv", "symbol,value\nAAPL,10,3\n", "line 2: 3 fields, the header has 2"),
        ("f.json", '{"positions": [{"symbol": "AAPL", "qty": 3}]}', "positions[0]: each position is an object"),
        ("g.json", '{"positions": [\n{"symbol": "AAPL" "value": 3}]}', "line 2: not valid JSON"),
        ("h.txt", "AAPL 10", "portfolio files are .csv or .json"),
    ],
)
def test_bad_portfolio_files_name_the_line_and_the_rule(tmp_path, name, text, message):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(S.PortfolioError, match=None) as err:
        S.read_portfolio_file(f)
    assert message in str(err.value) and str(f) in str(err.value)


def test_portfolio_files(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("symbol,quantity,value\nAAPL,10,\nSPX,,-5000.5\nCASH,,1000\n\n")
    assert S.read_portfolio_file(f) == ([("AAPL", "quantity", 10.0), ("SPX", "value", -5000.5)], 1000.0, None)
    j = tmp_path / "p.json"
    j.write_text(json.dumps({"as_of": "2010-06-30", "cash": 5, "positions": [{"symbol": "IBM", "value": 7}]}))
    assert S.read_portfolio_file(j) == ([("IBM", "value", 7.0)], 5.0, "2010-06-30")


# -------------------------------------------------------------------------------------------------- CLI


def _config(tmp_path: Path) -> Path:
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    config = tmp_path / "stress.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


def test_firm_stress_writes_the_report(tmp_path, capsys, ray_local, raw):
    config = _config(tmp_path)
    book = tmp_path / "book.csv"
    book.write_text("symbol,quantity,value\nAAPL,1000,\nGOOG,,200000\nCASH,,50000\n")
    out = tmp_path / "report"
    code = main(["stress", "--config", str(config), "--portfolio", str(book), "--out", str(out),
                 "--scenarios", "lehman_2008_2009,volmageddon_2018,vol_x2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert printed.out.splitlines()[0].split()[:4] == ["scenario", "window", "P&L", "$"]
    assert "volmageddon_2018" in printed.out and "AAPL~SPX" in printed.out
    report = json.loads((out / "stress.json").read_text())
    assert [s["name"] for s in report["scenarios"]] == ["lehman_2008_2009", "volmageddon_2018", "vol_x2"]
    aapl = 1000 * raw["AAPL"].loc["2013-03-01"]  # valued at data.end
    assert report["portfolio"]["equity"] == pytest.approx(aapl + 200_000 + 50_000)
    lehman = report["scenarios"][0]
    days = ("2008-09-12", "2009-03-09")
    hand = sum(v * (raw[s].loc[days[1]] / raw[s].loc[days[0]] - 1) for s, v in (("AAPL", aapl), ("GOOG", 200_000)))
    assert lehman["pnl"] == pytest.approx(hand, rel=1e-12)
    assert report["execution"]["mode"] in ("local", "ray")
    md = (out / "stress.md").read_text()
    assert "| lehman_2008_2009 | historical | 2008-09-12..2009-03-09 |" in md and "AAPL ~ SPX beta" in md


def test_firm_stress_takes_the_latest_run_and_explains_errors(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["stress", "--config", str(config), "--local"]) == 2
    err = capsys.readouterr().err
    assert "no finished run under" in err and "--portfolio FILE" in err and "--run-dir DIR" in err

    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,value\nAAPL,1e5\nIBM,-\n")
    assert main(["stress", "--config", str(config), "--portfolio", str(bad), "--local"]) == 2
    assert f"firm: stress: {bad}: line 3: value = '-': must be a number" in capsys.readouterr().err

    run = tmp_path / "runs" / "20990101-000000-default-seed7"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(config.read_text())
    summary = {"period": ["2004-08-19", "2013-03-01"], "final_equity": 1_000_000.0,
               "positions": [{"symbol": "GOOG", "position": 144}, {"symbol": "IBM", "position": 0}]}
    (run / "summary.json").write_text(json.dumps(summary))
    assert main(["stress", "--config", str(config), "--local", "--scenarios", "equity_down_20"]) == 0
    out = tmp_path / "runs" / "stress" / run.name
    report = json.loads((out / "stress.json").read_text())
    assert report["portfolio"]["origin"] == f"final book of run {run}"
    assert [p["symbol"] for p in report["portfolio"]["positions"]] == ["GOOG"]
    assert report["portfolio"]["equity"] == pytest.approx(1_000_000.0)
    assert "equity_down_20" in capsys.readouterr().out
