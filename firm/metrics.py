"""firm's own metrics on Ray's metrics endpoint (``ray.util.metrics``), for the Ray dashboard and Prometheus.

Every name starts with ``firm_``; Ray exports them with its ``ray_`` prefix (``ray_firm_bars_total``) on each
node's metrics export port, beside Ray's own. The driver records a run's metrics once per committed batch
(:class:`RunMetrics`), from the figures the run summary is built from, so their values equal the summary's.
Each series carries the run (its run directory's name) and the config's name; late signals also carry the
agent and whether it was late or failed, rejections the validator and the rule. ``firm_book_var_dollars`` is
the run's book at its last committed session, 1-day 99% delta-normal VaR over the 250 sessions before
(:func:`risk.var.trailing_book`); ``firm stress`` sets ``firm_var_dollars`` from the VaR of the book it stresses.

A gauge lives as long as the process that set it (the driver of a run, or of ``firm stress``); counters and
histograms stay on the endpoint after it exits.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass
from functools import lru_cache

from ray.util.metrics import Counter, Gauge, Histogram

from firm.batches import BatchResult
from firm.summary import RunStats

RUN_TAGS = ("run", "config")
# seconds the CIO waited at the barrier for a batch's signals: from a few ms (warm, batch 1) to the timeout
BARRIER_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


@dataclass(frozen=True)
class Metrics:
    bars: Counter
    sessions: Counter
    batches: Counter
    barrier_wait: Histogram
    late_signals: Counter
    decisions: Counter
    rejections: Counter
    orders: Counter
    fills: Counter
    equity: Gauge
    drawdown: Gauge
    book_var: Gauge
    var: Gauge


@lru_cache(maxsize=1)
def metrics() -> Metrics:
    """firm's metrics, defined once per process (Ray must be initialised)."""
    return Metrics(
        bars=Counter("firm_bars_total", "Instrument bars replayed through the pipeline.", RUN_TAGS),
        sessions=Counter("firm_sessions_total", "Sessions (rows of bars) committed.", RUN_TAGS),
        batches=Counter("firm_batches_total", "Batches committed by the CIO.", RUN_TAGS),
        barrier_wait=Histogram(
            "firm_barrier_wait_seconds",
            "Seconds the CIO waited at the barrier for a batch's signals.",
            BARRIER_BOUNDARIES_S,
            RUN_TAGS,
        ),
        late_signals=Counter(
            "firm_late_signals_total",
            "Batches an agent's signals missed: late (past the barrier) or failed (the call raised).",
            (*RUN_TAGS, "agent", "kind"),
        ),
        decisions=Counter("firm_decisions_total", "Decisions of the CIO sent to the validators.", RUN_TAGS),
        rejections=Counter(
            "firm_rejections_total", "Decisions rejected, by validator (risk, compliance) and rule.",
            (*RUN_TAGS, "validator", "rule"),
        ),  # fmt: skip
        orders=Counter("firm_orders_total", "Orders sent to the broker.", RUN_TAGS),
        fills=Counter("firm_fills_total", "Fills received from the broker.", RUN_TAGS),
        equity=Gauge("firm_equity_dollars", "Equity of the book at the last committed session.", RUN_TAGS),
        drawdown=Gauge("firm_drawdown", "Drawdown from peak equity at the last committed session (0.05 = 5%).", RUN_TAGS),
        book_var=Gauge(
            "firm_book_var_dollars",
            "1-day 99% delta-normal VaR of the run's book at the last committed session, positive dollars "
            "(returns of the 250 sessions before).",
            RUN_TAGS,
        ),
        var=Gauge(
            "firm_var_dollars",
            "Value at risk of the stressed book, positive dollars (firm stress: 1-day 99% delta-normal).",
            ("config", "book", "scenario"),
        ),
    )


class RunMetrics:
    """A run's metrics, recorded by the driver after each committed batch from the run's own statistics."""

    def __init__(self, run: str, config: str, initial_equity: float):
        self.m = metrics()
        self.tags = {"run": run, "config": config}
        self.peak = initial_equity
        self.seen_bars = self.seen_rows = self.seen_decisions = self.seen_orders = self.seen_fills = 0
        self.seen_equity = 0
        self.seen_rejections: Tally = Tally()

    def record(self, stats: RunStats, result: BatchResult, book_var: float | None = None) -> None:
        """Add what ``stats.add(bars, result)`` just counted; set the equity, drawdown and book VaR gauges."""
        m, tags = self.m, self.tags
        if book_var is not None:
            m.book_var.set(float(book_var), tags)
        self._inc(m.bars, stats.bars - self.seen_bars)
        self._inc(m.sessions, stats.rows - self.seen_rows)
        self._inc(m.decisions, stats.decisions - self.seen_decisions)
        self._inc(m.orders, stats.orders - self.seen_orders)
        self._inc(m.fills, stats.fills - self.seen_fills)
        self.seen_bars, self.seen_rows, self.seen_decisions = stats.bars, stats.rows, stats.decisions
        self.seen_orders, self.seen_fills = stats.orders, stats.fills
        m.batches.inc(1, tags)
        m.barrier_wait.observe(result.barrier_wait_s, tags)
        for agent in result.late:
            m.late_signals.inc(1, {**tags, "agent": agent, "kind": "late"})
        for agent in result.failed:
            m.late_signals.inc(1, {**tags, "agent": agent, "kind": "failed"})
        if stats.rejections != self.seen_rejections:
            for (validator, rule), n in stats.rejections.items():
                new = n - self.seen_rejections[(validator, rule)]
                if new:
                    m.rejections.inc(new, {**tags, "validator": validator, "rule": rule})
            self.seen_rejections = Tally(stats.rejections)
        if len(stats.equity) > self.seen_equity:
            self.peak = max(self.peak, max(stats.equity[self.seen_equity :]))
            self.seen_equity = len(stats.equity)
            equity = stats.equity[-1]
            m.equity.set(equity, tags)
            m.drawdown.set(1.0 - equity / self.peak if self.peak > 0 else 0.0, tags)

    def _inc(self, counter: Counter, n: int) -> None:
        if n:
            counter.inc(n, self.tags)


def record_var(config: str, book: str, var_by_scenario: dict[str, float]) -> None:
    """Set ``firm_var_dollars`` for a stressed book: ``unstressed`` and each VaR scenario's stressed figure."""
    gauge = metrics().var
    for scenario, value in var_by_scenario.items():
        gauge.set(float(value), {"config": config, "book": book, "scenario": scenario})
