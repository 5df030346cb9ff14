"""The regime strategy: HMM fits against hmmlearn, state labelling by variance, the causal forward filter against
hmmlearn's predict_proba on prefixes, the walk-forward memo, the documented rule and regime_probabilities.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hmmlearn.hmm import GaussianHMM
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel
from strategies.regime import (
    HmmFit,
    Regime,
    fit_hmm,
    forward_filter,
    regime_features,
    regime_probabilities,
)

RATIONALE = {"p_calm", "p_turbulent", "vol_calm", "vol_turbulent", "converged"}
SMALL = {"train_window": 150, "refit_every": 10}


def _sub(panel: Panel, rows: slice, cols: list[int]) -> Panel:
    fields = (getattr(panel, f)[rows][:, cols].copy() for f in ("open", "high", "low", "close", "volume"))
    return Panel(panel.ts[rows].copy(), tuple(panel.symbols[c] for c in cols), *fields)


def _hmmlearn(fit: HmmFit) -> GaussianHMM:
    """A hmmlearn model holding a fit's parameters (full covariances represent diagonal ones exactly)."""
    model = GaussianHMM(n_components=len(fit.startprob), covariance_type="full")
    model.startprob_, model.transmat_, model.means_, model.covars_ = fit.startprob, fit.transmat, fit.means, fit.covars
    return model


def _fit_in_force(strategy: Regime, symbol: str, x: np.ndarray, t: int) -> tuple[int, HmmFit]:
    """(refit row, fit) in force at row t of an instrument's features, from the strategy's memo."""
    rows, fits = strategy.walk_forward.fits(
        x, first_valid=strategy.params.vol_window, column=symbol, fit=strategy._fit, memo=strategy.memo
    )
    k = int(strategy.walk_forward.fit_index(t + 1, strategy.params.vol_window)[t])
    return int(rows[k]), fits[k]


@pytest.fixture(scope="module")
def full(panel: Panel) -> tuple[Regime, Advice]:
    strategy = Regime()
    return strategy, strategy.compute(panel)


@pytest.fixture(scope="module")
def small_panel(panel: Panel) -> Panel:
    """AAPL and IBM, 2004-08-19 .. 2006-05 (450 rows)."""
    return _sub(panel, slice(0, 450), [0, 2])


@pytest.fixture(scope="module")
def aapl_x(aapl: dict[str, np.ndarray]) -> np.ndarray:
    return regime_features(aapl["close"], 21)


# --- features, fits, labels, filter ---------------------------------------------------------------------------


def test_features_are_percent_returns_and_their_rolling_std(aapl: dict[str, np.ndarray], aapl_x: np.ndarray) -> None:
    close = pd.Series(aapl["close"])
    e = np.log(close / close.shift(1)) * 100
    np.testing.assert_allclose(aapl_x[1:, 0], e[1:], rtol=1e-14)
    assert np.isnan(aapl_x[:21, 1]).all()
    np.testing.assert_allclose(aapl_x[21:, 1], e.rolling(21).std(ddof=0)[21:], rtol=1e-9)


def _hmmlearn_fit(x: np.ndarray, n_states: int, cov: str, n_iter: int = 100, tol: float = 1e-2) -> GaussianHMM:
    """hmmlearn's own EM from fit_hmm's deterministic start (rows cut into groups by the volatility feature)."""
    order = np.argsort(x[:, 1], kind="stable")
    groups = np.array_split(order, n_states)
    model = GaussianHMM(n_states, covariance_type=cov, n_iter=n_iter, tol=tol, init_params="")
    model.startprob_ = np.full(n_states, 1.0 / n_states)
    off = 0.1 / (n_states - 1)
    model.transmat_ = np.full((n_states, n_states), off) + (0.9 - off) * np.eye(n_states)
    model.means_ = np.array([x[g].mean(axis=0) for g in groups])
    covars = np.array([np.cov(x[g].T) + 1e-6 * np.eye(2) for g in groups])
    model.covars_ = covars if cov == "full" else np.array([np.diag(c) for c in covars])
    return model.fit(x)


def _assert_same_fit(fit: HmmFit, model: GaussianHMM, tol: float, rtol: float) -> None:
    """Same parameters up to the state order (hmmlearn's by start, ours calm first), same stopping reason."""
    perm = np.argsort(model.covars_[:, 0, 0])
    np.testing.assert_allclose(fit.means, model.means_[perm], rtol=rtol)
    np.testing.assert_allclose(fit.covars, model.covars_[perm], rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(fit.transmat, model.transmat_[np.ix_(perm, perm)], rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(fit.startprob, model.startprob_[perm], rtol=rtol, atol=1e-300)
    history = model.monitor_.history
    assert fit.converged == (len(history) >= 2 and history[-1] - history[-2] < tol)


@pytest.mark.parametrize(("n_states", "cov"), [(2, "full"), (2, "diag"), (3, "full")])
def test_fit_is_hmmlearn_with_states_ordered_by_variance(aapl_x: np.ndarray, n_states: int, cov: str) -> None:
    x = aapl_x[1000:1400]
    fit = fit_hmm(x, n_states, cov)
    assert fit is not None
    variances = fit.covars[:, 0, 0]
    assert (np.diff(variances) > 0).all()  # calm first, turbulent last
    assert fit.means[0, 1] < fit.means[-1, 1]  # and the calm state's rolling volatility is the lower
    np.testing.assert_allclose(fit.startprob.sum(), 1.0) and np.testing.assert_allclose(fit.transmat.sum(1), 1.0)
    # hmmlearn itself, from the same deterministic start: the same parameters up to the state order
    _assert_same_fit(fit, _hmmlearn_fit(x, n_states, cov), 1e-2, rtol=1e-10)
    # the fit is deterministic
    again = fit_hmm(x.copy(), n_states, cov)
    assert all(np.array_equal(a, b) for a, b in zip(fit[:4], again[:4]))


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_fit_is_hmmlearn_on_every_walk_forward_window(panel: Panel, column: int) -> None:
    """The default fit (2 states, full covariances, 504 rows) on windows one year apart over the whole
    history of each stock: hmmlearn's parameters to 1e-8 (relative), and the same stopping reason. A tight
    tol (1e-6) on one window runs EM to its fixed point over many iterations and still agrees."""
    close = panel.close[:, column]
    x = regime_features(close[~np.isnan(close)], 21)
    for start in range(21, x.shape[0] - 504, 252):
        window = x[start : start + 504]
        fit = fit_hmm(window)
        assert fit is not None
        _assert_same_fit(fit, _hmmlearn_fit(window, 2, "full"), 1e-2, rtol=1e-8)
    window = x[21:525]
    _assert_same_fit(fit_hmm(window, tol=1e-6, n_iter=500), _hmmlearn_fit(window, 2, "full", 500, 1e-6), 1e-6, 1e-8)


@pytest.mark.parametrize(("n_states", "cov"), [(2, "full"), (2, "diag"), (3, "full")])
def test_forward_filter_is_predict_proba_at_the_last_row_of_each_prefix(
    aapl_x: np.ndarray, n_states: int, cov: str
) -> None:
    x = aapl_x[1500:1900]
    fit = fit_hmm(x[:300], n_states, cov)
    model = _hmmlearn(fit)
    filtered = forward_filter(x, fit)
    np.testing.assert_allclose(filtered.sum(axis=1), 1.0, rtol=1e-12)
    for k in (1, 2, 17, 150, 299, 300, 333, 400):
        np.testing.assert_allclose(filtered[k - 1], model.predict_proba(x[:k])[-1], rtol=1e-8)
    # and it is not the smoothed probability: that one uses the rows after t
    smoothed = model.predict_proba(x)
    assert np.abs(smoothed[:-1] - filtered[:-1]).max() > 1e-3
    np.testing.assert_allclose(smoothed[-1], filtered[-1], rtol=1e-8)


def test_published_probability_is_predict_proba_over_the_fit_window_up_to_t(panel: Panel, full) -> None:
    """At row t the strategy publishes, for the fit made at refit row r <= t on rows r - W .. r - 1,
    hmmlearn's predict_proba(x[r - W : t + 1])[-1]: the filter started at the window, rows <= t only."""
    strategy, advice = full
    w = strategy.params.train_window
    for j, symbol in ((0, "AAPL"), (3, "MSFT")):
        x = regime_features(panel.close[:, j], strategy.params.vol_window)
        for t in (strategy.warmup - 1, 800, 801, 820, 1500, len(panel) - 1):
            r, fit = _fit_in_force(strategy, symbol, x, t)
            assert r <= t < r + strategy.params.refit_every
            expected = _hmmlearn(fit).predict_proba(x[r - w : t + 1])[-1]
            np.testing.assert_allclose(advice.rationale["p_calm"][t, j], expected[0], rtol=1e-8)
            np.testing.assert_allclose(advice.rationale["p_turbulent"][t, j], expected[-1], rtol=1e-8)
            vols = np.sqrt(fit.covars[:, 0, 0]) / 100 * math.sqrt(252)
            assert advice.rationale["vol_calm"][t, j] == vols[0] and advice.rationale["vol_turbulent"][t, j] == vols[-1]


# --- the strategy ---------------------------------------------------------------------------------------------


def test_registry_finds_regime() -> None:
    assert registry.get("regime") is Regime
    assert registry.create("regime", {"n_states": 3}).params.n_states == 3


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_states": 4}, "n_states"),
        ({"covariance_type": "spherical"}, "covariance_type"),
        ({"train_window": 49}, "train_window"),
        ({"vol_window": 1}, "vol_window"),
        ({"tol": 0.0}, "tol"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Regime(params)


@pytest.mark.parametrize(("params", "warmup"), [({}, 526), (SMALL, 172), ({**SMALL, "vol_window": 5}, 156)])
def test_abstains_exactly_during_warmup(small_panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = Regime(params)
    assert strategy.warmup == warmup
    if warmup < len(small_panel):
        assert_warmup(strategy.compute(small_panel), warmup)


def test_batch_and_streaming_are_identical_and_each_refit_row_is_fitted_once(small_panel: Panel, head) -> None:
    batch = Regime(SMALL)
    expected = batch.compute(small_panel)
    refits = 2 * len(batch.walk_forward.refit_rows(len(small_panel), 21))
    assert batch.memo.fits == refits == 2 * 28
    batch.compute(small_panel)
    assert batch.memo.fits == refits and batch.memo.hits == refits

    for step in (1, 37):  # the signal agent: the same instance, the whole history each call, keep the new rows
        stream = Regime(SMALL)
        rows = {key: np.full(expected.strength.shape, np.nan) for key in ("strength", "confidence", *RATIONALE)}
        for k in range(step, len(small_panel) + step, step):
            k = min(k, len(small_panel))
            advice = stream.compute(head(small_panel, k))
            new = slice(max(k - step, 0), k)
            rows["strength"][new], rows["confidence"][new] = advice.strength[new], advice.confidence[new]
            for key in RATIONALE:
                rows[key][new] = advice.rationale[key][new]
        assert stream.memo.fits == refits
        assert np.array_equal(rows["strength"], expected.strength, equal_nan=True)
        assert np.array_equal(rows["confidence"], expected.confidence, equal_nan=True)
        for key in RATIONALE:
            assert np.array_equal(rows[key], expected.rationale[key], equal_nan=True), key


def test_strength_and_confidence_follow_the_documented_rule(panel: Panel, full) -> None:
    strategy, advice = full
    r = advice.rationale
    assert set(r) == RATIONALE
    speaking = ~np.isnan(advice.strength)
    assert speaking[strategy.warmup - 1 :].all()
    assert np.array_equal(advice.strength[speaking], (r["p_calm"] - r["p_turbulent"])[speaking])
    assert np.array_equal(advice.confidence[speaking], np.maximum(r["p_calm"], r["p_turbulent"])[speaking])
    np.testing.assert_allclose((r["p_calm"] + r["p_turbulent"])[speaking], 1.0, rtol=1e-12)
    assert (r["vol_calm"][speaking] < r["vol_turbulent"][speaking]).all()
    assert (r["converged"][speaking] == 1.0).all()
    # both regimes occur on the real data, and the turbulent one is where the rolling volatility is high
    vol = np.column_stack([regime_features(panel.close[:, j], 21)[:, 1] for j in range(4)])
    calm = speaking & (advice.strength > 0.5)
    turbulent = speaking & (advice.strength < -0.5)
    assert calm.sum() > 1000 and turbulent.sum() > 500
    assert np.median(vol[turbulent]) > 1.5 * np.median(vol[calm])
    autumn_2008 = (panel.ts >= pd.Timestamp("2008-10-01").value) & (panel.ts < pd.Timestamp("2008-12-01").value)
    assert (advice.strength[autumn_2008] < -0.9).all()


def test_three_states_publish_the_neutral_state(small_panel: Panel) -> None:
    advice = Regime({**SMALL, "n_states": 3}).compute(small_panel)
    r = advice.rationale
    assert set(r) == RATIONALE | {"p_neutral", "vol_neutral"}
    speaking = ~np.isnan(advice.strength)
    np.testing.assert_allclose((r["p_calm"] + r["p_neutral"] + r["p_turbulent"])[speaking], 1.0, rtol=1e-12)
    assert np.array_equal(advice.strength[speaking], (r["p_calm"] - r["p_turbulent"])[speaking])
    top = np.maximum(np.maximum(r["p_calm"], r["p_neutral"]), r["p_turbulent"])
    assert np.array_equal(advice.confidence[speaking], top[speaking])
    assert (r["vol_calm"][speaking] < r["vol_neutral"][speaking]).all()
    assert (r["vol_neutral"][speaking] < r["vol_turbulent"][speaking]).all()


def test_regime_probabilities_for_the_cio(panel: Panel, full) -> None:
    strategy, advice = full
    fits = strategy.memo.fits
    probs = regime_probabilities(panel, regime=strategy)
    assert strategy.memo.fits == fits  # the instance's memo served every fit
    assert probs.symbols == panel.symbols and probs.prob.shape == (len(panel), 4, 2)
    assert np.array_equal(probs.p_calm, advice.rationale["p_calm"], equal_nan=True)
    assert np.array_equal(probs.p_turbulent, advice.rationale["p_turbulent"], equal_nan=True)
    market = probs.market()
    t = len(panel) - 1
    np.testing.assert_allclose(market[t], probs.prob[t].mean(axis=0), rtol=1e-15)
    assert np.isnan(market[: strategy.warmup - 1]).all()
    with pytest.raises(ValueError, match="not both"):
        regime_probabilities(panel, {"n_states": 2}, regime=strategy)


def test_two_instances_agree_bit_for_bit(small_panel: Panel, assert_same_rows) -> None:
    assert_same_rows(Regime(SMALL).compute(small_panel), Regime(SMALL).compute(small_panel), len(small_panel))
