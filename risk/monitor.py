"""The risk validator's state, bar by bar: market history, the book's equity path and the kill switch.

Every quantity at global row ``g`` is a function of market data up to ``g`` and of the book the risk
validator projects, never of how rows were cut into batches:

* market rows (closes carried forward, each instrument's move in sigmas, the correlation shift) are
  computed once per row, on fixed-shape windows, the first time a batch brings the row;
* book rows (equity at each close, daily-loss breaches, portfolio crash triggers, a kill-switch
  trip) are truncated to the first row of each review before risk projects again: rows before it
  were committed, so what risk projected for them is what happened (a projection differs from the
  broker's book only after a rejected decision, and a review stops at the row of the rejection).

``row`` returns the bar's ``Gate`` (what is blocked beyond the static limits), its alerts and, if the
kill switch trips on this bar, the ``KillSwitchEvent``.
"""

from __future__ import annotations

import math

import numpy as np

from firm.config import RiskConfig
from firm.events import KillSwitchEvent, RiskAlertEvent
from firm.kill_switch import KillSwitchState
from firm.portfolio import Book
from risk.limits import (
    TIER_RANK,
    Gate,
    Limits,
    Tier,
    correlation_shift_at,
    daily_loss,
    drawdown_tier,
    velocity_at,
)


def limits_from_config(cfg: RiskConfig, symbols: tuple[str, ...]) -> Limits:
    names: list[str] = []
    sector_of = []
    for symbol in symbols:
        name = cfg.sectors.get(symbol, f"{symbol} (own sector)")
        if name not in names:
            names.append(name)
        sector_of.append(names.index(name))
    return Limits(
        max_position_weight=cfg.max_position_weight,
        max_gross_exposure=cfg.max_gross_exposure,
        max_net_exposure=cfg.max_net_exposure,
        max_drawdown=cfg.max_drawdown,
        sector_of=tuple(sector_of),
        sector_names=tuple(names),
        max_sector_weight=cfg.max_sector_weight,
        max_concentration=cfg.max_concentration,
        concentration_min_gross=cfg.concentration_min_gross,
        drawdown_tiers=tuple(Tier(t.at, t.action, t.scale if t.scale is not None else 1.0) for t in cfg.drawdown_tiers),
    )


class _Grow:
    """A preallocated array that grows by doubling along its first axis."""

    def __init__(self, shape_tail: tuple[int, ...], dtype=float, fill=math.nan):
        self.a = np.full((256, *shape_tail), fill, dtype=dtype)
        self.n = 0
        self.fill = fill

    def append(self, row) -> None:
        if self.n == len(self.a):
            more = np.full_like(self.a, self.fill)
            self.a = np.concatenate([self.a, more])
        self.a[self.n] = row
        self.n += 1

    def truncate(self, n: int) -> None:
        if n < self.n:
            self.a[n : self.n] = self.fill
            self.n = n

    def view(self) -> np.ndarray:
        return self.a[: self.n]


class RiskMonitor:
    def __init__(self, cfg: RiskConfig, symbols: tuple[str, ...], persisted: KillSwitchState | None = None):
        self.cfg = cfg
        self.symbols = tuple(symbols)
        self.limits = limits_from_config(cfg, self.symbols)
        self.persisted = persisted if persisted is not None and persisted.engaged else None
        m = len(self.symbols)
        # market rows
        self.logp = _Grow((m,))  # log closes carried forward (NaN before an instrument's first bar)
        self.move = _Grow((m,))  # log move over crash.window bars
        self.z = _Grow((m,))  # ... in sigmas of the lookback before it
        self.crash_hit = _Grow((m,), dtype=bool, fill=False)
        self.corr = _Grow(())  # correlation shift (NaN until both windows are full)
        # book rows
        self.initial_equity: float | None = None
        self.equity = _Grow(())
        self.log_equity = _Grow((1,))
        self.loss_breach = _Grow((), dtype=bool, fill=False)
        self.port_hit = _Grow((), dtype=bool, fill=False)
        self.trip: tuple[int, KillSwitchEvent] | None = None
        # load the compiled kernels now (numba cache), while the agents start, not on the first bar
        warm = np.zeros((4, 2))
        velocity_at(warm, 3, 1, 2)
        correlation_shift_at(warm, 3, 1, 2)

    # -- market data ---------------------------------------------------------------------------

    def ingest(self, offset: int, closes: np.ndarray) -> None:
        """Add the rows of a batch not seen yet (``closes``: (n, m), row 0 is global row ``offset``)."""
        if offset > self.logp.n:
            raise ValueError(f"risk got rows from {offset} before rows {self.logp.n}..{offset - 1}")
        for row in closes[self.logp.n - offset :].tolist():
            self._market_row(row)

    def _market_row(self, closes: list[float]) -> None:
        last = self.logp.a[self.logp.n - 1].tolist() if self.logp.n else [math.nan] * len(closes)
        self.logp.append([math.log(c) if c == c else prev for c, prev in zip(closes, last)])
        g = self.logp.n - 1
        crash, corr = self.cfg.crash, self.cfg.correlation
        if crash.enabled and g >= crash.lookback + crash.window:
            move, z = velocity_at(self.logp.a, g, crash.window, crash.lookback)
            self.move.append(move)
            self.z.append(z)
            self.crash_hit.append((np.abs(z) >= crash.sigmas) & (np.abs(move) >= crash.min_move))
        else:
            self.move.append(math.nan)
            self.z.append(math.nan)
            self.crash_hit.append(False)
        if corr.enabled and g >= corr.short_window + corr.long_window:
            self.corr.append(correlation_shift_at(self.logp.a, g, corr.short_window, corr.long_window))
        else:
            self.corr.append(math.nan)

    # -- book ----------------------------------------------------------------------------------

    def begin(self, row: int, book: Book) -> None:
        """A review starts at global ``row`` on the committed ``book``: forget what was projected after it."""
        if self.initial_equity is None:
            if row != 0:
                raise ValueError(f"the first review must start at row 0, not {row}")
            self.initial_equity = book.equity
        for series in (self.equity, self.log_equity, self.loss_breach, self.port_hit):
            series.truncate(row)
        if self.trip is not None and self.trip[0] >= row:
            self.trip = None

    @property
    def engaged(self) -> bool:
        return self.persisted is not None or self.trip is not None

    def row(self, g: int, book: Book, stamp: str, ts) -> tuple[Gate, list, KillSwitchEvent | None]:
        """Risk state at the close of global row ``g`` (the book filled and marked at it)."""
        cfg = self.cfg
        assert self.equity.n == g, (self.equity.n, g)
        prev_equity = self.equity.a[g - 1] if g else self.initial_equity
        equity = book.equity
        self.equity.append(equity)
        self.log_equity.append(math.log(equity) if equity > 0 else math.nan)
        alerts: list = []
        blocked: list[tuple[str, str]] = []

        # kill switch found engaged at the start of the run
        if self.persisted is not None:
            p = self.persisted
            reason = f"kill switch engaged by {p.by} at {p.at} ({p.trigger}): {p.reason}"
            blocked.append(("kill_switch", reason + "; reset with 'firm kill-switch reset'"))
            if g == 0:
                alerts.append(
                    KillSwitchEvent(id=f"ks:persisted:{stamp}", ts=ts, active=True, reason=reason, trigger="persisted")
                )
        elif self.trip is not None:
            ev = self.trip[1]
            blocked.append(("kill_switch", f"kill switch tripped at {ev.ts:%Y-%m-%d} ({ev.trigger}): {ev.reason}"))

        # drawdown: the stop and the tiers
        dd, prev_dd = book.drawdown, book.prev_drawdown
        lim = self.limits
        if prev_dd < lim.max_drawdown <= dd:
            alerts.append(
                RiskAlertEvent(
                    id=f"alert:max_drawdown:{stamp}",
                    ts=ts,
                    severity="critical",
                    rule="max_drawdown",
                    message=f"drawdown {dd:.2%} reached the stop; only reducing orders pass",
                    value=dd,
                    limit=lim.max_drawdown,
                )
            )
        tier = drawdown_tier(dd, lim.drawdown_tiers)
        prev_tier = drawdown_tier(prev_dd, lim.drawdown_tiers)
        if tier is not None and (prev_tier is None or tier.at > prev_tier.at):
            alerts.append(
                RiskAlertEvent(
                    id=f"alert:drawdown_tier:{stamp}",
                    ts=ts,
                    severity="warning" if tier.action == "reduce_size" else "critical",
                    rule="drawdown_tier",
                    message=f"drawdown {dd:.2%} reached the {tier.at:.0%} tier: {tier.action}"
                    + (f" x{tier.scale:g}" if tier.action == "reduce_size" else ""),
                    value=dd,
                    limit=tier.at,
                )
            )
        scale, scale_rule = 1.0, ""
        for t in lim.drawdown_tiers:
            if dd >= t.at and t.action == "reduce_size" and t.scale < scale:
                scale, scale_rule = t.scale, "drawdown_tier"
        if tier is not None and TIER_RANK[tier.action] >= TIER_RANK["stop_new_entries"]:
            blocked.append(
                ("drawdown_tier", f"drawdown {dd:.2%} >= {tier.at:.0%} tier ({tier.action}): only reducing orders")
            )

        # daily loss
        loss = daily_loss(prev_equity, equity)
        breach = loss >= cfg.daily_loss_limit
        self.loss_breach.append(breach)
        if breach:
            alerts.append(
                RiskAlertEvent(
                    id=f"alert:daily_loss:{stamp}",
                    ts=ts,
                    severity="critical",
                    rule="daily_loss",
                    message=f"lost {loss:.2%} of equity since the previous close: "
                    + ("kill switch" if cfg.daily_loss_action == "kill_switch" else
                       f"no new risk for {cfg.daily_loss_halt_bars} bar(s)"),
                    value=loss,
                    limit=cfg.daily_loss_limit,
                )
            )
        if cfg.daily_loss_action == "halt":
            recent = self.loss_breach.a[max(0, g + 1 - cfg.daily_loss_halt_bars) : g + 1]
            if recent.any():
                blocked.append(
                    ("daily_loss", f"daily loss beyond {cfg.daily_loss_limit:.2%} within the last "
                     f"{cfg.daily_loss_halt_bars} bar(s): no new risk")
                )

        # crash protection: the portfolio (all entries) and each instrument (its entries)
        crash = cfg.crash
        port_hit = False
        if crash.enabled and g >= crash.lookback + crash.window:
            moves, zs = velocity_at(self.log_equity.a, g, crash.window, crash.lookback)
            move, z = float(moves[0]), float(zs[0])
            if z == z:  # NaN: flat equity (no sigma) or a non-positive equity in the window
                port_hit = abs(z) >= crash.portfolio_sigmas and abs(move) >= crash.portfolio_min_move
                if port_hit:
                    alerts.append(
                        RiskAlertEvent(
                            id=f"alert:crash_protection:portfolio:{stamp}",
                            ts=ts,
                            severity="critical",
                            rule="crash_protection",
                            message=f"portfolio moved {move:+.2%} (log) over {crash.window} bar(s), {z:+.1f} sigma: "
                            f"no new entries for {crash.halt_bars} bar(s)",
                            value=float(z),
                            limit=crash.portfolio_sigmas,
                        )
                    )
        self.port_hit.append(port_hit)
        lo = max(0, g + 1 - crash.halt_bars)
        if self.port_hit.a[lo : g + 1].any():
            blocked.append(("crash_protection", f"portfolio crash protection: no new entries for {crash.halt_bars} bar(s)"))
        blocked_columns = {}
        hits = self.crash_hit.a[lo : g + 1]
        for j in np.flatnonzero(hits.any(axis=0)).tolist():
            blocked_columns[j] = (
                "crash_protection",
                f"{self.symbols[j]} moved {self.z.a[g - int(np.flatnonzero(hits[::-1, j])[0]), j]:+.1f} sigma "
                f"within the last {crash.halt_bars} bar(s): no new entries",
            )
        for j in np.flatnonzero(self.crash_hit.a[g]).tolist():
            alerts.append(
                RiskAlertEvent(
                    id=f"alert:crash_protection:{self.symbols[j]}:{stamp}",
                    ts=ts,
                    severity="warning",
                    rule="crash_protection",
                    message=f"{self.symbols[j]} moved {self.move.a[g, j]:+.2%} (log) over {crash.window} bar(s), "
                    f"{self.z.a[g, j]:+.1f} sigma: no new entries in it for {crash.halt_bars} bar(s)",
                    value=float(self.z.a[g, j]),
                    limit=crash.sigmas,
                )
            )

        # correlation regime shift: a warning when the distance crosses the threshold
        corr = cfg.correlation
        d = self.corr.a[g]
        if corr.enabled and d > corr.threshold and not (g and self.corr.a[g - 1] > corr.threshold):
            alerts.append(
                RiskAlertEvent(
                    id=f"alert:correlation_shift:{stamp}",
                    ts=ts,
                    severity="warning",
                    rule="correlation_shift",
                    message=f"pairwise correlations of the last {corr.short_window} returns differ from the "
                    f"{corr.long_window} before them by {d:.3f} on average",
                    value=float(d),
                    limit=corr.threshold,
                )
            )

        # the kill switch trips: the flatten tier, or the daily loss when so configured
        trip = None
        if not self.engaged:
            trigger = reason = None
            flatten = False
            if tier is not None and tier.action == "flatten":
                trigger, flatten = "drawdown_tier", True
                reason = f"drawdown {dd:.2%} reached the {tier.at:.0%} flatten tier"
            elif breach and cfg.daily_loss_action == "kill_switch":
                trigger = "daily_loss"
                reason = f"lost {loss:.2%} since the previous close (limit {cfg.daily_loss_limit:.2%})"
            if trigger is not None:
                trip = KillSwitchEvent(
                    id=f"ks:{trigger}:{stamp}",
                    cause_id=f"alert:{trigger}:{stamp}",
                    ts=ts,
                    active=True,
                    reason=reason,
                    trigger=trigger,
                    flatten=flatten,
                    cancelled=tuple(o.order_ref for o in book.pending),
                )
                self.trip = (g, trip)
                alerts.append(trip)
                blocked.insert(0, ("kill_switch", f"the kill switch trips on this bar: {reason}"))
        gate = Gate(tuple(blocked), blocked_columns, scale, scale_rule)
        return gate, alerts, trip
