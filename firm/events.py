"""Typed events of the pipeline, named after the seed architecture.

Every event has a deterministic ``id`` and the ``cause_id`` of the event that produced it, so a
fill traces back through its order, validated decision and decision to the bar that started it.
Ids are derived from content (bar time, symbol, agent), never from the wall clock, so two runs of
the same data and config journal byte-identical events.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Side(str, Enum):
    BUY = "BUY"
    SELL = "SELL"


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    cause_id: str | None = None
    ts: datetime = Field(description="Market time the event refers to (UTC), not wall-clock time.")

    @property
    def type(self) -> str:
        return type(self).__name__


class MarketDataEvent(Event):
    """One OHLCV bar of one instrument, known at ``ts`` (the bar's close)."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float


class SignalEvent(Event):
    """An agent's advice on one instrument at one bar. Advisory only: agents never trade."""

    agent: str
    symbol: str
    direction: Literal[-1, 0, 1]
    strength: float = Field(ge=-1.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    rationale: dict[str, float] = Field(default_factory=dict)


class DecisionEvent(Event):
    """The CIO's decision to change one position, with exactly the signals it used."""

    symbol: str
    side: Side
    quantity: int = Field(gt=0)
    current_position: int
    target_position: int
    price: float = Field(description="Reference price (the bar's close) used for sizing.")
    score: float
    signal_ids: tuple[str, ...]
    signal_hashes: tuple[str, ...] = Field(
        (), description="Per signal id, in order: firm.cio.signal_hash of the signal's content."
    )
    late_agents: tuple[str, ...] = ()
    reason: str


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    validator: Literal["risk", "compliance"]
    approved: bool
    rule: str = ""
    reason: str = ""


class ValidatedDecisionEvent(Event):
    """A decision with the verdicts of the validators it has passed through so far, in order."""

    decision: DecisionEvent
    verdicts: tuple[Verdict, ...]

    @property
    def approved(self) -> bool:
        return all(v.approved for v in self.verdicts)


class OrderEvent(Event):
    """An order the execution agent sends to the broker. ``order_ref`` is derived from the decision."""

    order_ref: str
    symbol: str
    side: Side
    quantity: int = Field(gt=0)
    order_type: Literal["MKT"] = "MKT"
    decision_id: str


class FillEvent(Event):
    """An execution reported by the broker."""

    order_ref: str
    symbol: str
    side: Side
    quantity: int = Field(gt=0)
    price: float = Field(gt=0)
    commission: float = Field(ge=0)


class LateSignalEvent(Event):
    """An agent's signals for a batch that missed the CIO's barrier, or whose call failed; left out."""

    agent: str
    bars: int
    reason: str


class AgentToggleEvent(Event):
    """The CIO enabled or disabled an agent at run time; it takes effect from the batch starting at ``ts``."""

    agent: str
    enabled: bool
    reason: str = ""


class RequiredAgentMissingEvent(Event):
    """A required agent is late, failed or disabled for a batch: its rows take no new risk (exits still apply)."""

    agents: tuple[str, ...]
    bars: int
    reason: str


class RiskAlertEvent(Event):
    severity: Literal["info", "warning", "critical"]
    rule: str
    message: str
    value: float | None = None
    limit: float | None = None


class KillSwitchEvent(Event):
    """The kill switch engaged (or is found engaged at the start of a run): no order that increases
    risk passes until a manual ``firm kill-switch reset``; working orders are cancelled and, when
    ``flatten``, every position is closed by the execution agent."""

    active: bool
    reason: str
    trigger: str = ""  # drawdown_tier, daily_loss, manual, persisted
    flatten: bool = False
    cancelled: tuple[str, ...] = ()  # order_refs of the working orders it cancels


class ProjectionDriftEvent(Event):
    """Live trading: after a bar's fills the broker's book differs from the CIO's projection of it (real
    prices, commissions, partial or missing fills). Both books are given; the CIO decides the bar on the
    broker's (``firm.execution.ExecutionEngine.open_bar``)."""

    projected_cash: float
    actual_cash: float
    projected_equity: float
    actual_equity: float
    projected_positions: dict[str, int]
    actual_positions: dict[str, int]
    projected_working: dict[str, int] = Field(default_factory=dict, description="order_ref -> signed shares")
    actual_working: dict[str, int] = Field(default_factory=dict, description="order_ref -> signed shares")
    reason: str


class AccountSnapshotEvent(Event):
    """Live trading: the broker account as the run found it, which the run's book starts from (before its
    first decision). Positions in the run's symbols enter the book (shares, cost basis from the average cost);
    ``outside`` positions are in symbols the run does not trade: reported, never traded, not in its book,
    equity or limits. ``cash`` is the account's cash as reported (all of it: the book's cash)."""

    account: str = Field(description="The account, masked (DU****567).")
    source: str = Field(description="Where the figures come from, e.g. 'ib positions + TotalCashValue (USD)'.")
    cash: float
    currency: str
    positions: dict[str, int] = Field(description="symbol -> signed shares, in the run's symbols.")
    average_cost: dict[str, float] = Field(default_factory=dict, description="symbol -> IB's average cost per share.")
    outside: dict[str, float] = Field(default_factory=dict, description="symbol -> shares, symbols the run does not trade.")
    equity: float = Field(description="cash + the run's positions at the last closes: the book's starting equity.")


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        MarketDataEvent,
        SignalEvent,
        DecisionEvent,
        ValidatedDecisionEvent,
        OrderEvent,
        FillEvent,
        LateSignalEvent,
        AgentToggleEvent,
        RequiredAgentMissingEvent,
        RiskAlertEvent,
        KillSwitchEvent,
        ProjectionDriftEvent,
        AccountSnapshotEvent,
    )
}


def parse_event(record: dict) -> Event:
    """Rebuild an event from one journal record (``{"type": ..., **fields}``)."""
    fields = dict(record)
    return EVENT_TYPES[fields.pop("type")].model_validate(fields)
