"""Pre-trade risk limits as pure functions of the book and the order."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_position_weight: float
    max_gross_exposure: float
    max_net_exposure: float
    max_drawdown: float


@dataclass(frozen=True)
class Check:
    approved: bool
    rule: str = ""
    reason: str = ""


def check_order(
    limits: Limits,
    equity: float,
    drawdown: float,
    values: list[float],
    column: int,
    quantity: int,
    price: float,
    held: int,
) -> Check:
    """Verdict on buying (``quantity`` > 0) or selling ``quantity`` of ``column`` at ``price``.

    ``values`` are the signed position values of every column (including orders already approved
    in this bar); ``held`` is the column's position plus working orders. An order that only reduces
    exposure always passes: limits stop risk from growing, never from shrinking.
    """
    before = values[column]
    after = (held + quantity) * price
    grows = abs(after) > abs(before) + 1e-9
    if not grows:
        return Check(True)
    if equity <= 0:
        return Check(False, "equity", f"equity {equity:,.2f} is not positive")
    if drawdown >= limits.max_drawdown:
        return Check(
            False, "max_drawdown", f"drawdown {drawdown:.2%} >= stop {limits.max_drawdown:.2%}: only reducing orders"
        )
    weight = abs(after) / equity
    if weight > limits.max_position_weight:
        return Check(
            False, "max_position_weight", f"position {weight:.2%} of equity > limit {limits.max_position_weight:.2%}"
        )
    gross_before = sum(abs(v) for v in values)
    gross = (gross_before - abs(before) + abs(after)) / equity
    if gross > limits.max_gross_exposure and gross * equity > gross_before:
        return Check(False, "max_gross_exposure", f"gross {gross:.2%} > limit {limits.max_gross_exposure:.2%}")
    net_before = sum(values)
    net = (net_before - before + after) / equity
    if abs(net) > limits.max_net_exposure and abs(net * equity) > abs(net_before):
        return Check(False, "max_net_exposure", f"net {net:+.2%} beyond limit {limits.max_net_exposure:.2%}")
    return Check(True)
