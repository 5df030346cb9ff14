"""The CIO's rule in-process (no Ray): agent weights from realised IC and by regime, Kelly targets, exits
before the blend, required agents, and proposals that are the same whatever the batch cut."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

from firm.batches import Bars, SignalBatch
from firm.cio import Allocator, MarketState, signal_hash
from firm.config import CIOConfig
from firm.portfolio import Book, Costs
from strategies.base import Panel

SYMBOLS = ("AAA", "BBB")
DAY = 86_400_000_000_000


def _bars(close: np.ndarray, offset: int = 0) -> Bars:
    n = close.shape[0]
    ts = (np.arange(offset, offset + n, dtype=np.int64) + 13_000) * DAY + 20 * 3600 * 10**9
    opens = close.copy()
    panel = Panel(ts, SYMBOLS, opens, close * 1.01, close * 0.99, close, np.ones_like(close))
    return Bars(offset=offset, panel=panel, session_open=ts - 6 * 3600 * 10**9)


def _signal(agent: str, strength: np.ndarray, offset: int = 0, confidence: float = 1.0, **rationale) -> SignalBatch:
    return SignalBatch(agent, offset, strength, np.full(strength.shape, confidence), dict(rationale))


def _walk(n: int, seed: int = 0, vol: float = 0.01) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, vol, (n, len(SYMBOLS))), axis=0))


def _book(cash: float = 1_000_000.0) -> Book:
    return Book.new(SYMBOLS, cash, Costs(slippage_bps=0, slippage_noise_bps=0))


def test_agent_weights_follow_realised_ic_with_shrinkage_and_floor():
    cfg = CIOConfig(vol_min_obs=5, perf_prior_obs=100, perf_gain=10, weight_floor=0.25, weight_cap=2.0)
    close = _walk(400)
    ret = np.vstack([np.diff(np.log(close), axis=0), np.zeros((1, 2))])  # ret[t] = return t -> t+1 (the future)
    oracle = np.sign(ret)  # knows the next return: IC near 1 once scored
    contrarian = -oracle
    state = MarketState(cfg, {"oracle": 1.0, "contrarian": 1.0, "quiet": 1.0}, SYMBOLS)
    quiet = np.full_like(close, np.nan)
    for t in range(len(close)):
        row = {"oracle": (oracle[t], [1.0, 1.0], None), "contrarian": (contrarian[t], [1.0, 1.0], None),
               "quiet": (quiet[t], [0.0, 0.0], None)}
        state.advance(close[t].tolist(), f"s{t}", row, set())
    ic, hit, n = state.ic("oracle")
    assert ic > 0.7 and hit == pytest.approx(1.0) and n > 100
    assert state.ic("contrarian")[0] == pytest.approx(-ic)
    # shrunk toward the configured weight, then capped / floored
    assert state.perf_multiplier("oracle") == 2.0
    assert state.perf_multiplier("contrarian") == 0.25
    assert state.perf_multiplier("quiet") == 1.0  # no record: the configured weight
    # the edge of the blended score is measured too (oracle and contrarian cancel: score 0, edge = prior)
    assert state.edge() >= 0


def test_regime_scales_agent_weights_and_size():
    cfg = CIOConfig(vol_min_obs=2, perf_gain=0)
    close = _walk(30)
    n = len(close)
    mr = np.full((n, 2), 0.5)
    mom = np.full((n, 2), -0.5)
    turbulent = np.ones((n, 2))
    reg = _signal("regime", np.full((n, 2), -0.9), p_turbulent=turbulent)
    alloc = Allocator(cfg, {"mean_reversion": 1.0, "momentum": 1.0, "regime": 0.0}, SYMBOLS)
    inputs = alloc.prepare(_bars(close), [_signal("mean_reversion", mr), _signal("momentum", mom), reg])
    last = inputs[-1]
    # mean reversion counts half in a turbulent regime (default table): (0.5*0.5 - 1*0.5) / 1.5
    assert last.p_turbulent == [1.0, 1.0]
    assert last.blends[0].score == pytest.approx((0.5 * 0.5 - 0.5) / 1.5)
    assert set(last.blends[0].signal_ids) == {f"sig:{a}:AAA:{_bars(close).stamps[-1]}" for a in ("mean_reversion", "momentum")}
    # size: turbulent_size_scale halves the Kelly weight
    shares, w = alloc.target(0.5, 1e6, 100.0, 0, sigma=0.01, edge=0.1, p_turbulent=1.0)
    calm_shares, calm_w = alloc.target(0.5, 1e6, 100.0, 0, sigma=0.01, edge=0.1, p_turbulent=0.0)
    assert w == pytest.approx(calm_w * cfg.turbulent_size_scale)


def test_kelly_target_uses_edge_and_volatility():
    cfg = CIOConfig(kelly_fraction=0.5, max_position_weight=0.2, vol_target=None)
    alloc = Allocator(cfg, {}, SYMBOLS)
    # mu = edge * score * sigma = 0.1 * 0.3 * 0.02 = 6e-4; f* = mu / sigma^2 = 1.5; half Kelly 0.75 -> cap 0.2
    assert alloc.target(0.3, 1e6, 50.0, 0, sigma=0.02, edge=0.1) == (4000, 0.2)
    # f* = 0.02 * 0.3 / 0.02 = 0.3; half Kelly 0.15 of 1e6 at 50 = 3000 shares
    shares, w = alloc.target(0.3, 1e6, 50.0, 0, sigma=0.02, edge=0.02)
    assert w == pytest.approx(0.15) and shares == 3000
    assert alloc.target(0.3, 1e6, 50.0, 0, sigma=0.02, edge=0.0) == (0, 0.0)  # no edge, no bet
    assert alloc.target(0.1, 1e6, 50.0, 0, sigma=0.02, edge=0.1) == (0, 0.0)  # below entry threshold
    assert alloc.target(0.1, 1e6, 50.0, 100, sigma=0.02, edge=0.1)[0] > 0  # ...but above exit: kept


def _held_book(close: np.ndarray, qty: int, entry: float) -> Book:
    book = _book()
    book._apply(0, qty, entry, 0.0)
    book.mark(close[0])
    return book


def test_exits_come_first_and_say_what_they_overrode():
    # a fixed edge (prior only) and no vol cap: the blend's target stays about the 20% held
    cfg = CIOConfig(
        stop_loss=0.10, trailing_stop=None, vol_min_obs=2, perf_gain=0, reentry_cooldown_bars=3,
        edge_prior_strength=1e12, vol_target=None,
    )
    close = np.column_stack([np.r_[np.linspace(100, 85, 10), np.full(6, 85.0)], np.full(16, 50.0)])
    bullish = np.full((16, 2), 1.0)  # the blend wants to stay long all along
    alloc = Allocator(cfg, {"momentum": 1.0}, SYMBOLS)
    book = _held_book(close, 2000, 100.0)
    prop = alloc.propose(_bars(close), 0, book, [_signal("momentum", bullish)], ())
    rows = [[d for d in row if d.symbol == "AAA"] for row in prop.decisions]
    first = next(i for i, r in enumerate(rows) if r)
    d = rows[first][0]
    assert d.target_position == 0 and d.current_position == 2000 and d.side.value == "SELL"
    assert close[first, 0] / 100 - 1 <= -0.10 < close[first - 1, 0] / 100 - 1  # the first close past the stop
    assert d.reason.startswith("exit stop_loss: stop_loss (") and "overrides blended score +1.000" in d.reason
    # no re-entry on the long side for reentry_cooldown_bars though the blend stays bullish; then it re-enters
    assert all(not r for r in rows[first + 1 : first + 4])
    again = rows[first + 4]
    assert again and again[0].reason.startswith("open long:") and again[0].target_position > 0


def test_required_agent_missing_means_exits_only():
    cfg = CIOConfig(stop_loss=0.05, trailing_stop=None, vol_min_obs=2, perf_gain=0)
    close = np.column_stack([np.linspace(100, 90, 12), np.linspace(50, 55, 12)])
    bullish = np.full((12, 2), 1.0)
    book = _held_book(close, 1000, 100.0)
    free = Allocator(cfg, {"momentum": 1.0}, SYMBOLS).propose(_bars(close), 0, book, [_signal("momentum", bullish)], ())
    held = Allocator(cfg, {"momentum": 1.0}, SYMBOLS).propose(
        _bars(close), 0, book, [_signal("momentum", bullish)], ("macro",), exits_only=True
    )
    all_free = [d for row in free.decisions for d in row]
    all_held = [d for row in held.decisions for d in row]
    assert any(d.symbol == "BBB" for d in all_free)  # the blend opens BBB when free to
    assert all_held and all(d.reason.startswith("exit ") and "required agent missing" in d.reason for d in all_held)
    assert [d.symbol for d in all_held] == ["AAA"]


def test_a_cut_and_reproposal_decide_what_one_row_at_a_time_decides():
    """The CIO proposes rows 0..n, commits only 0..stop, proposes again from the (true) book at stop:
    the decisions equal those of proposing one row at a time (batch size 1)."""
    cfg = CIOConfig(vol_min_obs=5, stop_loss=0.03, trailing_stop=0.04, max_holding_bars=6, entry_threshold=0.1)
    n = 60
    close = _walk(n, seed=3, vol=0.02)
    rng = np.random.default_rng(4)
    strength = np.clip(np.cumsum(rng.normal(0, 0.3, (n, 2)), axis=0) / 3, -1, 1)
    weights = {"momentum": 1.0}

    def true_book_after(book: Book, decisions, k, bars):
        # the execution's book: fill at the open, mark, then submit the row's decisions
        from firm.cio import pending_order

        book.fill_at_open(bars.panel.open[k])
        book.mark(bars.panel.close[k])
        for d in decisions:
            book.submit(pending_order(d, SYMBOLS))

    # batch size 1
    single = Allocator(cfg, weights, SYMBOLS)
    book = _book()
    one_row = []
    for k in range(n):
        bars = _bars(close[k : k + 1], offset=k)
        prop = single.propose(bars, 0, book, [_signal("momentum", strength[k : k + 1], offset=k)], ())
        one_row.append(prop.decisions[0])
        true_book_after(book, prop.decisions[0], 0, bars)
        single.commit(1)
    assert sum(len(r) for r in one_row) > 5
    assert any(d.reason.startswith("exit ") for r in one_row for d in r)

    # one batch of n rows, cut after rows 17, 18, 40 (as if a validator had rejected something there)
    batched = Allocator(cfg, weights, SYMBOLS)
    bars = _bars(close)
    sig = [_signal("momentum", strength)]
    book = _book()
    got = []
    start = 0
    for stop in (17, 18, 40, n):
        prop = batched.propose(bars, start, book, sig, ())
        for k in range(start, stop):
            got.append(prop.decisions[k - start])
            true_book_after(book, prop.decisions[k - start], k, bars)
        batched.commit(stop)
        start = stop
    assert [[d.model_dump() for d in r] for r in got] == [[d.model_dump() for d in r] for r in one_row]


def test_signal_hash_is_of_the_content():
    h = signal_hash("momentum", "AAPL", "20080102T2100", 0.25, 0.5)
    assert len(h) == 16 and h == signal_hash("momentum", "AAPL", "20080102T2100", np.float64(0.25), 0.5)
    assert h != signal_hash("momentum", "AAPL", "20080102T2100", 0.2500000001, 0.5)
    assert h == hashlib.sha256(b"momentum|AAPL|20080102T2100|0.25|0.5").hexdigest()[:16]


def test_config_errors_name_the_key_and_the_rule():
    from firm.config import ConfigError, load_config

    default = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
    with pytest.raises(ConfigError) as err:
        load_config(default, {"cio.required_agents": ["momentum", "sentiment"], "cio.kelly_fraction": 1.5})
    text = str(err.value)
    assert "cio.kelly_fraction = 1.5: Input should be less than or equal to 1" in text
    with pytest.raises(ConfigError, match=r"cio.required_agents = 'sentiment': a required agent must be enabled"):
        load_config(default, {"cio.required_agents": ["momentum", "sentiment"]})
    with pytest.raises(ConfigError, match=r"cio.regime_weights.momentun: unknown agent"):
        load_config(default, {"cio.regime_weights": {"momentun": {"turbulent": 0.5}}})
    with pytest.raises(ConfigError, match=r"cio.stop_loss = 1.5: Input should be less than 1"):
        load_config(default, {"cio.stop_loss": 1.5})
