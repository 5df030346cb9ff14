"""Statistical arbitrage on pairs: rolling Engle-Granger cointegration, a Kalman hedge ratio, a z-scored spread.

For each configured pair (a, b) whose two symbols are both in the panel, on the rows where both have a
valid bar (the pair's own time axis; a row where either leg is missing does not exist for the pair):

1. Cointegration gate (Engle and Granger 1987), on the window of the last ``coint_window`` rows ending
   at t: OLS of log a on log b with a constant, then the augmented Dickey-Fuller t-statistic of the
   residuals u with ``adf_lag`` lagged differences and no constant (the residuals are mean-zero by
   construction, as in Engle-Granger and in ``statsmodels.tsa.stattools.coint``):

       du_s = rho * u_{s-1} + sum_{i=1..L} g_i * du_{s-i} + e_s,       adf_t = rho_hat / se(rho_hat)

   The pair is cointegrated at t where adf_t < crit, the 5% critical value for two variables with a
   constant from the response surfaces of J. G. MacKinnon, "Critical Values for Cointegration Tests",
   Queen's Economics Department Working Paper 1227 (2010) (N = 2 variables, constant, 5%):

       crit(T) = -3.33613 - 6.1101 / T - 6.823 / T^2,     T = coint_window - 1

   (asymptotic -3.33613; the older MacKinnon (1991) fit is -3.3377 - 5.967/T - 8.98/T^2, within 0.002
   of it for T >= 100). T = window - 1 follows ``statsmodels.tsa.stattools.coint`` (which matches
   Stata's ``egranger``), so the decision here and coint's ``stat < crit_value[1]`` are the same test.

2. Hedge ratio: a Kalman filter with state [beta, alpha] (Chan, "Algorithmic Trading", 2013, ch. 3),
   random-walk transition with covariance Q = delta / (1 - delta) * I, observation
   log a_t = beta_t * log b_t + alpha_t + e_t with Var(e) = ``kalman_obs_var``, prior state [0, 0] with
   covariance ``kalman_p0`` * I, run over every row of the pair from its first one. Each step is the
   textbook predict (P += Q) and update with the Joseph-form covariance update (as ``filterpy``).

3. Spread z-score: the Kalman one-step-ahead prediction error normalised by its predicted standard
   deviation (not a rolling z of the spread):

       error_t = log a_t - (beta_{t|t-1} * log b_t + alpha_{t|t-1}),    z_t = error_t / sqrt(S_t),
       S_t = H_t P_{t|t-1} H_t' + kalman_obs_var,  H_t = [log b_t, 1].

   beta_{t|t-1} and alpha_{t|t-1} are the previous row's posterior (``beta``, ``alpha`` in the
   rationale), so error_t = log a_t - beta[t-1] * log b_t - alpha[t-1].

4. Position per pair (-1 short spread, 0 flat, +1 long spread), a hysteresis on z run row by row:
   the pair is *tradable* at t when its window is full, adf_t < crit and the posterior hedge ratio
   beta_t > 0 (a negative ratio would make the "spread" a long-long basket); where it is not, the
   position is 0 (closed). Where it is: flat opens long at z < -entry_z and short at z > entry_z; a long
   closes once z > -exit_z (back inside the exit band, or through it) and flips to short if z >
   entry_z; symmetrically a short closes once z < exit_z and flips to long if z < -entry_z.
   With m = min(1, |z| / full_z) and w = max(1, beta_t), the legs' strengths are

       leg a:  position * m / w,            leg b:  -position * m * beta_t / w

   (long spread = long a, short beta * b: the dollar ratio of the legs is the hedge ratio, the larger
   leg gets m). Confidence of a tradable pair = tanh((crit - adf_t) / conf_scale): how far the window
   rejects no-cointegration, squashed to (0, 1).

Per symbol and row: the mean, over the pairs containing the symbol that are tradable at that row, of
its leg strengths, and the mean of those pairs' confidences (equal weights). A symbol in no tradable
pair at the row gets strength 0 with confidence 0 (a neutral view, not an abstention). Strength is NaN
(abstain) with confidence 0 where the symbol has no bar, and on its first ``coint_window - 1`` bars
(warm-up = coint_window: the first full window of a pair ends on its ``coint_window``-th common row).

Rationale, per pair, under ``"<a>/<b>:<field>"`` in the columns of both legs (NaN elsewhere and on rows
where the pair has no common bar): ``beta``, ``alpha`` (posterior), ``error``, ``error_sd``, ``z``,
``ols_beta`` (the window's cointegrating slope), ``adf_t``, ``crit`` (NaN before the window is full),
``position`` (after row t's decision).

Determinism: every logarithm and tanh is scalar libm (``math.*``) inside sequential numba loops (no
fastmath, no numpy transcendental ufuncs, whose SIMD kernels differ across CPUs), every window is
summed afresh in index order, and every value at row t depends only on rows <= t, so batch and
bar-by-bar replay agree bit for bit. The rolling test costs O(coint_window) per row.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from pydantic import Field, field_validator, model_validator

from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register

__all__ = [
    "StatArb",
    "StatArbParams",
    "mackinnon_crit_5pct",
    "engle_granger_adf",
    "rolling_engle_granger",
    "kalman_hedge",
    "pair_signals",
    "PAIR_FIELDS",
]

# MacKinnon (2010) response surface, N = 2, constant, 5%: tau(T) = b_inf + b1/T + b2/T^2.
_MACKINNON_2010_N2_C_5PCT = (-3.33613, -6.1101, -6.823)

# Rationale fields per pair, in the order of pair_signals' output rows.
PAIR_FIELDS: tuple[str, ...] = ("beta", "alpha", "error", "error_sd", "z", "ols_beta", "adf_t", "crit", "position")


def mackinnon_crit_5pct(window: int) -> float:
    """The Engle-Granger 5% critical value for two variables with a constant, for a window of ``window`` rows.

    MacKinnon (2010): -3.33613 - 6.1101/T - 6.823/T^2 with T = window - 1 (statsmodels' coint).
    """
    b_inf, b1, b2 = _MACKINNON_2010_N2_C_5PCT
    t = float(window - 1)
    return b_inf + b1 / t + b2 / (t * t)


@njit(cache=True)
def _solve_spd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with a x = b for a small symmetric positive definite a (Cholesky); a and b are left unchanged."""
    k = a.shape[0]
    low = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1):
            s = a[i, j]
            for m in range(j):
                s -= low[i, m] * low[j, m]
            if i == j:
                low[i, i] = math.sqrt(s) if s > 0.0 else math.nan
            else:
                low[i, j] = s / low[j, j]
    y = np.empty(k)
    for i in range(k):
        s = b[i]
        for m in range(i):
            s -= low[i, m] * y[m]
        y[i] = s / low[i, i]
    x = np.empty(k)
    for i in range(k - 1, -1, -1):
        s = y[i]
        for m in range(i + 1, k):
            s -= low[m, i] * x[m]
        x[i] = s / low[i, i]
    return x


@njit(cache=True)
def _eg_window(y: np.ndarray, x: np.ndarray, start: int, stop: int, lag: int, u: np.ndarray) -> tuple[float, float]:
    """Engle-Granger on rows start..stop-1: (ADF t-stat of the OLS residuals, OLS slope); ``u`` is scratch.

    OLS of y on x with a constant from centred sums; then OLS without constant of du_s on u_{s-1},
    du_{s-1}, .., du_{s-lag} over s = lag+1 .. n-1 (n = stop - start), as statsmodels' adfuller with
    regression="n", autolag=None, maxlag=lag. NaN where a regression is degenerate.
    """
    n = stop - start
    sx = 0.0
    sy = 0.0
    for s in range(start, stop):
        sx += x[s]
        sy += y[s]
    mx = sx / n
    my = sy / n
    sxx = 0.0
    sxy = 0.0
    for s in range(start, stop):
        dx = x[s] - mx
        sxx += dx * dx
        sxy += dx * (y[s] - my)
    if not sxx > 0.0:
        return math.nan, math.nan
    slope = sxy / sxx
    icpt = my - slope * mx
    for i in range(n):
        u[i] = y[start + i] - icpt - slope * x[start + i]

    k = lag + 1
    rows = n - 1 - lag
    if rows <= k:
        return math.nan, slope
    xtx = np.zeros((k, k))
    xty = np.zeros(k)
    reg = np.empty(k)
    for i in range(lag + 1, n):
        dep = u[i] - u[i - 1]
        reg[0] = u[i - 1]
        for j in range(1, k):
            reg[j] = u[i - j] - u[i - j - 1]
        for p in range(k):
            xty[p] += reg[p] * dep
            for q in range(p + 1):
                xtx[p, q] += reg[p] * reg[q]
    for p in range(k):
        for q in range(p + 1, k):
            xtx[p, q] = xtx[q, p]
    coef = _solve_spd(xtx, xty)
    ssr = 0.0
    for i in range(lag + 1, n):
        fit = coef[0] * u[i - 1]
        for j in range(1, k):
            fit += coef[j] * (u[i - j] - u[i - j - 1])
        r = (u[i] - u[i - 1]) - fit
        ssr += r * r
    e0 = np.zeros(k)
    e0[0] = 1.0
    inv00 = _solve_spd(xtx, e0)[0]
    var = ssr / (rows - k) * inv00
    if not var > 0.0:
        return math.nan, slope
    return coef[0] / math.sqrt(var), slope


@njit(cache=True)
def _rolling_eg(y: np.ndarray, x: np.ndarray, window: int, lag: int) -> tuple[np.ndarray, np.ndarray]:
    size = y.shape[0]
    adf = np.full(size, np.nan)
    slope = np.full(size, np.nan)
    u = np.empty(window)
    for t in range(window - 1, size):
        adf[t], slope[t] = _eg_window(y, x, t - window + 1, t + 1, lag, u)
    return adf, slope


@njit(cache=True)
def _kalman_step(y: float, x: float, state: np.ndarray, p: np.ndarray, q: float, r: float) -> tuple[float, float]:
    """One predict + update of the [beta, alpha] filter, in place; returns (prediction error, its variance S).

    Predict: state unchanged (random walk), P += q I. Update with H = [x, 1]: S = H P H' + r,
    K = P H' / S, state += K * error, P = (I - K H) P (I - K H)' + r K K' (Joseph form, as filterpy).
    """
    p[0, 0] += q
    p[1, 1] += q
    ph0 = p[0, 0] * x + p[0, 1]
    ph1 = p[1, 0] * x + p[1, 1]
    s = x * ph0 + ph1 + r
    k0 = ph0 / s
    k1 = ph1 / s
    err = y - (state[0] * x + state[1])
    state[0] += k0 * err
    state[1] += k1 * err
    # A = I - K H
    a00 = 1.0 - k0 * x
    a01 = -k0
    a10 = -k1 * x
    a11 = 1.0 - k1
    # M = A P
    m00 = a00 * p[0, 0] + a01 * p[1, 0]
    m01 = a00 * p[0, 1] + a01 * p[1, 1]
    m10 = a10 * p[0, 0] + a11 * p[1, 0]
    m11 = a10 * p[0, 1] + a11 * p[1, 1]
    # P = M A' + r K K'
    p[0, 0] = m00 * a00 + m01 * a01 + r * k0 * k0
    p[0, 1] = m00 * a10 + m01 * a11 + r * k0 * k1
    p[1, 0] = m10 * a00 + m11 * a01 + r * k1 * k0
    p[1, 1] = m10 * a10 + m11 * a11 + r * k1 * k1
    return err, s


@njit(cache=True)
def _kalman(y: np.ndarray, x: np.ndarray, q: float, r: float, p0: float) -> np.ndarray:
    size = y.shape[0]
    out = np.empty((4, size))
    state = np.zeros(2)
    p = np.zeros((2, 2))
    p[0, 0] = p0
    p[1, 1] = p0
    for t in range(size):
        err, s = _kalman_step(y[t], x[t], state, p, q, r)
        out[0, t] = state[0]
        out[1, t] = state[1]
        out[2, t] = err
        out[3, t] = math.sqrt(s)
    return out


@njit(cache=True)
def _pair_kernel(
    close_a: np.ndarray,
    close_b: np.ndarray,
    window: int,
    lag: int,
    q: float,
    r: float,
    p0: float,
    crit: float,
    entry_z: float,
    exit_z: float,
    full_z: float,
    conf_scale: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The whole pair on its common rows: (fields (len(PAIR_FIELDS), n), leg a, leg b, confidence, tradable)."""
    n = close_a.shape[0]
    ya = np.empty(n)
    xb = np.empty(n)
    out = np.full((9, n), np.nan)
    leg_a = np.zeros(n)
    leg_b = np.zeros(n)
    conf = np.zeros(n)
    tradable = np.zeros(n, dtype=np.bool_)
    state = np.zeros(2)
    p = np.zeros((2, 2))
    p[0, 0] = p0
    p[1, 1] = p0
    u = np.empty(window)
    pos = 0
    for t in range(n):
        ya[t] = math.log(close_a[t])
        xb[t] = math.log(close_b[t])
        err, s = _kalman_step(ya[t], xb[t], state, p, q, r)
        sd = math.sqrt(s)
        z = err / sd
        beta = state[0]
        out[0, t] = beta
        out[1, t] = state[1]
        out[2, t] = err
        out[3, t] = sd
        out[4, t] = z
        ok = False
        adf = math.nan
        if t >= window - 1:
            adf, slope = _eg_window(ya, xb, t - window + 1, t + 1, lag, u)
            out[5, t] = slope
            out[6, t] = adf
            out[7, t] = crit
            ok = adf < crit and beta > 0.0 and not math.isnan(z)
        if not ok:
            pos = 0
        elif pos == 0:
            if z > entry_z:
                pos = -1
            elif z < -entry_z:
                pos = 1
        elif pos == 1:
            if z > entry_z:
                pos = -1
            elif z > -exit_z:
                pos = 0
        else:
            if z < -entry_z:
                pos = 1
            elif z < exit_z:
                pos = 0
        out[8, t] = pos
        if ok:
            tradable[t] = True
            conf[t] = math.tanh((crit - adf) / conf_scale)
            m = min(1.0, abs(z) / full_z)
            w = max(1.0, beta)
            leg_a[t] = pos * m / w
            leg_b[t] = -pos * m * beta / w
    return out, leg_a, leg_b, conf, tradable


def _series(a: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(a, dtype=np.float64)
    if out.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {out.shape}")
    return out


def engle_granger_adf(y: np.ndarray, x: np.ndarray, lag: int = 1) -> float:
    """The Engle-Granger ADF t-statistic of y on x (with constant) over the whole arrays; see the module doc."""
    y, x = _series(y), _series(x)
    if y.shape != x.shape:
        raise ValueError("y and x must have the same length")
    return _eg_window(y, x, 0, y.shape[0], int(lag), np.empty(y.shape[0]))[0]


def rolling_engle_granger(y: np.ndarray, x: np.ndarray, window: int, lag: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(ADF t-stat, OLS slope) of the Engle-Granger test on each window of ``window`` rows ending at t.

    NaN for t < window - 1. ``y`` and ``x`` are the series themselves (e.g. log prices), no gaps.
    """
    y, x = _series(y), _series(x)
    if y.shape != x.shape:
        raise ValueError("y and x must have the same length")
    return _rolling_eg(y, x, int(window), int(lag))


def kalman_hedge(
    y: np.ndarray, x: np.ndarray, delta: float, obs_var: float, p0: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Kalman filter of y_t = beta_t x_t + alpha_t + e_t with a random-walk [beta, alpha].

    Returns (beta, alpha, error, error_sd): the posterior state after row t, and the one-step-ahead
    prediction error y_t - (beta_{t|t-1} x_t + alpha_{t|t-1}) with its predicted standard deviation.
    Transition covariance delta / (1 - delta) I, Var(e) = obs_var, prior [0, 0] with covariance p0 I.
    """
    y, x = _series(y), _series(x)
    if y.shape != x.shape:
        raise ValueError("y and x must have the same length")
    out = _kalman(y, x, delta / (1.0 - delta), float(obs_var), float(p0))
    return out[0], out[1], out[2], out[3]


class StatArbParams(StrategyParams):
    pairs: tuple[tuple[str, str], ...] = Field(
        (("MSFT", "IBM"), ("AAPL", "GOOG")),
        min_length=1,
        description="pairs [a, b]: spread = log a - beta log b; pairs with a symbol not in the panel are skipped",
    )
    coint_window: int = Field(250, ge=30, description="rows of the rolling Engle-Granger window; also the warm-up")
    adf_lag: int = Field(1, ge=0, le=4, description="lagged differences in the ADF regression (fixed, no autolag)")
    kalman_delta: float = Field(1e-6, ge=0.0, lt=1.0, description="transition covariance delta/(1-delta) I")
    kalman_obs_var: float = Field(3e-4, gt=0.0, description="observation noise variance (log price units)")
    kalman_p0: float = Field(1.0, gt=0.0, description="prior variance of beta and alpha (prior mean 0)")
    entry_z: float = Field(1.5, gt=0.0, description="|z| above which a flat pair opens a position")
    exit_z: float = Field(0.5, ge=0.0, description="a position closes once z is back within exit_z of 0 (or through)")
    full_z: float = Field(3.0, gt=0.0, description="|z| at which strength reaches 1")
    conf_scale: float = Field(1.0, gt=0.0, description="confidence = tanh((crit - adf_t) / conf_scale)")

    @field_validator("pairs")
    @classmethod
    def _check_pairs(cls, pairs: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        seen: set[frozenset[str]] = set()
        for a, b in pairs:
            if a == b:
                raise ValueError(f"pair ({a!r}, {b!r}) has the same symbol twice")
            key = frozenset((a, b))
            if key in seen:
                raise ValueError(f"pair ({a!r}, {b!r}) is listed twice")
            seen.add(key)
        return pairs

    @model_validator(mode="after")
    def _check_order(self) -> StatArbParams:
        if self.exit_z >= self.entry_z:
            raise ValueError(f"exit_z ({self.exit_z}) must be < entry_z ({self.entry_z})")
        if self.entry_z >= self.full_z:
            raise ValueError(f"entry_z ({self.entry_z}) must be < full_z ({self.full_z})")
        if self.coint_window - 1 - self.adf_lag <= 2 * (self.adf_lag + 1):
            raise ValueError(f"coint_window ({self.coint_window}) is too short for adf_lag ({self.adf_lag})")
        return self


def pair_signals(close_a: np.ndarray, close_b: np.ndarray, params: StatArbParams) -> dict[str, np.ndarray]:
    """The pair on its common rows (no gaps): each of PAIR_FIELDS, and leg_a, leg_b, confidence, tradable."""
    p = params
    out, leg_a, leg_b, conf, tradable = _pair_kernel(
        _series(close_a),
        _series(close_b),
        p.coint_window,
        p.adf_lag,
        p.kalman_delta / (1.0 - p.kalman_delta),
        p.kalman_obs_var,
        p.kalman_p0,
        mackinnon_crit_5pct(p.coint_window),
        p.entry_z,
        p.exit_z,
        p.full_z,
        p.conf_scale,
    )
    result = {key: out[i] for i, key in enumerate(PAIR_FIELDS)}
    result.update(leg_a=leg_a, leg_b=leg_b, confidence=conf, tradable=tradable)
    return result


@register
class StatArb(Strategy):
    """Pairs trading on cointegrated pairs with a Kalman hedge ratio; see the module docstring for the rule."""

    name = "stat_arb"
    Params = StatArbParams

    @property
    def warmup(self) -> int:
        return self.params.coint_window

    def pairs_in(self, panel: Panel) -> list[tuple[int, int]]:
        """Column indices (a, b) of the configured pairs whose symbols are both in the panel, in order."""
        index = {s: j for j, s in enumerate(panel.symbols)}
        return [(index[a], index[b]) for a, b in self.params.pairs if a in index and b in index]

    def compute(self, panel: Panel) -> Advice:
        shape = panel.close.shape
        valid = panel.valid
        total = np.zeros(shape)
        conf_total = np.zeros(shape)
        count = np.zeros(shape)
        rationale: dict[str, np.ndarray] = {}
        for ja, jb in self.pairs_in(panel):
            rows = np.flatnonzero(valid[:, ja] & valid[:, jb])
            res = pair_signals(panel.close[rows, ja], panel.close[rows, jb], self.params)
            prefix = f"{panel.symbols[ja]}/{panel.symbols[jb]}:"
            for key in PAIR_FIELDS:
                arr = np.full(shape, np.nan)
                arr[rows, ja] = res[key]
                arr[rows, jb] = res[key]
                rationale[prefix + key] = arr
            on = rows[res["tradable"]]
            for j, leg in ((ja, res["leg_a"]), (jb, res["leg_b"])):
                total[on, j] += leg[res["tradable"]]
                conf_total[on, j] += res["confidence"][res["tradable"]]
                count[on, j] += 1.0
        traded = count > 0
        strength = np.zeros(shape)
        confidence = np.zeros(shape)
        strength[traded] = total[traded] / count[traded]
        confidence[traded] = conf_total[traded] / count[traded]
        warm = valid & (np.cumsum(valid, axis=0) >= self.warmup)
        strength[~warm] = np.nan
        confidence[~warm] = 0.0
        return Advice(strength, confidence, rationale)
