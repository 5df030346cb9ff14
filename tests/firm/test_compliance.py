"""Compliance rules on the real XNYS calendar: restricted list, blackouts, market hours."""

from datetime import date, datetime, timezone

import pytest

from firm.compliance import ComplianceRules
from firm.config import Blackout, ComplianceConfig
from firm.events import DecisionEvent, Side


def _decision(symbol="AAPL", ts=datetime(2008, 9, 15, 20, 0, tzinfo=timezone.utc)):
    return DecisionEvent(
        id=f"dec:{symbol}:x", ts=ts, symbol=symbol, side=Side.BUY, quantity=10, current_position=0,
        target_position=10, price=100.0, score=0.5, signal_ids=("sig:momentum:AAPL:x",), reason="open long: test",
    )


@pytest.fixture(scope="module")
def rules():
    return ComplianceRules(
        ComplianceConfig(
            restricted=("IBM",),
            blackouts=(Blackout(symbol="AAPL", start=date(2008, 1, 14), end=date(2008, 1, 25), reason="earnings"),),
        )
    )


def test_a_decision_at_a_session_close_passes(rules):
    assert rules.check(_decision()).approved
    # 2008-11-28 was a half day: the close at 13:00 New York (18:00 UTC) is inside the session
    assert rules.check(_decision(ts=datetime(2008, 11, 28, 18, 0, tzinfo=timezone.utc))).approved


@pytest.mark.parametrize(
    "ts",
    [
        datetime(2008, 9, 13, 17, 0, tzinfo=timezone.utc),  # a Saturday
        datetime(2008, 12, 25, 17, 0, tzinfo=timezone.utc),  # Christmas
        datetime(2008, 9, 15, 12, 0, tzinfo=timezone.utc),  # 08:00 New York, before the open
        datetime(2008, 11, 28, 19, 0, tzinfo=timezone.utc),  # after the half day's early close
    ],
)
def test_decisions_outside_session_hours_are_rejected(rules, ts):
    check = rules.check(_decision(ts=ts))
    assert not check.approved and check.rule == "market_hours" and "XNYS" in check.reason


def test_restricted_and_blackout(rules):
    check = rules.check(_decision(symbol="IBM"))
    assert not check.approved and check.rule == "restricted"
    check = rules.check(_decision(ts=datetime(2008, 1, 18, 21, 0, tzinfo=timezone.utc)))
    assert not check.approved and check.rule == "blackout" and "earnings" in check.reason
    assert rules.check(_decision(ts=datetime(2008, 1, 28, 21, 0, tzinfo=timezone.utc))).approved


def test_next_open_skips_weekends_and_holidays(rules):
    friday_close = datetime(2008, 12, 24, 18, 0, tzinfo=timezone.utc)  # Christmas Eve half day
    assert rules.next_open(friday_close).isoformat() == "2008-12-26T14:30:00+00:00"
