"""Causal technical indicators on 1-D float64 arrays, following TA-Lib's seeding and warm-up conventions.

Every function returns arrays of the input's length with NaN during warm-up, and is prefix stable:
``f(x[:k])[i] == f(x)[i]`` bit for bit for all ``i < k``. The kernels are sequential numba loops whose
arithmetic at index ``i`` depends only on the inputs up to ``i`` (no length-dependent summation order,
no fastmath), so batch and bar-by-bar replay agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = [
    "sma",
    "ema",
    "stddev",
    "rsi",
    "roc",
    "macd",
    "bollinger",
    "true_range",
    "atr",
    "adx",
    "ou_half_life",
    "keltner",
    "donchian",
    "linreg",
]


@njit(cache=True)
def _rolling_mean_std(x: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window ending at t >= n-1: its mean and population std, each summed afresh in index order."""
    size = x.shape[0]
    mean = np.full(size, np.nan)
    std = np.full(size, np.nan)
    for t in range(n - 1, size):
        total = 0.0
        for s in range(t - n + 1, t + 1):
            total += x[s]
        m = total / n
        sq = 0.0
        for s in range(t - n + 1, t + 1):
            d = x[s] - m
            sq += d * d
        mean[t] = m
        std[t] = math.sqrt(sq / n)
    return mean, std


@njit(cache=True)
def _ema(x: np.ndarray, n: int, first: int) -> np.ndarray:
    """EMA with k = 2/(n+1), seeded at ``first`` with the mean of x[first-n+1 .. first]; NaN before."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    if first >= size:
        return out
    total = 0.0
    for s in range(first - n + 1, first + 1):
        total += x[s]
    prev = total / n
    out[first] = prev
    k = 2.0 / (n + 1)
    for t in range(first + 1, size):
        prev = (x[t] - prev) * k + prev
        out[t] = prev
    return out


@njit(cache=True)
def _wilder(v: np.ndarray, n: int, first: int) -> np.ndarray:
    """Wilder average: mean of v[first-n+1 .. first] at ``first``, then (prev*(n-1) + v[t]) / n; NaN before."""
    size = v.shape[0]
    out = np.full(size, np.nan)
    if first >= size:
        return out
    total = 0.0
    for s in range(first - n + 1, first + 1):
        total += v[s]
    prev = total / n
    out[first] = prev
    for t in range(first + 1, size):
        prev = (prev * (n - 1) + v[t]) / n
        out[t] = prev
    return out


@njit(cache=True)
def _adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int) -> np.ndarray:
    """TA-Lib's ADX: Wilder sums of +DM, -DM and TR seeded over bars 1..n-1, DX from bar n, ADX from 2n-1."""
    size = close.shape[0]
    out = np.full(size, np.nan)
    if size < 2 * n:
        return out
    plus_dm = 0.0
    minus_dm = 0.0
    tr_sum = 0.0
    sum_dx = 0.0
    adx_prev = 0.0
    for t in range(1, size):
        up = high[t] - high[t - 1]
        down = low[t - 1] - low[t]
        tr = max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        if t >= n:
            plus_dm -= plus_dm / n
            minus_dm -= minus_dm / n
            tr_sum = tr_sum - tr_sum / n + tr
        else:
            tr_sum += tr
        if down > 0 and up < down:
            minus_dm += down
        elif up > 0 and up > down:
            plus_dm += up
        if t < n:
            continue
        dx = np.nan
        if tr_sum != 0.0:
            minus_di = 100.0 * (minus_dm / tr_sum)
            plus_di = 100.0 * (plus_dm / tr_sum)
            di_sum = minus_di + plus_di
            if di_sum != 0.0:
                dx = 100.0 * (abs(minus_di - plus_di) / di_sum)
        if t < 2 * n - 1:
            if not math.isnan(dx):
                sum_dx += dx
        elif t == 2 * n - 1:
            if not math.isnan(dx):
                sum_dx += dx
            adx_prev = sum_dx / n
            out[t] = adx_prev
        else:
            if not math.isnan(dx):
                adx_prev = (adx_prev * (n - 1) + dx) / n
            out[t] = adx_prev
    return out


@njit(cache=True)
def _ou_half_life(x: np.ndarray, n: int) -> np.ndarray:
    """Per t >= n: OLS (with intercept) of x[s]-x[s-1] on x[s-1], s = t-n+1..t; -ln2/beta if beta < 0 else inf."""
    size = x.shape[0]
    out = np.full(size, np.nan)
    ln2 = math.log(2.0)
    for t in range(n, size):
        sx = 0.0
        sy = 0.0
        for s in range(t - n + 1, t + 1):
            sx += x[s - 1]
            sy += x[s] - x[s - 1]
        mx = sx / n
        my = sy / n
        sxx = 0.0
        sxy = 0.0
        for s in range(t - n + 1, t + 1):
            dx = x[s - 1] - mx
            sxx += dx * dx
            sxy += dx * ((x[s] - x[s - 1]) - my)
        if sxx > 0.0 and sxy < 0.0:
            out[t] = -ln2 / (sxy / sxx)
        else:
            out[t] = np.inf
    return out


@njit(cache=True)
def _rolling_max_min(high: np.ndarray, low: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window ending at t >= n-1: max of high and min of low over it, scanned afresh."""
    size = high.shape[0]
    hi = np.full(size, np.nan)
    lo = np.full(size, np.nan)
    for t in range(n - 1, size):
        h = high[t - n + 1]
        m = low[t - n + 1]
        for s in range(t - n + 2, t + 1):
            if high[s] > h:
                h = high[s]
            if low[s] < m:
                m = low[s]
        hi[t] = h
        lo[t] = m
    return hi, lo


@njit(cache=True)
def _linreg(x: np.ndarray, n: int) -> np.ndarray:
    """Per window ending at t >= n-1: the least-squares line through (u, x[t-n+1+u]), u = 0..n-1, at u = n-1.

    Centred sums: slope = sum((u - c) * (x_u - mean)) / sum((u - c)^2) with c = (n-1)/2, and the value
    at u = n-1 is mean + slope * c.
    """
    size = x.shape[0]
    out = np.full(size, np.nan)
    c = (n - 1) / 2.0
    suu = 0.0
    for u in range(n):
        suu += (u - c) * (u - c)
    for t in range(n - 1, size):
        total = 0.0
        for s in range(t - n + 1, t + 1):
            total += x[s]
        m = total / n
        sxy = 0.0
        for u in range(n):
            sxy += (u - c) * (x[t - n + 1 + u] - m)
        out[t] = m + (sxy / suu) * c
    return out


def _as_series(x: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"indicators take 1-D arrays, got shape {a.shape}")
    return a


def _check_period(n: int, minimum: int = 1, name: str = "n") -> int:
    if int(n) != n or n < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average of the last n values; first value at index n-1."""
    return _rolling_mean_std(_as_series(x), _check_period(n))[0]


def stddev(x: np.ndarray, n: int) -> np.ndarray:
    """Population (ddof=0) standard deviation of the last n values, as TA-Lib's STDDEV; first value at n-1."""
    return _rolling_mean_std(_as_series(x), _check_period(n))[1]


def ema(x: np.ndarray, n: int) -> np.ndarray:
    """Exponential moving average, alpha = 2/(n+1), seeded with the SMA of the first n values (TA-Lib).

    First value at index n-1.
    """
    n = _check_period(n)
    return _ema(_as_series(x), n, n - 1)


def roc(x: np.ndarray, n: int) -> np.ndarray:
    """Rate of change in percent, 100 * (x[t]/x[t-n] - 1); first value at index n."""
    x = _as_series(x)
    n = _check_period(n)
    out = np.full(x.shape, np.nan)
    if x.size > n:
        out[n:] = (x[n:] / x[:-n] - 1.0) * 100.0
    return out


def rsi(close: np.ndarray, n: int) -> np.ndarray:
    """Wilder's RSI in [0, 100]; first value at index n (TA-Lib).

    Average gain and loss are seeded with the simple mean of the first n changes, then smoothed as
    (prev*(n-1) + value)/n. RSI = 100 * gain/(gain + loss); a window without any change gives 50
    (TA-Lib gives 0 there).
    """
    close = _as_series(close)
    n = _check_period(n)
    diff = np.zeros(close.shape)
    diff[1:] = close[1:] - close[:-1]
    gain = _wilder(np.maximum(diff, 0.0), n, n)
    loss = _wilder(np.maximum(-diff, 0.0), n, n)
    total = gain + loss
    out = np.full(close.shape, np.nan)
    ok = ~np.isnan(total)
    out[ok] = 50.0
    moving = ok & (total != 0.0)
    out[moving] = 100.0 * (gain[moving] / total[moving])
    return out


def macd(
    close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MACD with TA-Lib's alignment; returns (macd, signal, hist), all first valid at index slow+signal-2.

    Both EMAs start at index slow-1: the slow one seeded with the mean of x[0:slow], the fast one with
    the mean of x[slow-fast:slow]. The signal line is the EMA of the MACD line seeded with the mean of
    its first ``signal`` values; hist = macd - signal.
    """
    close = _as_series(close)
    fast = _check_period(fast, 1, "fast")
    slow = _check_period(slow, 2, "slow")
    signal = _check_period(signal, 1, "signal")
    if fast >= slow:
        raise ValueError(f"fast ({fast}) must be < slow ({slow})")
    line = _ema(close, fast, slow - 1) - _ema(close, slow, slow - 1)
    first = slow + signal - 2
    sig = _ema(line, signal, first)
    line[: min(first, line.size)] = np.nan
    return line, sig, line - sig


def bollinger(close: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands (mid, upper, lower): SMA(n) +/- k * population std (TA-Lib); first value at n-1."""
    mid, std = _rolling_mean_std(_as_series(close), _check_period(n))
    return mid, mid + k * std, mid - k * std


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high-low, |high-prev close|, |low-prev close|); first value at index 1."""
    high, low, close = _as_series(high), _as_series(low), _as_series(close)
    out = np.full(close.shape, np.nan)
    if close.size > 1:
        prev = close[:-1]
        out[1:] = np.maximum(np.maximum(high[1:] - low[1:], np.abs(high[1:] - prev)), np.abs(low[1:] - prev))
    return out


def atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's average true range; the mean of TR[1..n] at index n, then (prev*(n-1) + TR)/n (TA-Lib)."""
    n = _check_period(n)
    return _wilder(true_range(high, low, close), n, n)


def adx(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 14) -> np.ndarray:
    """Wilder's average directional index in [0, 100]; first value at index 2n-1 (TA-Lib).

    +DM/-DM/TR are Wilder running sums seeded over bars 1..n-1; DX from bar n; ADX is the mean of the
    first n DX values, then (prev*(n-1) + DX)/n. A bar without range leaves ADX unchanged (TA-Lib).
    """
    n = _check_period(n, 2)
    return _adx(_as_series(high), _as_series(low), _as_series(close), n)


def ou_half_life(x: np.ndarray, n: int = 60) -> np.ndarray:
    """Rolling Ornstein-Uhlenbeck half-life in bars; first value at index n.

    At t: OLS with intercept of dx[s] = x[s]-x[s-1] on x[s-1] over the n pairs s = t-n+1..t; returns
    -ln(2)/beta when beta < 0 and +inf otherwise (no mean reversion, or a constant window).
    """
    return _ou_half_life(_as_series(x), _check_period(n, 3))


def keltner(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = 20, k: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keltner channels (mid, upper, lower) as in the TTM squeeze: mid = EMA(close, n), bands mid +/- k * ATR(n).

    EMA and ATR follow TA-Lib (``ema``, ``atr``). As TA-Lib does for its functions with several outputs,
    all three share one warm-up: the first value is at index n, where ATR(n) starts (EMA(n) alone would
    start at n-1). TA-Lib itself has no Keltner function.
    """
    n = _check_period(n)
    high, low, close = _as_series(high), _as_series(low), _as_series(close)
    mid = _ema(close, n, n - 1)
    width = k * _wilder(true_range(high, low, close), n, n)
    mid[: min(n, mid.size)] = np.nan
    return mid, mid + width, mid - width


def donchian(high: np.ndarray, low: np.ndarray, n: int = 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Donchian channel (mid, upper, lower): upper = highest high and lower = lowest low of the last n bars,
    mid = (upper + lower) / 2 (TA-Lib's MAX, MIN and MIDPRICE); first value at n-1."""
    upper, lower = _rolling_max_min(_as_series(high), _as_series(low), _check_period(n))
    return (upper + lower) / 2.0, upper, lower


def linreg(x: np.ndarray, n: int) -> np.ndarray:
    """Linear regression value (TA-Lib's LINEARREG): the least-squares line through the last n values,
    evaluated at the last of them; first value at n-1. n >= 2."""
    return _linreg(_as_series(x), _check_period(n, 2))


@njit(cache=True)
def _tanh(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = math.tanh(x[i])
    return out


def tanh(x: np.ndarray) -> np.ndarray:
    """Elementwise tanh through the C library, one value at a time (NaN stays NaN).

    numpy's vectorised tanh picks a SIMD kernel by CPU, so two machines can differ in the last bit;
    a scalar libm call in a loop the compiler leaves scalar does not depend on the vector unit.
    """
    return _tanh(np.ascontiguousarray(x, dtype=np.float64))
