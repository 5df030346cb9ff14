"""Run statistics gathered batch by batch, and the summary a trader reads at the end."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from firm.batches import Bars, BatchResult
from firm.events import KillSwitchEvent
from firm.fill_quality import summary_line, write_best_execution
from firm.journal import sha256_file
from risk.metrics import performance


@dataclass
class RunStats:
    symbols: tuple[str, ...]
    initial_cash: float
    quarantined: list = field(default_factory=list)
    rows: int = 0
    bars: int = 0
    signals: int = 0
    signals_by_agent: Counter = field(default_factory=Counter)
    abstentions_by_agent: Counter = field(default_factory=Counter)  # valid bars an agent had no view on
    late_signals: int = 0
    late_by_agent: Counter = field(default_factory=Counter)
    decisions: int = 0
    rejections: Counter = field(default_factory=Counter)  # (validator, rule) -> n
    rejection_examples: dict = field(default_factory=dict)
    alerts: Counter = field(default_factory=Counter)  # risk alert rule -> n
    kill_switch: list = field(default_factory=list)  # "date trigger: reason" of each KillSwitchEvent
    orders: int = 0
    fills: int = 0
    commissions: float = 0.0
    subbatches: int = 0
    decision_reasons: Counter = field(default_factory=Counter)
    traded: dict = field(default_factory=dict)  # symbol -> {"buys","sells","shares"}
    equity_ts: list = field(default_factory=list)
    equity: list = field(default_factory=list)
    first_ts: str = ""
    last_ts: str = ""
    final_book: object = None
    timing: Counter = field(default_factory=Counter)
    first_close: dict = field(default_factory=dict)
    last_close: dict = field(default_factory=dict)
    order_log_sha256: str = ""
    journal_sha256: str = ""
    run_dir: str = ""
    execution: dict = field(default_factory=dict)  # best_execution.json's "overall"
    execution_line: str = ""
    projection_drifts: int | None = None  # live runs: ProjectionDriftEvents journaled
    book_var: float | None = None  # 1-day 99% delta-normal VaR of the book at the last session (risk.var.trailing_book)
    account: object = None  # live runs on a broker account: its AccountSnapshotEvent

    @property
    def last_equity(self) -> float:
        return self.equity[-1] if self.equity else self.initial_cash

    @property
    def current_drawdown(self) -> float:
        if not self.equity:
            return 0.0
        peak = max(self.initial_cash, max(self.equity))
        return 1.0 - self.equity[-1] / peak

    def add(self, bars: Bars, result: BatchResult) -> None:
        n = len(bars)
        self.rows += n
        self.bars += int(np.count_nonzero(~np.isnan(bars.panel.close)))
        valid = ~np.isnan(bars.panel.close)
        for sig in result.signals:
            k = int(np.count_nonzero(~np.isnan(sig.strength)))
            self.signals += k
            self.signals_by_agent[sig.agent] += k
            self.abstentions_by_agent[sig.agent] += int(np.count_nonzero(valid & np.isnan(sig.strength)))
        for agent in (*result.late, *result.failed):
            self.late_signals += 1
            self.late_by_agent[agent] += 1
        self.timing.update(result.timing)
        closes = bars.panel.close
        for j, symbol in enumerate(self.symbols):
            valid = np.flatnonzero(~np.isnan(closes[:, j]))
            if valid.size:
                self.first_close.setdefault(symbol, float(closes[valid[0], j]))
                self.last_close[symbol] = float(closes[valid[-1], j])
        stamps = pd.to_datetime(bars.panel.ts, utc=True)
        if not self.first_ts:
            self.first_ts = stamps[0].date().isoformat()
        self.last_ts = stamps[-1].date().isoformat()
        for ex in result.committed:
            self.subbatches += 1
            for row in ex.validated:
                for vd in row:
                    self.decisions += 1
                    d = vd.decision
                    self.decision_reasons[d.reason.split(":", 1)[0]] += 1
                    for v in vd.verdicts:
                        if not v.approved:
                            self.rejections[(v.validator, v.rule)] += 1
                            self.rejection_examples.setdefault((v.validator, v.rule), f"{d.id}: {v.reason}")
            for row in ex.alerts:
                for a in row:
                    if isinstance(a, KillSwitchEvent):
                        self.kill_switch.append(f"{a.ts:%Y-%m-%d} {a.trigger}: {a.reason}")
                    else:
                        self.alerts[a.rule] += 1
            for row in ex.orders:
                for o in row:
                    self.orders += 1
                    t = self.traded.setdefault(o.symbol, {"buys": 0, "sells": 0, "shares": 0})
                    t["buys" if o.side.value == "BUY" else "sells"] += 1
                    t["shares"] += o.quantity
            if self.projection_drifts is not None:
                self.projection_drifts += sum(len(row) for row in ex.drift or [])
            for row in ex.fills:
                for f in row:
                    self.fills += 1
                    self.commissions += f.commission
            self.equity.extend(ex.equity)
            self.equity_ts.extend(stamps[ex.start : ex.stop])
            self.final_book = ex.book

    def finish(self, run_dir: Path) -> None:
        self.run_dir = str(run_dir)
        self.order_log_sha256 = sha256_file(run_dir / "orders.wal.jsonl")
        self.journal_sha256 = sha256_file(run_dir / "journal.jsonl")
        report = write_best_execution(run_dir)  # best_execution.json / .md, from the journal
        self.execution, self.execution_line = report["overall"], summary_line(report)
        pd.DataFrame({"ts": self.equity_ts, "equity": self.equity}).to_csv(run_dir / "equity.csv", index=False)
        (run_dir / "summary.json").write_text(json.dumps(self.as_dict(), indent=2, sort_keys=True, default=str))

    def performance(self) -> dict[str, float]:
        return performance(np.asarray(self.equity), self.initial_cash)

    def buy_and_hold(self) -> float:
        """Return of an equal-weight buy-and-hold of the instruments, first to last close, no costs."""
        moves = [self.last_close[s] / self.first_close[s] for s in self.first_close]
        return float(np.mean(moves) - 1.0) if moves else 0.0

    def positions(self) -> list[dict]:
        book = self.final_book
        if book is None:
            return []
        out = []
        for j, symbol in enumerate(book.symbols):
            unrealized = book.position_value(j) - book.cost_basis[j]
            t = self.traded.get(symbol, {"buys": 0, "sells": 0, "shares": 0})
            out.append(
                {
                    "symbol": symbol,
                    "orders": t["buys"] + t["sells"],
                    "buys": t["buys"],
                    "sells": t["sells"],
                    "shares_traded": t["shares"],
                    "position": book.positions[j],
                    "realized_pnl": round(book.realized[j], 2),
                    "unrealized_pnl": round(unrealized, 2),
                    "total_pnl": round(book.realized[j] + unrealized, 2),
                }
            )
        return out

    def as_dict(self) -> dict:
        return {
            "period": [self.first_ts, self.last_ts],
            "instruments": list(self.symbols),
            "sessions": self.rows,
            "bars": self.bars,
            "quarantined_bars": sum(1 for q in self.quarantined if q.reason != "missing_session"),
            "missing_sessions": sum(1 for q in self.quarantined if q.reason == "missing_session"),
            "signals": self.signals,
            "signals_by_agent": dict(self.signals_by_agent),
            "abstentions_by_agent": dict(self.abstentions_by_agent),
            "late_signals": self.late_signals,
            "late_by_agent": dict(self.late_by_agent),
            "decisions": self.decisions,
            "decision_kinds": dict(self.decision_reasons),
            "rejections": {f"{v}/{r}": n for (v, r), n in sorted(self.rejections.items())},
            "rejection_examples": {f"{v}/{r}": e for (v, r), e in sorted(self.rejection_examples.items())},
            "risk_alerts": dict(sorted(self.alerts.items())),
            "kill_switch": list(self.kill_switch),
            "orders": self.orders,
            "fills": self.fills,
            "commissions": round(self.commissions, 2),
            "execution": self.execution,
            "initial_equity": self.initial_cash,
            "final_equity": round(self.last_equity, 2),
            "performance": self.performance(),
            "buy_and_hold_return": self.buy_and_hold(),
            "positions": self.positions(),
            "subbatches": self.subbatches,
            "order_log_sha256": self.order_log_sha256,
            "journal_sha256": self.journal_sha256,
            "run_dir": self.run_dir,
            **({} if self.projection_drifts is None else {"projection_drifts": self.projection_drifts}),
            **({} if self.book_var is None else {"book_var_1d_99": round(self.book_var, 2)}),
            **({} if self.account is None else {"account": self.account.model_dump(mode="json", exclude={"id", "cause_id"})}),
        }

    def render(self) -> str:
        d = self.as_dict()
        p = d["performance"]
        lines = [
            "",
            "=" * 78,
            f"firm run summary   {d['period'][0]} .. {d['period'][1]}   ({d['sessions']:,} sessions)",
            "=" * 78,
            f"instruments      {', '.join(d['instruments'])}",
            f"bars             {d['bars']:,} replayed, {d['quarantined_bars']:,} quarantined, "
            f"{d['missing_sessions']:,} sessions missing",
            f"signals          {d['signals']:,}, late or failed batches: {d['late_signals']:,}",
            *(
                f"  {a:22s} {n:>7,} signals, {d['abstentions_by_agent'].get(a, 0):>6,} abstentions"
                for a, n in sorted(d["signals_by_agent"].items())
            ),
            f"decisions        {d['decisions']:,} ("
            + ", ".join(f"{k} {n:,}" for k, n in sorted(d["decision_kinds"].items()))
            + ")",
        ]
        if d["rejections"]:
            lines.append("rejections       " + ", ".join(f"{k} {n:,}" for k, n in d["rejections"].items()))
            for k, example in d["rejection_examples"].items():
                lines.append(f"  e.g. {k:24s} {example}")
        else:
            lines.append("rejections       none")
        if d["risk_alerts"]:
            lines.append("risk alerts      " + ", ".join(f"{k} {n:,}" for k, n in d["risk_alerts"].items()))
        for ks in d["kill_switch"]:
            lines.append(f"KILL SWITCH      {ks}")
        lines += [
            *([f"projection drift {d['projection_drifts']:,} session(s) where the broker's book differed from the CIO's projection"]
              if "projection_drifts" in d else []),  # fmt: skip
            f"orders / fills   {d['orders']:,} / {d['fills']:,}   commissions ${d['commissions']:,.2f}",
            *([f"execution        {self.execution_line}"] if self.execution_line else []),
            "",
            f"{'symbol':8s}{'orders':>8s}{'buys':>6s}{'sells':>6s}{'shares':>12s}{'position':>10s}"
            f"{'realized':>14s}{'unrealized':>13s}{'total P&L':>14s}",
        ]
        for r in d["positions"]:
            lines.append(
                f"{r['symbol']:8s}{r['orders']:>8,}{r['buys']:>6,}{r['sells']:>6,}{r['shares_traded']:>12,}"
                f"{r['position']:>10,}{r['realized_pnl']:>14,.2f}{r['unrealized_pnl']:>13,.2f}{r['total_pnl']:>14,.2f}"
            )
        if "account" in d:
            a = d["account"]
            lines.append(f"account          {a['account']} at the start: cash {a['cash']:,.2f} {a['currency']}, "
                         + (", ".join(f"{s} {q:+,}" for s, q in sorted(a["positions"].items())) or "no position"))  # fmt: skip
            if a["outside"]:
                lines.append("  outside the run (not traded, not in its book or limits): "
                             + ", ".join(f"{s} {q:+,g}" for s, q in sorted(a["outside"].items())))  # fmt: skip
        lines += [
            "",
            f"equity           ${d['initial_equity']:,.2f} -> ${d['final_equity']:,.2f}",
            f"return           total {p['total_return']:+.2%}, annualised {p['annual_return']:+.2%} "
            f"(equal-weight buy and hold {d['buy_and_hold_return']:+.2%})",
            f"risk             volatility {p['annual_volatility']:.2%} a year, Sharpe {p['sharpe']:.2f} (rf 0), "
            f"max drawdown {p['max_drawdown']:.2%}"
            + ("" if "book_var_1d_99" not in d else f", final book VaR ${d['book_var_1d_99']:,.0f} (1 day, 99%)"),
            f"order log        sha256 {d['order_log_sha256']}",
            f"run directory    {d['run_dir']}",
            "=" * 78,
        ]
        return "\n".join(lines)
