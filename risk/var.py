"""Value-at-Risk and expected shortfall of a linear book, as pure functions (numpy, scipy, numba; no Ray).

Conventions, common to every method:

* The book is ``values``: the signed dollar value held in each instrument (short positions negative).
  Instrument returns are simple returns, so the book's P&L over the horizon is ``values @ r`` and its
  loss is ``L = -(values @ r)``, in dollars.
* ``VaR_alpha`` is the ``alpha`` quantile of L (``alpha`` = 0.99: the loss exceeded with probability 1%),
  reported as a positive loss in dollars (negative only if even the tail makes money).
  ``ES_alpha`` (expected shortfall, CVaR) is the mean loss over the worst ``1 - alpha`` of outcomes:
  ``ES = 1/(1-alpha) * integral_alpha^1 VaR_u du``, >= VaR.
* ``horizon`` is in trading days; ``mu`` and ``cov`` are the mean vector and covariance of *daily*
  simple returns (``moments`` estimates them, ddof=1).

Methods:

* ``delta_normal``: r ~ N(h mu, h cov) over h days (square-root-of-time scaling of the volatility,
  linear scaling of the mean). VaR = -h m + sqrt(h) s z_alpha, ES = -h m + sqrt(h) s phi(z_alpha)/(1-alpha)
  with m = values @ mu, s = sqrt(values' cov values), z_alpha = Phi^-1(alpha).
* ``cornish_fisher``: the delta-normal with z_alpha replaced by the Cornish-Fisher modified quantile
  of the *loss* distribution, z_cf = z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36, S the skewness of
  the loss (minus that of the P&L), K its excess kurtosis; the daily moments come from a returns matrix
  (population estimators, scipy.stats.skew/kurtosis with bias=True) and are taken to h days as for a
  sum of iid days: mean x h, sd x sqrt(h), S / sqrt(h), K / h. ES integrates the modified quantile over
  the tail in closed form (the truncated-normal moments of Z beyond z_alpha); meaningful while z_cf is
  increasing in z over the tail, as for any Cornish-Fisher use.
* ``student_t``: r ~ t_nu(h mu, h scale), i.e. r = h mu + sqrt(nu/W) L z, W ~ chi2(nu), L L' = h scale,
  z ~ N(0, I). Then values @ r = h m + sqrt(h values' scale values) T with T a standard univariate t_nu
  (one W scales every instrument), so VaR = -h m + sqrt(h) s t_nu^-1(alpha) and
  ES = -h m + sqrt(h) s (nu + t^2)/(nu - 1) f_nu(t)/(1-alpha), t = t_nu^-1(alpha), s^2 = values' scale values.
  ``scale`` is the scale matrix; the covariance is nu/(nu-2) scale.
* ``historical``: the empirical distribution of the losses the book would have had on each overlapping
  h-day window of the returns matrix (the h-day return of an instrument compounds its daily simple
  returns, the positions held constant in dollars at the start of the window). Quantile convention:
  the lower empirical quantile, the k-th smallest of the n losses with k = ceil(n alpha) - numpy's
  ``np.quantile(losses, alpha, method="inverted_cdf")`` exactly. ES is the exact ES of that empirical
  distribution (Acerbi-Tasche): ``(L_(k) (k - n alpha) + sum_{i>k} L_(i)) / (n (1-alpha))``; when
  n(1-alpha) is an integer that is the mean of the n(1-alpha) largest losses (those strictly beyond the
  VaR's index).
* ``monte_carlo``: the multivariate normal (N(h mu, h cov)) or Student-t (t_nu(h mu, h scale)) above,
  simulating the h-day instrument return vector directly (one draw per path, not h daily steps), with
  VaR and ES of the simulated losses by the historical convention. See below for the kernel.

Monte Carlo kernel. Paths are cut into blocks of ``BLOCK`` = 2^16 paths; block b's random numbers come
from its own seed, ``SeedSequence(seed, spawn_key=(b,))`` (the b-th child of ``SeedSequence(seed).spawn``).
Within a block, path j draws from a SplitMix64 stream starting 2^32 j steps into the block's sequence
(counter-based: a path's numbers depend on (seed, b, j) only), turned into normals by the 256-layer
Marsaglia-Tsang ziggurat (numpy's algorithm for doubles) and chi-square variates by Marsaglia-Tsang's
gamma method, all inside one ``parallel=True`` numba kernel. Each path is computed by the same sequence
of floating-point operations whatever thread or task computes it, and VaR/ES are taken from an exact,
mergeable summary (the sorted n - k + 1 largest losses, see ``tail_of``/``merge_tails``), so the result
is bit-identical for any number of threads, tasks or workers. Numba's own ``np.random`` normals are
slower than numpy's and cannot be split this way; generating inside the kernel with an inlined
counter-based generator is what makes it faster than numpy (``bench/var.py``).
The kernel simulates every instrument's return on every path (x = loc + sqrt(nu/W) L z, then the book
P&L), not only the portfolio's one-dimensional reduction, so it applies unchanged to books whose P&L is
not linear in the returns.

Kernels take ``n_threads`` as an argument and split their paths into that many chunks, so ``cache=True``
works (a kernel that calls ``numba.get_num_threads`` or ``numba.set_num_threads`` is never cached);
the caller sets numba's thread count to the same number (``threads``) so a Ray task declared with
``num_cpus=n_threads`` uses exactly its cores.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, NamedTuple

import numba
import numpy as np
from numba import njit, prange
from scipy import stats

BLOCK = 1 << 16  # paths per seed block

_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's increment (golden ratio)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ZIG_R = 3.6541528853610088  # 256-layer ziggurat: right edge of the base layer
_ZIG_V = 4.92867323399e-3  # area of each layer
_ZIG_INV_R = 1.0 / _ZIG_R
_TWO_M53 = 1.0 / 9007199254740992.0


class Risk(NamedTuple):
    """VaR and ES at one confidence level and horizon, positive losses in the book's currency."""

    var: float
    es: float


# ---------------------------------------------------------------------------------------------------------
# inputs


def moments(returns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and covariance (ddof=1) of a (T, N) matrix of daily simple returns."""
    r = np.asarray(returns, dtype=np.float64)
    return r.mean(axis=0), np.atleast_2d(np.cov(r, rowvar=False, ddof=1))


def simple_returns(close: np.ndarray) -> np.ndarray:
    """Daily simple returns ``close[t] / close[t-1] - 1`` of a (T, N) close matrix, rows with a NaN dropped."""
    c = np.asarray(close, dtype=np.float64)
    r = c[1:] / c[:-1] - 1.0
    return r[~np.isnan(r).any(axis=1)]


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def _book(values, mu, cov) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    v = np.asarray(values, dtype=np.float64)
    m = np.asarray(mu, dtype=np.float64)
    c = np.atleast_2d(np.asarray(cov, dtype=np.float64))
    if v.ndim != 1 or m.shape != v.shape or c.shape != (v.size, v.size):
        raise ValueError(f"shapes do not match: values {v.shape}, mu {m.shape}, cov {c.shape}")
    return v, m, c


# ---------------------------------------------------------------------------------------------------------
# parametric


def delta_normal(values, mu, cov, alpha: float = 0.99, horizon: float = 1.0) -> Risk:
    """VaR and ES of the book if daily returns are N(mu, cov), over ``horizon`` days (sqrt-time scaling)."""
    _check_alpha(alpha)
    v, m, c = _book(values, mu, cov)
    mean = horizon * float(v @ m)
    sd = math.sqrt(horizon * float(v @ c @ v))
    z = float(stats.norm.ppf(alpha))
    return Risk(-mean + sd * z, -mean + sd * float(stats.norm.pdf(z)) / (1.0 - alpha))


def trailing_book(positions, closes: np.ndarray, stop: int, window: int = 250, alpha: float = 0.99) -> Risk:
    """1-day delta-normal VaR and ES of ``positions`` (shares) held at row ``stop - 1`` of a (T, N) close
    matrix, from the daily returns of at most ``window`` rows before ``stop`` (rows with a NaN dropped).
    A symbol is valued at its last close; a book with no position, or fewer than 2 returns, risks nothing."""
    c = np.asarray(closes, dtype=np.float64)[max(0, stop - window - 1) : stop]
    q = np.asarray(positions, dtype=np.float64)
    last = c[-1].copy() if len(c) else np.full(q.shape, np.nan)
    for j in np.flatnonzero(np.isnan(last)):  # a symbol with no bar in the last row: its last close before
        seen = np.flatnonzero(~np.isnan(c[:, j]))
        if seen.size:
            last[j] = c[seen[-1], j]
    values = np.where(q != 0.0, q * last, 0.0)
    returns = simple_returns(c)
    if not values.any() or np.isnan(values).any() or len(returns) < 2:
        return Risk(0.0, 0.0)
    mu, cov = moments(returns)
    return delta_normal(values, mu, cov, alpha)


def cornish_fisher_quantile(z: float, skew: float, excess_kurtosis: float) -> float:
    """The Cornish-Fisher modified standard quantile: z + (z^2-1)S/6 + (z^3-3z)K/24 - (2z^3-5z)S^2/36."""
    s, k = skew, excess_kurtosis
    return z + (z * z - 1.0) * s / 6.0 + (z**3 - 3.0 * z) * k / 24.0 - (2.0 * z**3 - 5.0 * z) * s * s / 36.0


def cornish_fisher_from_moments(
    mean: float, sd: float, skew: float, excess_kurtosis: float, alpha: float = 0.99
) -> Risk:
    """VaR and ES of a P&L with these moments (of the P&L, not the loss) by the Cornish-Fisher expansion.

    The loss has mean -mean, skewness -skew and the same kurtosis; VaR = -mean + sd z_cf(z_alpha) with
    the loss's moments. ES = -mean + sd E[z_cf(Z) | Z > z_alpha], in closed form from the tail moments of
    a standard normal: E[Z|.] = phi/(1-a), E[Z^2|.] = 1 + z phi/(1-a), E[Z^3|.] = (z^2 + 2) phi/(1-a).
    """
    _check_alpha(alpha)
    s, k = -skew, excess_kurtosis
    z = float(stats.norm.ppf(alpha))
    tail = float(stats.norm.pdf(z)) / (1.0 - alpha)
    m1, m2, m3 = tail, 1.0 + z * tail, (z * z + 2.0) * tail
    e_cf = m1 + (m2 - 1.0) * s / 6.0 + (m3 - 3.0 * m1) * k / 24.0 - (2.0 * m3 - 5.0 * m1) * s * s / 36.0
    return Risk(-mean + sd * cornish_fisher_quantile(z, s, k), -mean + sd * e_cf)


def portfolio_moments(values, returns: np.ndarray) -> tuple[float, float, float, float]:
    """Mean, sd (ddof=1), skewness and excess kurtosis (population, bias=True) of the daily book P&L."""
    pnl = np.asarray(returns, dtype=np.float64) @ np.asarray(values, dtype=np.float64)
    return (
        float(pnl.mean()),
        float(pnl.std(ddof=1)),
        float(stats.skew(pnl, bias=True)),
        float(stats.kurtosis(pnl, fisher=True, bias=True)),
    )


def cornish_fisher(values, returns: np.ndarray, alpha: float = 0.99, horizon: float = 1.0) -> Risk:
    """Cornish-Fisher VaR and ES over ``horizon`` days from the moments of the daily P&L on ``returns``.

    Horizon: mean x h, sd x sqrt(h), skewness / sqrt(h), excess kurtosis / h (a sum of h iid days).
    """
    mean, sd, skew, kurt = portfolio_moments(values, returns)
    h = float(horizon)
    return cornish_fisher_from_moments(mean * h, sd * math.sqrt(h), skew / math.sqrt(h), kurt / h, alpha)


def student_t(values, mu, scale, nu: float, alpha: float = 0.99, horizon: float = 1.0) -> Risk:
    """Closed-form VaR and ES of the book if h-day returns are multivariate t_nu(h mu, h scale) (nu > 1).

    ``scale`` is the scale matrix (covariance nu/(nu-2) scale): the book's P&L is then
    h values@mu + sqrt(h values' scale values) T with T ~ t_nu (univariate, unit scale).
    """
    _check_alpha(alpha)
    if nu <= 1:
        raise ValueError(f"ES needs nu > 1, got {nu}")
    v, m, c = _book(values, mu, scale)
    mean = horizon * float(v @ m)
    s = math.sqrt(horizon * float(v @ c @ v))
    t = float(stats.t.ppf(alpha, nu))
    es_std = (nu + t * t) / (nu - 1.0) * float(stats.t.pdf(t, nu)) / (1.0 - alpha)
    return Risk(-mean + s * t, -mean + s * es_std)


# ---------------------------------------------------------------------------------------------------------
# empirical (historical and Monte Carlo share the quantile convention)


def tail_count(n: int, alpha: float) -> int:
    """How many of n sorted losses the VaR/ES need: n - k + 1, k = ceil(n alpha) the VaR's rank (1-based).

    k is numpy's ``inverted_cdf`` index (computed from the same float n * alpha).
    """
    _check_alpha(alpha)
    k = max(1, int(math.ceil(n * alpha)))
    return n - k + 1


def tail_of(losses: np.ndarray, m: int) -> np.ndarray:
    """The m largest of ``losses`` (all of them if fewer), sorted ascending: an exact, mergeable summary."""
    losses = np.asarray(losses, dtype=np.float64)
    if losses.size > m:
        losses = np.partition(losses, losses.size - m)[losses.size - m :]
    return np.sort(losses)


def merge_tails(tails: list[np.ndarray], m: int) -> np.ndarray:
    """The m largest of the union of several ``tail_of`` summaries, sorted; independent of the grouping."""
    return tail_of(np.concatenate(tails) if tails else np.empty(0), m)


def risk_from_tail(tail: np.ndarray, n: int, alpha: float) -> Risk:
    """VaR and ES of n losses from their ``tail_count(n, alpha)`` largest, sorted ascending.

    VaR = L_(k); ES = (L_(k) (k - n alpha) + sum_{i>k} L_(i)) / (n (1 - alpha)), the sum taken over the
    sorted array (so equal summaries give equal bits).
    """
    m = tail_count(n, alpha)
    if tail.size != m:
        raise ValueError(f"need the {m} largest of {n} losses, got {tail.size}")
    k = n - m + 1
    var = float(tail[0])
    es = (var * (k - n * alpha) + float(np.sum(tail[1:]))) / (n * (1.0 - alpha))
    return Risk(var, es)


def empirical(losses: np.ndarray, alpha: float = 0.99) -> Risk:
    """VaR (lower quantile, ``inverted_cdf``) and exact empirical ES of a sample of losses."""
    losses = np.asarray(losses, dtype=np.float64).ravel()
    if losses.size == 0:
        raise ValueError("no losses")
    m = tail_count(losses.size, alpha)
    return risk_from_tail(tail_of(losses, m), losses.size, alpha)


def horizon_returns(returns: np.ndarray, horizon: int = 1) -> np.ndarray:
    """Overlapping ``horizon``-day simple returns, compounding the daily ones: prod(1 + r) - 1 per window."""
    r = np.asarray(returns, dtype=np.float64)
    if horizon < 1 or int(horizon) != horizon:
        raise ValueError(f"historical horizon must be a whole number of days >= 1, got {horizon}")
    if horizon == 1:
        return r
    growth = np.log1p(r)
    csum = np.vstack([np.zeros((1, r.shape[1])), np.cumsum(growth, axis=0)])
    return np.expm1(csum[horizon:] - csum[:-horizon])


def historical_losses(values, returns: np.ndarray, horizon: int = 1) -> np.ndarray:
    """The book's loss on every overlapping ``horizon``-day window of ``returns`` (T, N)."""
    return -(horizon_returns(returns, horizon) @ np.asarray(values, dtype=np.float64))


def historical(values, returns: np.ndarray, alpha: float = 0.99, horizon: int = 1) -> Risk:
    """Historical VaR and ES: ``empirical`` on the losses of ``historical_losses``."""
    return empirical(historical_losses(values, returns, horizon), alpha)


# ---------------------------------------------------------------------------------------------------------
# Monte Carlo: random numbers


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Marsaglia-Tsang tables for 256 layers and 52-bit mantissas (layer 0: the base with the tail)."""
    m = 2.0**52
    k = np.zeros(256, dtype=np.uint64)
    w = np.zeros(256)
    f = np.zeros(256)
    dn = tn = _ZIG_R
    q = _ZIG_V / math.exp(-0.5 * dn * dn)
    k[0] = np.uint64((dn / q) * m)
    w[0], w[255] = q / m, dn / m
    f[0], f[255] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_ZIG_V / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = np.uint64((dn / tn) * m)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w, f


ZIGGURAT = _ziggurat_tables()  # passed to the kernels as arrays (global arrays would defeat cache=True)


def block_keys(seed: int, first: int, stop: int) -> np.ndarray:
    """The 64-bit SplitMix64 seeds of blocks ``first .. stop-1``: block b from SeedSequence(seed, spawn_key=(b,))."""
    return np.array(
        [np.random.SeedSequence(seed, spawn_key=(b,)).generate_state(1, np.uint64)[0] for b in range(first, stop)],
        dtype=np.uint64,
    )


def n_blocks(n_paths: int) -> int:
    return -(-int(n_paths) // BLOCK)


def block_paths(n_paths: int, first: int, stop: int) -> int:
    """How many of ``n_paths`` fall in blocks ``first .. stop-1`` (only the last block may be short)."""
    return max(0, min(n_paths, stop * BLOCK) - first * BLOCK)


@njit(cache=True, inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, inline="always")
def _open01(r):
    """A uniform in (0, 1] from the top 53 bits."""
    return (np.float64(np.int64(r >> np.uint64(11))) + 1.0) * _TWO_M53


@njit(cache=True)
def _normal(state, zk, zw, zf):
    """One standard normal (numpy's ziggurat for doubles) from SplitMix64 ``state``; returns (state, x)."""
    while True:
        state = state + _GAMMA
        r = _mix(state)
        idx = np.int64(r & np.uint64(0xFF))
        r = r >> np.uint64(8)
        negative = (r & np.uint64(1)) != np.uint64(0)
        rabs = (r >> np.uint64(1)) & np.uint64(0x000FFFFFFFFFFFFF)
        x = np.float64(np.int64(rabs)) * zw[idx]  # rabs < 2^52: the signed conversion is exact and faster
        if negative:
            x = -x
        if rabs < zk[idx]:
            return state, x
        if idx == 0:
            while True:
                state = state + _GAMMA
                u1 = _open01(_mix(state))
                state = state + _GAMMA
                u2 = _open01(_mix(state))
                xx = -_ZIG_INV_R * math.log(u1)
                yy = -math.log(u2)
                if yy + yy > xx * xx:
                    if ((rabs >> np.uint64(8)) & np.uint64(1)) != np.uint64(0):
                        return state, -(_ZIG_R + xx)
                    return state, _ZIG_R + xx
        else:
            state = state + _GAMMA
            u = _open01(_mix(state))
            if (zf[idx - 1] - zf[idx]) * u + zf[idx] < math.exp(-0.5 * x * x):
                return state, x


@njit(cache=True)
def _chisquare(state, nu, zk, zw, zf):
    """One chi2(nu) = 2 Gamma(nu/2) variate (Marsaglia-Tsang; shape < 1 boosted by U^(1/a)); (state, w)."""
    a = 0.5 * nu
    boost = 1.0
    if a < 1.0:
        state = state + _GAMMA
        boost = _open01(_mix(state)) ** (1.0 / a)
        a += 1.0
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        v = 0.0
        x = 0.0
        while v <= 0.0:
            state, x = _normal(state, zk, zw, zf)
            v = 1.0 + c * x
        v = v * v * v
        state = state + _GAMMA
        u = _open01(_mix(state))
        if u < 1.0 - 0.0331 * x * x * x * x or math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return state, 2.0 * d * v * boost


@njit(cache=True, inline="always")
def _path_state(keys, block_size, i):
    b = i // block_size
    j = np.uint64(i - b * block_size)
    return keys[b] + (j << np.uint64(32)) * _GAMMA


@njit(cache=True, inline="always")
def _draw(state, z, nu, zk, zw, zf):
    """A path's draws in a fixed order: len(z) normals into z, then W ~ chi2(nu) if nu > 0 (else 0)."""
    for a in range(z.shape[0]):
        state, z[a] = _normal(state, zk, zw, zf)
    w = 0.0
    if nu > 0.0:
        state, w = _chisquare(state, nu, zk, zw, zf)
    return state, w


@njit(cache=True, parallel=True)
def mc_losses_kernel(keys, block_size, n, loc, chol, values, nu, n_threads, zk, zw, zf, out):
    """Losses of paths 0..n-1 of the blocks seeded by ``keys`` into ``out``: x = loc + s L z per path,
    s = sqrt(nu / W) (Student-t, nu > 0) or 1 (normal, nu = 0), loss = -values @ x. ``n_threads`` chunks."""
    d = loc.shape[0]
    per = (n + n_threads - 1) // n_threads
    for t in prange(n_threads):
        z = np.empty(d)
        for i in range(t * per, min(n, (t + 1) * per)):
            state, w = _draw(_path_state(keys, block_size, i), z, nu, zk, zw, zf)
            s = math.sqrt(nu / w) if nu > 0.0 else 1.0
            pnl = 0.0
            for a in range(d):
                acc = 0.0
                for b in range(a + 1):
                    acc += chol[a, b] * z[b]
                pnl += values[a] * (loc[a] + s * acc)
            out[i] = -pnl


@njit(cache=True, parallel=True)
def rng_kernel(keys, block_size, n, d, nu, n_threads, zk, zw, zf, out):
    """The random numbers alone: the same draws as ``mc_losses_kernel``; out[i] = their sum on path i."""
    per = (n + n_threads - 1) // n_threads
    for t in prange(n_threads):
        z = np.empty(d)
        for i in range(t * per, min(n, (t + 1) * per)):
            state, w = _draw(_path_state(keys, block_size, i), z, nu, zk, zw, zf)
            acc = w
            for a in range(d):
                acc += z[a]
            out[i] = acc


@njit(cache=True, parallel=True)
def draws_kernel(keys, block_size, n, d, nu, n_threads, zk, zw, zf, out):
    """Every draw of paths 0..n-1: out[i, :d] the normals, out[i, d] the chi-square (0 if nu = 0)."""
    per = (n + n_threads - 1) // n_threads
    for t in prange(n_threads):
        z = np.empty(d)
        for i in range(t * per, min(n, (t + 1) * per)):
            state, w = _draw(_path_state(keys, block_size, i), z, nu, zk, zw, zf)
            out[i, :d] = z
            out[i, d] = w


@contextmanager
def threads(n_threads: int) -> Iterator[int]:
    """Numba's thread count set to ``n_threads`` (capped at NUMBA_NUM_THREADS) for the block; yields it."""
    n = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    before = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield n
    finally:
        numba.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------------
# Monte Carlo: the model and the simulation


class MCModel(NamedTuple):
    """The simulated h-day return: loc + sqrt(nu/W) chol z (nu = 0: normal, loc + chol z)."""

    values: np.ndarray
    loc: np.ndarray
    chol: np.ndarray
    nu: float


def mc_model(values, mu, cov, dist: str = "normal", nu: float | None = None, horizon: float = 1.0) -> MCModel:
    """The h-day model: N(h mu, h cov), or t_nu(h mu, h cov) with ``cov`` the scale matrix (dist="t")."""
    v, m, c = _book(values, mu, cov)
    if dist == "normal":
        nu_ = 0.0
    elif dist == "t":
        if nu is None or not nu > 0:
            raise ValueError(f"dist='t' needs nu > 0, got {nu}")
        nu_ = float(nu)
    else:
        raise ValueError(f"dist must be 'normal' or 't', got {dist!r}")
    return MCModel(v, horizon * m, np.ascontiguousarray(np.linalg.cholesky(horizon * c)), nu_)


def simulate_losses(model: MCModel, n_paths: int, seed: int, first: int, stop: int, n_threads: int = 1) -> np.ndarray:
    """The losses of blocks ``first .. stop-1`` of an ``n_paths`` simulation, in path order."""
    n = block_paths(n_paths, first, stop)
    out = np.empty(n)
    if n:
        with threads(n_threads) as k:
            mc_losses_kernel(block_keys(seed, first, stop), BLOCK, n, model.loc, model.chol, model.values,
                             model.nu, k, *ZIGGURAT, out)
    return out


def simulate_tail(
    model: MCModel, n_paths: int, seed: int, alpha: float, first: int, stop: int, n_threads: int = 1
) -> np.ndarray:
    """``tail_of`` the losses of blocks ``first .. stop-1``: the part of the summary one task returns."""
    return tail_of(simulate_losses(model, n_paths, seed, first, stop, n_threads), tail_count(n_paths, alpha))


def split_blocks(n_paths: int, n_tasks: int) -> list[tuple[int, int]]:
    """Contiguous block ranges, one per task (fewer if there are fewer blocks than tasks)."""
    nb = n_blocks(n_paths)
    k = max(1, min(int(n_tasks), nb))
    edges = [nb * i // k for i in range(k + 1)]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def monte_carlo(
    values,
    mu,
    cov,
    alpha: float = 0.99,
    n_paths: int = 1_000_000,
    seed: int = 0,
    dist: str = "normal",
    nu: float | None = None,
    horizon: float = 1.0,
    n_threads: int = 1,
) -> Risk:
    """Monte Carlo VaR and ES in this process (``risk_from_tail`` of the simulated losses); the Ray
    version (``actors/var.py``) splits the blocks over tasks and returns the same bits."""
    _check_alpha(alpha)
    model = mc_model(values, mu, cov, dist, nu, horizon)
    tail = simulate_tail(model, n_paths, seed, alpha, 0, n_blocks(n_paths), n_threads)
    return risk_from_tail(tail, n_paths, alpha)


def standard_draws(n_paths: int, d: int, seed: int = 0, nu: float = 0.0, n_threads: int = 1) -> np.ndarray:
    """The kernel's random numbers for the first ``n_paths`` paths: (n, d) normals and a chi2(nu) column."""
    keys = block_keys(seed, 0, n_blocks(n_paths))
    out = np.empty((n_paths, d + 1))
    with threads(n_threads) as k:
        draws_kernel(keys, BLOCK, n_paths, d, float(nu), k, *ZIGGURAT, out)
    return out


def mc_losses_numpy(model: MCModel, n_paths: int, seed: int) -> np.ndarray:
    """The same model in plain numpy, block by block (default_rng per block from the same SeedSequence
    children, PCG64 + numpy's ziggurat: other random numbers, the same distribution). The reference for
    ``bench/var.py`` and a statistical cross-check of the kernel."""
    d = model.loc.size
    out = np.empty(n_paths)
    for b in range(n_blocks(n_paths)):
        lo, hi = b * BLOCK, min(n_paths, (b + 1) * BLOCK)
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(b,)))
        x = rng.standard_normal((hi - lo, d)) @ model.chol.T
        if model.nu > 0:
            x *= np.sqrt(model.nu / rng.chisquare(model.nu, hi - lo))[:, None]
        x += model.loc
        out[lo:hi] = -(x @ model.values)
    return out
