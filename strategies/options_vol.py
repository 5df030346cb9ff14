"""Options / volatility view: a walk-forward GARCH(1,1) forecast against realised volatility, and VIX's premium.

Per instrument, on its own valid bars, with e_t = 100 ln(C_t / C_{t-1}) (percent log returns):

  * GARCH(1,1) with a zero mean, Gaussian errors: e_t = sigma_t z_t,
    sigma2_t = omega + alpha e_{t-1}^2 + beta sigma2_{t-1}, fitted by maximum likelihood as
    ``arch_model(e, mean="Zero", vol="GARCH", p=1, q=1).fit(disp="off")`` fits it (``fit_garch``), on the walk-forward window
    (strategies/walk_forward.py). The mean is "Zero", not "Constant": a daily mean of a few basis points
    is not distinguishable from 0 in a two-year window, estimating it only adds noise to the residuals,
    and with a zero mean arch's residuals are the returns, so the recursion can be continued past the
    window without re-estimating anything.
  * Between refits the fitted recursion is applied causally (``_garch_path``, numba, no fastmath): it
    starts at the window's first row from arch's backcast, with arch's variance bounds inside the window
    (so it reproduces arch's ``conditional_volatility`` and ``forecast(horizon=1)``), and continues,
    unbounded, over the rows after the window. At row t it gives the one-step-ahead forecast of the
    variance of e_{t+1}, known at the close of t.

Every transcendental function is a scalar ``math.*`` call in a numba loop (as strategies/indicators.py):
numpy's SIMD kernels differ between CPUs.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
from arch.univariate import GARCH
from numba import njit
from pydantic import Field, model_validator
from scipy.optimize import minimize

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register
from strategies.walk_forward import FitMemo, WalkForward, log_returns

__all__ = ["GarchFit", "OptionsVol", "OptionsVolParams", "fit_garch", "garch_variance", "realised_vol"]

ANNUAL = 252  # sessions per year
_SQRT_ANNUAL = math.sqrt(ANNUAL)
_LOG_2PI = math.log(2.0 * math.pi)
_FD_STEP = math.sqrt(np.finfo(np.float64).eps)  # SLSQP's finite-difference step (its ``eps``)


class GarchFit(NamedTuple):
    """One walk-forward GARCH(1,1) fit, in percent-return units (omega in percent^2 per session)."""

    omega: float
    alpha: float
    beta: float
    backcast: float  # arch's backcast: the starting value of sigma2 and e^2 before the window
    var_bounds: np.ndarray  # (train_window, 2): arch's lower/upper bounds of sigma2 inside the window
    converged: bool  # arch's optimiser reported success (convergence_flag == 0)


_VOLATILITY = GARCH(p=1, o=0, q=1)  # arch's own process: backcast, bounds and constraints come from it
_A, _B = _VOLATILITY.constraints()
_CONSTRAINTS = [{"type": "ineq", "fun": (lambda x, a=a, b=b: a @ x - b), "jac": (lambda x, a=a: a)} for a, b in zip(_A, _B)]


def fit_garch(returns_pct: np.ndarray) -> GarchFit | None:
    """The maximum-likelihood GARCH(1,1) of ``arch_model(returns_pct, mean="Zero", vol="GARCH", p=1, q=1)``.

    arch's estimation, without its result object: arch's backcast, variance bounds, parameter bounds and
    constraints (from ``arch.univariate.GARCH``), its grid of starting values, its Gaussian likelihood
    (``_negative_loglik``, numba, arch's order of operations) and its optimiser (scipy SLSQP, the same
    finite-difference gradient, the same tolerance). Same optimum as ``arch_model(...).fit()``
    (tests/strategies/test_options_vol.py measures how close) at a tenth of the cost: arch also builds a
    covariance matrix of the estimates and a results object, which the walk-forward does not use, and lets
    scipy difference the objective and the linear constraints in Python. None if the optimiser cannot run; ``converged`` is
    SLSQP's success flag, arch's ``convergence_flag == 0``.
    """
    y = np.ascontiguousarray(returns_pct, dtype=np.float64)
    if y.ndim != 1 or y.size < 10 or not np.isfinite(y).all() or not np.ptp(y) > 0.0:
        return None
    backcast = float(_VOLATILITY.backcast(y))
    var_bounds = np.ascontiguousarray(_VOLATILITY.variance_bounds(y), dtype=np.float64)
    start = _starting_values(y, backcast, var_bounds)
    bounds = _VOLATILITY.bounds(y)
    lower = np.array([b[0] for b in bounds])
    upper = np.array([b[1] for b in bounds])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SLSQP's "Values in x were outside bounds", as arch silences it
        try:
            opt = minimize(
                _negative_loglik_and_gradient,
                start,
                args=(y, backcast, var_bounds, lower, upper),
                jac=True,
                method="SLSQP",
                bounds=bounds,
                constraints=_CONSTRAINTS,
            )
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            return None
    omega, alpha, beta = (float(v) for v in opt.x)
    if not all(map(math.isfinite, (omega, alpha, beta))) or not omega > 0.0:
        return None  # omega = 0 would forecast zero variance forever
    return GarchFit(omega, alpha, beta, backcast, var_bounds, int(opt.status) == 0)


@njit(cache=True)
def _negative_loglik(params: np.ndarray, eps: np.ndarray, backcast: float, var_bounds: np.ndarray) -> float:
    """-sum log N(eps_t; 0, sigma2_t) with arch's bounded GARCH(1,1) recursion from the backcast."""
    omega, alpha, beta = params[0], params[1], params[2]
    e2 = backcast
    s2 = backcast
    total = 0.0
    for t in range(eps.shape[0]):
        v = omega
        v += alpha * e2
        v += beta * s2
        s2 = _bounds_check(v, var_bounds[t, 0], var_bounds[t, 1])
        e = eps[t]
        e2 = e * e
        total += -0.5 * (_LOG_2PI + math.log(s2) + e2 / s2)
    return -total


@njit(cache=True)
def _negative_loglik_and_gradient(
    params: np.ndarray, eps: np.ndarray, backcast: float, var_bounds: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> tuple[float, np.ndarray]:
    """The objective and the gradient SLSQP would estimate for it: scipy's forward difference with its
    absolute step sqrt(machine eps), taken backwards where the forward step would leave the bounds
    (``scipy.optimize._numdiff.approx_derivative``, 2-point), in one compiled call instead of four."""
    f0 = _negative_loglik(params, eps, backcast, var_bounds)
    grad = np.empty(params.shape[0])
    shifted = params.copy()
    for i in range(params.shape[0]):
        h = _FD_STEP
        if params[i] + h > upper[i] or params[i] + h < lower[i]:
            h = -h
        shifted[i] = params[i] + h
        grad[i] = (_negative_loglik(shifted, eps, backcast, var_bounds) - f0) / (shifted[i] - params[i])
        shifted[i] = params[i]
    return f0, grad


@njit(cache=True)
def _starting_values(eps: np.ndarray, backcast: float, var_bounds: np.ndarray) -> np.ndarray:
    """arch's GARCH(1,1) starting values: the best of its grid alpha in (.01, .05, .1, .2) x persistence
    in (.5, .7, .9, .98), omega = (1 - persistence) * mean(eps^2) (the first best on ties, as np.argmax)."""
    target = 0.0
    for t in range(eps.shape[0]):
        target += eps[t] * eps[t]
    target /= eps.shape[0]
    best = math.inf
    candidate = np.empty(3)
    out = np.empty(3)
    for alpha in (0.01, 0.05, 0.1, 0.2):
        for persistence in (0.5, 0.7, 0.9, 0.98):
            candidate[0] = (1.0 - persistence) * target
            candidate[1] = alpha
            candidate[2] = persistence - alpha
            value = _negative_loglik(candidate, eps, backcast, var_bounds)
            if value < best:
                best = value
                out[:] = candidate
    return out


@njit(cache=True)
def _bounds_check(v: float, lower: float, upper: float) -> float:
    """arch.univariate.recursions.bounds_check."""
    if v < lower:
        return lower
    if v > upper:
        if math.isinf(v):
            return upper + 1000.0
        return upper + math.log(v / upper)
    return v


@njit(cache=True)
def _garch_path(
    eps: np.ndarray,
    start: int,
    stop: int,
    omega: float,
    alpha: float,
    beta: float,
    backcast: float,
    var_bounds: np.ndarray,
    sigma2: np.ndarray,
    forecast: np.ndarray,
) -> None:
    """Over rows start .. stop-1 of eps: sigma2[i] = variance of eps[start+i] given rows before it,
    forecast[i] = variance of eps[start+i+1] given rows <= start+i (index i relative to start).

    The recursion starts from arch's backcast (for both e^2 and sigma2 before ``start``), in arch's order
    of operations; the first len(var_bounds) values of sigma2 are bounded as arch bounds them.
    """
    bounded = var_bounds.shape[0]
    e2 = backcast
    s2 = backcast
    for i in range(stop - start):
        v = omega
        v += alpha * e2
        v += beta * s2
        if i < bounded:
            v = _bounds_check(v, var_bounds[i, 0], var_bounds[i, 1])
        s2 = v
        sigma2[i] = s2
        e = eps[start + i]
        e2 = e * e
        f = omega
        f += alpha * e2
        f += beta * s2
        forecast[i] = f


def garch_variance(
    returns_pct: np.ndarray, fit: GarchFit, bounded: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(sigma2, forecast) of a fit's recursion run over ``returns_pct`` from its first value.

    sigma2[t] is the conditional variance of returns_pct[t], forecast[t] the one-step-ahead variance of
    returns_pct[t+1]; the first ``bounded`` values (default: the fit's window length) use arch's bounds.
    On the fit's own window, sigma2 = res.conditional_volatility**2 and forecast[-1] =
    res.forecast(horizon=1).variance.
    """
    eps = np.ascontiguousarray(returns_pct, dtype=np.float64)
    vb = fit.var_bounds if bounded is None else fit.var_bounds[:bounded]
    sigma2 = np.empty(eps.shape[0])
    forecast = np.empty(eps.shape[0])
    _garch_path(eps, 0, eps.shape[0], fit.omega, fit.alpha, fit.beta, fit.backcast, vb, sigma2, forecast)
    return sigma2, forecast


def realised_vol(close: np.ndarray, n: int) -> np.ndarray:
    """Annualised realised volatility: population std of the last n log returns x sqrt(252); first at row n."""
    return ind.stddev(log_returns(close), n) * _SQRT_ANNUAL


@njit(cache=True)
def _garch_forecasts(
    eps: np.ndarray,
    rows: np.ndarray,
    omega: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    backcast: np.ndarray,
    var_bounds: np.ndarray,
    usable: np.ndarray,
    train_window: int,
    refit_every: int,
) -> np.ndarray:
    """The one-step-ahead variance forecast at each row from the fit in force there (NaN where none)."""
    n = eps.shape[0]
    out = np.full(n, np.nan)
    nk = rows.shape[0]
    span = train_window + refit_every  # rows of one fit's path: its window and the rows it serves
    sigma2 = np.empty(span)
    forecast = np.empty(span)
    for k in range(nk):
        if not usable[k]:
            continue
        r = rows[k]
        stop = rows[k + 1] if k + 1 < nk else n
        start = r - train_window
        _garch_path(
            eps, start, stop, omega[k], alpha[k], beta[k], backcast[k], var_bounds[k], sigma2, forecast
        )
        for t in range(r, stop):
            out[t] = forecast[t - start]
    return out


@njit(cache=True)
def _rule(
    garch_vol: np.ndarray,
    realised: np.ndarray,
    vix: np.ndarray,
    ratio_scale: float,
    vrp_scale: float,
    vrp_weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = garch_vol.shape[0]
    ratio = np.full(n, np.nan)
    vrp = np.full(n, np.nan)
    strength = np.full(n, np.nan)
    for t in range(n):
        g = garch_vol[t]
        rv = realised[t]
        if math.isnan(g) or math.isnan(rv) or not rv > 0.0:
            continue
        ratio[t] = g / rv
        vol_term = -math.tanh(math.log(ratio[t]) / ratio_scale)
        if math.isnan(vix[t]):
            strength[t] = vol_term
        else:
            vrp[t] = vix[t] / 100.0 - rv
            vrp_term = math.tanh(vrp[t] / vrp_scale)
            strength[t] = (vol_term + vrp_weight * vrp_term) / (1.0 + vrp_weight)
    return ratio, vrp, strength


class OptionsVolParams(StrategyParams):
    train_window: int = Field(504, ge=50, description="returns in each GARCH fit (sessions)")
    refit_every: int = Field(
        63, ge=1, description="sessions between refits (a quarter: the forecast still updates every session)"
    )
    rv_window: int = Field(21, ge=2, description="log returns in the realised volatility")
    ratio_scale: float = Field(0.5, gt=0.0, description="ln(garch_vol / realised_vol) that gives tanh(1)")
    vrp_scale: float = Field(0.05, gt=0.0, description="VIX/100 - realised_vol (annualised) that gives tanh(1)")
    vrp_weight: float = Field(0.5, ge=0.0, description="weight of the VRP term against the vol-ratio term (1)")

    @model_validator(mode="after")
    def _check_windows(self) -> OptionsVolParams:
        if self.rv_window > self.train_window:
            raise ValueError(f"rv_window ({self.rv_window}) must be <= train_window ({self.train_window})")
        return self


@register
class OptionsVol(Strategy):
    """Volatility regime and volatility risk premium, per instrument (module docstring: the GARCH model).

    At the close of row t, from the walk-forward GARCH fit in force (rationale omega, alpha, beta):
      garch_vol    = sqrt(forecast variance of e_{t+1}) / 100 * sqrt(252), annualised;
      realised_vol = population std of the last rv_window log returns * sqrt(252);
      ratio        = garch_vol / realised_vol (> 1: volatility expected to rise above what was realised);
      vrp          = VIX/100 - realised_vol where the panel's reference "VIX" is public at t; NaN where it
                     is not (before 2014, after 2019-01, or no reference): the VRP term is then absent.
    Rule:
      vol_term = -tanh(ln(ratio) / ratio_scale): a rising volatility forecast de-risks (negative), a
                 falling one is mildly risk-on;
      vrp_term = tanh(vrp / vrp_scale): implied above realised is a premium a vol seller collects, a mild
                 positive equity view; realised above implied (stress) is negative;
      strength = (vol_term + vrp_weight * vrp_term) / (1 + vrp_weight) where vrp is defined, else vol_term.
      confidence = converged * [alpha + beta < 1] * stability, where converged is arch's optimiser flag
                 and stability = min(L_k, L_{k-1}) / max(L_k, L_{k-1}) compares the long-run variance
                 L = omega / (1 - alpha - beta) of the fit in force with that of the previous refit (0 if
                 either is not stationary or failed; 0.5 for the first fit, which has nothing to compare with).
    omega is in percent^2 per session (the fit is on percent returns), alpha and beta are unitless.
    Abstains (NaN strength, confidence 0) before the first refit, i.e. warmup = train_window + 2 bars
    (the first return is at the second bar), and where a fit failed.
    """

    name = "options_vol"
    Params = OptionsVolParams

    def __init__(self, params: StrategyParams | dict | None = None):
        super().__init__(params)
        self.walk_forward = WalkForward(self.params.train_window, self.params.refit_every)
        self.memo = FitMemo()

    @property
    def warmup(self) -> int:
        return self.walk_forward.first_refit(1) + 1

    def compute(self, panel: Panel) -> Advice:
        shape = panel.close.shape
        strength = np.full(shape, np.nan)
        confidence = np.zeros(shape)
        keys = ("garch_vol", "realised_vol", "ratio", "vrp", "omega", "alpha", "beta", "converged", "stability")
        rationale = {key: np.full(shape, np.nan) for key in keys}
        vix_all = panel.reference.get("VIX")
        for j, symbol in enumerate(panel.symbols):
            rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
            if rows.size == 0:
                continue
            vix = np.full(rows.size, np.nan) if vix_all is None else np.asarray(vix_all, dtype=np.float64)[rows]
            s, c, r = self._one(symbol, panel.close[rows, j], np.ascontiguousarray(vix))
            strength[rows, j] = s
            confidence[rows, j] = c
            for key in keys:
                rationale[key][rows, j] = r[key]
        return Advice(strength, confidence, rationale)

    def _one(
        self, symbol: str, close: np.ndarray, vix: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        p = self.params
        n = close.shape[0]
        eps = log_returns(close) * 100.0
        refits, fits = self.walk_forward.fits(eps, first_valid=1, column=symbol, fit=fit_garch, memo=self.memo)
        nk = len(fits)
        usable = np.array([f is not None for f in fits], dtype=np.bool_)
        nan = math.nan
        omega = np.array([f.omega if f is not None else nan for f in fits], dtype=np.float64)
        alpha = np.array([f.alpha if f is not None else nan for f in fits], dtype=np.float64)
        beta = np.array([f.beta if f is not None else nan for f in fits], dtype=np.float64)
        backcast = np.array([f.backcast if f is not None else nan for f in fits], dtype=np.float64)
        bounds = np.full((nk, p.train_window, 2), nan)
        for k, f in enumerate(fits):
            if f is not None:
                bounds[k] = f.var_bounds
        converged = np.array([1.0 if f is not None and f.converged else 0.0 for f in fits])
        persistence = alpha + beta
        stationary = usable & (persistence < 1.0)
        long_run = np.full(nk, np.inf)
        long_run[stationary] = omega[stationary] / (1.0 - persistence[stationary])
        stability = np.zeros(nk)
        if nk:
            stability[0] = 0.5
        both = stationary[1:] & stationary[:-1]
        low, high = np.minimum(long_run[1:], long_run[:-1]), np.maximum(long_run[1:], long_run[:-1])
        stability[1:][both] = low[both] / high[both]

        forecast = _garch_forecasts(
            eps, refits, omega, alpha, beta, backcast, bounds, usable, p.train_window, p.refit_every
        )
        garch_vol = np.sqrt(forecast) / 100.0 * _SQRT_ANNUAL
        realised = realised_vol(close, p.rv_window)
        ratio, vrp, strength = _rule(garch_vol, realised, vix, p.ratio_scale, p.vrp_scale, p.vrp_weight)

        idx = self.walk_forward.fit_index(n, 1)
        on = idx >= 0
        per_row = {}
        for key, values in (
            ("omega", omega), ("alpha", alpha), ("beta", beta), ("converged", converged), ("stability", stability)
        ):
            column = np.full(n, np.nan)
            column[on] = values[idx[on]]
            per_row[key] = column
        conf_k = converged * stationary * stability
        confidence = np.zeros(n)
        confidence[on] = conf_k[idx[on]]
        confidence[np.isnan(strength)] = 0.0
        rationale = {
            "garch_vol": garch_vol,
            "realised_vol": realised,
            "ratio": ratio,
            "vrp": vrp,
            **per_row,
        }
        return strength, confidence, rationale
