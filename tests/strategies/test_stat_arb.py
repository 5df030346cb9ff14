"""The statistical-arbitrage strategy on real data: Engle-Granger vs statsmodels, the Kalman filter vs filterpy
and least squares, and the pair rule recomputed from the rationale.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.

Tolerances and conventions:
- ADF t-statistics against ``statsmodels.tsa.stattools.adfuller(resid, maxlag=L, regression="n",
  autolag=None)`` on statsmodels' own OLS residuals: rtol 1e-8 (normal equations here, QR/pinv there).
- The 5% decision against ``statsmodels.tsa.stattools.coint(y, x, trend="c", maxlag=L, autolag=None)``:
  same statistic (rtol 1e-8), same critical value (``crit_value[1]``, MacKinnon 2010 with nobs - 1,
  rtol 1e-12), and the same reject/accept on every checked window whose statistic is more than 1e-6
  from the critical value (all of the chosen ones are).
- The Kalman recursion against filterpy's KalmanFilter run step by step on the same model: rtol 1e-9 on
  the posterior beta and alpha, the predicted sd and the prediction beta_{t|t-1} log b_t + alpha_{t|t-1}
  (the error itself is a small difference of O(1) numbers, so it is compared through the prediction).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from filterpy.kalman import KalmanFilter
from pydantic import ValidationError
from statsmodels.regression.linear_model import OLS
from statsmodels.tools import add_constant
from statsmodels.tsa.adfvalues import mackinnoncrit
from statsmodels.tsa.stattools import adfuller, coint

from strategies import registry
from strategies import stat_arb as sa
from strategies.base import Advice, Panel
from strategies.stat_arb import StatArb, StatArbParams

pytestmark = pytest.mark.filterwarnings("ignore:adfuller currently returns:FutureWarning")

_DAY = 86_400_000_000_000
# A config with overlapping pairs and a shorter window: more tradable rows, symbols in several pairs.
OVERLAP = {"pairs": [["MSFT", "IBM"], ["AAPL", "IBM"], ["MSFT", "AAPL"], ["GOOG", "IBM"]], "coint_window": 120}


def _log(a: np.ndarray) -> np.ndarray:
    """Elementwise math.log, as the strategy takes it (numpy's SIMD log may differ in the last bit)."""
    return np.array([math.log(v) for v in a])


def _col(panel: Panel, symbol: str) -> np.ndarray:
    return panel.close[:, panel.symbols.index(symbol)]


@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return StatArb().compute(panel)


@pytest.fixture(scope="module")
def overlap(panel: Panel) -> Advice:
    return StatArb(OVERLAP).compute(panel)


# --- params and registry ----------------------------------------------------------------------------------


def test_registry_finds_stat_arb() -> None:
    assert registry.get("stat_arb") is StatArb
    strategy = registry.create("stat_arb", {"pairs": [["AAPL", "MSFT"]], "coint_window": 100})
    assert isinstance(strategy, StatArb)
    assert strategy.params.pairs == (("AAPL", "MSFT"),) and strategy.warmup == 100
    assert StatArb().params.pairs == (("MSFT", "IBM"), ("AAPL", "GOOG"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"exit_z": 1.5}, r"exit_z \(1\.5\) must be < entry_z"),
        ({"entry_z": 3.0}, r"entry_z \(3\.0\) must be < full_z"),
        ({"pairs": [["MSFT", "MSFT"]]}, "same symbol twice"),
        ({"pairs": [["MSFT", "IBM"], ["IBM", "MSFT"]]}, "listed twice"),
        ({"pairs": []}, "pairs"),
        ({"pairs": [["MSFT"]]}, "pairs"),
        ({"adf_lag": 5}, "adf_lag"),
        ({"kalman_delta": 1.0}, "kalman_delta"),
        ({"kalman_obs_var": 0}, "kalman_obs_var"),
        ({"coint_window": 29}, "coint_window"),
        ({"conf_scale": 0}, "conf_scale"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StatArb(params)


# --- Engle-Granger: the rolling ADF against statsmodels -----------------------------------------------------


def test_critical_value_is_mackinnon_2010_as_statsmodels_coint_uses_it() -> None:
    for window in (60, 120, 250, 500):
        crit = sa.mackinnon_crit_5pct(window)
        assert crit == pytest.approx(mackinnoncrit(N=2, regression="c", nobs=window - 1)[1], rel=1e-12)
        t = window - 1
        assert crit == pytest.approx(-3.33613 - 6.1101 / t - 6.823 / t**2, rel=1e-15)
        # The MacKinnon (1991) fit, -3.3377 - 5.967/T - 8.98/T^2, is within 0.002 of it at these sizes.
        assert abs(crit - (-3.3377 - 5.967 / t - 8.98 / t**2)) < 2e-3


@pytest.mark.parametrize(("pair", "window"), [(("MSFT", "IBM"), 250), (("AAPL", "GOOG"), 60), (("IBM", "AAPL"), 500)])
@pytest.mark.parametrize("lag", [0, 1, 2])
def test_rolling_adf_matches_statsmodels_adfuller(panel: Panel, pair: tuple[str, str], window: int, lag: int) -> None:
    y, x = np.log(_col(panel, pair[0])), np.log(_col(panel, pair[1]))
    adf, slope = sa.rolling_engle_granger(y, x, window, lag)
    assert np.isnan(adf[: window - 1]).all() and not np.isnan(adf[window - 1 :]).any()
    for t in np.linspace(window - 1, len(y) - 1, 7).astype(int):
        w = slice(t - window + 1, t + 1)
        ols = OLS(y[w], add_constant(x[w])).fit()
        expected = adfuller(ols.resid, maxlag=lag, regression="n", autolag=None)[0]
        assert adf[t] == pytest.approx(expected, rel=1e-8), t
        assert slope[t] == pytest.approx(ols.params[1], rel=1e-9), t
        assert sa.engle_granger_adf(y[w], x[w], lag) == adf[t]


def _windows_both_ways(adf: np.ndarray, crit: float, count: int) -> list[int]:
    """Up to ``count`` rows rejecting and ``count`` accepting, spread over the sample, each > 1e-6 from crit."""
    rows = np.flatnonzero(~np.isnan(adf) & (np.abs(adf - crit) > 1e-6))
    reject, accept = rows[adf[rows] < crit], rows[adf[rows] >= crit]
    pick = [r[np.linspace(0, len(r) - 1, min(count, len(r))).astype(int)] for r in (reject, accept)]
    return sorted(set(np.concatenate(pick).tolist()))


@pytest.mark.parametrize(("pair", "window", "lag"), [(("MSFT", "IBM"), 250, 1), (("AAPL", "IBM"), 120, 0)])
def test_cointegration_decision_agrees_with_statsmodels_coint(panel: Panel, pair, window: int, lag: int) -> None:
    y, x = np.log(_col(panel, pair[0])), np.log(_col(panel, pair[1]))
    adf, _ = sa.rolling_engle_granger(y, x, window, lag)
    crit = sa.mackinnon_crit_5pct(window)
    rows = _windows_both_ways(adf, crit, 5)
    decisions = set()
    for t in rows:
        w = slice(t - window + 1, t + 1)
        stat, _, crit_values = coint(y[w], x[w], trend="c", maxlag=lag, autolag=None)
        assert stat == pytest.approx(adf[t], rel=1e-8)
        assert crit_values[1] == pytest.approx(crit, rel=1e-12)
        assert (stat < crit_values[1]) == (adf[t] < crit), t
        decisions.add(bool(adf[t] < crit))
    assert decisions == {True, False}, "the check needs windows on both sides of the critical value"


def test_the_strategy_reports_the_rolling_test_of_its_pairs(panel: Panel, full: Advice) -> None:
    for a, b in StatArb().params.pairs:
        ja = panel.symbols.index(a)
        adf, slope = sa.rolling_engle_granger(_log(_col(panel, a)), _log(_col(panel, b)), 250, 1)
        np.testing.assert_array_equal(full.rationale[f"{a}/{b}:adf_t"][:, ja], adf)
        np.testing.assert_array_equal(full.rationale[f"{a}/{b}:ols_beta"][:, ja], slope)
        crit = full.rationale[f"{a}/{b}:crit"][:, ja]
        assert (crit[249:] == sa.mackinnon_crit_5pct(250)).all() and np.isnan(crit[:249]).all()


# --- the Kalman hedge ratio -------------------------------------------------------------------------------


def _filterpy(y: np.ndarray, x: np.ndarray, delta: float, obs_var: float, p0: float) -> np.ndarray:
    """(beta, alpha, error, error_sd) per row from filterpy's KalmanFilter, predict then update each step."""
    kf = KalmanFilter(dim_x=2, dim_z=1)
    kf.x = np.zeros((2, 1))
    kf.P = np.eye(2) * p0
    kf.F = np.eye(2)
    kf.Q = np.eye(2) * (delta / (1 - delta))
    kf.R = np.array([[obs_var]])
    out = np.empty((4, len(y)))
    for t in range(len(y)):
        kf.H = np.array([[x[t], 1.0]])
        kf.predict()
        kf.update(y[t])
        out[:, t] = kf.x[0, 0], kf.x[1, 0], kf.y[0, 0], math.sqrt(kf.S[0, 0])
    return out


@pytest.mark.parametrize(
    ("pair", "delta", "obs_var", "p0"),
    [(("MSFT", "IBM"), 1e-6, 3e-4, 1.0), (("AAPL", "GOOG"), 1e-4, 1e-3, 10.0), (("IBM", "AAPL"), 0.0, 1e-4, 1.0)],
)
def test_kalman_matches_filterpy_step_by_step(panel: Panel, pair, delta: float, obs_var: float, p0: float) -> None:
    y, x = _log(_col(panel, pair[0])), _log(_col(panel, pair[1]))
    ours = np.array(sa.kalman_hedge(y, x, delta, obs_var, p0))
    theirs = _filterpy(y, x, delta, obs_var, p0)
    # The error is a small difference of O(1) numbers: compare the prediction y - error it comes from.
    ours[2], theirs[2] = y - ours[2], y - theirs[2]
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)


def test_kalman_without_drift_is_ridge_recursive_least_squares(panel: Panel) -> None:
    """delta = 0: the posterior mean is exactly (X'X + (r/p0) I)^-1 X'y over rows <= t (prior N(0, p0 I))."""
    y, x = _log(_col(panel, "MSFT")), _log(_col(panel, "IBM"))
    r, p0 = 3e-4, 1.0
    beta, alpha, _, _ = sa.kalman_hedge(y, x, 0.0, r, p0)
    design = np.column_stack([x, np.ones_like(x)])
    xtx = np.cumsum(design[:, :, None] * design[:, None, :], axis=0)
    xty = np.cumsum(design * y[:, None], axis=0)
    ridge = np.linalg.solve(xtx + (r / p0) * np.eye(2), xty[:, :, None])[:, :, 0]
    np.testing.assert_allclose(beta, ridge[:, 0], rtol=1e-8)
    np.testing.assert_allclose(alpha, ridge[:, 1], rtol=1e-8)


def test_kalman_converges_to_expanding_ols_as_delta_goes_to_zero(panel: Panel) -> None:
    y, x = _log(_col(panel, "MSFT")), _log(_col(panel, "IBM"))
    rows = np.arange(249, len(y), 50)
    ols = np.array([np.polyfit(x[: t + 1], y[: t + 1], 1)[0] for t in rows])
    # A near-diffuse prior (p0 = 1e6), so that only the drift separates the filter from least squares.
    assert np.max(np.abs(sa.kalman_hedge(y, x, 1e-6, 3e-4, 1e6)[0][rows] - ols)) > 0.1, "a drifting beta is not OLS"
    gaps = []
    for delta in (1e-10, 1e-11, 1e-12, 1e-13, 1e-14, 0.0):
        beta = sa.kalman_hedge(y, x, delta, 3e-4, 1e6)[0]
        gaps.append(np.max(np.abs(beta[rows] - ols)))
    assert all(later < earlier / 5 for earlier, later in zip(gaps, gaps[1:])), gaps
    assert gaps[-2] < 1e-4 and gaps[-1] < 1e-6, gaps


def test_the_strategy_runs_the_same_filter_on_log_prices(panel: Panel, full: Advice) -> None:
    for a, b in StatArb().params.pairs:
        jb = panel.symbols.index(b)
        beta, alpha, error, sd = sa.kalman_hedge(_log(_col(panel, a)), _log(_col(panel, b)), 1e-6, 3e-4, 1.0)
        for key, values in (("beta", beta), ("alpha", alpha), ("error", error), ("error_sd", sd)):
            np.testing.assert_array_equal(full.rationale[f"{a}/{b}:{key}"][:, jb], values, err_msg=key)


# --- the rule, recomputed from the rationale --------------------------------------------------------------


def _recompute(panel: Panel, advice: Advice, params: StatArbParams) -> tuple[np.ndarray, np.ndarray, int]:
    """Strength and confidence from the rationale by the module docstring's rule; also the number of
    (row, symbol) cells averaged over more than one tradable pair."""
    shape = panel.close.shape
    total, conf_total, count = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    crit_expected = sa.mackinnon_crit_5pct(params.coint_window)
    for a, b in params.pairs:
        ja, jb = panel.symbols.index(a), panel.symbols.index(b)
        r = {key: advice.rationale[f"{a}/{b}:{key}"][:, ja] for key in sa.PAIR_FIELDS}
        for key in sa.PAIR_FIELDS:
            np.testing.assert_array_equal(advice.rationale[f"{a}/{b}:{key}"][:, jb], r[key])
        # The one-step-ahead error uses the previous row's posterior; z is it over its predicted sd.
        la, lb = _log(_col(panel, a)), _log(_col(panel, b))
        predicted = r["beta"][:-1] * lb[1:] + r["alpha"][:-1]
        np.testing.assert_allclose(r["error"][1:], la[1:] - predicted, rtol=0, atol=1e-13)
        np.testing.assert_allclose(r["z"], r["error"] / r["error_sd"], rtol=1e-14)
        full_window = ~np.isnan(r["adf_t"])
        assert (r["crit"][full_window] == crit_expected).all()
        tradable = full_window & (r["adf_t"] < r["crit"]) & (r["beta"] > 0)
        pos, positions = 0, np.zeros(len(panel))
        for t in range(len(panel)):
            z = r["z"][t]
            if not tradable[t]:
                pos = 0
            elif pos == 0:
                pos = -1 if z > params.entry_z else (1 if z < -params.entry_z else 0)
            elif pos == 1:
                pos = -1 if z > params.entry_z else (0 if z > -params.exit_z else 1)
            else:
                pos = 1 if z < -params.entry_z else (0 if z < params.exit_z else -1)
            positions[t] = pos
        np.testing.assert_array_equal(r["position"], positions)
        m = np.minimum(1.0, np.abs(r["z"]) / params.full_z)
        w = np.maximum(1.0, r["beta"])
        conf = np.tanh((r["crit"] - r["adf_t"]) / params.conf_scale)
        for j, leg in ((ja, positions * m / w), (jb, -positions * m * r["beta"] / w)):
            total[tradable, j] += leg[tradable]
            conf_total[tradable, j] += conf[tradable]
            count[tradable, j] += 1
    strength = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    confidence = np.where(count > 0, conf_total / np.maximum(count, 1), 0.0)
    strength[: params.coint_window - 1] = np.nan
    confidence[: params.coint_window - 1] = 0.0
    return strength, confidence, int((count > 1).sum())


@pytest.mark.parametrize("config", [{}, OVERLAP], ids=["default", "overlapping"])
def test_strength_and_confidence_follow_the_documented_rule(panel: Panel, config: dict) -> None:
    strategy = StatArb(config)
    advice = strategy.compute(panel)
    strength, confidence, shared = _recompute(panel, advice, strategy.params)
    np.testing.assert_allclose(advice.strength, strength, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(advice.confidence, confidence, rtol=1e-12, atol=1e-15)
    if config:
        assert shared > 0, "some symbol must be tradable in several pairs at once to check the averaging"
    positions = np.concatenate(
        [advice.rationale[f"{a}/{b}:position"][:, panel.symbols.index(a)] for a, b in strategy.params.pairs]
    )
    assert (positions == 1).any() and (positions == -1).any()
    live = ~np.isnan(advice.strength)
    assert (advice.strength[live] != 0).any() and (advice.confidence[live] > 0).any()
    assert (advice.confidence[live & (advice.strength != 0)] > 0).all()


@pytest.mark.parametrize("config", [{}, OVERLAP], ids=["default", "overlapping"])
def test_legs_have_opposite_signs_in_the_hedge_ratio(panel: Panel, config: dict) -> None:
    strategy = StatArb(config)
    advice = strategy.compute(panel)
    seen = 0
    for a, b in strategy.params.pairs:
        ja, jb = panel.symbols.index(a), panel.symbols.index(b)
        pos = advice.rationale[f"{a}/{b}:position"][:, ja]
        beta = advice.rationale[f"{a}/{b}:beta"][:, ja]
        res = sa.pair_signals(_col(panel, a), _col(panel, b), strategy.params)
        on = res["tradable"] & (pos != 0)
        seen += on.sum()
        assert (np.sign(res["leg_a"][on]) == pos[on]).all() and (np.sign(res["leg_b"][on]) == -pos[on]).all()
        np.testing.assert_allclose(-res["leg_b"][on] / res["leg_a"][on], beta[on], rtol=1e-12)
        assert (res["leg_a"][~on] == 0).all() and (res["leg_b"][~on] == 0).all()
        if not config:  # each symbol is in one pair: its strength is its leg
            np.testing.assert_array_equal(advice.strength[on, ja], res["leg_a"][on])
            np.testing.assert_array_equal(advice.strength[on, jb], res["leg_b"][on])
    assert seen > 0


def test_untradable_columns_are_neutral_not_abstaining(panel: Panel, full: Advice) -> None:
    assert np.isnan(full.strength[:249]).all() and (full.confidence[:249] == 0).all()
    assert not np.isnan(full.strength[249:]).any()
    for a, b in StatArb().params.pairs:
        ja, jb = panel.symbols.index(a), panel.symbols.index(b)
        r = {k: full.rationale[f"{a}/{b}:{k}"][:, ja] for k in ("adf_t", "crit", "beta", "position")}
        tradable = (r["adf_t"] < r["crit"]) & (r["beta"] > 0)
        idle = ~tradable
        idle[:249] = False
        assert idle[249:].mean() > 0.9, "the default pairs are cointegrated on few 250-day windows of this sample"
        for j in (ja, jb):
            assert (full.strength[idle, j] == 0).all() and (full.confidence[idle, j] == 0).all()
            flat = tradable & (r["position"] == 0)
            assert (full.strength[flat, j] == 0).all() and (full.confidence[flat, j] > 0).all()
            assert (full.confidence[tradable, j] > 0).all()
        assert tradable.any()


def test_pairs_with_absent_symbols_are_skipped(panel: Panel) -> None:
    keep = [panel.symbols.index(s) for s in ("MSFT", "IBM", "AAPL")]
    fields = ("open", "high", "low", "close", "volume")
    part = Panel(panel.ts, ("MSFT", "IBM", "AAPL"), *(getattr(panel, f)[:, keep] for f in fields))
    advice = StatArb({"pairs": [["MSFT", "IBM"], ["AAPL", "GOOG"], ["XOM", "CVX"]]}).compute(part)
    assert {k.split(":")[0] for k in advice.rationale} == {"MSFT/IBM"}
    assert np.isnan(advice.rationale["MSFT/IBM:beta"][:, 2]).all()
    np.testing.assert_array_equal(advice.strength[249:, 2], 0.0)
    np.testing.assert_array_equal(advice.confidence[:, 2], 0.0)
    full = StatArb().compute(panel)
    cols = [panel.symbols.index("MSFT"), panel.symbols.index("IBM")]
    np.testing.assert_array_equal(advice.strength[:, :2], full.strength[:, cols])


def test_a_pair_runs_on_the_rows_both_legs_have(gappy_panel: Panel) -> None:
    advice = StatArb().compute(gappy_panel)
    ja, jb = gappy_panel.symbols.index("AAPL"), gappy_panel.symbols.index("GOOG")
    both = gappy_panel.valid[:, ja] & gappy_panel.valid[:, jb]
    assert (~both).sum() > 1000
    res = sa.pair_signals(gappy_panel.close[both, ja], gappy_panel.close[both, jb], StatArb().params)
    for key in sa.PAIR_FIELDS:
        got = advice.rationale[f"AAPL/GOOG:{key}"]
        np.testing.assert_array_equal(got[both, ja], res[key])
        assert np.isnan(got[~both]).all()
    aapl_alone = gappy_panel.valid[:, ja] & ~both
    aapl_alone[: np.flatnonzero(gappy_panel.valid[:, ja])[249]] = False
    assert aapl_alone.sum() > 500
    assert (advice.strength[aapl_alone, ja] == 0).all() and (advice.confidence[aapl_alone, ja] == 0).all()


# --- behaviour on a simulated cointegrated pair -----------------------------------------------------------


def test_trades_a_simulated_cointegrated_pair() -> None:
    rng = np.random.default_rng(7)
    n = 900
    log_b = 4.0 + np.cumsum(rng.normal(0, 0.015, n))
    u = np.zeros(n)
    for t in range(1, n):
        u[t] = 0.7 * u[t - 1] + rng.normal(0, 0.02)
    log_a = 0.5 + 0.8 * log_b + u
    close = np.exp(np.column_stack([log_a, log_b]))
    ts = np.arange(n, dtype=np.int64) * _DAY
    panel = Panel(ts, ("A", "B"), close, close, close, close, np.ones_like(close))
    strategy = StatArb({"pairs": [["A", "B"]], "kalman_p0": 10.0})
    advice = strategy.compute(panel)
    rows = slice(strategy.warmup - 1, None)
    adf, crit = advice.rationale["A/B:adf_t"][rows, 0], advice.rationale["A/B:crit"][rows, 0]
    assert (adf < crit).all()
    beta_error = np.abs(advice.rationale["A/B:beta"][rows, 0] - 0.8)
    assert beta_error.max() < 0.25 and np.median(beta_error) < 0.1
    z, strength = advice.rationale["A/B:z"][rows, 0], advice.strength[rows]
    active = strength[:, 0] != 0
    assert active.mean() > 0.3
    assert (np.sign(strength[active, 0]) == -np.sign(strength[active, 1])).all()
    assert np.corrcoef(strength[active, 0], z[active])[0, 1] < -0.7, "long the spread when it is low"


# --- determinism and speed --------------------------------------------------------------------------------


def test_no_numpy_transcendental_ufuncs_in_the_module() -> None:
    source = inspect.getsource(sa)
    for ufunc in ("np.log", "np.exp", "np.tanh", "np.sqrt", "np.power", "numpy.log"):
        assert ufunc not in source, ufunc

