"""The TTM squeeze strategy on a real 4-stock panel: params, warm-up, squeeze detection and histogram against
plain pandas, its documented rule recomputed from the rationale, and the new indicators it uses.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py;
the indicators against TA-Lib are in test_talib.py.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from strategies import indicators as ind
from strategies import registry
from strategies.base import Advice, Panel
from strategies.ttm_squeeze import TTMSqueeze

RATIONALE = {"squeeze_on", "bars_in_squeeze", "bars_since_fire", "histogram", "atr", "bb_width", "kc_width"}


@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return TTMSqueeze().compute(panel)


def test_registry_finds_ttm_squeeze() -> None:
    assert registry.get("ttm_squeeze") is TTMSqueeze
    strategy = registry.create("ttm_squeeze", {"bb_k": 1.8, "mom_n": 12})
    assert isinstance(strategy, TTMSqueeze) and strategy.params.mom_n == 12 and strategy.params.bb_k == 1.8


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bb_n": 1}, "bb_n"),
        ({"kc_n": 0}, "kc_n"),
        ({"mom_n": 1}, "mom_n"),
        ({"bb_k": 0.0}, "bb_k"),
        ({"kc_k": -1.5}, "kc_k"),
        ({"hist_atr_scale": 0}, "hist_atr_scale"),
        ({"full_confidence_bars": 0}, "full_confidence_bars"),
        ({"hold_bars": 0}, "hold_bars"),
        ({"coil_confidence": 1.5}, "coil_confidence"),
        ({"bb_n": "wide"}, "bb_n"),
        ({"squeeze": 1}, "squeeze"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TTMSqueeze(params)


@pytest.mark.parametrize(
    ("params", "warmup"),
    [
        ({}, 39),  # the histogram: linreg(20) of a series that starts at 19
        ({"mom_n": 10}, 21),  # the Keltner ATR(20) starts at 20
        ({"kc_n": 50}, 51),
        ({"bb_n": 60}, 60),
        ({"bb_n": 5, "kc_n": 5, "mom_n": 3}, 6),
    ],
)
def test_abstains_exactly_during_warmup(panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = TTMSqueeze(params)
    assert strategy.warmup == warmup
    assert_warmup(strategy.compute(panel), warmup)


def test_rationale_and_the_span_of_advice(full: Advice) -> None:
    assert set(full.rationale) == RATIONALE
    s = full.strength[~np.isnan(full.strength)]
    assert s.min() < -0.9 and s.max() > 0.9 and (s == 0).any()
    c = full.confidence
    assert (c == 0).any() and (c == 0.25).any() and (c == 1).any() and ((c > 0) & (c < 0.25)).any()


def ref_ema(x: pd.Series, n: int) -> pd.Series:
    """pandas ewm(span=n, adjust=False) seeded at n-1 with the mean of the first n values."""
    seeded = x.iloc[n - 1 :].copy()
    seeded.iloc[0] = x.iloc[:n].mean()
    return seeded.ewm(span=n, adjust=False).mean().reindex(x.index)


def ref_atr(h: pd.Series, l: pd.Series, c: pd.Series, n: int) -> pd.Series:
    """Wilder's ATR as pandas ewm(alpha=1/n, adjust=False) seeded at n with the mean of TR[1..n]."""
    prev = c.shift(1)
    tr = pd.concat([h - l, (h - prev).abs(), (l - prev).abs()], axis=1).max(axis=1, skipna=False)
    seeded = tr.iloc[n:].copy()
    seeded.iloc[0] = tr.iloc[1 : n + 1].mean()
    return seeded.ewm(alpha=1.0 / n, adjust=False).mean().reindex(c.index)


def symbol_frames(panel: Panel):
    for j, symbol in enumerate(panel.symbols):
        yield j, symbol, *(pd.Series(getattr(panel, f)[:, j]) for f in ("high", "low", "close"))


def test_squeeze_detection_matches_plain_pandas(panel: Panel, full: Advice) -> None:
    """Bollinger (rolling mean, rolling std ddof=0) inside Keltner (seeded ewm mid, Wilder ATR) from pandas."""
    p = TTMSqueeze().params
    for j, symbol, h, l, c in symbol_frames(panel):
        mid = c.rolling(p.bb_n).mean()
        std = c.rolling(p.bb_n).std(ddof=0)
        bb_up, bb_lo = mid + p.bb_k * std, mid - p.bb_k * std
        atr = ref_atr(h, l, c, p.kc_n)
        kc_mid = ref_ema(c, p.kc_n)
        kc_up, kc_lo = kc_mid + p.kc_k * atr, kc_mid - p.kc_k * atr
        valid = (bb_up.notna() & kc_up.notna()).to_numpy()
        inside = ((bb_up < kc_up) & (bb_lo > kc_lo)).to_numpy()
        expected = np.where(valid, inside.astype(float), np.nan)
        r = full.rationale
        assert np.array_equal(r["squeeze_on"][:, j], expected, equal_nan=True), symbol
        # The comparison is meaningful: no bar is within rounding of a tie between the bands.
        margin = np.minimum((kc_up - bb_up).abs(), (bb_lo - kc_lo).abs()) / c
        assert margin[valid].min() > 1e-7, symbol
        assert 0.02 < np.nanmean(expected) < 0.3, symbol
        np.testing.assert_allclose(r["atr"][:, j], atr, rtol=1e-9)
        np.testing.assert_allclose(r["bb_width"][:, j], bb_up - bb_lo, rtol=1e-9)
        np.testing.assert_allclose(r["kc_width"][:, j], kc_up - kc_lo, rtol=1e-9)
        assert np.array_equal(np.isnan(r["kc_width"][:, j]), kc_up.isna().to_numpy())


def test_histogram_matches_pandas_rolling_polyfit(panel: Panel, full: Advice) -> None:
    """LINEARREG(close - (Donchian mid + SMA)/2, mom_n) from rolling max/min/mean and np.polyfit per window."""
    n = TTMSqueeze().params.mom_n
    x = np.arange(n, dtype=float)
    for j, symbol, h, l, c in symbol_frames(panel):
        donchian_mid = (h.rolling(n).max() + l.rolling(n).min()) / 2
        dev = c - (donchian_mid + c.rolling(n).mean()) / 2
        expected = dev.rolling(n).apply(lambda w: np.polyval(np.polyfit(x, w, 1), n - 1), raw=True)
        got = full.rationale["histogram"][:, j]
        assert np.array_equal(np.isnan(got), expected.isna().to_numpy()) and np.isnan(got[: 2 * n - 2]).all()
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-10, err_msg=symbol)


def test_squeeze_bookkeeping_from_squeeze_on(full: Advice) -> None:
    """bars_in_squeeze = length of the current run of squeeze-on bars (0 when off); bars_since_fire = bars
    since the last on -> off transition while off since then (0 on the fire bar), NaN while on or before any
    fire; both NaN until the bands are warm. Derived here with pandas group-bys from squeeze_on alone."""
    r = full.rationale
    for j in range(full.strength.shape[1]):
        on = pd.Series(r["squeeze_on"][:, j])
        run_id = (on != on.shift()).cumsum()
        in_squeeze = on.groupby(run_id).cumsum().where(on.notna())
        fire = (on.shift() == 1) & (on == 0)
        since_fire_id = fire.cumsum()
        since = on.groupby(since_fire_id).cumcount().astype(float)
        since = since.where((since_fire_id > 0) & (on == 0))
        assert np.array_equal(r["bars_in_squeeze"][:, j], in_squeeze.to_numpy(), equal_nan=True)
        assert np.array_equal(r["bars_since_fire"][:, j], since.to_numpy(), equal_nan=True)
        assert fire.sum() > 10


def test_strength_and_confidence_follow_the_documented_rule(full: Advice) -> None:
    p = TTMSqueeze().params
    r = full.rationale
    rows = slice(TTMSqueeze().warmup - 1, None)
    on = r["squeeze_on"][rows] == 1
    k = r["bars_since_fire"][rows]
    hist, atr = r["histogram"][rows], r["atr"][rows]
    assert (atr > 0).all()
    expected_strength = np.where(on, 0.0, np.tanh(hist / (p.hist_atr_scale * atr)))
    np.testing.assert_allclose(full.strength[rows], expected_strength, rtol=1e-12, atol=1e-15)
    assert (np.sign(full.strength[rows][~on]) == np.sign(hist[~on])).all()

    # The squeeze that fired k bars ago ended on the bar before the fire: its length is bars_in_squeeze there.
    t = np.arange(full.strength.shape[0])[rows, None]
    fired = ~np.isnan(k)
    fire_row = np.where(fired, t - np.nan_to_num(k), 0).astype(int)
    assert (fire_row[fired] >= 1).all()
    length = np.take_along_axis(r["bars_in_squeeze"], np.maximum(fire_row - 1, 0), axis=0)
    assert (length[fired] >= 1).all()
    c_fire = np.where(fired, np.minimum(1.0, length / p.full_confidence_bars), 0.0)
    decay = np.where(fired & (k < p.hold_bars), 1.0 - np.nan_to_num(k) / p.hold_bars, 0.0)
    expected_confidence = np.where(on, p.coil_confidence, c_fire * decay)
    np.testing.assert_allclose(full.confidence[rows], expected_confidence, rtol=1e-12, atol=0)
    # Every branch of the rule is exercised on the data.
    fire_bar = k == 0
    assert (c_fire[fire_bar] == 1).any() and (c_fire[fire_bar] < 0.5).any()
    assert (fired & (k >= p.hold_bars)).any() and (~on & ~fired).any()


def _one_symbol_panel(close: np.ndarray, spread: np.ndarray) -> Panel:
    ts = (np.arange(len(close), dtype=np.int64) + 12_000) * 86_400 * 10**9
    col = lambda a: a.reshape(-1, 1)  # noqa: E731
    return Panel(ts, ("X",), col(close), col(close + spread), col(close - spread), col(close), col(np.full(len(close), 1e6)))


def test_a_quiet_stretch_coils_then_a_breakout_fires_up() -> None:
    """Synthetic: 80 noisy bars, 40 quiet ones, then a steady rise. The quiet stretch is a squeeze (strength 0,
    coil confidence); the rise fires it long, with confidence min(1, length/10) decaying linearly after."""
    rng = np.random.default_rng(3)
    noisy = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, 80)))
    quiet = noisy[-1] * (1 + rng.normal(0, 0.0005, 40))
    rise = quiet[-1] * np.exp(0.02 * np.arange(1, 31))
    close = np.concatenate([noisy, quiet, rise])
    spread = np.concatenate([noisy * 0.015, quiet * 0.001, rise * 0.01])
    advice = TTMSqueeze().compute(_one_symbol_panel(close, spread))
    r = {key: v[:, 0] for key, v in advice.rationale.items()}
    s, c = advice.strength[:, 0], advice.confidence[:, 0]
    on = r["squeeze_on"] == 1
    on[: TTMSqueeze().warmup - 1] = False  # abstains before
    assert on[100:120].all()  # the Bollinger std (20 bars) shrinks faster than the Wilder ATR (alpha 1/20)
    assert (s[on] == 0).all() and (c[on] == 0.25).all()
    fires = np.flatnonzero(r["bars_since_fire"] == 0)
    fires = fires[fires >= 100]  # the random walk before may have squeezes of its own
    assert fires.size == 1 and 120 <= fires[0] < 135
    f = fires[0]
    length = r["bars_in_squeeze"][f - 1]
    assert length >= 15 and s[f] > 0.3 and c[f] == 1.0
    np.testing.assert_allclose(c[f : f + 10], 1.0 - np.arange(10) / 10)
    assert (c[f + 10 :] == 0).all() and (s[f:] > 0).all()


def test_flat_prices_give_flat_advice() -> None:
    """No range at all: bands coincide (no squeeze: inside means strictly), ATR 0, strength 0, confidence 0."""
    close = np.full(80, 42.0)
    advice = TTMSqueeze().compute(_one_symbol_panel(close, np.zeros(80)))
    warm = slice(TTMSqueeze().warmup - 1, None)
    assert (advice.strength[warm] == 0).all() and (advice.confidence == 0).all()
    assert (advice.rationale["squeeze_on"][warm] == 0).all()


NEW_INDICATORS = {
    "keltner": (lambda d: ind.keltner(d["high"], d["low"], d["close"], 20, 1.5), 20),
    "donchian": (lambda d: ind.donchian(d["high"], d["low"], 20), 19),
    "linreg": (lambda d: (ind.linreg(d["close"], 20),), 19),
}


@pytest.mark.parametrize("name", sorted(NEW_INDICATORS))
def test_new_indicators_are_prefix_stable_and_causal(aapl: dict, name: str) -> None:
    fn, first = NEW_INDICATORS[name]
    full = fn(aapl)
    size = len(aapl["close"])
    for a in full:
        assert np.isnan(a[:first]).all() and not np.isnan(a[first:]).any()
    for k in (0, 1, first, first + 1, 97, 1000, size - 1):
        for a, b in zip(fn({f: v[:k] for f, v in aapl.items()}), full):
            assert a.shape == (k,) and np.array_equal(a, b[:k], equal_nan=True), f"{name}: prefix {k}"
    t = 1500
    changed = fn({f: np.concatenate([v[: t + 1], v[t + 1 :] * 1.5]) for f, v in aapl.items()})
    for a, b in zip(changed, full):
        assert np.array_equal(a[: t + 1], b[: t + 1], equal_nan=True) and not np.array_equal(a[t + 30 :], b[t + 30 :])


@pytest.mark.parametrize(
    "call",
    [
        lambda x: ind.keltner(x, x, x, 0),
        lambda x: ind.donchian(x, x, 1.5),
        lambda x: ind.linreg(x, 1),
        lambda x: ind.linreg(x.reshape(2, -1), 3),
    ],
)
def test_new_indicators_reject_bad_arguments(call) -> None:
    with pytest.raises(ValueError):
        call(np.linspace(1.0, 2.0, 50))
