"""The two validators of a proposal, strictly in order: risk, then compliance.

Each stops after the first row in which it rejects anything: the CIO decided the rows after it
on a book that assumed the rejected trade, so they go back to the CIO with the real book.
"""

from __future__ import annotations

from dataclasses import replace

from firm.batches import Bars, Proposal, Review
from firm.cio import pending_order
from firm.compliance import ComplianceRules
from firm.events import DecisionEvent, Side, ValidatedDecisionEvent, Verdict
from risk.limits import Check, check_order
from risk.monitor import RiskMonitor


def _verdict(validator: str, check) -> Verdict:
    return Verdict(validator=validator, approved=check.approved, rule=check.rule, reason=check.reason)


def review_risk(proposal: Proposal, bars: Bars, monitor: RiskMonitor) -> Review:
    """Check every decision against the limits and the bar's risk state on risk's own projection of
    the book; the state (``risk/monitor.py``) depends only on that projection and on rows up to the bar.

    A row where the kill switch trips rejects every decision (the switch cancels working orders and,
    for the flatten tier, closes every position in execution) and ends the review like a rejection.
    """
    book = proposal.book.copy()
    panel = bars.panel
    symbols = book.symbols
    monitor.ingest(bars.offset, panel.close)
    monitor.begin(bars.offset + proposal.start, book)
    limits = monitor.limits
    validated, alerts = [], []
    stop = len(bars)
    stamps = closes_at = None
    for k in range(proposal.start, len(bars)):
        if not (proposal.opened and k == proposal.start):  # live: the broker's book already has this row's fills
            book.fill_at_open(panel.open[k])
            book.mark(panel.close[k])
        if stamps is None:
            stamps, closes_at = bars.stamps, bars.closes_at
        gate, row_alerts, trip = monitor.row(bars.offset + k, book, stamps[k], closes_at[k])
        row: list[ValidatedDecisionEvent] = []
        values = [book.position_value(j) for j in range(len(symbols))]
        rejected = False
        for d in proposal.decisions[k - proposal.start]:
            j = symbols.index(d.symbol)
            qty = d.quantity if d.side is Side.BUY else -d.quantity
            held = book.positions[j] + book.working(j)
            if trip is not None:
                check = Check(False, "kill_switch", f"the kill switch trips on this bar ({trip.trigger}): {trip.reason}")
            else:
                check = check_order(limits, book.equity, book.drawdown, values, j, qty, d.price, held, gate)
            row.append(_validated("risk", d, (_verdict("risk", check),), d.id))
            if check.approved:
                book.submit(pending_order(d, symbols))
                values[j] = (held + qty) * d.price
            else:
                rejected = True
        validated.append(row)
        alerts.append(row_alerts)
        if rejected or trip is not None:
            stop = k + 1
            break
    return Review(
        offset=proposal.offset,
        start=proposal.start,
        stop=stop,
        book=proposal.book,
        fingerprints=proposal.fingerprints[: stop - proposal.start],
        validated=validated,
        alerts=alerts,
    )


def review_compliance(review: Review, rules: ComplianceRules) -> Review:
    """Check the decisions risk approved; risk's rejections pass through untouched."""
    start = review.start
    validated = []
    stop = review.stop
    for k in range(start, review.stop):
        row = []
        rejected = False
        for vd in review.validated[k - start]:
            if not vd.approved:
                row.append(vd)
                continue
            check = rules.check(vd.decision)
            row.append(_validated("compliance", vd.decision, (*vd.verdicts, _verdict("compliance", check)), vd.id))
            rejected |= not check.approved
        validated.append(row)
        if rejected:
            stop = k + 1
            break
    return replace(
        review,
        stop=stop,
        fingerprints=review.fingerprints[: stop - start],
        validated=validated,
        alerts=review.alerts[: stop - start],
    )


def _validated(
    stage: str, decision: DecisionEvent, verdicts: tuple[Verdict, ...], cause_id: str
) -> ValidatedDecisionEvent:
    return ValidatedDecisionEvent(
        id=f"val:{stage}:{decision.id.removeprefix('dec:')}",
        cause_id=cause_id,
        ts=decision.ts,
        decision=decision,
        verdicts=verdicts,
    )
