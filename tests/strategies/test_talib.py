"""strategies/indicators.py against TA-Lib itself (the ``ta-lib`` wheel of the test extra) on real AAPL and MSFT bars.

For every indicator with a TA-Lib counterpart the NaN warm-up must be exactly TA-Lib's (same NaN positions,
hence the same prefix length: TA-Lib's lookback), and the values must agree to ``RTOL`` = 1e-9, or bit for bit
where both sides perform the same IEEE operations in the same order (TRANGE, ROC, ADX, MAX/MIN/MIDPRICE).
Where TA-Lib's convention differs on purpose (RSI of a flat window, ADX's 1e-14 zero cut-off) the test says
why and checks that the real data never reaches the case.

TA-Lib is used with its defaults, asserted below: no unstable period and the default (not Metastock)
compatibility. ``ou_half_life`` has no TA-Lib counterpart and is tested in test_indicators.py only; Keltner
has none either and is checked against its definition composed from talib.EMA and talib.ATR.
"""

from __future__ import annotations

import numpy as np
import pytest
import talib

from strategies import indicators as ind

RTOL = 1e-9
# MACD lines and the TTM histogram cross zero, where a relative tolerance means nothing: their rounding error
# scales with the price level (differences of averages of ~$10-$600 prices), not with the difference itself.
ATOL_PRICE_DIFF = 1e-12


@pytest.fixture(scope="module", autouse=True)
def talib_defaults() -> None:
    assert talib.get_compatibility() == 0, "TA-Lib must be in its default (not Metastock) compatibility"
    for name in ("EMA", "RSI", "ATR", "ADX", "DX", "PLUS_DM", "MINUS_DM"):
        assert talib.get_unstable_period(name) == 0, name


@pytest.fixture(params=["aapl", "msft"])
def bars(request: pytest.FixtureRequest) -> dict[str, np.ndarray]:
    return request.getfixturevalue(request.param)


def assert_like_talib(
    ours: np.ndarray, theirs: np.ndarray, *, exact: bool = False, rtol: float = RTOL, atol: float = 0.0
) -> None:
    """Same NaN positions, a NaN prefix then no NaN, and values equal (``exact``) or within rtol/atol."""
    theirs = np.asarray(theirs, dtype=np.float64)
    assert ours.shape == theirs.shape
    nan = np.isnan(theirs)
    first = int(np.argmin(nan))
    assert first > 0 or not nan[0], "TA-Lib gave no value at all"
    assert nan[:first].all() and not nan[first:].any(), "TA-Lib's NaNs are a prefix"
    ours_first = int(np.argmin(np.isnan(ours)))
    assert np.array_equal(np.isnan(ours), nan), f"NaN prefix differs: ours {ours_first}, TA-Lib {first}"
    if exact:
        assert np.array_equal(ours[first:], theirs[first:])
    else:
        np.testing.assert_allclose(ours[first:], theirs[first:], rtol=rtol, atol=atol)


@pytest.mark.parametrize("n", [2, 5, 20, 50])
def test_sma(bars: dict, n: int) -> None:
    """SMA vs talib.SMA: warm-up n-1, rtol 1e-9. TA-Lib keeps a running sum (add the new value, subtract the
    oldest) where we sum each window afresh (prefix stability); the two differ in the last bits (observed
    max rel 5e-15)."""
    x = bars["close"]
    assert_like_talib(ind.sma(x, n), talib.SMA(x, n))


@pytest.mark.parametrize("n", [2, 5, 20, 50])
def test_ema(bars: dict, n: int) -> None:
    """EMA vs talib.EMA: k = 2/(n+1) seeded with the SMA of the first n values, warm-up n-1, rtol 1e-9
    (observed max rel 2.3e-16: only the seed's summation differs)."""
    x = bars["close"]
    assert_like_talib(ind.ema(x, n), talib.EMA(x, n))


@pytest.mark.parametrize("n", [2, 5, 14, 50])
def test_rsi(bars: dict, n: int) -> None:
    """RSI vs talib.RSI: Wilder smoothing seeded with the mean of the first n changes, warm-up n, rtol 1e-9
    (observed max rel 1.5e-15).

    Conventions differ where average gain + average loss is (within 1e-14 of) zero, a window without any
    change: TA-Lib outputs 0, we output 50 (neutral; see test_flat_rsi_is_where_the_conventions_differ). The
    real data never has such a window, which is checked here, so the values agree everywhere on it.
    """
    x = bars["close"]
    moves = np.abs(np.diff(x))
    assert np.lib.stride_tricks.sliding_window_view(moves, n).max(axis=1).min() > 1e-6, "a flat window"
    assert_like_talib(ind.rsi(x, n), talib.RSI(x, n))


def test_flat_rsi_is_where_the_conventions_differ() -> None:
    """No change since the start: TA-Lib's RSI is 0 (its TA_IS_ZERO branch), ours 50; same warm-up, and the
    same values from the first change on. (Wilder averages never decay to exactly 0, so only a flat start
    reaches this case.)"""
    x = np.concatenate([np.full(20, 7.0), np.linspace(7.5, 9.0, 20)])
    ours, theirs = ind.rsi(x, 14), talib.RSI(x, 14)
    assert np.array_equal(np.isnan(ours), np.isnan(theirs)) and np.isnan(ours[:14]).all()
    assert (ours[14:20] == 50.0).all() and (theirs[14:20] == 0.0).all()
    np.testing.assert_allclose(ours[20:], theirs[20:], rtol=RTOL)


@pytest.mark.parametrize(("fast", "slow", "signal"), [(12, 26, 9), (5, 35, 5), (3, 10, 1)])
def test_macd(bars: dict, fast: int, slow: int, signal: int) -> None:
    """MACD, signal and histogram vs talib.MACD: both EMAs start at slow-1 (the fast one seeded over
    x[slow-fast:slow]), the signal is the seeded EMA of the MACD line, all three first valid at slow+signal-2.
    rtol 1e-9 with atol 1e-12 (price units): the lines cross zero (observed max abs 1.4e-14)."""
    x = bars["close"]
    for ours, theirs in zip(ind.macd(x, fast, slow, signal), talib.MACD(x, fast, slow, signal)):
        assert_like_talib(ours, theirs, atol=ATOL_PRICE_DIFF)


@pytest.mark.parametrize("n", [2, 5, 20])
@pytest.mark.parametrize("k", [1.0, 2.0, 2.5])
def test_bbands(bars: dict, n: int, k: float) -> None:
    """Bollinger bands vs talib.BBANDS(matype=0, i.e. SMA, nbdevup = nbdevdn = k): population std, warm-up
    n-1, rtol 1e-9 on all three bands (observed max rel 1e-12)."""
    x = bars["close"]
    upper, middle, lower = talib.BBANDS(x, n, k, k, 0)
    mid, up, lo = ind.bollinger(x, n, k)
    assert_like_talib(mid, middle)
    assert_like_talib(up, upper)
    assert_like_talib(lo, lower)


@pytest.mark.parametrize("n", [2, 5, 20, 50])
def test_stddev(bars: dict, n: int) -> None:
    """Population std vs talib.STDDEV(nbdev=1): warm-up n-1, rtol 1e-9.

    TA-Lib computes the variance from running sums as mean(x^2) - mean(x)^2, which cancels when the std is
    small next to the price (on AAPL at n=2 its values are off by up to 4.6e-10 relative); we sum each window
    afresh, two-pass. A window of equal values gives exactly 0 on both sides (TA-Lib clamps a variance below
    1e-14 to 0; our two-pass sum is exactly 0 there).
    """
    x = bars["close"]
    assert_like_talib(ind.stddev(x, n), talib.STDDEV(x, n, 1.0))


def test_true_range(bars: dict) -> None:
    """TRANGE: max(high-low, |high-prev close|, |low-prev close|), warm-up 1, bit for bit."""
    h, l, c = bars["high"], bars["low"], bars["close"]
    assert_like_talib(ind.true_range(h, l, c), talib.TRANGE(h, l, c), exact=True)


@pytest.mark.parametrize("n", [1, 5, 14, 20])
def test_atr(bars: dict, n: int) -> None:
    """ATR vs talib.ATR: the mean of TR[1..n] at index n, then Wilder's (prev*(n-1) + TR)/n; warm-up n,
    rtol 1e-9 (observed max rel 2e-15: TA-Lib's seed comes from its running-sum SMA)."""
    h, l, c = bars["high"], bars["low"], bars["close"]
    assert_like_talib(ind.atr(h, l, c, n), talib.ATR(h, l, c, n))


@pytest.mark.parametrize("n", [2, 5, 14, 25])
def test_adx(bars: dict, n: int) -> None:
    """ADX vs talib.ADX: warm-up 2n-1, bit for bit (the same operations in the same order).

    TA-Lib skips a bar's DX when its TR sum or +DI + -DI is within 1e-14 of zero (TA_IS_ZERO); we skip it only
    at exactly 0. On real bars neither gets near 1e-14 (checked: the smallest Wilder TR sum, n * ATR's order,
    is far above), so the conventions coincide on the data.
    """
    h, l, c = bars["high"], bars["low"], bars["close"]
    assert np.nanmin(ind.atr(h, l, c, n)) > 1e-6
    assert_like_talib(ind.adx(h, l, c, n), talib.ADX(h, l, c, n), exact=True)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_roc(bars: dict, n: int) -> None:
    """ROC vs talib.ROC: 100 * (x[t]/x[t-n] - 1), warm-up n, bit for bit."""
    x = bars["close"]
    assert_like_talib(ind.roc(x, n), talib.ROC(x, n), exact=True)


@pytest.mark.parametrize("n", [2, 5, 20, 50])
@pytest.mark.parametrize("k", [1.0, 1.5])
def test_keltner_is_talib_ema_plus_minus_k_talib_atr(bars: dict, n: int, k: float) -> None:
    """Keltner (TTM convention): mid = talib.EMA(close, n), bands mid +/- k * talib.ATR(n); TA-Lib has no
    Keltner function. Warm-up n for all three outputs, ATR's: like TA-Lib's multi-output functions (MACD,
    BBANDS) they share one lookback, so mid is NaN at n-1 although EMA(n) alone has a value there.
    rtol 1e-9 (observed max rel 7e-16)."""
    h, l, c = bars["high"], bars["low"], bars["close"]
    ema, atr = talib.EMA(c, n), talib.ATR(h, l, c, n)
    mid = np.where(np.isnan(atr), np.nan, ema)
    ours = ind.keltner(h, l, c, n, k)
    for got, expected in zip(ours, (mid, ema + k * atr, ema - k * atr)):
        assert_like_talib(got, expected)
    assert np.array_equal(ours[0][n:], ind.ema(c, n)[n:])


@pytest.mark.parametrize("n", [2, 5, 20, 50])
def test_donchian_is_talib_max_min_midprice(bars: dict, n: int) -> None:
    """Donchian (mid, upper, lower) vs talib.MIDPRICE(high, low), talib.MAX(high), talib.MIN(low): warm-up
    n-1, bit for bit (TA-Lib takes n >= 2; n = 1 is the bar itself)."""
    h, l = bars["high"], bars["low"]
    mid, upper, lower = ind.donchian(h, l, n)
    assert_like_talib(upper, talib.MAX(h, n), exact=True)
    assert_like_talib(lower, talib.MIN(l, n), exact=True)
    assert_like_talib(mid, talib.MIDPRICE(h, l, n), exact=True)


@pytest.mark.parametrize("n", [2, 5, 20, 50])
def test_linreg(bars: dict, n: int) -> None:
    """Linear regression value vs talib.LINEARREG: warm-up n-1, rtol 1e-9. TA-Lib uses uncentred sums
    (n*Sxy - Sx*Sy), we use centred ones; observed max rel 6e-13."""
    x = bars["close"]
    assert_like_talib(ind.linreg(x, n), talib.LINEARREG(x, n))


@pytest.mark.parametrize("n", [5, 20])
def test_ttm_histogram_composed_from_talib(bars: dict, n: int) -> None:
    """The TTM squeeze histogram, LINEARREG(close - (MIDPRICE + SMA)/2, n), from our indicators and from TA-Lib's:
    warm-up 2n-2, atol 1e-11 in price units (it crosses zero; TA-Lib's uncentred regression sums lose ~1e-12
    on ~$100 inputs), observed max abs 4.4e-13."""
    h, l, c = bars["high"], bars["low"], bars["close"]
    ours = ind.linreg(c - (ind.donchian(h, l, n)[0] + ind.sma(c, n)) / 2.0, n)
    theirs = talib.LINEARREG(c - (talib.MIDPRICE(h, l, n) + talib.SMA(c, n)) / 2.0, n)
    assert_like_talib(ours, theirs, rtol=0.0, atol=1e-11)
    assert int(np.argmin(np.isnan(ours))) == 2 * n - 2
