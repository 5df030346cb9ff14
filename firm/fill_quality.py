"""Fill quality and the best-execution report of a run (pure: reads journal records, no Ray).

**Implementation shortfall** (Perold 1988, "The Implementation Shortfall: Paper versus Reality") of an
order: what the real trade lost against a paper trade of the whole quantity at the *arrival price*,
here the decision's reference price (the close of the bar the CIO decided on; for a kill-switch flatten
order, which has no decision, the close of the bar the switch tripped on). **Sign: positive is a cost**,
for buys and sells alike (side s = +1 buy, -1 sell):

    IS$ = s * sum_j q_j (p_j - P_arr)  +  s * (Q - sum_j q_j) (P_end - P_arr)  +  fees

It is split as in Wagner's expanded implementation shortfall (Kissell, *The Science of Algorithmic
Trading and Portfolio Management*, 2013, ch. 3; the CFA Level III curriculum's delay / realised P&L /
missed opportunity / commission), with P_0 the price when the order could first trade, per fill the open
of the session it filled in:

- delay       s * sum_j q_j (P_0,j - P_arr): the move while the order waited, here the overnight gap from
  the decision close to the next open (the simulated broker only trades at opens);
- trading     s * sum_j q_j (p_j - P_0,j): market impact and slippage against that open, the sim's own
  benchmark (in the sim exactly its adverse ``slippage_bps`` + seeded noise, rounded to 1e-4);
- opportunity s * unfilled * (P_end - P_arr), P_end the close when the remainder was cancelled (kill
  switch) or the last close of the run if it is still working;
- commission  the fees charged.

Basis points are of the paper notional Q * P_arr. Per fill: slippage against the arrival price and
against the bar's open in bps (same sign convention), and the participation rate q_j / the session's volume
(split-adjusted shares, as the quantities are). Aggregates: per symbol, per side and overall, the mean,
median and 95th percentile (numpy's linear interpolation) of the per-order shortfall in bps, the
notional-weighted shortfall (sum IS$ / sum paper notional), and the component totals.
"""

from __future__ import annotations

import json
import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

REPORT_TYPES = ("DecisionEvent", "OrderEvent", "FillEvent", "MarketDataEvent", "KillSwitchEvent")
WORST = 10


@dataclass(frozen=True)
class Shortfall:
    """An order's implementation shortfall in $ (positive: cost), its parts, and in bps of paper notional."""

    paper_notional: float
    delay: float
    trading: float
    opportunity: float
    commission: float

    @property
    def total(self) -> float:
        return self.delay + self.trading + self.opportunity + self.commission

    def bps(self, dollars: float) -> float:
        return 1e4 * dollars / self.paper_notional if self.paper_notional else 0.0


def shortfall(
    side: int,
    quantity: int,
    arrival: float,
    fills: Sequence[tuple[int, float, float, float]],
    end_price: float | None = None,
) -> Shortfall:
    """Implementation shortfall of one order of ``quantity`` shares (``side`` +1 buy, -1 sell) decided at
    ``arrival``; ``fills`` are ``(shares, price, price when the order could trade, commission)``;
    ``end_price`` values the unfilled remainder (required if there is one)."""
    if side not in (1, -1):
        raise ValueError(f"side must be +1 or -1, got {side}")
    filled = sum(q for q, _, _, _ in fills)
    unfilled = quantity - filled
    if unfilled < 0:
        raise ValueError(f"fills of {filled} shares exceed the order's {quantity}")
    if unfilled and end_price is None:
        raise ValueError("an order with an unfilled remainder needs end_price")
    return Shortfall(
        paper_notional=quantity * arrival,
        delay=side * sum(q * (p0 - arrival) for q, _, p0, _ in fills),
        trading=side * sum(q * (p - p0) for q, p, p0, _ in fills),
        opportunity=side * unfilled * (end_price - arrival) if unfilled else 0.0,
        commission=sum(c for _, _, _, c in fills),
    )


def read_journal(path: str | Path, types: Sequence[str] = REPORT_TYPES) -> Iterator[dict]:
    """The records of ``types`` in a run's journal.jsonl, in order (other lines are not parsed)."""
    prefixes = tuple(f'{{"type":"{t}"' for t in types)
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith(prefixes):
                yield json.loads(line)


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class FillRow:
    fill_id: str
    order_ref: str
    symbol: str
    side: str
    ts: str
    quantity: int
    price: float
    commission: float
    arrival_price: float
    open_price: float
    bar_volume: float
    slippage_arrival_bps: float
    slippage_open_bps: float
    participation: float


@dataclass(frozen=True)
class OrderRow:
    order_ref: str
    decision_id: str
    symbol: str
    side: str
    ts: str
    quantity: int
    filled: int
    arrival_price: float
    avg_fill_price: float | None
    end_price: float | None
    notional: float  # filled shares x fill prices
    paper_notional: float
    shortfall_usd: float
    shortfall_bps: float
    delay_usd: float
    trading_usd: float
    opportunity_usd: float
    commission_usd: float
    fill_ids: tuple[str, ...]


class _Bars:
    """Each symbol's bars (close time, open, close, volume) in time order."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[datetime, float, float, float]]] = defaultdict(list)

    def add(self, r: dict) -> None:
        self.rows[r["symbol"]].append((_ts(r["ts"]), r["open"], r["close"], r["volume"]))

    def freeze(self) -> None:
        for rows in self.rows.values():
            rows.sort(key=lambda x: x[0])
        self.keys = {s: [x[0] for x in rows] for s, rows in self.rows.items()}

    def session_of(self, symbol: str, ts: datetime):
        """The bar of the session containing ``ts`` (its close is the first at or after ``ts``)."""
        i = bisect_left(self.keys.get(symbol, []), ts)
        return self.rows[symbol][i] if i < len(self.keys.get(symbol, [])) else None

    def close_at(self, symbol: str, ts: datetime) -> float | None:
        """The last close at or before ``ts``."""
        i = bisect_right(self.keys.get(symbol, []), ts)
        return self.rows[symbol][i - 1][2] if i else None

    def last_close(self, symbol: str) -> float | None:
        rows = self.rows.get(symbol)
        return rows[-1][2] if rows else None


def analyse(records: Iterable[dict]) -> tuple[list[OrderRow], list[FillRow]]:
    """Per-order shortfall and per-fill quality from a run's journal records, in order-ref order."""
    decisions: dict[str, float] = {}
    orders: dict[str, dict] = {}
    fills: dict[str, list[dict]] = defaultdict(list)
    cancelled: dict[str, datetime] = {}
    bars = _Bars()
    for r in records:
        kind = r.get("type")
        if kind == "MarketDataEvent":
            bars.add(r)
        elif kind == "DecisionEvent":
            decisions[r["id"]] = r["price"]
        elif kind == "OrderEvent":
            orders[r["order_ref"]] = r
        elif kind == "FillEvent":
            fills[r["order_ref"]].append(r)
        elif kind == "KillSwitchEvent":
            for ref in r.get("cancelled", ()):
                cancelled.setdefault(ref, _ts(r["ts"]))
    bars.freeze()
    order_rows: list[OrderRow] = []
    fill_rows: list[FillRow] = []
    for ref in sorted(orders):
        o = orders[ref]
        symbol, sign = o["symbol"], 1 if o["side"] == "BUY" else -1
        arrival = decisions.get(o["decision_id"])
        if arrival is None:  # no decision (a kill-switch flatten): the close of the bar it was sent at
            arrival = bars.close_at(symbol, _ts(o["ts"]))
        if arrival is None:
            raise ValueError(f"order {ref}: no decision price and no bar of {symbol} at or before {o['ts']}")
        parts = []
        for f in fills.get(ref, []):
            bar = bars.session_of(symbol, _ts(f["ts"]))
            open_, volume = (bar[1], bar[3]) if bar is not None else (f["price"], math.nan)
            q, p = f["quantity"], f["price"]
            parts.append((q, p, open_, f["commission"]))
            fill_rows.append(
                FillRow(
                    fill_id=f["id"],
                    order_ref=ref,
                    symbol=symbol,
                    side=o["side"],
                    ts=f["ts"],
                    quantity=q,
                    price=p,
                    commission=f["commission"],
                    arrival_price=arrival,
                    open_price=open_,
                    bar_volume=volume,
                    slippage_arrival_bps=1e4 * sign * (p / arrival - 1.0),
                    slippage_open_bps=1e4 * sign * (p / open_ - 1.0),
                    participation=q / volume if volume > 0 else math.nan,
                )
            )
        filled = sum(q for q, _, _, _ in parts)
        end = None
        if filled < o["quantity"]:
            end = bars.close_at(symbol, cancelled[ref]) if ref in cancelled else bars.last_close(symbol)
        s = shortfall(sign, o["quantity"], arrival, parts, end)
        notional = sum(q * p for q, p, _, _ in parts)
        order_rows.append(
            OrderRow(
                order_ref=ref,
                decision_id=o["decision_id"],
                symbol=symbol,
                side=o["side"],
                ts=o["ts"],
                quantity=o["quantity"],
                filled=filled,
                arrival_price=arrival,
                avg_fill_price=notional / filled if filled else None,
                end_price=end,
                notional=notional,
                paper_notional=s.paper_notional,
                shortfall_usd=s.total,
                shortfall_bps=s.bps(s.total),
                delay_usd=s.delay,
                trading_usd=s.trading,
                opportunity_usd=s.opportunity,
                commission_usd=s.commission,
                fill_ids=tuple(f["id"] for f in fills.get(ref, [])),
            )
        )
    return order_rows, fill_rows


def _r(x: float | None, nd: int) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def aggregate(orders: Sequence[OrderRow], fills: Sequence[FillRow]) -> dict:
    """Counts, notional, shortfall statistics and component totals of a group of orders and their fills."""
    bps = np.array([o.shortfall_bps for o in orders], dtype=float)
    paper = sum(o.paper_notional for o in orders)
    total = sum(o.shortfall_usd for o in orders)
    part = np.array([f.participation for f in fills], dtype=float)
    part = part[np.isfinite(part)]

    def stat(fn, a):
        return _r(fn(a), 2) if a.size else None

    return {
        "orders": len(orders),
        "fills": len(fills),
        "shares": sum(f.quantity for f in fills),
        "notional_usd": _r(sum(o.notional for o in orders), 2),
        "paper_notional_usd": _r(paper, 2),
        "shortfall_usd": _r(total, 2),
        "shortfall_bps_weighted": _r(1e4 * total / paper, 2) if paper else None,
        "shortfall_bps_mean": stat(np.mean, bps),
        "shortfall_bps_median": stat(np.median, bps),
        "shortfall_bps_p95": stat(lambda a: np.percentile(a, 95), bps),
        "delay_usd": _r(sum(o.delay_usd for o in orders), 2),
        "trading_usd": _r(sum(o.trading_usd for o in orders), 2),
        "opportunity_usd": _r(sum(o.opportunity_usd for o in orders), 2),
        "commissions_usd": _r(sum(o.commission_usd for o in orders), 2),
        "slippage_open_bps_mean": stat(np.mean, np.array([f.slippage_open_bps for f in fills])),
        "slippage_arrival_bps_mean": stat(np.mean, np.array([f.slippage_arrival_bps for f in fills])),
        "participation_mean": _r(part.mean(), 8) if part.size else None,
        "participation_max": _r(part.max(), 8) if part.size else None,
    }


def _order_brief(o: OrderRow) -> dict:
    return {
        "order_ref": o.order_ref,
        "decision_id": o.decision_id,
        "fill_ids": list(o.fill_ids),
        "symbol": o.symbol,
        "side": o.side,
        "ts": o.ts,
        "quantity": o.quantity,
        "filled": o.filled,
        "arrival_price": _r(o.arrival_price, 4),
        "avg_fill_price": _r(o.avg_fill_price, 4),
        "shortfall_bps": _r(o.shortfall_bps, 2),
        "shortfall_usd": _r(o.shortfall_usd, 2),
        "delay_usd": _r(o.delay_usd, 2),
        "trading_usd": _r(o.trading_usd, 2),
        "commission_usd": _r(o.commission_usd, 2),
    }


def _worst(orders: Sequence[OrderRow], n: int) -> list[dict]:
    ranked = sorted(orders, key=lambda o: (-o.shortfall_bps, o.order_ref))
    return [_order_brief(o) for o in ranked[:n]]


def best_execution_report(journal_records: Iterable[dict], worst: int = WORST) -> dict:
    """The best-execution report of a run from its journal records: overall, per symbol and per side,
    the worst orders by shortfall (with their order, decision and fill ids). Deterministic."""
    orders, fills = analyse(journal_records)
    by_ref = defaultdict(list)
    for f in fills:
        by_ref[f.order_ref].append(f)

    def group(key) -> dict:
        keys = sorted({key(o) for o in orders})
        out = {}
        for k in keys:
            os_ = [o for o in orders if key(o) == k]
            out[k] = aggregate(os_, [f for o in os_ for f in by_ref[o.order_ref]])
        return out

    per_symbol = group(lambda o: o.symbol)
    for symbol, d in per_symbol.items():
        d["worst"] = _worst([o for o in orders if o.symbol == symbol], 3)
    return {
        "convention": (
            "implementation shortfall against the arrival price (the decision's reference close), "
            "positive = cost, bps of paper notional (ordered shares x arrival price); "
            "delay = open - arrival, trading = fill - open (impact + slippage), opportunity = unfilled x "
            "(end - arrival), commission; Perold (1988), Wagner's expanded decomposition (Kissell 2013, ch. 3)"
        ),
        "overall": aggregate(orders, fills),
        "per_symbol": per_symbol,
        "per_side": group(lambda o: o.side),
        "worst_orders": _worst(orders, worst),
    }


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def render_markdown(report: dict, title: str = "Best execution") -> str:
    lines = [f"# {title}", "", report["convention"] + ".", ""]
    head = (
        "| group | orders | notional $ | IS mean bps | median | p95 | weighted bps | delay $ | trading $ "
        "| opportunity $ | commissions $ | slip vs open bps | participation mean / max |"
    )
    lines += [head, "|" + " --- |" * 13]

    def row(name: str, d: dict) -> str:
        return (
            f"| {name} | {d['orders']:,} | {_fmt(d['notional_usd'], ',.0f')} | {_fmt(d['shortfall_bps_mean'], '.2f')} "
            f"| {_fmt(d['shortfall_bps_median'], '.2f')} | {_fmt(d['shortfall_bps_p95'], '.2f')} "
            f"| {_fmt(d['shortfall_bps_weighted'], '.2f')} | {_fmt(d['delay_usd'], ',.2f')} "
            f"| {_fmt(d['trading_usd'], ',.2f')} | {_fmt(d['opportunity_usd'], ',.2f')} "
            f"| {_fmt(d['commissions_usd'], ',.2f')} | {_fmt(d['slippage_open_bps_mean'], '.2f')} "
            f"| {_fmt(d['participation_mean'], '.2e')} / {_fmt(d['participation_max'], '.2e')} |"
        )

    lines.append(row("**all**", report["overall"]))
    for k, d in report["per_symbol"].items():
        lines.append(row(k, d))
    for k, d in report["per_side"].items():
        lines.append(row(k, d))
    lines += ["", "## Worst orders by shortfall", "",
              "| order | side | qty | arrival | avg fill | IS bps | IS $ | delay $ | trading $ | fills |",
              "|" + " --- |" * 10]
    for o in report["worst_orders"]:
        lines.append(
            f"| {o['order_ref']} | {o['side']} | {o['quantity']:,} | {_fmt(o['arrival_price'], '.4f')} "
            f"| {_fmt(o['avg_fill_price'], '.4f')} | {_fmt(o['shortfall_bps'], '.2f')} | {_fmt(o['shortfall_usd'], ',.2f')} "
            f"| {_fmt(o['delay_usd'], ',.2f')} | {_fmt(o['trading_usd'], ',.2f')} | {', '.join(o['fill_ids'])} |"
        )
    return "\n".join(lines) + "\n"


def write_best_execution(run_dir: str | Path) -> dict:
    """Read ``run_dir/journal.jsonl``; write ``best_execution.json`` and ``best_execution.md``; return the report."""
    run_dir = Path(run_dir)
    report = best_execution_report(read_journal(run_dir / "journal.jsonl"))
    (run_dir / "best_execution.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (run_dir / "best_execution.md").write_text(render_markdown(report, f"Best execution: {run_dir.name}"))
    return report


def summary_line(report: dict) -> str:
    """One line for the run summary."""
    d = report["overall"]
    if not d["orders"]:
        return "no orders"
    return (
        f"shortfall mean {d['shortfall_bps_mean']:+.2f} bps (median {d['shortfall_bps_median']:+.2f}, "
        f"p95 {d['shortfall_bps_p95']:+.2f}; weighted {d['shortfall_bps_weighted']:+.2f}), "
        f"slippage vs open {d['slippage_open_bps_mean']:.2f} bps, commissions ${d['commissions_usd']:,.2f}"
    )


__all__ = [
    "FillRow",
    "OrderRow",
    "Shortfall",
    "aggregate",
    "analyse",
    "best_execution_report",
    "read_journal",
    "render_markdown",
    "shortfall",
    "summary_line",
    "write_best_execution",
]
