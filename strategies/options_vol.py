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
from typing import NamedTuple

import numpy as np
from arch.univariate import GARCH
from numba import njit
from pydantic import Field, model_validator

from strategies import indicators as ind
from strategies.base import Advice, Panel, Strategy, StrategyParams
from strategies.registry import register
from strategies.walk_forward import FitMemo, WalkForward, log_returns

__all__ = ["GarchFit", "OptionsVol", "OptionsVolParams", "fit_garch", "garch_variance", "realised_vol"]

ANNUAL = 252  # sessions per year
_SQRT_ANNUAL = math.sqrt(ANNUAL)
_LOG_2PI = math.log(2.0 * math.pi)


class GarchFit(NamedTuple):
    """One walk-forward GARCH(1,1) fit, in percent-return units (omega in percent^2 per session)."""

    omega: float
    alpha: float
    beta: float
    backcast: float  # arch's backcast: the starting value of sigma2 and e^2 before the window
    var_bounds: np.ndarray  # (train_window, 2): arch's lower/upper bounds of sigma2 inside the window
    converged: bool  # arch's optimiser reported success (convergence_flag == 0)


_VOLATILITY = GARCH(p=1, o=0, q=1)  # arch's own process: backcast, bounds and constraints come from it


def fit_garch(returns_pct: np.ndarray) -> GarchFit | None:
    """The maximum-likelihood GARCH(1,1) of ``arch_model(returns_pct, mean="Zero", vol="GARCH", p=1, q=1)``.

    arch's model without its result object: arch's backcast, variance bounds, parameter bounds (omega in
    arch's interval, alpha, beta >= 0, alpha + beta <= 1), its grid of starting values and its Gaussian
    likelihood in arch's order of operations (``_negative_loglik``). The optimiser is ours
    (``_maximise``): projected Newton on a box that maps exactly onto arch's parameter set, with the exact
    gradient of the recursion, every step a scalar numba loop in a fixed order. arch's SLSQP calls BLAS on its search
    directions, so where it stops on a flat optimum moves with the CPU's BLAS kernels (Haswell against
    Prescott moved a fit by 3e-3 of log-likelihood and the default run's orders with it); this optimiser
    gives the same bits on any x86-64 CPU and converges to a gradient of 1e-6 per return, at or above
    arch's maximum on every window tested (tests/strategies/test_options_vol.py). None if the window
    cannot be fitted; ``converged``: the gradient test was met (not only the iteration cap or a line search
    that could no longer descend).
    """
    y = np.ascontiguousarray(returns_pct, dtype=np.float64)
    if y.ndim != 1 or y.size < 10 or not np.isfinite(y).all() or not np.ptp(y) > 0.0:
        return None
    backcast = float(_VOLATILITY.backcast(y))
    var_bounds = np.ascontiguousarray(_VOLATILITY.variance_bounds(y), dtype=np.float64)
    start = _starting_values(y, backcast, var_bounds)
    (lower, upper), _, _ = _VOLATILITY.bounds(y)
    params, converged = _maximise(y, backcast, var_bounds, start, float(lower), float(upper))
    omega, alpha, beta = (float(v) for v in params)
    if not all(map(math.isfinite, (omega, alpha, beta))) or not omega > 0.0:
        return None  # omega = 0 would forecast zero variance forever
    return GarchFit(omega, alpha, beta, backcast, var_bounds, bool(converged))


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
def _negative_loglik_gradient(
    params: np.ndarray, eps: np.ndarray, backcast: float, var_bounds: np.ndarray, grad: np.ndarray
) -> float:
    """``_negative_loglik`` and, into ``grad``, its exact gradient in (omega, alpha, beta): the derivative of
    the recursion, d sigma2_t = (1, e2_{t-1}, sigma2_{t-1}) + beta d sigma2_{t-1}, through arch's bounds
    (zero below the lower bound, d v / v above the upper one, where arch continues with a logarithm)."""
    omega, alpha, beta = params[0], params[1], params[2]
    e2 = backcast
    s2 = backcast
    d0 = d1 = d2 = 0.0
    g0 = g1 = g2 = 0.0
    total = 0.0
    for t in range(eps.shape[0]):
        v = omega
        v += alpha * e2
        v += beta * s2
        n0 = 1.0 + beta * d0
        n1 = e2 + beta * d1
        n2 = s2 + beta * d2
        lo, hi = var_bounds[t, 0], var_bounds[t, 1]
        if v < lo:
            s2 = lo
            d0 = d1 = d2 = 0.0
        elif v > hi:
            if math.isinf(v):
                s2 = hi + 1000.0
                d0 = d1 = d2 = 0.0
            else:
                s2 = hi + math.log(v / hi)
                d0, d1, d2 = n0 / v, n1 / v, n2 / v
        else:
            s2 = v
            d0, d1, d2 = n0, n1, n2
        e = eps[t]
        e2 = e * e
        total += -0.5 * (_LOG_2PI + math.log(s2) + e2 / s2)
        w = 0.5 * (1.0 / s2 - e2 / (s2 * s2))
        g0 += w * d0
        g1 += w * d1
        g2 += w * d2
    grad[0], grad[1], grad[2] = g0, g1, g2
    return -total


@njit(cache=True)
def _objective(
    x: np.ndarray, eps: np.ndarray, backcast: float, var_bounds: np.ndarray, params: np.ndarray,
    g_params: np.ndarray, g: np.ndarray,
) -> float:
    """The negative log-likelihood at x = (omega, persistence p, share r) with alpha = p r, beta = p (1 - r),
    and its gradient in x. The map takes the box [lower, upper] x [0, 1] x [0, 1] exactly onto arch's
    parameter set (omega in its bounds, alpha, beta >= 0, alpha + beta <= 1), so the optimiser only has to
    respect a box."""
    omega, p, r = x[0], x[1], x[2]
    params[0] = omega
    params[1] = p * r
    params[2] = p * (1.0 - r)
    f = _negative_loglik_gradient(params, eps, backcast, var_bounds, g_params)
    g[0] = g_params[0]
    g[1] = g_params[1] * r + g_params[2] * (1.0 - r)
    g[2] = (g_params[1] - g_params[2]) * p
    return f


_GRAD_TOL = 1e-6  # per return: the largest free component of the scaled gradient, over the window's length
_MAX_ITER = 200


@njit(cache=True)
def _maximise(
    eps: np.ndarray, backcast: float, var_bounds: np.ndarray, start: np.ndarray, lower: float, upper: float
) -> tuple[np.ndarray, bool]:
    """Projected Newton on the box of ``_objective``: the Hessian by forward differences of the exact
    gradient (damped until positive definite on the free coordinates), a coordinate at its bound with the
    gradient pushing outwards held there, an Armijo search along the projection. Returns
    (omega, alpha, beta) and whether the gradient test was met."""
    lo = np.array([lower, 0.0, 0.0])
    hi = np.array([upper, 1.0, 1.0])
    x = np.empty(3)
    x[0] = start[0]
    x[1] = start[1] + start[2]
    x[2] = start[1] / x[1] if x[1] > 0.0 else 0.5
    scale = np.array([max(start[0], lower), 1.0, 1.0])  # omega is ~1e-2 in percent^2: compare in its own unit
    for i in range(3):
        x[i] = min(max(x[i], lo[i]), hi[i])
    params = np.empty(3)
    g_params = np.empty(3)
    g = np.empty(3)
    g_h = np.empty(3)
    f = _objective(x, eps, backcast, var_bounds, params, g_params, g)
    hess = np.empty((3, 3))
    xh = np.empty(3)
    xt = np.empty(3)
    gt = np.empty(3)
    d = np.empty(3)
    free = np.empty(3, dtype=np.bool_)
    tol = _GRAD_TOL * eps.shape[0]
    converged = False
    for _ in range(_MAX_ITER):
        if _free_gradient(x, g, lo, hi, scale, free) <= tol:
            converged = True
            break
        for k in range(3):
            h = 1e-7 * scale[k]
            if x[k] + h > hi[k]:
                h = -h
            for i in range(3):
                xh[i] = x[i]
            xh[k] = x[k] + h
            _objective(xh, eps, backcast, var_bounds, params, g_params, g_h)
            for i in range(3):
                hess[i, k] = (g_h[i] - g[i]) / h
        if not _newton_direction(hess, g, free, scale, d):
            break
        step = 1.0
        accepted = False
        f_t = f
        for _ls in range(60):
            decrease = 0.0
            for i in range(3):
                xt[i] = min(max(x[i] + step * d[i], lo[i]), hi[i])
                decrease += g[i] * (xt[i] - x[i])
            f_t = _objective(xt, eps, backcast, var_bounds, params, g_params, gt)
            if math.isfinite(f_t) and f_t <= f + 1e-4 * decrease:
                accepted = True
                break
            step *= 0.5
        if not accepted or f_t == f:
            break  # no descent left at machine precision: the gradient test below decides
        for i in range(3):
            x[i] = xt[i]
            g[i] = gt[i]
        f = f_t
    if not converged:
        converged = _free_gradient(x, g, lo, hi, scale, free) <= tol
    out = np.empty(3)
    out[0] = x[0]
    out[1] = x[1] * x[2]
    out[2] = x[1] * (1.0 - x[2])
    return out, converged


@njit(cache=True)
def _free_gradient(
    x: np.ndarray, g: np.ndarray, lo: np.ndarray, hi: np.ndarray, scale: np.ndarray, free: np.ndarray
) -> float:
    """Marks in ``free`` the coordinates not held at a bound (at it, with the gradient pushing outwards);
    returns the largest scaled gradient component among them."""
    worst = 0.0
    for i in range(3):
        free[i] = not ((x[i] <= lo[i] and g[i] > 0.0) or (x[i] >= hi[i] and g[i] < 0.0))
        if free[i]:
            worst = max(worst, abs(g[i]) * scale[i])
    return worst


@njit(cache=True)
def _newton_direction(hess: np.ndarray, g: np.ndarray, free: np.ndarray, scale: np.ndarray, d: np.ndarray) -> bool:
    """d = -H_FF^-1 g_F on the free coordinates (0 elsewhere), H symmetrised, in scaled units, with
    Levenberg damping lambda I added until the Cholesky factorisation succeeds. False if it never does."""
    idx = np.empty(3, dtype=np.int64)
    m = 0
    for i in range(3):
        d[i] = 0.0
        if free[i]:
            idx[m] = i
            m += 1
    a = np.empty((m, m))
    b = np.empty(m)
    trace = 0.0
    for p in range(m):
        i = idx[p]
        b[p] = -g[i] * scale[i]
        for q in range(m):
            k = idx[q]
            a[p, q] = 0.5 * (hess[i, k] + hess[k, i]) * scale[i] * scale[k]
        trace += abs(a[p, p])
    lam = 0.0
    chol = np.empty((m, m))
    for _ in range(40):
        ok = True
        for p in range(m):
            for q in range(p + 1):
                acc = a[p, q] + (lam if p == q else 0.0)
                for r in range(q):
                    acc -= chol[p, r] * chol[q, r]
                if p == q:
                    if not acc > 0.0:
                        ok = False
                        break
                    chol[p, p] = math.sqrt(acc)
                else:
                    chol[p, q] = acc / chol[q, q]
            if not ok:
                break
        if ok:
            z = np.empty(m)
            for p in range(m):
                acc = b[p]
                for r in range(p):
                    acc -= chol[p, r] * z[r]
                z[p] = acc / chol[p, p]
            for p in range(m - 1, -1, -1):
                acc = z[p]
                for r in range(p + 1, m):
                    acc -= chol[r, p] * z[r]
                z[p] = acc / chol[p, p]
            for p in range(m):
                d[idx[p]] = z[p] * scale[idx[p]]
            return True
        lam = max(1e-10 * max(trace, 1.0), 10.0 * lam)
    return False


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
