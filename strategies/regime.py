"""Market regime per instrument: a walk-forward Gaussian HMM on returns and rolling volatility, filtered causally.

Per instrument, on its own valid bars (each instrument has its own regime, so a late listing or a gap in one
instrument never touches another's, and the agent abstains per instrument exactly during its warm-up), the
observation at row t is x_t = (e_t, v_t): e_t = 100 ln(C_t / C_{t-1}) (percent) and v_t = the population std
of the last vol_window values of e (percent per session). Percent units keep the covariance prior (1e-2)
and ``min_covar`` (1e-3) negligible against the data.

The model is a Gaussian HMM with ``n_states`` (2 or 3) states and full (or diagonal) covariances, fitted by
EM on the walk-forward window (strategies/walk_forward.py). The EM is ``hmmlearn.hmm.GaussianHMM``'s, with
its default priors (a 1e-2 covariance prior, flat Dirichlet priors) and stopping rule, run in one numba
function (``_em``) instead of hmmlearn's Python loop: tests/strategies/test_regime.py checks the
parameters against hmmlearn's fit from the same start to 1e-8. The start is deterministic (nothing is
drawn): the window's rows sorted by v are cut into n_states equal groups whose means and covariances start
the states, startprob is uniform and transmat has 0.9 on its diagonal. The fitted states are then ordered by
the variance of e in each state: state 0 (lowest) is calm, the last (highest) turbulent, the middle one,
with 3 states, neutral.

Between refits the fitted model is applied causally: the forward recursion (``_forward``, numba) runs from
the first row of the fit's window with the fitted startprob, and the filtered probability
P(state at t | x_{r-W} .. x_t) is published at row t. This is what hmmlearn's ``predict_proba`` returns at
the LAST row of the same rows (the smoothed and filtered probabilities coincide there); nothing after t is
used (no Viterbi path, no smoothing). Cost per row: O(n_states^2), each fit's path covering its window and
the rows it serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numba import njit
from pydantic import Field

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register
from strategies.walk_forward import FitMemo, WalkForward, log_returns

__all__ = [
    "HmmFit",
    "Regime",
    "RegimeParams",
    "RegimeProbabilities",
    "fit_hmm",
    "forward_filter",
    "regime_features",
    "regime_probabilities",
]

ANNUAL = 252
_SQRT_ANNUAL = math.sqrt(ANNUAL)
_LOG_2PI = math.log(2.0 * math.pi)
_COVARS_PRIOR = 1e-2  # hmmlearn GaussianHMM defaults
_MIN_COVAR = 1e-3


class HmmFit(NamedTuple):
    """A fitted HMM with its states ordered by the variance of returns, calm first."""

    startprob: np.ndarray  # (K,)
    transmat: np.ndarray  # (K, K)
    means: np.ndarray  # (K, d)
    covars: np.ndarray  # (K, d, d), full matrices whatever the covariance type
    converged: bool  # EM stopped because the log-likelihood gained less than tol (not because n_iter ran out)


def regime_features(close: np.ndarray, vol_window: int) -> np.ndarray:
    """(n, 2): percent log returns e_t and the population std of the last vol_window of them.

    Row 0 is NaN, and the second column until row vol_window.
    """
    e = log_returns(close) * 100.0
    return np.column_stack([e, ind.stddev(e, vol_window)])


def _initial(x: np.ndarray, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and full covariances of the window's rows cut into n_states groups by the volatility feature."""
    order = np.argsort(x[:, -1], kind="stable")
    groups = np.array_split(order, n_states)
    d = x.shape[1]
    means = np.array([x[g].mean(axis=0) for g in groups])
    covars = np.array([np.cov(x[g].T).reshape(d, d) + 1e-6 * np.eye(d) for g in groups])
    return means, covars


def fit_hmm(
    x: np.ndarray,
    n_states: int = 2,
    covariance_type: str = "full",
    n_iter: int = 100,
    tol: float = 1e-2,
) -> HmmFit | None:
    """Fit a Gaussian HMM to the rows of x by EM from the deterministic start above; None if the fit fails
    (too few rows, non-finite data, or a covariance that stops being positive definite)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4 * n_states or not np.isfinite(x).all():
        return None
    means, covars = _initial(x, n_states)
    if covariance_type == "diag":
        covars = covars * np.eye(x.shape[1])
    off = 0.1 / (n_states - 1)
    startprob = np.full(n_states, 1.0 / n_states)
    transmat = np.full((n_states, n_states), off) + (0.9 - off) * np.eye(n_states)
    ok, converged = _em(x, startprob, transmat, means, covars, covariance_type == "diag", n_iter, tol)
    if not ok:
        return None
    perm = np.argsort(covars[:, 0, 0], kind="stable")
    fit = HmmFit(
        np.ascontiguousarray(startprob[perm]),
        np.ascontiguousarray(transmat[np.ix_(perm, perm)]),
        np.ascontiguousarray(means[perm]),
        np.ascontiguousarray(covars[perm]),
        bool(converged),
    )
    if not all(np.isfinite(a).all() for a in fit[:4]):
        return None
    return fit


@njit(cache=True)
def _log_emissions(x: np.ndarray, means: np.ndarray, covars: np.ndarray, out: np.ndarray) -> bool:
    """out[t, k] = log N(x_t; means_k, covars_k); a covariance that is not positive definite is retried with
    min_covar added to its diagonal, as hmmlearn does. False if that fails too."""
    n_states, d = means.shape
    z = np.empty(d)
    for k in range(n_states):
        chol = _cholesky(covars[k])
        if np.isnan(chol).any():
            chol = _cholesky(covars[k] + _MIN_COVAR * np.eye(d))
            if np.isnan(chol).any():
                return False
        logdet = 0.0
        for i in range(d):
            logdet += math.log(chol[i, i])
        logdet *= 2.0
        for t in range(x.shape[0]):
            q = 0.0
            for a in range(d):
                v = x[t, a] - means[k, a]
                for b in range(a):
                    v -= chol[a, b] * z[b]
                z[a] = v / chol[a, a]
                q += z[a] * z[a]
            out[t, k] = -0.5 * (q + d * _LOG_2PI + logdet)
    return True


@njit(cache=True)
def _em(
    x: np.ndarray,
    startprob: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    covars: np.ndarray,
    diag: bool,
    n_iter: int,
    tol: float,
) -> tuple[bool, bool]:
    """hmmlearn's Baum-Welch for a GaussianHMM (params "stmc", default priors), in place on the parameters.

    Each iteration: the E-step under the current parameters (scaled forward-backward, which gives hmmlearn's
    log-space posteriors to rounding) yields the log-likelihood L_i; the M-step updates the parameters; EM
    stops after n_iter iterations or once L_i - L_{i-1} < tol. Returns (ok, converged): ok is False if an
    emission covariance stops being positive definite; converged is True if the tol rule stopped it.
    """
    n, d = x.shape
    K = startprob.shape[0]
    logb = np.empty((n, K))
    b = np.empty((n, K))
    fwd = np.empty((n, K))
    bwd = np.empty((n, K))
    scale = np.empty(n)
    first = np.empty(K)
    post = np.empty(K)
    obs = np.empty((K, d))
    obs2 = np.empty((K, d, d))
    xi = np.empty((K, K))
    previous = -math.inf
    for iteration in range(n_iter):
        if not _log_emissions(x, means, covars, logb):
            return False, False
        loglik = 0.0
        for t in range(n):
            top = logb[t, 0]
            for k in range(1, K):
                top = max(top, logb[t, k])
            total = 0.0
            for k in range(K):
                b[t, k] = math.exp(logb[t, k] - top)
                if t == 0:
                    pred = startprob[k]
                else:
                    pred = 0.0
                    for h in range(K):
                        pred += fwd[t - 1, h] * transmat[h, k]
                fwd[t, k] = pred * b[t, k]
                total += fwd[t, k]
            if not total > 0.0:
                return False, False
            scale[t] = total
            for k in range(K):
                fwd[t, k] /= total
            loglik += math.log(total) + top
        for k in range(K):
            bwd[n - 1, k] = 1.0
        for t in range(n - 2, -1, -1):
            for h in range(K):
                acc = 0.0
                for k in range(K):
                    acc += transmat[h, k] * b[t + 1, k] * bwd[t + 1, k]
                bwd[t, h] = acc / scale[t + 1]
        post[:] = 0.0
        obs[:] = 0.0
        obs2[:] = 0.0
        xi[:] = 0.0
        for t in range(n):
            for k in range(K):
                g = fwd[t, k] * bwd[t, k]
                if t == 0:
                    first[k] = g  # the posterior of the first row: the start statistics
                post[k] += g
                for a in range(d):
                    obs[k, a] += g * x[t, a]
                    for c in range(d):
                        obs2[k, a, c] += g * x[t, a] * x[t, c]
            if t + 1 < n:
                for h in range(K):
                    for k in range(K):
                        xi[h, k] += fwd[t, h] * transmat[h, k] * b[t + 1, k] * bwd[t + 1, k] / scale[t + 1]
        # M-step, hmmlearn's order: startprob, transmat, means, then covariances around the new means
        total = 0.0
        for k in range(K):
            startprob[k] = first[k] if startprob[k] != 0.0 else 0.0
            total += startprob[k]
        for k in range(K):
            startprob[k] /= total if total != 0.0 else 1.0
        for h in range(K):
            total = 0.0
            for k in range(K):
                transmat[h, k] = xi[h, k] if transmat[h, k] != 0.0 else 0.0
                total += transmat[h, k]
            for k in range(K):
                transmat[h, k] /= total if total != 0.0 else 1.0
        for k in range(K):
            for a in range(d):
                means[k, a] = obs[k, a] / post[k]
            for a in range(d):
                for c in range(d):
                    if diag:
                        if a == c:
                            cn = obs2[k, a, a] - 2.0 * means[k, a] * obs[k, a] + means[k, a] ** 2 * post[k]
                            covars[k, a, a] = (_COVARS_PRIOR + cn) / max(post[k], 1e-5)
                        else:
                            covars[k, a, c] = 0.0
                    else:
                        cn = obs2[k, a, c] - obs[k, a] * means[k, c] - means[k, a] * obs[k, c]
                        cn += means[k, a] * means[k, c] * post[k]
                        covars[k, a, c] = (_COVARS_PRIOR + cn) / post[k]
        if iteration > 0 and loglik - previous < tol:
            return True, True
        previous = loglik
    return True, False


@njit(cache=True)
def _cholesky(a: np.ndarray) -> np.ndarray:
    d = a.shape[0]
    out = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= out[i, k] * out[j, k]
            if i == j:
                out[i, i] = math.sqrt(s) if s > 0.0 else math.nan
            else:
                out[i, j] = s / out[j, j]
    return out


@njit(cache=True)
def _forward(
    x: np.ndarray,
    start: int,
    stop: int,
    startprob: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    covars: np.ndarray,
    out: np.ndarray,
) -> None:
    """Filtered state probabilities of rows start .. stop-1 of x into out[0 .. stop-start-1] (scaled forward)."""
    n_states, d = means.shape
    chol = np.empty((n_states, d, d))
    logdet = np.empty(n_states)
    for k in range(n_states):
        chol[k] = _cholesky(covars[k])
        s = 0.0
        for i in range(d):
            s += math.log(chol[k, i, i])
        logdet[k] = 2.0 * s
    logb = np.empty(n_states)
    z = np.empty(d)
    prev = np.empty(n_states)
    cur = np.empty(n_states)
    for i in range(stop - start):
        t = start + i
        top = -math.inf
        for k in range(n_states):
            # forward substitution: z = L^-1 (x_t - mu_k); log N = -(d log 2pi + |z|^2 + log det) / 2
            q = 0.0
            for a in range(d):
                v = x[t, a] - means[k, a]
                for b in range(a):
                    v -= chol[k, a, b] * z[b]
                z[a] = v / chol[k, a, a]
                q += z[a] * z[a]
            logb[k] = -0.5 * (d * _LOG_2PI + q + logdet[k])
            if logb[k] > top:
                top = logb[k]
        total = 0.0
        for k in range(n_states):
            if i == 0:
                pred = startprob[k]
            else:
                pred = 0.0
                for h in range(n_states):
                    pred += prev[h] * transmat[h, k]
            cur[k] = pred * math.exp(logb[k] - top)
            total += cur[k]
        for k in range(n_states):
            prev[k] = cur[k] / total if total > 0.0 else 1.0 / n_states
            out[i, k] = prev[k]


def forward_filter(x: np.ndarray, fit: HmmFit) -> np.ndarray:
    """(n, K): P(state at t | x_0 .. x_t) under ``fit``, the forward recursion from ``fit.startprob`` at row 0."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    out = np.empty((x.shape[0], fit.startprob.shape[0]))
    _forward(x, 0, x.shape[0], fit.startprob, fit.transmat, fit.means, fit.covars, out)
    return out


@njit(cache=True)
def _filtered(
    x: np.ndarray,
    rows: np.ndarray,
    startprob: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    covars: np.ndarray,
    usable: np.ndarray,
    train_window: int,
    refit_every: int,
) -> np.ndarray:
    """(n, K) filtered probabilities at each row from the fit in force there (NaN where none)."""
    n = x.shape[0]
    n_states = startprob.shape[1]
    out = np.full((n, n_states), np.nan)
    path = np.empty((train_window + refit_every, n_states))
    nk = rows.shape[0]
    for k in range(nk):
        if not usable[k]:
            continue
        r = rows[k]
        stop = rows[k + 1] if k + 1 < nk else n
        start = r - train_window
        _forward(x, start, stop, startprob[k], transmat[k], means[k], covars[k], path)
        for t in range(r, stop):
            out[t] = path[t - start]
    return out


class RegimeParams(StrategyParams):
    n_states: Literal[2, 3] = Field(2, description="HMM states: calm/turbulent, or calm/neutral/turbulent")
    covariance_type: Literal["full", "diag"] = Field("full", description="HMM emission covariances")
    train_window: int = Field(504, ge=50, description="observations in each HMM fit (sessions)")
    refit_every: int = Field(21, ge=1, description="sessions between refits")
    vol_window: int = Field(21, ge=2, description="returns in the rolling-volatility feature")
    n_iter: int = Field(100, ge=1, description="maximum EM iterations per fit")
    tol: float = Field(1e-2, gt=0.0, description="EM stops when the log-likelihood gains less than this")


@dataclass(frozen=True)
class RegimeProbabilities:
    """Filtered regime probabilities per row and instrument, states ordered calm -> turbulent.

    prob[t, j, k] = P(instrument j is in state k at t | its observations up to t), NaN where the agent
    abstains; state_vol[t, j, k] = annualised volatility of returns in state k of the fit in force.
    """

    symbols: tuple[str, ...]
    prob: np.ndarray  # (T, m, K)
    state_vol: np.ndarray  # (T, m, K)

    @property
    def p_calm(self) -> np.ndarray:
        return self.prob[:, :, 0]

    @property
    def p_turbulent(self) -> np.ndarray:
        return self.prob[:, :, -1]

    def market(self) -> np.ndarray:
        """(T, K): the mean over the instruments that have a probability at t (NaN where none has)."""
        has = ~np.isnan(self.prob[:, :, 0])
        total = np.where(has[:, :, None], self.prob, 0.0).sum(axis=1)
        count = has.sum(axis=1)
        out = np.full(total.shape, np.nan)
        out[count > 0] = total[count > 0] / count[count > 0, None]
        return out


@register
class Regime(Strategy):
    """Risk-on / risk-off from each instrument's volatility regime (module docstring: the HMM and its filter).

    At the close of row t, with p = the filtered state probabilities from the fit in force:
      strength   = p_calm - p_turbulent (risk-on positive; a neutral third state counts for neither);
      confidence = max_k p_k, how sure the filter is of the current state;
      rationale  p_calm, p_turbulent (and p_neutral with 3 states); vol_calm, vol_turbulent (vol_neutral):
                 sqrt(variance of e in that state) / 100 * sqrt(252), the annualised volatility of returns
                 in each state of the fit in force; converged: the EM converged (1/0).
    Abstains (NaN strength, confidence 0) before the first refit and where a fit failed: warmup =
    vol_window + train_window + 1 bars (the first observation is at row vol_window).
    """

    name = "regime"
    Params = RegimeParams

    def __init__(self, params: StrategyParams | dict | None = None):
        super().__init__(params)
        self.walk_forward = WalkForward(self.params.train_window, self.params.refit_every)
        self.memo = FitMemo()

    @property
    def warmup(self) -> int:
        return self.walk_forward.first_refit(self.params.vol_window) + 1

    def _fit(self, x: np.ndarray) -> HmmFit | None:
        p = self.params
        return fit_hmm(x, p.n_states, p.covariance_type, p.n_iter, p.tol)

    def probabilities(self, panel: Panel) -> tuple[RegimeProbabilities, np.ndarray]:
        """(the filtered probabilities, (T, m) converged flag of the fit in force; NaN where none)."""
        p = self.params
        T, m = panel.close.shape
        K = p.n_states
        prob = np.full((T, m, K), np.nan)
        state_vol = np.full((T, m, K), np.nan)
        converged = np.full((T, m), np.nan)
        for j, symbol in enumerate(panel.symbols):
            rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
            if rows.size == 0:
                continue
            x = regime_features(panel.close[rows, j], p.vol_window)
            refits, fits = self.walk_forward.fits(
                x, first_valid=p.vol_window, column=symbol, fit=self._fit, memo=self.memo
            )
            nk = len(fits)
            usable = np.array([f is not None for f in fits], dtype=np.bool_)
            d = x.shape[1]
            startprob = np.full((nk, K), 1.0 / K)
            transmat = np.tile(np.eye(K), (nk, 1, 1))
            means = np.zeros((nk, K, d))
            covars = np.tile(np.eye(d), (nk, K, 1, 1))
            vols = np.full((nk, K), np.nan)
            conv = np.zeros(nk)
            for k, f in enumerate(fits):
                if f is None:
                    continue
                startprob[k], transmat[k], means[k], covars[k] = f.startprob, f.transmat, f.means, f.covars
                vols[k] = np.sqrt(f.covars[:, 0, 0]) / 100.0 * _SQRT_ANNUAL
                conv[k] = float(f.converged)
            filtered = _filtered(x, refits, startprob, transmat, means, covars, usable, p.train_window, p.refit_every)
            prob[rows, j] = filtered
            idx = self.walk_forward.fit_index(rows.size, p.vol_window)
            on = np.flatnonzero(idx >= 0)
            live = on[usable[idx[on]]]
            state_vol[rows[live], j] = vols[idx[live]]
            converged[rows[live], j] = conv[idx[live]]
        return RegimeProbabilities(tuple(panel.symbols), prob, state_vol), converged

    def compute(self, panel: Panel) -> Advice:
        probs, converged = self.probabilities(panel)
        p_calm, p_turbulent = probs.p_calm, probs.p_turbulent
        strength = p_calm - p_turbulent
        confidence = np.max(probs.prob, axis=2)
        confidence[np.isnan(strength)] = 0.0
        rationale = {"p_calm": p_calm.copy(), "p_turbulent": p_turbulent.copy()}
        vols = {"vol_calm": probs.state_vol[:, :, 0].copy(), "vol_turbulent": probs.state_vol[:, :, -1].copy()}
        if self.params.n_states == 3:
            rationale["p_neutral"] = probs.prob[:, :, 1].copy()
            vols["vol_neutral"] = probs.state_vol[:, :, 1].copy()
        return Advice(strength, confidence, {**rationale, **vols, "converged": converged})


def regime_probabilities(
    panel: Panel, params: RegimeParams | dict | None = None, *, regime: Regime | None = None
) -> RegimeProbabilities:
    """The filtered regime probabilities of every instrument of ``panel`` (for the CIO).

    Pass ``regime`` (a Regime instance kept between calls) to reuse its memoised fits; otherwise a new
    one is built from ``params`` (defaults if None). ``.market()`` averages the instruments.
    """
    if regime is None:
        regime = Regime(params)
    elif params is not None:
        raise ValueError("pass params or regime, not both")
    return regime.probabilities(panel)[0]
