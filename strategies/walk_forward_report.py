"""Walk-forward validation: each fitted model scored in sample and out of sample, window by window.

Not a strategy (strategies/registry.py skips it). For every agent that fits parameters, on each instrument's
(or pair's) own valid rows, the rows are cut into rolling windows k = 0, 1, ... with the rule of
strategies/walk_forward.py: window k trains on the ``train`` rows ``r_k - W .. r_k - 1`` and is tested on the
rows ``r_k .. r_{k+1} - 1`` that follow (to the last row for the last window), r_k = first_valid + W + k * step.
Test rows are strictly after the training rows; consecutive test blocks do not overlap. The model fitted on
the training rows is frozen and scored on both: the in-sample (IS) score on its training rows, the
out-of-sample (OOS) score on the test rows, with the same parameters.

Agents and what is fitted (W and step are the agent's own where it has a walk-forward rule):

  * ``options_vol``: GARCH(1,1) on percent log returns (``fit_garch``), W = train_window, step = refit_every:
    exactly the fits the agent makes, and the test rows are the rows each fit serves in the agent.
    ``ll``: mean Gaussian log-likelihood per return, log N(e_t; 0, sigma2_t), sigma2_t from the fitted recursion
    (``garch_variance``) run from the window's first row (in the window this is arch's own likelihood, divided
    by W); ``qlike``: mean of e_t^2/sigma2_t - ln(e_t^2/sigma2_t) - 1 (Patton's QLIKE of the variance forecast
    against the squared return; 0 for a perfect forecast; rows with e_t = 0 are left out).
  * ``regime``: Gaussian HMM on (return, rolling volatility) (``fit_hmm``), W = train_window, step =
    refit_every, the agent's fits. ``ll``: forward-algorithm log-likelihood per observation; on the test rows
    log p(x_test | x_train) / n_test (the filter continued from the window, as the agent runs it).
  * ``mean_reversion``: the Ornstein-Uhlenbeck / AR(1) regression behind its half-life gate,
    dx_s = a + b x_{s-1} + u_s on close levels, W = ou_n (the agent's window), step = ``test_window``.
    ``ll``: Gaussian log-likelihood per pair with the MLE variance SSR/W of the training residuals.
  * ``stat_arb`` (each configured pair, W = coint_window) and ``index_spread`` (W = hedge_window), step =
    ``test_window``: the OLS hedge ratio of log a on log b with a constant (stat_arb's Engle-Granger slope,
    index_spread's rolling beta). ``resid_sd``: root mean square of the hedged spread
    log a - alpha - beta log b on the rows (about 0, not about the rows' mean: a drifting spread is the
    hedge failing).

Signal-level check (``ic``, ``hit``), for each agent: the strength the frozen fit gives at row t against the
instrument's log return from t to t+1 (rank correlation, Spearman with average ranks for ties; hit rate = share
of rows with nonzero strength and return where their signs agree). IS rows are the training rows t whose
return t -> t+1 is itself a training row, as many as there are test rows and just before them; OOS rows
the test rows. (A rank correlation over a few rows of a persistent signal is biased because it is centred
on its own rows, by an amount that depends on the number of rows: IS and OOS are compared on as many rows.)
``ic_pooled``, ``hit_pooled``: the same over all windows' IS rows together and all OOS rows together (the OOS
rows are then the agent's whole out-of-sample track). The strength of the frozen fit:
  * options_vol, regime: the agent's own rule on the fit's recursion / forward filter run from the window's
    first row; on the test rows this is exactly what the agent publishes;
  * mean_reversion: the agent's Bollinger/RSI strength gated by the half-life of the window's fit (the agent
    gates each row with the half-life of the window ending there);
  * stat_arb, index_spread: -z of the frozen hedged spread (spread / IS resid_sd; both agents fade it),
    against the spread's change t -> t+1 (the log return of long a, short beta b).

Summaries per agent, instrument and metric over the windows where IS and OOS are both defined: mean IS, mean
OOS, degradation = mean OOS - mean IS, and the share of windows whose OOS is worse than its IS (lower for
``ll``, ``ic``, ``hit``; higher for ``qlike``, ``resid_sd``).
"""

from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
from numba import njit

from strategies.base import Panel, StrategyParams
from strategies.walk_forward import FitMemo, WalkForward, log_returns

__all__ = [
    "AGENTS",
    "METRICS",
    "Report",
    "Validation",
    "WindowScore",
    "hit_rate",
    "hmm_loglik_rows",
    "spearman",
    "validate",
    "windows",
]

_LOG_2PI = math.log(2.0 * math.pi)
_SQRT_ANNUAL = math.sqrt(252.0)

# metric -> (higher is better, description)
METRICS: dict[str, tuple[bool, str]] = {
    "ll": (True, "mean Gaussian log-likelihood per observation"),
    "qlike": (False, "QLIKE of the variance forecast against the squared return (0 = perfect)"),
    "resid_sd": (False, "root mean square of the hedged spread (log units)"),
    "ic": (True, "Spearman rank correlation of strength at t with the return t -> t+1"),
    "hit": (True, "share of rows where sign(strength) = sign(return t -> t+1)"),
    "ic_pooled": (True, "ic over all windows' IS rows together vs all OOS rows together"),
    "hit_pooled": (True, "hit over all windows' IS rows together vs all OOS rows together"),
}

AGENTS: tuple[str, ...] = ("options_vol", "regime", "mean_reversion", "stat_arb", "index_spread")
DEFAULT_TEST_WINDOW = 21


# --- statistics ------------------------------------------------------------------------------------------------


def _ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the mean of their ranks (scipy.stats.rankdata's "average")."""
    n = x.shape[0]
    order = np.argsort(x, kind="stable")
    s = x[order]
    first = np.empty(n, dtype=bool)
    first[:1] = True
    first[1:] = s[1:] != s[:-1]
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], n)
    average = (starts + ends - 1) / 2.0 + 1.0
    out = np.empty(n)
    out[order] = average[np.cumsum(first) - 1]
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation over the rows where both are finite; NaN with < 3 rows or a constant side."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return math.nan
    ra, rb = _ranks(a[ok]), _ranks(b[ok])
    da, db = ra - ra.mean(), rb - rb.mean()
    den = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
    return float(np.dot(da, db)) / den if den > 0.0 else math.nan


def hit_rate(strength: np.ndarray, ret: np.ndarray) -> float:
    """Share of rows with finite, nonzero strength and return where their signs agree; NaN if there is none."""
    s, r = np.asarray(strength, dtype=np.float64), np.asarray(ret, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(r) & (s != 0.0) & (r != 0.0)
    if not ok.any():
        return math.nan
    return float(np.mean(np.sign(s[ok]) == np.sign(r[ok])))


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if x.size else math.nan


def _gauss_ll(e: np.ndarray, var: np.ndarray | float) -> np.ndarray:
    return -0.5 * (_LOG_2PI + np.log(var) + e * e / var)


def _qlike(e: np.ndarray, var: np.ndarray) -> float:
    ratio = (e * e / var)[e != 0.0]
    return _mean(ratio - np.log(ratio) - 1.0)


def _signal_rows(r: int, stop: int, n: int, lo: int) -> tuple[slice, slice]:
    """(IS rows, OOS rows) of the signal check, as slices of arrays that start at row ``lo``.

    OOS: the test rows t in [r, stop) whose return t -> t+1 exists (t + 1 < n), m of them. IS: the last m
    training rows whose return t -> t+1 is itself a training row, t in [r - 1 - m, r - 1) (clipped at lo).
    Equal sizes matter: a rank correlation over a few rows of a persistent signal is biased (it is centred
    on its own rows), and the bias depends on the number of rows, so IS and OOS are compared on as many rows.
    """
    m = (stop - r) - (1 if stop >= n else 0)
    return slice(max(r - 1 - m, lo) - lo, r - 1 - lo), slice(r - lo, r - lo + m)


def _signal_scores(
    v: "Validation", strength: np.ndarray, ret: np.ndarray, rows: tuple[slice, slice]
) -> dict[str, tuple[float, float]]:
    """ic and hit of strength[t] against ret[t] (the return t -> t+1) on the IS and OOS rows; the rows are
    also kept on ``v`` for the pooled figures."""
    is_rows, oos_rows = rows
    v.pooled_rows[0].append((strength[is_rows], ret[is_rows]))
    v.pooled_rows[1].append((strength[oos_rows], ret[oos_rows]))
    return {
        "ic": (spearman(strength[is_rows], ret[is_rows]), spearman(strength[oos_rows], ret[oos_rows])),
        "hit": (hit_rate(strength[is_rows], ret[is_rows]), hit_rate(strength[oos_rows], ret[oos_rows])),
    }


def _next_return(log_x: np.ndarray) -> np.ndarray:
    """ret[t] = log_x[t+1] - log_x[t]; NaN at the last row."""
    out = np.full(log_x.shape[0], np.nan)
    out[:-1] = log_x[1:] - log_x[:-1]
    return out


# --- windows ---------------------------------------------------------------------------------------------------


def windows(n_rows: int, train_window: int, step: int, first_valid: int) -> list[tuple[int, int, int]]:
    """(train start, first test row r, test stop) per window: train rows [r - W, r), test rows [r, stop).

    r runs over ``WalkForward(train_window, step).refit_rows(n_rows, first_valid)``; stop is the next r, or
    n_rows for the last window.
    """
    rows = WalkForward(train_window, step).refit_rows(n_rows, first_valid)
    out = []
    for k, r in enumerate(rows):
        stop = int(rows[k + 1]) if k + 1 < len(rows) else int(n_rows)
        out.append((int(r) - train_window, int(r), stop))
    return out


@dataclass(frozen=True)
class WindowScore:
    """One window: rows on the series' own axis (train [train_start, test_start), test [test_start, test_stop)),
    their first and last dates, and per metric (in-sample, out-of-sample), NaN where undefined."""

    k: int
    train_start: int
    test_start: int
    test_stop: int
    train_dates: tuple[str, str]
    test_dates: tuple[str, str]
    scores: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class Summary:
    agent: str
    instrument: str
    metric: str
    windows: int  # windows where IS and OOS are both defined
    is_mean: float
    oos_mean: float
    degradation: float  # oos_mean - is_mean
    share_oos_worse: float


@dataclass
class Validation:
    """One agent on one instrument (or pair): the split it was validated on and every window's scores."""

    agent: str
    instrument: str
    split: dict[str, int]  # train_window, step, first_valid
    windows: list[WindowScore] = field(default_factory=list)
    # (IS, OOS): per window, the (strength, return t -> t+1) rows of the signal check
    pooled_rows: tuple[list, list] = field(default_factory=lambda: ([], []), repr=False)

    def pooled(self) -> dict[str, tuple[float, float]]:
        """ic and hit over all windows' IS rows together and all OOS rows together (the OOS rows are exactly
        the rows each frozen fit serves; the IS blocks are as many rows, just before each test block)."""
        out = {}
        for metric, fn in (("ic", spearman), ("hit", hit_rate)):
            pair = []
            for side in self.pooled_rows:
                if side:
                    pair.append(fn(np.concatenate([s for s, _ in side]), np.concatenate([r for _, r in side])))
                else:
                    pair.append(math.nan)
            out[metric] = (pair[0], pair[1])
        return out

    def summary(self) -> list[Summary]:
        out = []
        for metric, (higher, _) in METRICS.items():
            pairs = [w.scores[metric] for w in self.windows if metric in w.scores]
            if not pairs:
                continue
            arr = np.array(pairs, dtype=np.float64).reshape(-1, 2)
            arr = arr[np.isfinite(arr).all(axis=1)]
            n = arr.shape[0]
            if n == 0:
                out.append(Summary(self.agent, self.instrument, metric, 0, math.nan, math.nan, math.nan, math.nan))
                continue
            is_mean, oos_mean = float(arr[:, 0].mean()), float(arr[:, 1].mean())
            worse = arr[:, 1] < arr[:, 0] if higher else arr[:, 1] > arr[:, 0]
            out.append(Summary(self.agent, self.instrument, metric, n, is_mean, oos_mean, oos_mean - is_mean, float(worse.mean())))
        if self.pooled_rows[1]:
            for metric, (a, b) in self.pooled().items():
                n = sum(1 for w in self.windows if metric in w.scores)
                out.append(Summary(self.agent, self.instrument, f"{metric}_pooled", n, a, b, b - a, math.nan))
        return out


def _dates(ts: np.ndarray) -> np.ndarray:
    return np.asarray(ts, dtype=np.int64).astype("datetime64[ns]").astype("datetime64[D]").astype(str)


def _window_score(k: int, start: int, r: int, stop: int, dates: np.ndarray, scores: dict) -> WindowScore:
    return WindowScore(
        k, start, r, stop, (str(dates[start]), str(dates[r - 1])), (str(dates[r]), str(dates[stop - 1])), scores
    )


def _nan_scores(metrics: Iterable[str]) -> dict[str, tuple[float, float]]:
    return {m: (math.nan, math.nan) for m in metrics}


# --- options_vol: GARCH(1,1) -----------------------------------------------------------------------------------


def _options_vol_strength(forecast: np.ndarray, realised: np.ndarray, vix: np.ndarray, p: Any) -> np.ndarray:
    """The agent's rule (strategies/options_vol.py) from the one-step variance forecast (percent^2)."""
    garch_vol = np.sqrt(forecast) / 100.0 * _SQRT_ANNUAL
    out = np.full(forecast.shape[0], np.nan)
    ok = np.isfinite(garch_vol) & np.isfinite(realised) & (realised > 0.0)
    vol_term = -np.tanh(np.log(garch_vol[ok] / realised[ok]) / p.ratio_scale)
    v = vix[ok]
    has_vix = np.isfinite(v)
    vrp_term = np.tanh((np.where(has_vix, v, 0.0) / 100.0 - realised[ok]) / p.vrp_scale)
    out[ok] = np.where(has_vix, (vol_term + p.vrp_weight * vrp_term) / (1.0 + p.vrp_weight), vol_term)
    return out


def _validate_options_vol(
    symbol: str, close: np.ndarray, dates: np.ndarray, vix: np.ndarray, params: Any, memo: FitMemo
) -> Validation:
    from strategies.options_vol import fit_garch, garch_variance, realised_vol

    p = params
    W = p.train_window
    eps = log_returns(close) * 100.0
    realised = realised_vol(close, p.rv_window)
    ret = np.append(eps[1:], np.nan) / 100.0  # log return t -> t+1
    refits, fits = WalkForward(W, p.refit_every).fits(eps, first_valid=1, column=symbol, fit=fit_garch, memo=memo)
    out = Validation("options_vol", symbol, {"train_window": W, "step": p.refit_every, "first_valid": 1})
    for k, (start, r, stop) in enumerate(windows(len(eps), W, p.refit_every, 1)):
        assert r == refits[k]
        fit = fits[k]
        if fit is None:
            out.windows.append(_window_score(k, start, r, stop, dates, _nan_scores(("ll", "qlike", "ic", "hit"))))
            continue
        e = eps[start:stop]
        sigma2, forecast = garch_variance(e, fit)
        ll = _gauss_ll(e, sigma2)
        scores = {
            "ll": (_mean(ll[:W]), _mean(ll[W:])),
            "qlike": (_qlike(e[:W], sigma2[:W]), _qlike(e[W:], sigma2[W:])),
        }
        strength = _options_vol_strength(forecast, realised[start:stop], vix[start:stop], p)
        scores.update(_signal_scores(out, strength, ret[start:stop], _signal_rows(r, stop, len(eps), start)))
        out.windows.append(_window_score(k, start, r, stop, dates, scores))
    return out


# --- regime: Gaussian HMM --------------------------------------------------------------------------------------


@njit(cache=True)
def _log_normalisers(logb: np.ndarray, startprob: np.ndarray, transmat: np.ndarray) -> np.ndarray:
    """log c_t of the scaled forward recursion: sum over t of log c_t is log p(x_0 .. x_{n-1})."""
    n, n_states = logb.shape
    out = np.empty(n)
    prev = np.empty(n_states)
    cur = np.empty(n_states)
    for t in range(n):
        top = -math.inf
        for k in range(n_states):
            if logb[t, k] > top:
                top = logb[t, k]
        total = 0.0
        for k in range(n_states):
            if t == 0:
                pred = startprob[k]
            else:
                pred = 0.0
                for h in range(n_states):
                    pred += prev[h] * transmat[h, k]
            cur[k] = pred * math.exp(logb[t, k] - top)
            total += cur[k]
        out[t] = math.log(total) + top
        for k in range(n_states):
            prev[k] = cur[k] / total
    return out


def hmm_loglik_rows(x: np.ndarray, fit: Any) -> np.ndarray:
    """(n,): log p(x_t | x_0 .. x_{t-1}) under an ``HmmFit``, the forward recursion from ``fit.startprob`` at row 0.

    The sum over rows is the log-likelihood of x (hmmlearn's ``score``); a sum over rows a .. b-1 is
    log p(x_a .. x_{b-1} | x_0 .. x_{a-1}).
    """
    x = np.asarray(x, dtype=np.float64)
    n_states, d = fit.means.shape
    logb = np.empty((x.shape[0], n_states))
    for k in range(n_states):
        chol = np.linalg.cholesky(fit.covars[k])
        z = np.linalg.solve(chol, (x - fit.means[k]).T)
        logdet = 2.0 * np.log(np.diag(chol)).sum()
        logb[:, k] = -0.5 * (d * _LOG_2PI + (z * z).sum(axis=0) + logdet)
    return _log_normalisers(logb, np.ascontiguousarray(fit.startprob), np.ascontiguousarray(fit.transmat))


def _validate_regime(symbol: str, close: np.ndarray, dates: np.ndarray, params: Any, memo: FitMemo) -> Validation:
    from strategies.regime import fit_hmm, forward_filter, regime_features

    p = params
    W = p.train_window
    x = regime_features(close, p.vol_window)
    ret = np.append(x[1:, 0], np.nan) / 100.0

    # the agent's own fit: fit_hmm with every keyword of its signature that the agent's params carry
    kwargs = {k: getattr(p, k) for k in inspect.signature(fit_hmm).parameters if k != "x" and k in type(p).model_fields}

    def fit(window: np.ndarray):
        return fit_hmm(window, **kwargs)

    refits, fits = WalkForward(W, p.refit_every).fits(x, first_valid=p.vol_window, column=symbol, fit=fit, memo=memo)
    out = Validation("regime", symbol, {"train_window": W, "step": p.refit_every, "first_valid": p.vol_window})
    for k, (start, r, stop) in enumerate(windows(len(x), W, p.refit_every, p.vol_window)):
        assert r == refits[k]
        f = fits[k]
        if f is None:
            out.windows.append(_window_score(k, start, r, stop, dates, _nan_scores(("ll", "ic", "hit"))))
            continue
        path = x[start:stop]
        logc = hmm_loglik_rows(path, f)
        scores = {"ll": (_mean(logc[:W]), _mean(logc[W:]))}
        prob = forward_filter(path, f)
        strength = prob[:, 0] - prob[:, -1]
        scores.update(_signal_scores(out, strength, ret[start:stop], _signal_rows(r, stop, len(x), start)))
        out.windows.append(_window_score(k, start, r, stop, dates, scores))
    return out


# --- mean_reversion: AR(1) / Ornstein-Uhlenbeck ----------------------------------------------------------------


def ols(y: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """(intercept, slope) of y on x with a constant, from centred sums; slope 0 where x is constant."""
    mx, my = float(x.mean()), float(y.mean())
    dx = x - mx
    sxx = float(np.dot(dx, dx))
    slope = float(np.dot(dx, y - my)) / sxx if sxx > 0.0 else 0.0
    return my - slope * mx, slope


def _mean_reversion_raw(z: np.ndarray, rsi: np.ndarray, p: Any) -> np.ndarray:
    """The agent's strength before its half-life gate (strategies/mean_reversion.py); NaN where not warm."""
    boost = np.where(((z < 0) & (rsi < p.rsi_oversold)) | ((z > 0) & (rsi > p.rsi_overbought)), p.rsi_boost, 1.0)
    magnitude = np.minimum(1.0, np.abs(z) / p.full_z * boost)
    raw = np.where(np.abs(z) > p.entry_z, -np.sign(z) * magnitude, 0.0)
    raw[np.isnan(z) | np.isnan(rsi)] = np.nan
    return raw


def _validate_mean_reversion(
    symbol: str, close: np.ndarray, dates: np.ndarray, z: np.ndarray, rsi: np.ndarray, params: Any, step: int
) -> Validation:
    p = params
    W = p.ou_n
    n = close.shape[0]
    dx = np.full(n, np.nan)
    dx[1:] = close[1:] - close[:-1]
    lag = np.full(n, np.nan)
    lag[1:] = close[:-1]
    raw = _mean_reversion_raw(z, rsi, p)
    ret = _next_return(np.log(close))
    out = Validation("mean_reversion", symbol, {"train_window": W, "step": step, "first_valid": 1})
    for k, (start, r, stop) in enumerate(windows(n, W, step, 1)):
        # pairs s in [start, r): dx[s] on close[s - 1]
        a, b = ols(dx[start:r], lag[start:r])
        u_is = dx[start:r] - a - b * lag[start:r]
        u_oos = dx[r:stop] - a - b * lag[r:stop]
        var = float(np.dot(u_is, u_is)) / W
        if var > 0.0:
            scores = {"ll": (_mean(_gauss_ll(u_is, var)), _mean(_gauss_ll(u_oos, var)))}
        else:
            scores = _nan_scores(("ll",))
        half_life = -math.log(2.0) / b if b < 0.0 else math.inf
        gate = 1.0 if math.isfinite(half_life) and half_life <= p.max_half_life else 0.0
        strength = raw * gate  # NaN stays NaN (not warm)
        # training rows span the data rows start-1 .. r-1 (the first pair's lagged close is at start-1)
        lo = start - 1
        scores.update(_signal_scores(out, strength[lo:stop], ret[lo:stop], _signal_rows(r, stop, n, lo)))
        out.windows.append(_window_score(k, start, r, stop, dates, scores))
    return out


# --- stat_arb, index_spread: OLS hedge ratio -------------------------------------------------------------------


def _validate_hedge(
    agent: str, name: str, close_a: np.ndarray, close_b: np.ndarray, dates: np.ndarray, W: int, step: int
) -> Validation:
    la, lb = np.log(close_a), np.log(close_b)
    n = la.shape[0]
    out = Validation(agent, name, {"train_window": W, "step": step, "first_valid": 0})
    for k, (start, r, stop) in enumerate(windows(n, W, step, 0)):
        alpha, beta = ols(la[start:r], lb[start:r])
        resid = la[start:stop] - alpha - beta * lb[start:stop]
        sd_is = math.sqrt(float(np.dot(resid[:W], resid[:W])) / W)
        sd_oos = math.sqrt(float(np.dot(resid[W:], resid[W:])) / (stop - r))
        scores = {"resid_sd": (sd_is, sd_oos)}
        # spread change t -> t+1 with the frozen hedge; defined up to the last row of the series
        full = la[start : min(stop + 1, n)] - alpha - beta * lb[start : min(stop + 1, n)]
        move = _next_return(full)[: stop - start]
        signal = -resid / sd_is if sd_is > 0.0 else np.full(resid.shape, np.nan)
        scores.update(_signal_scores(out, signal, move, _signal_rows(r, stop, n, start)))
        out.windows.append(_window_score(k, start, r, stop, dates, scores))
    return out


# --- the report ------------------------------------------------------------------------------------------------


def _fmt(x: float) -> Any:
    """JSON value: None for NaN/inf, 10 significant digits otherwise (stable, readable)."""
    if not math.isfinite(x):
        return None
    return float(f"{x:.10g}")


@dataclass
class Report:
    validations: list[Validation]
    params: dict[str, dict[str, Any]]  # agent -> its strategy params (as validated)
    test_window: int
    data: dict[str, Any]

    def summaries(self) -> list[Summary]:
        return [s for v in self.validations for s in v.summary()]

    def to_dict(self) -> dict[str, Any]:
        agents: dict[str, Any] = {}
        for v in self.validations:
            entry = agents.setdefault(v.agent, {"params": self.params[v.agent], "instruments": {}})
            entry["instruments"][v.instrument] = {
                "split": v.split,
                "summary": {
                    s.metric: {
                        "windows": s.windows,
                        "is_mean": _fmt(s.is_mean),
                        "oos_mean": _fmt(s.oos_mean),
                        "degradation": _fmt(s.degradation),
                        "share_oos_worse": _fmt(s.share_oos_worse),
                    }
                    for s in v.summary()
                },
                "windows": [
                    {
                        "k": w.k,
                        "train": [w.train_start, w.test_start],
                        "test": [w.test_start, w.test_stop],
                        "train_dates": list(w.train_dates),
                        "test_dates": list(w.test_dates),
                        "scores": {m: [_fmt(a), _fmt(b)] for m, (a, b) in w.scores.items()},
                    }
                    for w in v.windows
                ],
            }
        return {
            "report": "walk-forward validation: in-sample vs out-of-sample, per window",
            "data": self.data,
            "test_window": self.test_window,
            "metrics": {m: {"higher_is_better": h, "description": d} for m, (h, d) in METRICS.items()},
            "agents": agents,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, allow_nan=False) + "\n"

    def table(self) -> str:
        """A fixed-width table of the summaries."""
        head = ("agent", "instrument", "windows", "metric", "IS mean", "OOS mean", "degradation", "OOS worse")
        rows = [head]
        for s in self.summaries():
            rows.append(
                (
                    s.agent,
                    s.instrument,
                    str(s.windows),
                    s.metric,
                    _num(s.is_mean),
                    _num(s.oos_mean),
                    _num(s.degradation, sign=True),
                    "-" if math.isnan(s.share_oos_worse) else f"{100 * s.share_oos_worse:.0f}%",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        left = {0, 1, 3}
        lines = []
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) if j in left else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_markdown(self) -> str:
        d = self.data
        lines = [
            "# Walk-forward validation",
            "",
            f"Data: {', '.join(d['symbols'])}, {d['start']} .. {d['end']} ({d['sessions']} sessions). "
            f"Rolling-window agents tested on blocks of {self.test_window} rows; options_vol and regime on their "
            "own refit schedule. Produced by `firm walk-forward` (strategies/walk_forward_report.py documents the "
            "windows and every metric).",
            "",
            "| metric | better | meaning |",
            "| --- | --- | --- |",
        ]
        for m, (h, desc) in METRICS.items():
            lines.append(f"| `{m}` | {'higher' if h else 'lower'} | {desc} |")
        lines += [
            "",
            "| agent | instrument | windows | metric | IS mean | OOS mean | degradation | OOS worse |",
            "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for s in self.summaries():
            worse = "-" if math.isnan(s.share_oos_worse) else f"{100 * s.share_oos_worse:.0f}%"
            lines.append(
                f"| {s.agent} | {s.instrument} | {s.windows} | {s.metric} | {_num(s.is_mean)} | {_num(s.oos_mean)} "
                f"| {_num(s.degradation, sign=True)} | {worse} |"
            )
        lines.append("")
        for agent, p in self.params.items():
            lines.append(f"- `{agent}` params: `{json.dumps(p, sort_keys=True)}`")
        return "\n".join(lines) + "\n"


def _num(x: float, sign: bool = False) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:+.4f}" if sign else f"{x:.4f}"


def _params(name: str, params: StrategyParams | dict | None) -> StrategyParams:
    from strategies import registry

    if isinstance(params, StrategyParams):
        return params
    return registry.get(name).Params.model_validate(params or {})


def validate(
    panel: Panel,
    agents: dict[str, StrategyParams | dict | None] | Iterable[str] = AGENTS,
    *,
    test_window: int = DEFAULT_TEST_WINDOW,
    symbols: Iterable[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Walk-forward validation of ``agents`` (name -> params, or names with default params) on ``panel``.

    ``test_window``: rows per test block for the rolling-window agents (mean_reversion, stat_arb,
    index_spread); options_vol and regime use their own refit_every. ``symbols``: restrict the per-instrument
    agents to these columns (pairs are validated when both legs are in the panel). ``progress`` gets one line
    per agent and instrument done.
    """
    if int(test_window) != test_window or test_window < 1:
        raise ValueError(f"test_window must be an integer >= 1, got {test_window!r}")
    if not isinstance(agents, dict):
        agents = {name: None for name in agents}
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        raise ValueError(f"no walk-forward validator for {', '.join(unknown)}; validated agents: {', '.join(AGENTS)}")
    chosen = tuple(panel.symbols) if symbols is None else tuple(symbols)
    missing = [s for s in chosen if s not in panel.symbols]
    if missing:
        raise ValueError(f"symbols not in the panel: {', '.join(missing)}")
    dates_all = _dates(panel.ts)
    vix_all = panel.reference.get("VIX")
    params = {name: _params(name, p) for name, p in agents.items()}
    validations: list[Validation] = []
    tasks: list[tuple[str, str, Callable[[], Validation]]] = []

    def rows_of(*cols: int) -> np.ndarray:
        ok = np.ones(len(panel.ts), dtype=bool)
        for c in cols:
            ok &= ~np.isnan(panel.close[:, c])
        return np.flatnonzero(ok)

    for name in AGENTS:
        if name not in params:
            continue
        p = params[name]
        if name in ("options_vol", "regime", "mean_reversion"):
            memo = FitMemo()
            advice = None
            if name == "mean_reversion":
                from strategies.mean_reversion import MeanReversion

                advice = MeanReversion(p).compute(panel)
            for symbol in chosen:
                j = panel.symbols.index(symbol)
                rows = rows_of(j)
                if rows.size == 0:
                    continue
                close = np.ascontiguousarray(panel.close[rows, j])
                dates = dates_all[rows]
                if name == "options_vol":
                    vix = np.full(rows.size, np.nan) if vix_all is None else np.asarray(vix_all, dtype=np.float64)[rows]
                    task = (lambda s=symbol, c=close, d=dates, v=vix, m=memo: _validate_options_vol(s, c, d, v, params["options_vol"], m))
                elif name == "regime":
                    task = (lambda s=symbol, c=close, d=dates, m=memo: _validate_regime(s, c, d, params["regime"], m))
                else:
                    z = advice.rationale["z"][rows, j]
                    rsi = advice.rationale["rsi"][rows, j]
                    task = (lambda s=symbol, c=close, d=dates, z=z, q=rsi: _validate_mean_reversion(s, c, d, z, q, params["mean_reversion"], test_window))
                tasks.append((name, symbol, task))
        else:
            if name == "stat_arb":
                pairs = [(a, b) for a, b in p.pairs if a in panel.symbols and b in panel.symbols]
                W = p.coint_window
            else:
                pairs = [(p.leg_a, p.leg_b)] if p.leg_a in panel.symbols and p.leg_b in panel.symbols else []
                W = p.hedge_window
            for a, b in pairs:
                ja, jb = panel.symbols.index(a), panel.symbols.index(b)
                rows = rows_of(ja, jb)
                if rows.size == 0:
                    continue
                ca = np.ascontiguousarray(panel.close[rows, ja])
                cb = np.ascontiguousarray(panel.close[rows, jb])
                pair = f"{a}/{b}"
                task = (lambda n=name, pr=pair, x=ca, y=cb, d=dates_all[rows], w=W: _validate_hedge(n, pr, x, y, d, w, test_window))
                tasks.append((name, pair, task))

    for i, (name, instrument, task) in enumerate(tasks):
        t0 = time.perf_counter()
        v = task()
        validations.append(v)
        if progress is not None:
            progress(
                f"[{i + 1}/{len(tasks)}] {name} {instrument}: {len(v.windows)} windows ({time.perf_counter() - t0:.1f} s)"
            )
    data = {
        "symbols": list(panel.symbols),
        "start": str(dates_all[0]) if len(dates_all) else None,
        "end": str(dates_all[-1]) if len(dates_all) else None,
        "sessions": len(panel.ts),
    }
    return Report(validations, {n: params[n].model_dump(mode="json") for n in AGENTS if n in params}, test_window, data)
