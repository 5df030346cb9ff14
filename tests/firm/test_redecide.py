"""Re-decide a run from its journal alone: the bars, the signals that made the barrier and the fills in
journal.jsonl, fed one row at a time to the same decision code (firm.cio.Allocator), give the same
decisions, byte for byte; and every decision's signal hashes are those of the journaled signals."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from firm.batches import Bars, SignalBatch
from firm.cio import Allocator, signal_hash
from firm.config import load_config
from firm.events import DecisionEvent
from firm.journal import read_jsonl
from firm.pipeline import run
from firm.portfolio import Book, Costs, PendingOrder
from strategies.base import Panel

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
AGENTS = ("momentum", "mean_reversion", "macro", "ttm_squeeze")

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out = tmp_path_factory.mktemp("redecide")
    overrides = {
        "run.output_dir": str(out),
        "run.progress_every_s": 3600,
        "run.batch": 64,
        "data.start": "2008-01-02",
        "data.end": "2008-12-31",
        "risk.max_position_weight": 0.12,  # some rejections, so the re-decision must replay the cooldowns
    }
    raw_cfg = load_config(DEFAULT_CONFIG, overrides)
    agents = {name: a.model_copy(update={"enabled": name in AGENTS}) for name, a in raw_cfg.agents.items()}
    cfg = raw_cfg.model_copy(update={"agents": agents})
    result = run(cfg, config_name="redecide", progress=False)
    return cfg, read_jsonl(result.run_dir / "journal.jsonl")


def test_decisions_are_recomputed_from_the_journal_alone(replayed):
    cfg, journal = replayed
    bars_by_ts: dict[str, dict[str, dict]] = defaultdict(dict)
    symbols: list[str] = []
    for r in journal:
        if r["type"] == "MarketDataEvent":
            bars_by_ts[r["ts"]][r["symbol"]] = r
            if r["symbol"] not in symbols:
                symbols.append(r["symbol"])
    stamps = sorted(bars_by_ts)
    row_of = {ts: k for k, ts in enumerate(stamps)}
    n, m = len(stamps), len(symbols)
    col = {s: j for j, s in enumerate(symbols)}
    field = {f: np.full((n, m), np.nan) for f in ("open", "high", "low", "close", "volume")}
    for ts, bars in bars_by_ts.items():
        for s, r in bars.items():
            for f in field:
                field[f][row_of[ts], col[s]] = r[f]
    ts_ns = np.array([pd.Timestamp(t).value for t in stamps], dtype=np.int64)

    strength = {a: np.full((n, m), np.nan) for a in AGENTS}
    confidence = {a: np.zeros((n, m)) for a in AGENTS}
    signals_by_id = {}
    decisions = defaultdict(list)
    orders = defaultdict(list)
    fills = defaultdict(list)
    rejected = defaultdict(list)
    late_rows: dict[int, tuple[str, ...]] = {}
    for r in journal:
        t = r["type"]
        if t == "SignalEvent":
            k, j = row_of[r["ts"]], col[r["symbol"]]
            strength[r["agent"]][k, j] = r["strength"]
            confidence[r["agent"]][k, j] = r["confidence"]
            signals_by_id[r["id"]] = r
        elif t == "DecisionEvent":
            decisions[row_of[r["ts"]]].append(r)
        elif t == "OrderEvent":
            orders[row_of[r["ts"]]].append(r)
        elif t == "FillEvent":
            fills[r["ts"][:10]].append(r)
        elif t == "ValidatedDecisionEvent" and not all(v["approved"] for v in r["verdicts"]):
            d = r["decision"]
            rejected[row_of[d["ts"]]].append((col[d["symbol"]], 1 if d["side"] == "BUY" else -1))
        elif t == "LateSignalEvent":  # an agent that missed a batch: its rows were decided without it
            first = row_of[r["ts"]]
            for k in range(first, first + r["bars"]):
                late_rows[k] = tuple(sorted({*late_rows.get(k, ()), r["agent"]}))
        assert t != "KillSwitchEvent"

    weights = {a: cfg.agents[a].weight for a in AGENTS}
    limits = (cfg.risk.max_gross_exposure, cfg.risk.max_net_exposure)
    alloc = Allocator(cfg.cio, weights, tuple(symbols), cfg.risk.drawdown_tiers, limits)
    book = Book.new(tuple(symbols), cfg.broker.initial_cash, Costs.from_config(cfg.broker, cfg.run.seed))
    decided = compared_fills = 0
    for k in range(n):
        panel = Panel(ts_ns[k : k + 1], tuple(symbols), *(field[f][k : k + 1] for f in field))
        bars = Bars(offset=k, panel=panel, session_open=ts_ns[k : k + 1])
        sigs = [SignalBatch(a, k, strength[a][k : k + 1], confidence[a][k : k + 1]) for a in sorted(AGENTS)]
        proposal = alloc.propose(bars, 0, book, sigs, late_rows.get(k, ()))
        ours = [json.loads(d.model_dump_json()) for d in proposal.decisions[0]]
        theirs = [
            DecisionEvent.model_validate({x: v for x, v in d.items() if x != "type"}).model_dump(mode="json")
            for d in decisions[k]
        ]
        diff = [{x: (o[x], t.get(x)) for x in o if o[x] != t.get(x)} for o, t in zip(ours, theirs)]
        assert ours == theirs, (stamps[k], diff, len(ours), len(theirs))
        decided += len(ours)
        # the true book: the journal's fills at this row's open, then the orders sent at its close
        got = book.fill_at_open(field["open"][k])
        want = fills.get(stamps[k][:10], [])
        assert [(symbols[f.symbol], f.quantity, f.price, f.commission) for f in got] == [
            (f["symbol"], f["quantity"] if f["side"] == "BUY" else -f["quantity"], f["price"], f["commission"]) for f in want
        ]
        compared_fills += len(got)
        book.mark(field["close"][k])
        for o in orders[k]:
            qty = o["quantity"] if o["side"] == "BUY" else -o["quantity"]
            book.submit(PendingOrder(o["order_ref"], col[o["symbol"]], qty, o["decision_id"]))
        for column, direction in rejected[k]:
            alloc.on_rejected(column, direction, k)
        alloc.commit(1)
    assert decided > 20 and compared_fills > 20
    assert sum(len(v) for v in rejected.values()) > 0

    # every decision's hashes are those of the journaled signals it lists
    for row in decisions.values():
        for d in row:
            assert len(d["signal_hashes"]) == len(d["signal_ids"])
            for sid, h in zip(d["signal_ids"], d["signal_hashes"]):
                s = signals_by_id[sid]
                stamp = sid.rsplit(":", 1)[1]
                assert h == signal_hash(s["agent"], s["symbol"], stamp, s["strength"], s["confidence"])
