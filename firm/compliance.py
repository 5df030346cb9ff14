"""Compliance rules: restricted list, blackout periods and exchange market hours."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from firm.config import ComplianceConfig
from firm.data.validate import get_calendar
from firm.events import DecisionEvent
from risk.limits import Check


class ComplianceRules:
    def __init__(self, cfg: ComplianceConfig):
        self.restricted = frozenset(cfg.restricted)
        self.blackouts = cfg.blackouts
        self.calendar_code = cfg.calendar
        self.calendar = get_calendar(cfg.calendar)

    def execution_time(self, decided_at: datetime) -> pd.Timestamp:
        """When a market order decided at ``decided_at`` reaches the market: now if open, else next open."""
        ts = pd.Timestamp(decided_at)
        if self.calendar.is_open_on_minute(ts, ignore_breaks=True):
            return ts
        return self.calendar.next_open(ts)

    def check(self, decision: DecisionEvent) -> Check:
        if decision.symbol in self.restricted:
            return Check(False, "restricted", f"{decision.symbol} is on the restricted list")
        day = decision.ts.date()
        for b in self.blackouts:
            if b.symbol == decision.symbol and b.start <= day <= b.end:
                return Check(False, "blackout", f"{decision.symbol} in blackout {b.start}..{b.end}: {b.reason}")
        when = self.execution_time(decision.ts)
        if not self.calendar.is_open_on_minute(when, ignore_breaks=True):
            return Check(False, "market_hours", f"{self.calendar_code} is not open at {when.isoformat()}")
        if (when - pd.Timestamp(decision.ts)) > pd.Timedelta(days=7):
            return Check(
                False, "market_hours", f"next {self.calendar_code} open {when.isoformat()} is more than 7 days away"
            )
        return Check(True)
