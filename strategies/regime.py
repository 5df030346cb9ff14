"""Market regime per instrument: a walk-forward Gaussian HMM on returns and rolling volatility, filtered causally.

Per instrument, on its own valid bars (each instrument has its own regime, so a late listing or a gap in one
instrument never touches another's, and the agent abstains per instrument exactly during its warm-up), the
observation at row t is x_t = (e_t, v_t): e_t = 100 ln(C_t / C_{t-1}) (percent) and v_t = the population std
of the last vol_window values of e (percent per session). Percent units keep hmmlearn's ``min_covar``
(1e-3) negligible against the data.

The model is ``hmmlearn.hmm.GaussianHMM`` with ``n_states`` (2 or 3) states and full (or diagonal)
covariances, fitted by EM on the walk-forward window (strategies/walk_forward.py). The EM start is
deterministic and does not depend on any random draw (``init_params=""``; ``random_state`` is still fixed):
the window's rows sorted by v are cut into n_states equal groups whose means and covariances start the
states, startprob is uniform and transmat has 0.9 on its diagonal. The fitted states are then ordered by
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

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from hmmlearn.hmm import GaussianHMM
from numba import njit
from pydantic import Field

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register
from strategies.walk_forward import FitMemo, WalkForward, log_returns, single_threaded_blas

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
_HMM_LOG = logging.getLogger("hmmlearn.base")


class _NoEMNoise(logging.Filter):
    """Drops hmmlearn's "Model is not converging" warning, logged for any decrease of the log-likelihood
    beyond 1.5e-8, i.e. for rounding noise at an EM fixed point; the fit's ``converged`` flag is kept."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Model is not converging")


_EM_NOISE = _NoEMNoise()


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
    random_state: int = 0,
) -> HmmFit | None:
    """Fit a GaussianHMM to the rows of x from the deterministic start above; None if the fit fails."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4 * n_states or not np.isfinite(x).all():
        return None
    means, covars = _initial(x, n_states)
    model = GaussianHMM(
        n_components=n_states,
        covariance_type=covariance_type,
        n_iter=n_iter,
        tol=tol,
        random_state=random_state,
        params="stmc",
        init_params="",
    )
    model.startprob_ = np.full(n_states, 1.0 / n_states)
    off = 0.1 / (n_states - 1)
    model.transmat_ = np.full((n_states, n_states), off) + (0.9 - off) * np.eye(n_states)
    model.means_ = means
    model.covars_ = covars if covariance_type == "full" else np.array([np.diag(c) for c in covars])
    _HMM_LOG.addFilter(_EM_NOISE)
    try:
        with warnings.catch_warnings(), single_threaded_blas():
            warnings.simplefilter("ignore")
            model.fit(x)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    finally:
        _HMM_LOG.removeFilter(_EM_NOISE)
    history = model.monitor_.history  # hmmlearn's own ``converged`` is also True when n_iter runs out
    converged = len(history) >= 2 and history[-1] - history[-2] < tol
    full = np.asarray(model.covars_, dtype=np.float64)  # hmmlearn returns full matrices for every type
    perm = np.argsort(full[:, 0, 0], kind="stable")
    fit = HmmFit(
        np.ascontiguousarray(model.startprob_[perm]),
        np.ascontiguousarray(model.transmat_[np.ix_(perm, perm)]),
        np.ascontiguousarray(model.means_[perm]),
        np.ascontiguousarray(full[perm]),
        bool(converged),
    )
    if not all(np.isfinite(a).all() for a in fit[:4]):
        return None
    return fit


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
    random_state: int = Field(0, ge=0, description="hmmlearn's seed (the EM start itself draws nothing)")


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
                 in each state of the fit in force; converged: hmmlearn's EM converged (1/0).
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
        return fit_hmm(x, p.n_states, p.covariance_type, p.n_iter, p.tol, p.random_state)

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
