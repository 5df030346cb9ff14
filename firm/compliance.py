"""Compliance rules: restricted list, blackout periods and exchange market hours."""

from __future__ import annotations

from datetime import datetime

import numpy as np
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
        calendar = get_calendar(cfg.calendar)
        self._opens = pd.DatetimeIndex(calendar.opens).as_unit("ns").asi8
        self._closes = pd.DatetimeIndex(calendar.closes).as_unit("ns").asi8

    def session_of(self, ts: datetime) -> int | None:
        """Index of the regular session whose hours (open to close, inclusive) contain ``ts``."""
        t = pd.Timestamp(ts).value
        i = int(np.searchsorted(self._closes, t, side="left"))
        if i < len(self._opens) and self._opens[i] <= t:
            return i
        return None

    def next_open(self, ts: datetime) -> pd.Timestamp | None:
        """When a market order decided at ``ts`` can first execute: the next session's open."""
        i = int(np.searchsorted(self._opens, pd.Timestamp(ts).value, side="right"))
        return pd.Timestamp(self._opens[i], tz="UTC") if i < len(self._opens) else None

    def check(self, decision: DecisionEvent) -> Check:
        if decision.symbol in self.restricted:
            return Check(False, "restricted", f"{decision.symbol} is on the restricted list")
        day = decision.ts.date()
        for b in self.blackouts:
            if b.symbol == decision.symbol and b.start <= day <= b.end:
                return Check(False, "blackout", f"{decision.symbol} in blackout {b.start}..{b.end}: {b.reason}")
        if self.session_of(decision.ts) is None:
            return Check(
                False, "market_hours", f"decided at {decision.ts.isoformat()}, outside {self.calendar_code} session hours"
            )
        if self.next_open(decision.ts) is None:
            return Check(False, "market_hours", f"no {self.calendar_code} session after {decision.ts.isoformat()}")
        return Check(True)
