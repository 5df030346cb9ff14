"""Portfolio accounting and the simulated fill model, shared by every stage that needs a book.

The execution actor's :class:`Book` is the authoritative one. The CIO and the risk actor project
their own copy forward with the same code between confirmations (see ``firm/pipeline.py``), so a
projection differs from the truth only where a validator rejected something, never by arithmetic.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from firm.config import BrokerConfig


@dataclass(frozen=True)
class Costs:
    """Slippage and IB-style fixed commission: per share, with a minimum and a cap on trade value."""

    slippage_bps: float = 2.0
    slippage_noise_bps: float = 1.0
    commission_per_share: float = 0.005
    commission_min: float = 1.0
    commission_max_pct: float = 0.01
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: BrokerConfig, seed: int) -> "Costs":
        return cls(
            slippage_bps=cfg.slippage_bps,
            slippage_noise_bps=cfg.slippage_noise_bps,
            commission_per_share=cfg.commission_per_share,
            commission_min=cfg.commission_min,
            commission_max_pct=cfg.commission_max_pct,
            seed=seed,
        )

    def fill_price(self, reference: float, quantity: int, order_ref: str) -> float:
        """Price of a market order of signed ``quantity`` at ``reference`` (the next open), to 1e-4.

        Slippage is always adverse: ``slippage_bps`` plus ``noise_bps * |Z|``, Z standard normal
        drawn from the run seed and the order's reference alone, so the draw is the same whichever
        process or worker computes it.
        """
        bps = self.slippage_bps
        if self.slippage_noise_bps > 0:
            bps += abs(_seeded_normal(f"{self.seed}:{order_ref}")) * self.slippage_noise_bps
        sign = 1.0 if quantity > 0 else -1.0
        return round(reference * (1.0 + sign * bps * 1e-4), 4)

    def commission(self, quantity: int, price: float) -> float:
        """IB fixed pricing: max(min, per_share * |q|), capped at max_pct of trade value; cents."""
        shares = abs(quantity)
        fee = max(self.commission_min, self.commission_per_share * shares)
        fee = min(fee, self.commission_max_pct * shares * price)
        return round(fee, 2)


def _seeded_normal(key: str) -> float:
    """A standard normal draw determined by ``key`` (Box-Muller on two uniforms from SHA-256)."""
    digest = hashlib.sha256(key.encode()).digest()
    u1 = (int.from_bytes(digest[:8], "little") + 1) / 2.0**64
    u2 = int.from_bytes(digest[8:16], "little") / 2.0**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@dataclass(frozen=True)
class PendingOrder:
    order_ref: str
    symbol: int  # column index in the panel
    quantity: int  # signed: + buy, - sell
    decision_id: str


@dataclass(frozen=True)
class Fill:
    order_ref: str
    symbol: int
    quantity: int  # signed
    price: float
    commission: float
    decision_id: str


@dataclass
class Book:
    """Cash, positions and working orders of one account, marked to the last close."""

    symbols: tuple[str, ...]
    cash: float
    costs: Costs
    positions: list[int] = field(default_factory=list)
    last_close: list[float] = field(default_factory=list)
    pending: list[PendingOrder] = field(default_factory=list)
    realized: list[float] = field(default_factory=list)
    cost_basis: list[float] = field(default_factory=list)  # signed cost of the open position
    commissions: float = 0.0
    equity: float = 0.0
    peak_equity: float = 0.0
    prev_drawdown: float = 0.0

    def __post_init__(self) -> None:
        m = len(self.symbols)
        self.positions = self.positions or [0] * m
        self.last_close = self.last_close or [math.nan] * m
        self.realized = self.realized or [0.0] * m
        self.cost_basis = self.cost_basis or [0.0] * m
        if not self.equity:
            self.equity = self.peak_equity = self.cash

    @classmethod
    def new(cls, symbols: tuple[str, ...], cash: float, costs: Costs) -> "Book":
        return cls(symbols=tuple(symbols), cash=float(cash), costs=costs)

    def copy(self) -> "Book":
        return Book(
            symbols=self.symbols,
            cash=self.cash,
            costs=self.costs,
            positions=list(self.positions),
            last_close=list(self.last_close),
            pending=list(self.pending),
            realized=list(self.realized),
            cost_basis=list(self.cost_basis),
            commissions=self.commissions,
            equity=self.equity,
            peak_equity=self.peak_equity,
            prev_drawdown=self.prev_drawdown,
        )

    @property
    def drawdown(self) -> float:
        return 0.0 if self.peak_equity <= 0 else max(0.0, 1.0 - self.equity / self.peak_equity)

    def position_value(self, j: int) -> float:
        px = self.last_close[j]
        return 0.0 if self.positions[j] == 0 or math.isnan(px) else self.positions[j] * px

    def working(self, j: int) -> int:
        """Signed quantity of orders not yet filled for column ``j``."""
        return sum(o.quantity for o in self.pending if o.symbol == j)

    def fill_at_open(self, opens: np.ndarray) -> list[Fill]:
        """Fill every working market order whose instrument has a valid open in this bar."""
        if not self.pending:
            return []
        fills, still = [], []
        for order in self.pending:
            ref = opens[order.symbol]
            if math.isnan(ref):
                still.append(order)
                continue
            price = self.costs.fill_price(float(ref), order.quantity, order.order_ref)
            fee = self.costs.commission(order.quantity, price)
            self._apply(order.symbol, order.quantity, price, fee)
            fills.append(Fill(order.order_ref, order.symbol, order.quantity, price, fee, order.decision_id))
        self.pending = still
        return fills

    def _apply(self, j: int, qty: int, price: float, fee: float) -> None:
        old = self.positions[j]
        new = old + qty
        if old != 0 and (old > 0) != (qty > 0):
            closed = min(abs(qty), abs(old))
            avg = self.cost_basis[j] / old
            self.realized[j] += closed * (price - avg) * (1 if old > 0 else -1)
            self.cost_basis[j] = 0.0 if new == 0 else (avg * new if (new > 0) == (old > 0) else price * new)
        else:
            self.cost_basis[j] += qty * price
        self.positions[j] = new
        self.cash -= qty * price + fee
        self.realized[j] -= fee
        self.commissions += fee

    def mark(self, closes: np.ndarray) -> None:
        """Mark to this bar's closes (instruments without a bar keep their last close)."""
        for j, px in enumerate(closes.tolist()):
            if px == px:
                self.last_close[j] = px
        self.prev_drawdown = self.drawdown
        self.equity = self.cash + sum(self.position_value(j) for j in range(len(self.symbols)))
        self.peak_equity = max(self.peak_equity, self.equity)

    def submit(self, order: PendingOrder) -> None:
        self.pending.append(order)

    def cancel_all(self) -> list[PendingOrder]:
        """Drop every working order (not filled, nothing charged); returns them."""
        cancelled, self.pending = self.pending, []
        return cancelled

    def gross_exposure(self) -> float:
        return sum(abs(self.position_value(j)) for j in range(len(self.symbols)))

    def net_exposure(self) -> float:
        return sum(self.position_value(j) for j in range(len(self.symbols)))

    def fingerprint(self) -> tuple:
        """Exact state a decision depends on; equal fingerprints mean equal books."""
        return (self.cash, tuple(self.positions), tuple(o.order_ref for o in self.pending), self.peak_equity)
