"""The two validators of a proposal, strictly in order: risk, then compliance.

Each stops after the first row in which it rejects anything: the CIO decided the rows after it
on a book that assumed the rejected trade, so they go back to the CIO with the real book.
"""

from __future__ import annotations

from dataclasses import replace

from firm.batches import Bars, Proposal, Review
from firm.cio import pending_order
from firm.compliance import ComplianceRules
from firm.events import DecisionEvent, RiskAlertEvent, Side, ValidatedDecisionEvent, Verdict
from risk.limits import Limits, check_order


def _verdict(validator: str, check) -> Verdict:
    return Verdict(validator=validator, approved=check.approved, rule=check.rule, reason=check.reason)


def review_risk(proposal: Proposal, bars: Bars, limits: Limits) -> Review:
    """Check every decision against the limits on risk's own projection of the book."""
    book = proposal.book.copy()
    panel = bars.panel
    symbols = book.symbols
    validated, alerts = [], []
    stop = len(bars)
    ts_cache = None
    for k in range(proposal.start, len(bars)):
        book.fill_at_open(panel.open[k])
        book.mark(panel.close[k])
        row_alerts = []
        if book.prev_drawdown < limits.max_drawdown <= book.drawdown:
            ts_cache = ts_cache or bars.closes_at
            row_alerts.append(
                RiskAlertEvent(
                    id=f"alert:max_drawdown:{bars.stamps[k]}",
                    cause_id=None,
                    ts=ts_cache[k],
                    severity="critical",
                    rule="max_drawdown",
                    message=f"drawdown {book.drawdown:.2%} reached the stop; only reducing orders pass",
                    value=book.drawdown,
                    limit=limits.max_drawdown,
                )
            )
        row: list[ValidatedDecisionEvent] = []
        values = [book.position_value(j) for j in range(len(symbols))]
        rejected = False
        for d in proposal.decisions[k - proposal.start]:
            j = symbols.index(d.symbol)
            qty = d.quantity if d.side is Side.BUY else -d.quantity
            held = book.positions[j] + book.working(j)
            check = check_order(limits, book.equity, book.drawdown, values, j, qty, d.price, held)
            row.append(_validated("risk", d, (_verdict("risk", check),), d.id))
            if check.approved:
                book.submit(pending_order(d, symbols))
                values[j] = (held + qty) * d.price
            else:
                rejected = True
        validated.append(row)
        alerts.append(row_alerts)
        if rejected:
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
