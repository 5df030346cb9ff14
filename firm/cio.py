"""The CIO's decision rule: weight the agents, blend their signals, size by fractional Kelly, manage
positions, decide the trade. One decision per instrument per bar.

Everything a decision at row t uses is known at the close of t, and every piece of state is a
deterministic function of rows already decided, so any batch size gives the same decisions:

* **Market state** (``MarketState``: volatility, agents' realised performance, the edge of the blended
  score) depends on bars and signals only, never on the book. It is advanced row by row, once per
  batch (``Allocator.prepare``), and the rows' results (``RowInputs``) are reused when risk or
  compliance cut the batch and the CIO proposes again from the true book.
* **Position state** (``Positions``: side, best close and bars held since entry, re-entry blocks)
  depends on the book. ``propose`` projects it with the book, keeps a snapshot per row, and the actor
  commits the snapshot of the last committed row (``Allocator.commit``), like the book.

Agent weights. Agent a's weight at t is ``weight_a x perf_a x regime_a``:
``perf_a = clip(1 + perf_gain x IC_a x n_a / (n_a + perf_prior_obs), weight_floor, weight_cap)``, where
IC_a is the exponentially weighted (half-life ``perf_halflife``) uncentred correlation, pooled over the
instruments, of the agent's ``strength x confidence`` at the previous bar with the return from that
bar's close to this one in units of the trailing volatility, and n_a its effective number of such
pairs: returns fully known at t, signals strictly before t. The shrinkage pulls a short or noisy
record toward the configured weight. ``regime_a = (1 - p) calm_a + p turbulent_a`` with
``p = P(turbulent)`` of the instrument from the ``regime`` agent's rationale at t (``regime_weights``:
by default mean reversion, market making and the pair spreads count less in turbulent regimes);
without a regime reading (agent warming up, late, disabled) p counts as 0. A disabled agent (the
actor's ``set_agent_enabled``) has weight 0 but its record keeps being scored.

Blended score: the weighted mean of ``strength x confidence`` over the agents that spoke with some
confidence (an abstention does not dilute the others). A position opens when |score| reaches
``entry_threshold`` and is kept while the score on its side stays at or above ``exit_threshold``
(hysteresis); otherwise the blend's target is flat.

Sizing (fractional Kelly, firm/sizing.py): expected return over the next bar ``mu = edge x score x sigma``
and ``f* = mu / sigma^2``, where sigma is the instrument's EWMA volatility of daily log returns
(half-life ``vol_halflife``, past returns only; none before ``vol_min_obs`` returns: no position) and
``edge`` is the slope, through the origin, of the next-bar return in volatility units on the blended
score, estimated over the run's own past (score at t-1 against the return t-1 -> t, exponentially
weighted with ``perf_halflife``) and shrunk toward ``edge_prior`` with weight ``edge_prior_strength``:
``edge = max(0, (S_xy + k edge_prior) / (S_xx + k))`` (no measured edge: no bet). The weight is
``kelly_fraction x f*``, capped at ``max_position_weight`` and at ``vol_target / (sigma sqrt 252)``, then
scaled by ``1 - p (1 - turbulent_size_scale)`` in a turbulent regime; the target is that share of
equity in whole shares. A trade is decided when the target differs from the position (plus working
orders) by at least ``rebalance_band x equity``, or closes or reverses it.

Position management, evaluated on the projected book at each close, before the blend. Exits first:
if any rule fires, the decision closes the position whatever the blend says, and the reason names
every rule that fired and the blend it overrode. Rules (0 or null disables), in the order they are
named: ``stop_loss`` (loss from the average entry price), ``trailing_stop`` (retreat from the best close
since entry), ``regime_exit`` (P(turbulent) of the instrument reaches it), ``max_holding_bars`` (bars
held since entry; adding to a position does not restart the clock), ``take_profit``. After an exit the
blend may not open or add on that side for ``reentry_cooldown_bars`` bars.

Risk's drawdown tiers (``risk.drawdown_tiers``, ``risk.limits.size_scale`` on the projected book's drawdown)
scale the blend's targets so the CIO does not propose what risk would reject: ``reduce_size`` multiplies
them by its scale; past ``stop_new_entries`` nothing opens, grows or reverses.

Portfolio fit: when risk's gross and net limits (``risk.max_gross_exposure``, ``risk.max_net_exposure``)
are given, the growth of a row's targets (what adds exposure beyond the position held on the same side,
or all of a new or reversed position) is scaled by the largest common factor in [0, 1] that keeps the
book after the row within 99% of both limits at the decision prices; exits, reductions and untouched
positions are not scaled. The row's decisions that add exposure come after those that do not, so risk's
sequential check never sees a transient breach.

Required agents (``required_agents``): when one is late, failed or disabled for a batch, the batch's rows
take no new risk: position-management exits still apply, the blend decides nothing.

After a rejection the CIO does not propose another trade in the same direction on that instrument
for ``REJECT_COOLDOWN_BARS`` bars, so a validator is not asked the same question every bar.

Every decision lists the signals of its blend with ``signal_ids`` and, in the same order,
``signal_hashes``: the first 16 hex digits of SHA-256 of ``agent|symbol|stamp|strength|confidence``
(Python float reprs), recomputable from the journal's SignalEvents (``signal_hash``).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

from firm.batches import Bars, Proposal, SignalBatch
from firm.config import CIOConfig
from firm.events import DecisionEvent, Side
from firm.portfolio import Book, PendingOrder
from firm.sizing import TRADING_DAYS, position_weight
from risk.limits import size_scale

REJECT_COOLDOWN_BARS = 5
EXPOSURE_BUFFER = 0.99  # the CIO sizes to 99% of risk's gross and net limits
NAN = math.nan
EXIT_RULES = ("stop_loss", "trailing_stop", "regime_exit", "max_holding_bars", "take_profit")


def signal_hash(agent: str, symbol: str, stamp: str, strength: float, confidence: float) -> str:
    """16 hex digits of SHA-256 of one signal's content (strength and confidence as Python float reprs)."""
    text = f"{agent}|{symbol}|{stamp}|{float(strength)!r}|{float(confidence)!r}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Blend:
    score: float
    signal_ids: tuple[str, ...]
    signal_hashes: tuple[str, ...] = ()


@dataclass
class RowInputs:
    """What the market says at one row, whatever the book: per instrument, and the score's edge."""

    blends: list[Blend | None]
    sigma: list[float]  # daily volatility, NaN before vol_min_obs returns
    p_turbulent: list[float]  # NaN without a regime reading
    edge: float
    weights: dict[str, float]  # effective weight per agent before the regime factor (for the record)


class MarketState:
    """Book-independent state: volatility, agents' realised IC, the blended score's edge; advanced per row."""

    def __init__(self, cfg: CIOConfig, weights: dict[str, float], symbols: tuple[str, ...]):
        self.cfg = cfg
        self.base = dict(weights)
        self.agents = sorted(weights)
        self.index = {a: i for i, a in enumerate(self.agents)}
        self.symbols = symbols
        m, n_agents = len(symbols), len(self.agents)
        self.decay = 0.5 ** (1.0 / cfg.perf_halflife)
        self.lam = 0.5 ** (1.0 / cfg.vol_halflife)
        self.sxy = [0.0] * n_agents
        self.sxx = [0.0] * n_agents
        self.syy = [0.0] * n_agents
        self.n = [0.0] * n_agents
        self.hits = [0.0] * n_agents
        self.e_xy = 0.0
        self.e_xx = 0.0
        self.prev_close = [NAN] * m
        self.var = [0.0] * m
        self.nret = [0] * m
        self.sigma = [NAN] * m
        self.prev_x = [[NAN] * m for _ in range(n_agents)]
        self.prev_score = [NAN] * m

    def ic(self, agent: str) -> tuple[float, float, float]:
        """(IC, hit rate, effective observations) of an agent's past signals against the next returns."""
        i = self.index[agent]
        n = self.n[i]
        if n <= 0 or self.sxx[i] <= 0 or self.syy[i] <= 0:
            return 0.0, NAN, n
        return self.sxy[i] / math.sqrt(self.sxx[i] * self.syy[i]), self.hits[i] / n, n

    def perf_multiplier(self, agent: str) -> float:
        if agent not in self.index or self.cfg.perf_gain == 0:
            return 1.0
        ic, _, n = self.ic(agent)
        shrunk = ic * n / (n + self.cfg.perf_prior_obs) if n > 0 else 0.0
        return min(self.cfg.weight_cap, max(self.cfg.weight_floor, 1.0 + self.cfg.perf_gain * shrunk))

    def edge(self) -> float:
        k = self.cfg.edge_prior_strength
        den = self.e_xx + k
        if den <= 0:
            return self.cfg.edge_prior
        return max(0.0, (self.e_xy + k * self.cfg.edge_prior) / den)

    def regime_factor(self, agent: str, p: float) -> float:
        rw = self.cfg.regime_weights.get(agent)
        if rw is None:
            return 1.0
        p = 0.0 if p != p else p
        return (1.0 - p) * rw.calm + p * rw.turbulent

    def advance(
        self, closes: list[float], stamp: str, row: dict[str, tuple[list, list, list | None]], disabled: set[str]
    ) -> RowInputs:
        """Take row t: score the previous signals on the returns to t, update volatility, then blend t.

        ``row`` maps each agent whose signals arrived to (strength, confidence, p_turbulent or None) at t.
        """
        d = self.decay
        for i in range(len(self.agents)):
            self.sxy[i] *= d
            self.sxx[i] *= d
            self.syy[i] *= d
            self.n[i] *= d
            self.hits[i] *= d
        self.e_xy *= d
        self.e_xx *= d
        lam = self.lam
        for j, c in enumerate(closes):
            if c != c:
                continue
            pc = self.prev_close[j]
            if pc == pc:
                r = math.log(c / pc)
                sg = self.sigma[j]
                if sg == sg and sg > 0:
                    z = r / sg
                    for i in range(len(self.agents)):
                        x = self.prev_x[i][j]
                        if x == x and x != 0:
                            self.sxy[i] += x * z
                            self.sxx[i] += x * x
                            self.syy[i] += z * z
                            self.n[i] += 1.0
                            self.hits[i] += 1.0 if (x > 0) == (z > 0) else 0.0
                    sc = self.prev_score[j]
                    if sc == sc:
                        self.e_xy += sc * z
                        self.e_xx += sc * sc
                self.var[j] = r * r if self.nret[j] == 0 else lam * self.var[j] + (1.0 - lam) * r * r
                self.nret[j] += 1
                self.sigma[j] = math.sqrt(self.var[j]) if self.nret[j] >= self.cfg.vol_min_obs else NAN
            self.prev_close[j] = c

        regime = row.get(self.cfg.regime_agent) if self.cfg.regime_agent not in disabled else None
        perf = {a: self.perf_multiplier(a) for a in row}
        blends: list[Blend | None] = []
        p_turb: list[float] = []
        for j, symbol in enumerate(self.symbols):
            p = NAN
            if regime is not None and regime[2] is not None:
                s_reg, pt = regime[0][j], regime[2][j]
                if s_reg == s_reg and pt == pt:
                    p = pt
            p_turb.append(p)
            if closes[j] != closes[j]:
                blends.append(None)
                continue
            total_w = acc = 0.0
            ids, hashes = [], []
            for agent, (st, cf, _) in row.items():
                s, c = st[j], cf[j]
                if s != s or c <= 0 or agent in disabled:
                    continue
                w = self.base.get(agent, 1.0) * perf[agent] * self.regime_factor(agent, p)
                if w <= 0:
                    continue
                acc += w * s * c
                total_w += w
                ids.append(f"sig:{agent}:{symbol}:{stamp}")
                hashes.append(signal_hash(agent, symbol, stamp, s, c))
            blend = Blend(acc / total_w, tuple(ids), tuple(hashes)) if ids else None
            blends.append(blend)
            for agent, i in self.index.items():
                sig = row.get(agent)
                x = NAN
                if sig is not None:
                    s, c = sig[0][j], sig[1][j]
                    if s == s:
                        x = s * c
                self.prev_x[i][j] = x
            self.prev_score[j] = blend.score if blend is not None else NAN
        return RowInputs(blends, list(self.sigma), p_turb, self.edge(), perf)


@dataclass
class Positions:
    """Per instrument since the position's entry: side, best close, bars held; and re-entry blocks."""

    side: list[int]
    best: list[float]
    held: list[int]
    blocked: dict[tuple[int, int], int] = field(default_factory=dict)  # (column, side) -> first row allowed

    @classmethod
    def new(cls, m: int) -> "Positions":
        return cls([0] * m, [NAN] * m, [0] * m)

    def copy(self) -> "Positions":
        return Positions(list(self.side), list(self.best), list(self.held), dict(self.blocked))

    def update(self, book: Book, closes) -> None:
        """After the row's fills and marks: a new side starts a new record; otherwise track it."""
        for j, pos in enumerate(book.positions):
            side = (pos > 0) - (pos < 0)
            c = closes[j]
            if side == 0:
                self.side[j], self.best[j], self.held[j] = 0, NAN, 0
            elif side != self.side[j]:
                self.side[j], self.best[j], self.held[j] = side, book.last_close[j], 0
            elif c == c:
                self.held[j] += 1
                self.best[j] = max(self.best[j], c) if side > 0 else min(self.best[j], c)


class Allocator:
    """Decides trades from signals and the book (module docstring: the rules and what state they keep)."""

    def __init__(
        self,
        cfg: CIOConfig,
        weights: dict[str, float],
        symbols: tuple[str, ...],
        drawdown_tiers=(),
        exposure_limits: tuple[float, float] | None = None,
    ):
        self.cfg = cfg
        self.weights = weights
        self.symbols = symbols
        self.tiers = tuple(drawdown_tiers)  # risk's drawdown tiers (risk.drawdown_tiers): sized for, not rejected
        self.exposure_limits = exposure_limits  # risk's (max_gross_exposure, max_net_exposure): sized for too
        self.market = MarketState(cfg, weights, symbols)
        self.positions = Positions.new(len(symbols))  # committed: after the last committed row's decisions
        self.disabled: set[str] = set()
        self.cooldown: dict[tuple[int, int], int] = {}  # (column, direction) -> first global row allowed again
        self._rows: tuple[int, list[RowInputs]] | None = None  # (batch offset, inputs per row)
        self._snapshots: tuple[int, list[Positions]] = (0, [])

    def set_enabled(self, agent: str, enabled: bool) -> None:
        (self.disabled.discard if enabled else self.disabled.add)(agent)

    def on_rejected(self, column: int, direction: int, row: int) -> None:
        self.cooldown[(column, direction)] = row + 1 + REJECT_COOLDOWN_BARS

    def prepare(self, bars: Bars, signals: list[SignalBatch]) -> list[RowInputs]:
        """The market inputs of every row of ``bars``, computed once per batch (book-independent)."""
        if self._rows is not None and self._rows[0] == bars.offset:
            return self._rows[1]
        panel = bars.panel
        closes = panel.close.tolist()
        per_agent = []
        for sig in signals:
            pt = sig.rationale.get("p_turbulent") if sig.agent == self.cfg.regime_agent else None
            per_agent.append(
                (sig.agent, sig.strength.tolist(), sig.confidence.tolist(), None if pt is None else pt.tolist())
            )
        rows = []
        for k, stamp in enumerate(bars.stamps):
            row = {a: (st[k], cf[k], None if pt is None else pt[k]) for a, st, cf, pt in per_agent}
            rows.append(self.market.advance(closes[k], stamp, row, self.disabled))
        self._rows = (bars.offset, rows)
        return rows

    def commit(self, stop: int) -> None:
        """Rows before ``stop`` (batch-relative) are committed: keep the position state after row stop - 1."""
        start, snaps = self._snapshots
        if stop > start:
            self.positions = snaps[stop - 1 - start]
        self._snapshots = (stop, [])

    def target(
        self, score: float, equity: float, price: float, held: int = 0, sigma: float = NAN, edge: float = NAN,
        p_turbulent: float = NAN,
    ) -> tuple[int, float]:
        """(target shares, weight) for a blended ``score`` (module docstring: thresholds and Kelly sizing).

        Without a volatility for the instrument yet the target is what is ``held``: nothing opens, nothing is
        resized, and only the thresholds (or an exit rule) close a position."""
        holding_same_side = held != 0 and (held > 0) == (score > 0)
        threshold = self.cfg.exit_threshold if holding_same_side else self.cfg.entry_threshold
        if abs(score) < threshold or equity <= 0:
            return 0, 0.0
        if score < 0 and not self.cfg.allow_short:
            return 0, 0.0
        if not sigma > 0:  # no volatility yet (vol_min_obs): cannot size, keep what is held
            return held, NAN
        score = max(-1.0, min(1.0, score))
        w = position_weight(
            edge * score * sigma,
            sigma,
            kelly_fraction=self.cfg.kelly_fraction,
            max_weight=self.cfg.max_position_weight,
            vol_target=self.cfg.vol_target,
            periods_per_year=TRADING_DAYS,
        )
        if p_turbulent == p_turbulent:
            w *= 1.0 - p_turbulent * (1.0 - self.cfg.turbulent_size_scale)
        return int(math.trunc(w * equity / price)), w

    def exits(self, j: int, book: Book, pos: Positions, inputs: RowInputs, price: float) -> list[str]:
        """The position-management rules that fire on column ``j``'s open position, in priority order."""
        side = pos.side[j]
        qty = book.positions[j]
        if side == 0 or qty == 0:
            return []
        cfg = self.cfg
        fired = []
        entry = book.cost_basis[j] / qty
        change = side * (price / entry - 1.0)
        if cfg.stop_loss and change <= -cfg.stop_loss:
            fired.append(f"stop_loss ({change:+.1%} from entry {entry:.2f})")
        if cfg.trailing_stop:
            retreat = side * (price / pos.best[j] - 1.0)
            if retreat <= -cfg.trailing_stop:
                fired.append(f"trailing_stop ({retreat:+.1%} from best close {pos.best[j]:.2f})")
        p = inputs.p_turbulent[j]
        if cfg.regime_exit and p == p and p >= cfg.regime_exit:
            fired.append(f"regime_exit (P(turbulent) {p:.2f})")
        if cfg.max_holding_bars and pos.held[j] >= cfg.max_holding_bars:
            fired.append(f"max_holding_bars ({pos.held[j]} bars)")
        if cfg.take_profit and change >= cfg.take_profit:
            fired.append(f"take_profit ({change:+.1%} from entry {entry:.2f})")
        return fired

    def decide_row(
        self,
        bars: Bars,
        k: int,
        row: int,
        inputs: RowInputs,
        late: tuple[str, ...],
        book: Book,
        pos: Positions,
        exits_only: bool = False,
    ) -> list[DecisionEvent]:
        closes = bars.panel.close[k]
        stamp = bars.stamps[k]
        plans: list[tuple] = []  # (column, price, held, target, weight, fired, blend)
        for j in range(len(self.symbols)):
            price = closes[j]
            if price != price:
                continue
            price = float(price)
            blend = inputs.blends[j]
            held = book.positions[j] + book.working(j)
            closing = book.positions[j] != 0 and (held == 0 or (held > 0) != (book.positions[j] > 0))
            fired = [] if closing else self.exits(j, book, pos, inputs, price)
            weight = 0.0
            if fired:
                target = 0
            elif exits_only or blend is None:
                continue
            else:
                target, weight = self.target(
                    blend.score, book.equity, price, held, inputs.sigma[j], inputs.edge, inputs.p_turbulent[j]
                )
                scale = size_scale(book.drawdown, self.tiers) if self.tiers else 1.0
                if scale < 1.0:
                    target = _scaled(target, held, scale)
                if target != 0:
                    side = 1 if target > 0 else -1
                    if pos.blocked.get((j, side), -1) > row and side * target > max(0, side * held):
                        target = held if held != 0 and (held > 0) == (target > 0) else 0
            if not self._emits(j, held, target, price, book.equity, row):
                target = held  # no decision: the position stays as it is (what the portfolio fit must assume)
            plans.append((j, price, held, target, weight, fired, blend))
        if self.exposure_limits is not None and plans:
            plans = self._fit_exposure(plans, book)

        decisions = []
        ts = None
        for j, price, held, target, weight, fired, blend in sorted(plans, key=lambda p: (_grows(p[2], p[3]), p[0])):
            if not self._emits(j, held, target, price, book.equity, row):
                continue
            symbol = self.symbols[j]
            delta = target - held
            if fired and self.cfg.reentry_cooldown_bars:
                pos.blocked[(j, pos.side[j])] = row + 1 + self.cfg.reentry_cooldown_bars
            if ts is None:
                ts = bars.closes_at[k]
            score = blend.score if blend is not None else 0.0
            decisions.append(
                DecisionEvent(
                    id=f"dec:{symbol}:{stamp}",
                    cause_id=f"bar:{symbol}:{stamp}",
                    ts=ts,
                    symbol=symbol,
                    side=Side.BUY if delta > 0 else Side.SELL,
                    quantity=abs(delta),
                    current_position=held,
                    target_position=target,
                    price=price,
                    score=round(score, 10),
                    signal_ids=blend.signal_ids if blend is not None else (),
                    signal_hashes=blend.signal_hashes if blend is not None else (),
                    late_agents=late,
                    reason=_exit_reason(fired, blend, held, exits_only)
                    if fired
                    else _reason(blend.score, held, target, weight, inputs.sigma[j], inputs.edge),
                )
            )
        return decisions

    def _emits(self, j: int, held: int, target: int, price: float, equity: float, row: int) -> bool:
        """Whether moving ``held`` to ``target`` is a decision: a change that closes or reverses, or one of at
        least ``rebalance_band`` of equity, in a direction not cooling down after a rejection."""
        delta = target - held
        if delta == 0:
            return False
        flips = target == 0 or (held != 0 and (target > 0) != (held > 0))
        if not flips and abs(delta) * price < self.cfg.rebalance_band * equity:
            return False
        return self.cooldown.get((j, 1 if delta > 0 else -1), -1) <= row

    def _fit_exposure(self, plans: list[tuple], book: Book) -> list[tuple]:
        """Scale the growth of the row's targets so the book after them stays inside risk's gross and net
        limits (module docstring: portfolio fit). Exits, reductions and untouched positions are fixed."""
        gross_limit, net_limit = self.exposure_limits
        budget = EXPOSURE_BUFFER * book.equity
        planned = {p[0]: p for p in plans}
        fixed_gross = fixed_net = grow_gross = grow_net = 0.0
        for j in range(len(self.symbols)):
            if j not in planned:
                px = book.last_close[j]
                value = 0.0 if px != px else (book.positions[j] + book.working(j)) * px
                fixed_gross += abs(value)
                fixed_net += value
                continue
            _, price, held, target, *_ = planned[j]
            base, growth = _split(held, target)
            fixed_gross += abs(base) * price
            fixed_net += base * price
            grow_gross += abs(growth) * price
            grow_net += growth * price
        s = 1.0
        if grow_gross > 0.0:
            s = min(s, (gross_limit * budget - fixed_gross) / grow_gross)
        if grow_net > 0.0:
            s = min(s, (net_limit * budget - fixed_net) / grow_net)
        elif grow_net < 0.0:
            s = min(s, (net_limit * budget + fixed_net) / -grow_net)
        if s >= 1.0:
            return plans
        s = max(s, 0.0)
        fitted = []
        for j, price, held, target, weight, fired, blend in plans:
            base, growth = _split(held, target)
            if growth:
                target = base + int(math.trunc(s * growth))
            fitted.append((j, price, held, target, weight, fired, blend))
        return fitted

    def propose(
        self,
        bars: Bars,
        start: int,
        book: Book,
        signals: list[SignalBatch],
        late: tuple[str, ...],
        exits_only: bool = False,
        opened: bool = False,
        observe: bool = False,
    ) -> Proposal:
        """Decide rows ``start..n`` of ``bars``, projecting ``book`` (and the position state) as if every
        decision were filled. ``exits_only``: a required agent is missing, only exit rules decide.
        ``opened`` (live): ``book`` is the broker's after row ``start``'s fills, marked to its close, so that
        row is decided on it as it is, re-based, not on a projection of the fills. ``observe`` (live warm-up):
        the rows advance the market and position state but decide nothing."""
        inputs = self.prepare(bars, signals)
        projected = book.copy()
        pos = self.positions.copy()
        snaps = []
        decisions, fingerprints = [], []
        panel = bars.panel
        for k in range(start, len(bars)):
            if not (opened and k == start):
                projected.fill_at_open(panel.open[k])
                projected.mark(panel.close[k])
            pos.update(projected, panel.close[k].tolist())
            fingerprints.append(projected.fingerprint())
            row_decisions = [] if observe else self.decide_row(
                bars, k, bars.offset + k, inputs[k], late, projected, pos, exits_only
            )
            for d in row_decisions:
                projected.submit(pending_order(d, self.symbols))
            decisions.append(row_decisions)
            snaps.append(pos.copy())
        self._snapshots = (start, snaps)
        return Proposal(
            offset=bars.offset, start=start, book=book, decisions=decisions, fingerprints=fingerprints, opened=opened
        )


def _split(held: int, target: int) -> tuple[int, int]:
    """(fixed part, growth) of moving from ``held`` to ``target`` shares: growth is the part that adds
    exposure (beyond what is held on the same side, or all of a reversed or new position)."""
    if target == 0 or (held != 0 and (target > 0) != (held > 0)):
        return 0, target  # a close, or a reversal: the old side goes, the new side is all growth
    if abs(target) > abs(held):
        return held, target - held
    return target, 0


def _grows(held: int, target: int) -> bool:
    return _split(held, target)[1] != 0


def _scaled(target: int, held: int, scale: float) -> int:
    """Risk's drawdown tiers on a blend target: ``reduce_size`` scales it; at scale 0 (``stop_new_entries``,
    ``flatten``) nothing opens, grows or reverses (a reversal becomes a close), reductions still pass."""
    if scale > 0:
        return int(math.trunc(target * scale))
    if target == 0 or held == 0 or (target > 0) != (held > 0):
        return 0
    return target if abs(target) <= abs(held) else held


def order_ref(decision: DecisionEvent) -> str:
    """The broker order reference of a decision: stable, unique per decision, at most 40 chars."""
    return "firm-" + decision.id.removeprefix("dec:").replace(":", "-")


def pending_order(decision: DecisionEvent, symbols: tuple[str, ...]) -> PendingOrder:
    qty = decision.quantity if decision.side is Side.BUY else -decision.quantity
    return PendingOrder(order_ref(decision), symbols.index(decision.symbol), qty, decision.id)


def _reason(score: float, held: int, target: int, weight: float, sigma: float, edge: float) -> str:
    """``<action>: <why>``; the action is one of open long/short, close, reverse, resize."""
    why = f"blended score {score:+.3f}"
    if target == 0:
        return f"close: {why}, target 0 (thresholds, edge {edge:.3f}), flatten {held}"
    sizing = f"kelly weight {weight:+.3f} (edge {edge:.3f}, vol {sigma:.2%}/day)"
    side = "long" if target > 0 else "short"
    if held == 0:
        return f"open {side}: {why}, {sizing}, target {target}"
    if (held > 0) != (target > 0):
        return f"reverse: {why}, {sizing}, {held} to {target}"
    return f"resize: {why}, {sizing}, {held} to {target}"


def _exit_reason(fired: list[str], blend: Blend | None, held: int, exits_only: bool) -> str:
    """``exit <first rule>: <every rule that fired>; <the blend it overrode>``."""
    rule = fired[0].split(" ", 1)[0]
    over = "no blend" if blend is None else f"overrides blended score {blend.score:+.3f}"
    if exits_only:
        over += ", required agent missing"
    return f"exit {rule}: {'; '.join(fired)}; {over}; flatten {held}"
