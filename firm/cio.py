"""The CIO's decision rule: blend the agents' signals, size a target position, decide the trade.

Sizing (documented rule for now; Kelly comes later): the blended score of an instrument is the
weighted mean of ``strength * confidence`` over the agents that spoke with some confidence (an
abstention or a zero-confidence view does not dilute the others), with the agents' configured
weights. A position opens when the score reaches ``entry_threshold`` in absolute value and is kept
while the score on its side stays at or above ``exit_threshold`` (hysteresis, so a score hovering at
one level does not churn); otherwise the target is flat. The target value is
``score * max_position_weight * equity``, truncated to whole shares. A trade is decided when the
target differs from the position (plus working orders) by at least ``rebalance_band * equity``, or
when the target is flat or on the other side. One decision per instrument per bar.

After a rejection the CIO does not propose another trade in the same direction on that instrument
for ``REJECT_COOLDOWN_BARS`` bars, so a validator is not asked the same question every bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firm.batches import Bars, Proposal, SignalBatch
from firm.config import CIOConfig
from firm.events import DecisionEvent, Side
from firm.portfolio import Book, PendingOrder

REJECT_COOLDOWN_BARS = 5


@dataclass(frozen=True)
class Blend:
    score: float
    signal_ids: tuple[str, ...]


class Allocator:
    """Decides trades from signals and the book; remembers only recent rejections."""

    def __init__(self, cfg: CIOConfig, weights: dict[str, float], symbols: tuple[str, ...]):
        self.cfg = cfg
        self.weights = weights
        self.symbols = symbols
        self.cooldown: dict[tuple[int, int], int] = {}  # (column, direction) -> first global row allowed again

    def on_rejected(self, column: int, direction: int, row: int) -> None:
        self.cooldown[(column, direction)] = row + 1 + REJECT_COOLDOWN_BARS

    def blend(self, k: int, j: int, signals: list[SignalBatch], stamp: str) -> Blend | None:
        total_w = acc = 0.0
        ids = []
        for sig in signals:
            s = sig.strength[k, j]
            c = sig.confidence[k, j]
            if s != s or c <= 0:
                continue
            w = self.weights.get(sig.agent, 1.0)
            if w <= 0:
                continue
            acc += w * float(s) * float(c)
            total_w += w
            ids.append(f"sig:{sig.agent}:{self.symbols[j]}:{stamp}")
        if not ids:
            return None
        return Blend(acc / total_w, tuple(ids))

    def target(self, score: float, equity: float, price: float, held: int = 0) -> int:
        holding_same_side = held != 0 and (held > 0) == (score > 0)
        threshold = self.cfg.exit_threshold if holding_same_side else self.cfg.entry_threshold
        if abs(score) < threshold or equity <= 0:
            return 0
        if score < 0 and not self.cfg.allow_short:
            return 0
        return int(math.trunc(max(-1.0, min(1.0, score)) * self.cfg.max_position_weight * equity / price))

    def decide_row(
        self, bars: Bars, k: int, row: int, stamp: str, signals: list[SignalBatch], late: tuple[str, ...], book: Book
    ) -> list[DecisionEvent]:
        panel = bars.panel
        closes = panel.close[k]
        decisions = []
        ts = None
        for j, symbol in enumerate(self.symbols):
            price = closes[j]
            if price != price:
                continue
            blend = self.blend(k, j, signals, stamp)
            if blend is None:
                continue
            price = float(price)
            held = book.positions[j] + book.working(j)
            target = self.target(blend.score, book.equity, price, held)
            delta = target - held
            if delta == 0:
                continue
            flips = target == 0 or (held != 0 and (target > 0) != (held > 0))
            if not flips and abs(delta) * price < self.cfg.rebalance_band * book.equity:
                continue
            direction = 1 if delta > 0 else -1
            if self.cooldown.get((j, direction), -1) > row:
                continue
            if ts is None:
                ts = bars.closes_at[k]
            decisions.append(
                DecisionEvent(
                    id=f"dec:{symbol}:{stamp}",
                    cause_id=f"bar:{symbol}:{stamp}",
                    ts=ts,
                    symbol=symbol,
                    side=Side.BUY if delta > 0 else Side.SELL,
                    quantity=abs(delta),
                    current_position=held,
                    target_position=target,
                    price=price,
                    score=round(blend.score, 10),
                    signal_ids=blend.signal_ids,
                    late_agents=late,
                    reason=_reason(blend.score, held, target),
                )
            )
        return decisions

    def propose(
        self, bars: Bars, start: int, book: Book, signals: list[SignalBatch], late: tuple[str, ...]
    ) -> Proposal:
        """Decide rows ``start..n`` of ``bars``, projecting ``book`` as if every decision were filled."""
        projected = book.copy()
        stamps = bars.stamps
        decisions, fingerprints = [], []
        panel = bars.panel
        for k in range(start, len(bars)):
            projected.fill_at_open(panel.open[k])
            projected.mark(panel.close[k])
            fingerprints.append(projected.fingerprint())
            row_decisions = self.decide_row(bars, k, bars.offset + k, stamps[k], signals, late, projected)
            for d in row_decisions:
                projected.submit(pending_order(d, self.symbols))
            decisions.append(row_decisions)
        return Proposal(offset=bars.offset, start=start, book=book, decisions=decisions, fingerprints=fingerprints)


def order_ref(decision: DecisionEvent) -> str:
    """The broker order reference of a decision: stable, unique per decision, at most 40 chars."""
    return "firm-" + decision.id.removeprefix("dec:").replace(":", "-")


def pending_order(decision: DecisionEvent, symbols: tuple[str, ...]) -> PendingOrder:
    qty = decision.quantity if decision.side is Side.BUY else -decision.quantity
    return PendingOrder(order_ref(decision), symbols.index(decision.symbol), qty, decision.id)


def _reason(score: float, held: int, target: int) -> str:
    """``<action>: <why>``; the action is one of open long/short, close, reverse, resize."""
    why = f"blended score {score:+.3f}"
    if target == 0:
        return f"close: {why} below threshold, flatten {held}"
    side = "long" if target > 0 else "short"
    if held == 0:
        return f"open {side}: {why}, target {target}"
    if (held > 0) != (target > 0):
        return f"reverse: {why}, {held} to {target}"
    return f"resize: {why}, {held} to {target}"
