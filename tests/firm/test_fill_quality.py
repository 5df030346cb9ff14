"""Implementation shortfall and the best-execution report (firm/fill_quality.py): the CFA curriculum's
worked examples, a hand-built journal, and a real run's journal recomputed with pandas."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from firm.fill_quality import (
    analyse,
    best_execution_report,
    read_journal,
    render_markdown,
    shortfall,
    write_best_execution,
)


def test_cfa_buy_example_with_delay_and_missed_opportunity():
    """CFA Institute, Level III, "Execution of Portfolio Decisions" (Impulse Robotics): buy 1,000 shares
    decided at Monday's close of $10.00; Tuesday's limit order does not fill and the stock closes at $10.05;
    Wednesday 700 shares fill at $10.07, commission $14, close $10.08; the other 300 are cancelled.
    Paper gain 1,000 x 0.08 = $80, real 700 x 0.01 - 14 = -$7: shortfall $87 = 0.87%, as delay 0.35%,
    realised (trading) 0.14%, missed opportunity 0.24%, commission 0.14%."""
    s = shortfall(+1, 1_000, 10.00, [(700, 10.07, 10.05, 14.0)], end_price=10.08)
    assert s.paper_notional == pytest.approx(10_000.0)
    assert (s.delay, s.trading, s.opportunity, s.commission) == pytest.approx((35.0, 14.0, 24.0, 14.0))
    assert s.total == pytest.approx(87.0)
    assert s.bps(s.total) == pytest.approx(87.0)
    assert [s.bps(x) for x in (s.delay, s.trading, s.opportunity, s.commission)] == pytest.approx([35, 14, 24, 14])


def test_cfa_sell_example_positive_is_a_cost_for_sells_too():
    """CFA Level III exam question (2000, Q28): sell 50,000 TRP decided at $43.00, placed at $41.00,
    executed at $40.25 with $0.05 a share commission: the shortfall is $2.80 a share, $140,000, 6.51%."""
    s = shortfall(-1, 50_000, 43.00, [(50_000, 40.25, 41.00, 2_500.0)])
    assert (s.delay, s.trading, s.opportunity, s.commission) == pytest.approx((100_000.0, 37_500.0, 0.0, 2_500.0))
    assert s.total == pytest.approx(140_000.0) and s.total / 50_000 == pytest.approx(2.80)
    assert s.bps(s.total) == pytest.approx(1e4 * 140_000 / 2_150_000)  # 651.16 bps
    assert shortfall(-1, 100, 10.0, [(100, 10.5, 10.5, 0.0)]).total == pytest.approx(-50.0)  # a sell above: a gain
    with pytest.raises(ValueError, match="end_price"):
        shortfall(+1, 100, 10.0, [(50, 10.0, 10.0, 0.0)])
    with pytest.raises(ValueError, match="exceed"):
        shortfall(+1, 10, 10.0, [(50, 10.0, 10.0, 0.0)])


D1, D2, D3 = "2020-01-02T21:00:00Z", "2020-01-03T21:00:00Z", "2020-01-06T21:00:00Z"


def _journal() -> list[dict]:
    bar = lambda ts, o, c, v: {"type": "MarketDataEvent", "id": f"bar:XYZ:{ts}", "ts": ts, "symbol": "XYZ",
                               "open": o, "high": max(o, c), "low": min(o, c), "close": c, "volume": v}
    order = lambda ref, ts, side, q, dec: {"type": "OrderEvent", "id": f"ord:{ref}", "ts": ts, "order_ref": ref,
                                           "symbol": "XYZ", "side": side, "quantity": q, "decision_id": dec}
    fill = lambda ref, ts, side, q, p, c: {"type": "FillEvent", "id": f"fill:{ref}", "ts": ts, "order_ref": ref,
                                           "symbol": "XYZ", "side": side, "quantity": q, "price": p, "commission": c}
    return [
        bar(D1, 100.0, 101.0, 1e6),
        {"type": "DecisionEvent", "id": "dec:A", "ts": D1, "symbol": "XYZ", "price": 101.0},
        order("A", D1, "BUY", 1_000, "dec:A"),
        fill("A", "2020-01-03T14:30:00Z", "BUY", 1_000, 102.0204, 5.0),  # 2 bps over the 102 open
        bar(D2, 102.0, 103.0, 2e6),
        order("B", D2, "SELL", 500, "flatten:XYZ:D2"),  # a kill-switch flatten: no decision, the close 103
        {"type": "DecisionEvent", "id": "dec:C", "ts": D2, "symbol": "XYZ", "price": 103.0},
        order("C", D2, "BUY", 300, "dec:C"),
        fill("B", "2020-01-06T14:30:00Z", "SELL", 500, 103.9792, 2.5),  # 2 bps under the 104 open
        bar(D3, 104.0, 99.0, 1e6),
        {"type": "KillSwitchEvent", "id": "ks", "ts": D3, "cancelled": ["C"]},  # C never filled: cancelled at 99
    ]


def test_hand_built_journal():
    orders, fills = analyse(_journal())
    a, b, c = orders
    # A: delay 1000 x (102 - 101), trading 1000 x 0.0204, commission 5, of 1000 x 101
    assert (a.delay_usd, a.trading_usd, a.commission_usd) == pytest.approx((1_000.0, 20.4, 5.0))
    assert a.shortfall_bps == pytest.approx(1e4 * 1_025.4 / 101_000)
    # B (sell): delay -(104 - 103) x 500, trading -(103.9792 - 104) x 500, commission 2.5, of 500 x 103
    assert (b.arrival_price, b.delay_usd, b.trading_usd) == pytest.approx((103.0, -500.0, 10.4))
    assert b.shortfall_bps == pytest.approx(1e4 * (-500 + 10.4 + 2.5) / 51_500)
    # C: 300 unfilled, cancelled when the close was 99: opportunity 300 x (99 - 103)
    assert (c.filled, c.end_price, c.opportunity_usd, c.shortfall_usd) == pytest.approx((0, 99.0, -1_200.0, -1_200.0))
    fa, fb = fills
    assert (fa.slippage_open_bps, fa.slippage_arrival_bps) == pytest.approx((2.0, 1e4 * (102.0204 / 101 - 1)))
    assert (fa.participation, fb.participation, fb.slippage_open_bps) == pytest.approx((5e-4, 5e-4, 2.0))
    report = best_execution_report(_journal())
    overall = report["overall"]
    bps = [a.shortfall_bps, b.shortfall_bps, c.shortfall_bps]
    assert (overall["orders"], overall["fills"], overall["commissions_usd"]) == (3, 2, 7.5)
    assert overall["shortfall_bps_mean"] == round(float(np.mean(bps)), 2)
    assert overall["shortfall_bps_median"] == round(float(np.median(bps)), 2)
    assert overall["shortfall_bps_weighted"] == round(1e4 * (1_025.4 - 487.1 - 1_200) / (101_000 + 51_500 + 30_900), 2)
    assert report["per_side"]["SELL"]["orders"] == 1 and report["per_side"]["BUY"]["orders"] == 2
    assert [o["order_ref"] for o in report["worst_orders"]] == ["A", "B", "C"]
    assert report["worst_orders"][0]["fill_ids"] == ["fill:A"]
    md = render_markdown(report)
    assert "| A | BUY | 1,000 |" in md and "fill:A" in md


def test_empty_journal_gives_an_empty_report():
    report = best_execution_report([])
    assert report["overall"]["orders"] == 0 and report["overall"]["shortfall_bps_mean"] is None
    assert report["per_symbol"] == {} and report["worst_orders"] == []
    assert "**all** | 0 |" in render_markdown(report)


@pytest.mark.usefixtures("ray_local")
def test_real_run_report_recomputed_with_pandas(short_config):
    from firm.pipeline import run

    result = run(short_config(), config_name="exq", progress=False)
    run_dir = result.run_dir
    report = json.loads((run_dir / "best_execution.json").read_text())
    assert (run_dir / "best_execution.md").read_text().startswith(f"# Best execution: {run_dir.name}")

    # Recompute from the raw journal lines with pandas: orders -> decisions (arrival) -> fills -> the fill's bar.
    lines = [json.loads(x) for x in (run_dir / "journal.jsonl").read_text().splitlines()]
    frame = lambda t: pd.DataFrame([r for r in lines if r["type"] == t])
    orders, fills, decisions, bars = (frame(t) for t in ("OrderEvent", "FillEvent", "DecisionEvent", "MarketDataEvent"))
    assert len(orders) > 50 and len(fills) == len(orders)  # the sim fills every order of this run
    df = orders.merge(decisions[["id", "price"]].rename(columns={"id": "decision_id", "price": "arrival"}), on="decision_id")
    assert len(df) == len(orders)  # no kill-switch orders here
    df = df.merge(fills[["order_ref", "ts", "price", "commission"]].rename(columns={"ts": "fill_ts"}), on="order_ref")
    bars["day"] = pd.to_datetime(bars["ts"]).dt.date
    df["day"] = pd.to_datetime(df["fill_ts"]).dt.date
    df = df.merge(bars[["symbol", "day", "open", "volume"]], on=["symbol", "day"])
    assert len(df) == len(orders)
    sign = np.where(df["side"] == "BUY", 1.0, -1.0)
    df["is_usd"] = sign * df["quantity"] * (df["price"] - df["arrival"]) + df["commission"]
    df["is_bps"] = 1e4 * df["is_usd"] / (df["quantity"] * df["arrival"])
    df = df.sort_values("order_ref").reset_index(drop=True)

    rows, fill_rows = analyse(read_journal(run_dir / "journal.jsonl"))
    np.testing.assert_allclose([o.shortfall_bps for o in rows], df["is_bps"], rtol=1e-9, atol=1e-9)
    # three fills by hand, field by field
    for (o, f), (_, r) in list(zip(zip(rows, fill_rows), df.iterrows()))[:3]:
        s = 1 if r["side"] == "BUY" else -1
        assert o.order_ref == r["order_ref"] and f.fill_id == f"fill:{r['order_ref']}"
        assert o.delay_usd == pytest.approx(s * r["quantity"] * (r["open"] - r["arrival"]))
        assert o.trading_usd == pytest.approx(s * r["quantity"] * (r["price"] - r["open"]))
        assert f.slippage_open_bps == pytest.approx(1e4 * s * (r["price"] / r["open"] - 1))
        assert f.participation == pytest.approx(r["quantity"] / r["volume"])
    # the sim's slippage against the open: 2 bps + |N(0, 1)| bps, up to the 1e-4 price rounding
    slip = np.array([f.slippage_open_bps for f in fill_rows])
    tick = 1e4 * 0.5e-4 / df["open"].to_numpy()
    assert (slip >= 2.0 - tick - 1e-9).all() and slip.mean() < 4.0

    overall = report["overall"]
    assert overall["orders"] == len(df) and overall["fills"] == len(fills)
    assert overall["shortfall_bps_mean"] == round(df["is_bps"].mean(), 2)
    assert overall["shortfall_bps_median"] == round(df["is_bps"].median(), 2)
    assert overall["shortfall_bps_p95"] == round(float(np.percentile(df["is_bps"], 95)), 2)
    assert overall["commissions_usd"] == pytest.approx(result.stats.commissions, abs=0.01)
    for symbol, g in df.groupby("symbol"):
        assert report["per_symbol"][symbol]["orders"] == len(g)
        assert report["per_symbol"][symbol]["shortfall_bps_mean"] == round(g["is_bps"].mean(), 2)
    worst = df.sort_values(["is_bps", "order_ref"], ascending=[False, True]).head(10)
    assert [o["order_ref"] for o in report["worst_orders"]] == worst["order_ref"].tolist()

    # In the run summary, and the same bytes whenever the report is rebuilt from the journal.
    assert result.stats.as_dict()["execution"] == overall
    assert f"execution        shortfall mean {overall['shortfall_bps_mean']:+.2f} bps" in result.stats.render()
    first = (run_dir / "best_execution.json").read_bytes(), (run_dir / "best_execution.md").read_bytes()
    write_best_execution(run_dir)
    assert ((run_dir / "best_execution.json").read_bytes(), (run_dir / "best_execution.md").read_bytes()) == first
    assert json.loads(first[0]) == json.loads(json.dumps(best_execution_report(lines), sort_keys=True))
