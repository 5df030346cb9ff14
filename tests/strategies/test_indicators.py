"""Indicators against independent pandas / plain-Python references on real AAPL and MSFT bars."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd
import pytest

from strategies import indicators as ind

RTOL = 1e-9


def assert_matches(actual: np.ndarray, expected: np.ndarray, first: int, atol: float = 0.0) -> None:
    """Same NaN warm-up (first non-NaN at ``first``) and values equal to ``RTOL``."""
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape
    assert np.isnan(actual[:first]).all()
    assert not np.isnan(actual[first:]).any()
    assert not np.isnan(expected[first:]).any()
    np.testing.assert_allclose(actual[first:], expected[first:], rtol=RTOL, atol=atol)


def ref_ema(x: np.ndarray, n: int, first: int | None = None) -> np.ndarray:
    """pandas ewm(adjust=False), seeded at ``first`` with the mean of the n values ending there."""
    first = n - 1 if first is None else first
    seeded = pd.Series(x[first:], dtype=np.float64).copy()
    seeded.iloc[0] = np.mean(x[first - n + 1 : first + 1])
    out = np.full(len(x), np.nan)
    out[first:] = seeded.ewm(alpha=2.0 / (n + 1), adjust=False).mean().to_numpy()
    return out


def ref_wilder(values: list[float], n: int, first: int) -> list[float]:
    """Plain Wilder recursion: mean of values[first-n+1 .. first], then (prev*(n-1) + v)/n."""
    out = [math.nan] * len(values)
    prev = sum(values[first - n + 1 : first + 1]) / n
    out[first] = prev
    for t in range(first + 1, len(values)):
        prev = (prev * (n - 1) + values[t]) / n
        out[t] = prev
    return out


def ref_true_range(h: np.ndarray, l: np.ndarray, c: np.ndarray) -> list[float]:
    prev = pd.Series(c).shift(1)
    frame = pd.concat([pd.Series(h - l), (pd.Series(h) - prev).abs(), (pd.Series(l) - prev).abs()], axis=1)
    return frame.max(axis=1, skipna=False).to_list()


def ref_adx(h: np.ndarray, l: np.ndarray, c: np.ndarray, n: int) -> list[float]:
    """Wilder's ADX written out: running sums over bars 1..n-1, DX from bar n, ADX from bar 2n-1."""
    size = len(c)
    plus, minus = [0.0] * size, [0.0] * size
    for t in range(1, size):
        up, down = h[t] - h[t - 1], l[t - 1] - l[t]
        if up > down and up > 0:
            plus[t] = up
        if down > up and down > 0:
            minus[t] = down
    tr = ref_true_range(h, l, c)
    s_plus, s_minus, s_tr = sum(plus[1:n]), sum(minus[1:n]), sum(tr[1:n])
    dx = [math.nan] * size
    for t in range(n, size):
        s_plus = s_plus - s_plus / n + plus[t]
        s_minus = s_minus - s_minus / n + minus[t]
        s_tr = s_tr - s_tr / n + tr[t]
        di_plus, di_minus = 100 * s_plus / s_tr, 100 * s_minus / s_tr
        dx[t] = 100 * abs(di_plus - di_minus) / (di_plus + di_minus)
    return ref_wilder(dx, n, 2 * n - 1)


def ref_rsi(close: np.ndarray, n: int) -> list[float]:
    changes = [0.0] + [close[t] - close[t - 1] for t in range(1, len(close))]
    gain = ref_wilder([max(d, 0.0) for d in changes], n, n)
    loss = ref_wilder([max(-d, 0.0) for d in changes], n, n)
    return [g if math.isnan(g) else 50.0 if g + lo == 0 else 100 * g / (g + lo) for g, lo in zip(gain, loss)]


@pytest.mark.parametrize("n", [1, 5, 20, 50])
def test_sma_matches_pandas_rolling_mean(aapl: dict, n: int) -> None:
    x = aapl["close"]
    assert_matches(ind.sma(x, n), pd.Series(x).rolling(n).mean(), n - 1)


@pytest.mark.parametrize("n", [2, 20])
def test_stddev_and_bollinger_match_pandas_rolling_population_std(msft: dict, n: int) -> None:
    x = msft["close"]
    std = pd.Series(x).rolling(n).apply(np.std, raw=True).to_numpy()
    mid = pd.Series(x).rolling(n).mean().to_numpy()
    assert_matches(ind.stddev(x, n), std, n - 1, atol=1e-12)
    m, up, lo = ind.bollinger(x, n, 2.5)
    assert_matches(m, mid, n - 1)
    assert_matches(up, mid + 2.5 * std, n - 1)
    assert_matches(lo, mid - 2.5 * std, n - 1)


@pytest.mark.parametrize("n", [1, 10, 26])
def test_ema_matches_seeded_pandas_ewm(aapl: dict, n: int) -> None:
    x = aapl["close"]
    assert_matches(ind.ema(x, n), ref_ema(x, n), n - 1)


@pytest.mark.parametrize("n", [1, 14, 30])
def test_rsi_matches_plain_wilder_recursion(msft: dict, n: int) -> None:
    x = msft["close"]
    out = ind.rsi(x, n)
    assert_matches(out, ref_rsi(x, n), n)
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 100


def test_rsi_of_a_flat_window_is_50() -> None:
    out = ind.rsi(np.full(30, 7.0), 14)
    assert np.isnan(out[:14]).all() and (out[14:] == 50.0).all()


@pytest.mark.parametrize("n", [1, 20])
def test_roc_matches_pandas_pct_change(aapl: dict, n: int) -> None:
    x = aapl["close"]
    assert_matches(ind.roc(x, n), 100 * pd.Series(x).pct_change(n), n)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1)])
def test_macd_matches_seeded_pandas_ewm_with_talib_alignment(aapl: dict, fast: int, slow: int, signal: int) -> None:
    x = aapl["close"]
    line = ref_ema(x, fast, slow - 1) - ref_ema(x, slow, slow - 1)
    first = slow + signal - 2
    sig = ref_ema(line, signal, first)
    line[:first] = np.nan
    m, s, h = ind.macd(x, fast, slow, signal)
    assert_matches(m, line, first, atol=1e-12)
    assert_matches(s, sig, first, atol=1e-12)
    assert_matches(h, line - sig, first, atol=1e-12)
    assert np.array_equal(h, m - s, equal_nan=True)


@pytest.mark.parametrize("n", [1, 14])
def test_atr_matches_plain_wilder_recursion(aapl: dict, n: int) -> None:
    h, l, c = aapl["high"], aapl["low"], aapl["close"]
    tr = ref_true_range(h, l, c)
    assert_matches(ind.true_range(h, l, c), tr, 1)
    assert_matches(ind.atr(h, l, c, n), ref_wilder(tr, n, n), n)


@pytest.mark.parametrize("n", [2, 14, 25])
def test_adx_matches_plain_wilder_recursion(msft: dict, n: int) -> None:
    h, l, c = msft["high"], msft["low"], msft["close"]
    out = ind.adx(h, l, c, n)
    assert_matches(out, ref_adx(h, l, c, n), 2 * n - 1)
    assert np.nanmin(out) >= 0 and np.nanmax(out) <= 100


@pytest.mark.parametrize("n", [10, 60])
def test_ou_half_life_matches_polyfit_and_lstsq(aapl: dict, n: int) -> None:
    x = aapl["close"]
    out = ind.ou_half_life(x, n)
    assert np.isnan(out[:n]).all() and not np.isnan(out[n:]).any()
    for t in (n, n + 1, 500, 1777, len(x) - 1):
        lag, dx = x[t - n : t], np.diff(x[t - n : t + 1])
        beta = np.polyfit(lag, dx, 1)[0]
        design = np.column_stack([lag - lag.mean(), np.ones(n)])
        beta_lstsq = np.linalg.lstsq(design, dx, rcond=None)[0][0]
        np.testing.assert_allclose(beta, beta_lstsq, rtol=1e-9)
        expected = -math.log(2) / beta if beta < 0 else math.inf
        if math.isinf(expected):
            assert out[t] == math.inf
        else:
            np.testing.assert_allclose(out[t], expected, rtol=1e-8)
    assert (out[n:] > 0).all()
    assert np.isfinite(out[n:]).any() and np.isinf(out[n:]).any()


@pytest.mark.parametrize("phi", [0.9, 0.95])
def test_ou_half_life_of_simulated_ar1_is_near_the_closed_form(phi: float) -> None:
    n = 20_000
    rng = np.random.default_rng(7)
    eps = rng.normal(0.0, 1.0, n + 5)
    x = np.empty(n + 5)
    x[0] = 0.0
    for t in range(1, len(x)):
        x[t] = phi * x[t - 1] + eps[t]
    x += 50.0
    expected = -math.log(2) / math.log(phi)
    out = ind.ou_half_life(x, n)
    np.testing.assert_allclose(out[n:], expected, rtol=0.15)


def test_ou_half_life_is_inf_without_mean_reversion() -> None:
    assert (ind.ou_half_life(np.full(40, 3.0), 10)[10:] == np.inf).all()
    assert (ind.ou_half_life(np.arange(40.0), 10)[10:] == np.inf).all()
    assert (ind.ou_half_life(np.exp(np.arange(40.0) / 10), 10)[10:] == np.inf).all()


INDICATORS: dict[str, tuple[Callable[[dict], tuple[np.ndarray, ...]], int]] = {
    "sma": (lambda d: (ind.sma(d["close"], 20),), 19),
    "ema": (lambda d: (ind.ema(d["close"], 20),), 19),
    "stddev": (lambda d: (ind.stddev(d["close"], 20),), 19),
    "rsi": (lambda d: (ind.rsi(d["close"], 14),), 14),
    "roc": (lambda d: (ind.roc(d["close"], 20),), 20),
    "macd": (lambda d: ind.macd(d["close"], 12, 26, 9), 33),
    "bollinger": (lambda d: ind.bollinger(d["close"], 20, 2.0), 19),
    "true_range": (lambda d: (ind.true_range(d["high"], d["low"], d["close"]),), 1),
    "atr": (lambda d: (ind.atr(d["high"], d["low"], d["close"], 14),), 14),
    "adx": (lambda d: (ind.adx(d["high"], d["low"], d["close"], 14),), 27),
    "ou_half_life": (lambda d: (ind.ou_half_life(d["close"], 60),), 60),
}


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_prefix_stability_bit_for_bit(aapl: dict, name: str) -> None:
    fn, first = INDICATORS[name]
    full = fn(aapl)
    size = len(aapl["close"])
    for k in (0, 1, first, first + 1, first + 2, 97, 1000, 2049, size - 1, size):
        part = fn({f: v[:k] for f, v in aapl.items()})
        for a, b in zip(part, full):
            assert a.shape == (k,)
            assert np.array_equal(a, b[:k], equal_nan=True), f"{name}: prefix {k} differs"
    for a in full:
        assert np.isnan(a[:first]).all() and not np.isnan(a[first]).any()


@pytest.mark.parametrize("name", sorted(INDICATORS))
def test_no_look_ahead(aapl: dict, name: str) -> None:
    fn, _ = INDICATORS[name]
    full = fn(aapl)
    t = 1500
    changed = {f: np.concatenate([v[: t + 1], v[t + 1 :] * 1.5]) for f, v in aapl.items()}
    for a, b in zip(fn(changed), full):
        assert np.array_equal(a[: t + 1], b[: t + 1], equal_nan=True)
        assert not np.array_equal(a[t + 30 :], b[t + 30 :])


@pytest.mark.parametrize(
    "call",
    [
        lambda x: ind.sma(x, 0),
        lambda x: ind.ema(x, 2.5),
        lambda x: ind.adx(x, x, x, 1),
        lambda x: ind.ou_half_life(x, 2),
        lambda x: ind.macd(x, 26, 12, 9),
        lambda x: ind.sma(x.reshape(2, -1), 3),
    ],
)
def test_bad_arguments_raise(call: Callable[[np.ndarray], object]) -> None:
    with pytest.raises(ValueError):
        call(np.linspace(1.0, 2.0, 50))
