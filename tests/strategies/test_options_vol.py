"""The options/volatility strategy: GARCH fits and recursion against arch, realised vol against pandas, the
walk-forward rule and its memo (strategies/walk_forward.py), the VRP term and the documented rule.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from arch import arch_model
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel
from strategies.options_vol import OptionsVol, fit_garch, garch_variance, realised_vol
from strategies.walk_forward import FitMemo, WalkForward, log_returns

RATIONALE = {"garch_vol", "realised_vol", "ratio", "vrp", "omega", "alpha", "beta", "converged", "stability"}
SMALL = {"train_window": 150, "refit_every": 10}  # fast fits for the tests that are not about the defaults
_DAY = 86_400_000_000_000


def _sub(panel: Panel, rows: slice, cols: list[int], reference: dict[str, np.ndarray] | None = None) -> Panel:
    """Rows and instruments of a panel (copies), with the given reference series."""
    fields = (getattr(panel, f)[rows][:, cols].copy() for f in ("open", "high", "low", "close", "volume"))
    return Panel(panel.ts[rows].copy(), tuple(panel.symbols[c] for c in cols), *fields, reference=reference or {})


def _arch(y: np.ndarray):
    return arch_model(y, vol="GARCH", p=1, q=1, mean="Zero").fit(disp="off")


@pytest.fixture(scope="module")
def full(panel: Panel) -> tuple[OptionsVol, Advice]:
    strategy = OptionsVol()
    return strategy, strategy.compute(panel)


@pytest.fixture(scope="module")
def small_panel(panel: Panel) -> Panel:
    """AAPL and IBM, 2004-08-19 .. 2006-05 (450 rows)."""
    return _sub(panel, slice(0, 450), [0, 2])


# --- the walk-forward rule ----------------------------------------------------------------------------------


def test_refit_rows_depend_on_the_row_index_only() -> None:
    wf = WalkForward(train_window=100, refit_every=21)
    assert wf.first_refit(1) == 101
    rows = wf.refit_rows(400, 1)
    assert rows.tolist() == list(range(101, 400, 21))
    for n in (0, 50, 101, 102, 122, 123, 399):
        assert wf.refit_rows(n, 1).tolist() == [r for r in rows if r < n]
        idx = wf.fit_index(n, 1)
        assert idx.tolist() == [(-1 if t < 101 else (t - 101) // 21) for t in range(n)]
    with pytest.raises(ValueError, match="refit_every"):
        WalkForward(100, 0)


def test_memo_fits_each_window_once_and_keys_on_the_exact_bytes() -> None:
    memo, calls = FitMemo(), []

    def fit(w: np.ndarray) -> float:
        assert not w.flags.writeable
        calls.append(w.copy())
        return float(w.sum())

    x = np.arange(10.0)
    assert memo.get("A", 5, x[:5], fit) == 10.0
    assert memo.get("A", 5, x[:5].copy(), fit) == 10.0  # same bytes: a hit
    assert memo.get("B", 5, x[:5], fit) == 10.0  # another column: a fit
    y = x.copy()
    y[2] = np.nextafter(y[2], 3.0)  # one bit differs: a fit
    memo.get("A", 5, y[:5], fit)
    assert (memo.fits, memo.hits, len(calls), len(memo)) == (3, 1, 3, 3)


# --- GARCH against arch -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("symbol", "start", "window"), [("aapl", 1, 504), ("msft", 2000, 252), ("aapl", 2500, 150)])
def test_garch_recursion_is_archs_with_the_fitted_params(request, symbol: str, start: int, window: int) -> None:
    """With the params fixed, the variance path and the one-step forecast are arch's own (to 1e-10)."""
    close = request.getfixturevalue(symbol)["close"]
    y = log_returns(close)[start : start + window] * 100.0
    fit = fit_garch(y)
    assert fit is not None
    fixed = arch_model(y, vol="GARCH", p=1, q=1, mean="Zero").fix([fit.omega, fit.alpha, fit.beta])
    sigma2, forecast = garch_variance(y, fit)
    np.testing.assert_allclose(sigma2, fixed.conditional_volatility**2, rtol=1e-10)
    np.testing.assert_allclose(forecast[-1], fixed.forecast(horizon=1).variance.iloc[-1, 0], rtol=1e-10)


@pytest.mark.parametrize("column", [0, 1, 2, 3])
def test_garch_fit_reaches_archs_maximum_likelihood(panel: Panel, column: int) -> None:
    """On every 2-year window (one every 126 sessions) of the real returns, arch's own likelihood of our
    estimates is at least arch's maximum less 1e-6 wherever arch's estimates are feasible (alpha + beta <= 1),
    and less 2e-3 where arch's SLSQP stopped slightly outside the constraint (it tolerates alpha + beta up to
    1 + 5e-7 on these windows, and gains up to 2.4e-4 of likelihood there). SLSQP stops within ftol = 1e-6
    of a flat optimum, so the estimates agree to 1e-3 (relative, alpha and beta; 2e-3 for omega) on at
    least 80% of the windows. Where arch's SLSQP reports success, our gradient test is met too."""
    close = panel.close[:, column]
    e = log_returns(close[~np.isnan(close)]) * 100.0
    starts = range(1, e.size - 504, 126)
    close_params = 0
    for s in starts:
        y = e[s : s + 504]
        fit, res = fit_garch(y), _arch(y)
        assert fit is not None and (fit.converged or res.convergence_flag != 0), s
        ours = arch_model(y, vol="GARCH", p=1, q=1, mean="Zero").fix([fit.omega, fit.alpha, fit.beta])
        theirs = res.params[["omega", "alpha[1]", "beta[1]"]].to_numpy()
        feasible = theirs[1] + theirs[2] <= 1.0 and theirs[1] >= 0.0 and theirs[2] >= 0.0
        assert ours.loglikelihood >= res.loglikelihood - (1e-6 if feasible else 2e-3), s
        assert fit.alpha >= 0.0 and fit.beta >= 0.0 and fit.alpha + fit.beta <= 1.0, s
        mine = np.array([fit.omega, fit.alpha, fit.beta])
        close_params += bool(np.all(np.abs(mine - theirs) <= np.array([2e-3, 1e-3, 1e-3]) * np.abs(theirs) + 1e-6))
    assert close_params >= 0.8 * len(starts), (close_params, len(starts))


def test_garch_fit_is_the_same_bits_whatever_blas_kernels_the_cpu_selects(aapl) -> None:
    """The fit is a numba loop in a fixed order (no BLAS, no numpy SIMD reduction): the same window fitted
    in a fresh process under OpenBLAS's SSE3 baseline kernels (Prescott) and under this CPU's own gives the
    same bits. (Under arch's SLSQP these differed: a 3e-3 likelihood gap and a different order log.)"""
    import subprocess
    import sys

    y = log_returns(aapl["close"])[1:505] * 100.0
    code = (
        "import sys, numpy as np; from strategies.options_vol import fit_garch; "
        "y = np.frombuffer(bytes.fromhex(sys.stdin.read()), dtype=np.float64); f = fit_garch(y); "
        "print(np.array([f.omega, f.alpha, f.beta]).tobytes().hex(), f.converged)"
    )
    outs = []
    for coretype in (None, "Prescott"):
        env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
        if coretype:
            env["OPENBLAS_CORETYPE"] = coretype
        done = subprocess.run(
            [sys.executable, "-c", code], input=y.tobytes().hex(), env=env, capture_output=True, text=True,
            timeout=300, check=True,
        )
        outs.append(done.stdout.split())
    fit = fit_garch(y)
    assert outs[0] == outs[1] == [np.array([fit.omega, fit.alpha, fit.beta]).tobytes().hex(), str(fit.converged)]


def test_garch_vol_between_refits_is_arch_forecast_with_the_fitted_params(panel: Panel) -> None:
    """From the fit at refit row r, the published forecast at r <= t < next refit is arch's one-step forecast
    with the fit's params over the returns r - train_window .. t (same backcast: the same first 75 returns),
    to 1e-10; the params are arch's own estimates on that window to 2e-3 (relative)."""
    p = _sub(panel, slice(0, 400), [3])
    strategy = OptionsVol(SMALL)
    advice = strategy.compute(p)
    e = log_returns(p.close[:, 0]) * 100.0
    w = strategy.params.train_window
    r_ = advice.rationale
    for r in (151, 221, 391):
        params = np.array([r_["omega"][r, 0], r_["alpha"][r, 0], r_["beta"][r, 0]])
        np.testing.assert_allclose(params, _arch(e[r - w : r]).params.to_numpy(), rtol=2e-3, atol=1e-6)
        for t in (r, r + 4, min(r + 9, len(p) - 1)):
            model = arch_model(e[r - w : t + 1], vol="GARCH", p=1, q=1, mean="Zero")
            variance = model.forecast(params=params, horizon=1).variance.iloc[-1, 0]
            expected = math.sqrt(variance) / 100 * math.sqrt(252)
            np.testing.assert_allclose(r_["garch_vol"][t, 0], expected, rtol=1e-10)
            np.testing.assert_array_equal([r_["omega"][t, 0], r_["alpha"][t, 0], r_["beta"][t, 0]], params)


def test_realised_vol_is_pandas_rolling_std(aapl: dict[str, np.ndarray]) -> None:
    close = aapl["close"]
    expected = pd.Series(np.log(close)).diff().rolling(21).std(ddof=0).to_numpy() * math.sqrt(252)
    got = realised_vol(close, 21)
    assert np.isnan(got[:21]).all() and not np.isnan(got[21:]).any()
    np.testing.assert_allclose(got[21:], expected[21:], rtol=1e-9)


# --- the strategy ---------------------------------------------------------------------------------------------


def test_registry_finds_options_vol() -> None:
    assert registry.get("options_vol") is OptionsVol
    assert registry.create("options_vol", {"refit_every": 63}).params.refit_every == 63


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"rv_window": 300, "train_window": 200}, r"rv_window \(300\) must be <= train_window \(200\)"),
        ({"train_window": 10}, "train_window"),
        ({"refit_every": 0}, "refit_every"),
        ({"ratio_scale": 0.0}, "ratio_scale"),
        ({"vrp_weight": -1.0}, "vrp_weight"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        OptionsVol(params)


@pytest.mark.parametrize(("params", "warmup"), [({}, 506), (SMALL, 152), ({"train_window": 60, "rv_window": 60}, 62)])
def test_abstains_exactly_during_warmup(small_panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = OptionsVol(params)
    assert strategy.warmup == warmup
    if warmup < len(small_panel):
        assert_warmup(strategy.compute(small_panel), warmup)


def test_batch_and_streaming_are_identical_and_each_refit_row_is_fitted_once(small_panel: Panel, head) -> None:
    batch = OptionsVol(SMALL)
    expected = batch.compute(small_panel)
    refits = 2 * len(batch.walk_forward.refit_rows(len(small_panel), 1))
    assert batch.memo.fits == refits == 2 * 30
    again = batch.compute(small_panel)  # warm: no new fit, the same advice
    assert batch.memo.fits == refits and batch.memo.hits == refits
    for key in ("strength", "confidence"):
        assert np.array_equal(getattr(again, key), getattr(expected, key), equal_nan=True)

    for step in (1, 37):  # the signal agent: the same instance, the whole history each call, keep the new rows
        stream = OptionsVol(SMALL)
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


def test_rationale_and_the_span_of_advice(full: tuple[OptionsVol, Advice]) -> None:
    strategy, advice = full
    assert set(advice.rationale) == RATIONALE
    speaking = ~np.isnan(advice.strength)
    assert speaking[strategy.warmup - 1 :].all()
    assert np.isnan(advice.rationale["vrp"]).all()  # the test panel carries no VIX
    assert (advice.rationale["converged"][speaking] == 1.0).all()
    # a rising forecast de-risks and a falling one does not, both happen
    ratio = advice.rationale["ratio"][speaking]
    assert (ratio > 1.2).any() and (ratio < 0.8).any()


def test_strength_and_confidence_follow_the_documented_rule(full: tuple[OptionsVol, Advice]) -> None:
    strategy, advice = full
    p, r = strategy.params, advice.rationale
    speaking = ~np.isnan(advice.strength)
    assert np.allclose(r["ratio"][speaking], (r["garch_vol"] / r["realised_vol"])[speaking], rtol=1e-15, atol=0)
    expected = -np.tanh(np.log(r["ratio"]) / p.ratio_scale)
    np.testing.assert_allclose(advice.strength[speaking], expected[speaking], rtol=1e-12, atol=1e-15)
    stationary = r["alpha"] + r["beta"] < 1.0
    conf = r["converged"] * stationary * r["stability"]
    np.testing.assert_allclose(advice.confidence[speaking], conf[speaking], rtol=0, atol=0)
    assert (advice.confidence[~speaking] == 0).all()

    # stability: the ratio of the long-run variances omega / (1 - alpha - beta) of consecutive fits, 0 when
    # either fit is not stationary (it happens: a fit on the constraint alpha + beta = 1 gets no confidence;
    # the projected Newton lands exactly on it where the constrained maximum is there, 11.5% of the rows here,
    # where SLSQP stopped at 1 - 1e-7 or 1 + 5e-7 depending on the CPU's BLAS kernels)
    persistence = r["alpha"] + r["beta"]
    assert (persistence[speaking] >= 1.0).any() and (persistence[speaking] < 1.0).mean() > 0.85
    refits = strategy.walk_forward.refit_rows(len(advice.strength), 1)
    for j in range(advice.strength.shape[1]):
        assert r["stability"][refits[0], j] == 0.5
        for prev, cur in zip(refits[:-1], refits[1:]):
            assert (r["omega"][cur : cur + strategy.params.refit_every, j] == r["omega"][cur, j]).all()
            if persistence[prev, j] >= 1.0 or persistence[cur, j] >= 1.0:
                assert r["stability"][cur, j] == 0.0
                continue
            a, b = (r["omega"][t, j] / (1.0 - persistence[t, j]) for t in (prev, cur))
            np.testing.assert_allclose(r["stability"][cur, j], min(a, b) / max(a, b), rtol=1e-14)


def test_vrp_term_where_vix_is_public(small_panel: Panel) -> None:
    """VIX present on some rows only: there vrp = VIX/100 - realised_vol and the rule blends it in; elsewhere
    the VRP term is absent (vrp NaN) and the strength is the vol-ratio term alone."""
    n = len(small_panel)
    vix = np.full(n, np.nan)
    vix[200:300] = np.linspace(12.0, 80.0, 100)
    with_vix = _sub(small_panel, slice(None), [0, 1], reference={"VIX": vix, "SPX": np.ones(n)})
    strategy = OptionsVol(SMALL)
    advice = strategy.compute(with_vix)
    plain = strategy.compute(_sub(small_panel, slice(None), [0, 1]))
    r, p = advice.rationale, strategy.params
    has = ~np.isnan(vix)
    speaking = ~np.isnan(advice.strength)
    np.testing.assert_allclose(r["vrp"][has], (vix[:, None] / 100.0 - r["realised_vol"])[has], rtol=1e-14)
    assert np.isnan(r["vrp"][~has]).all()
    vol_term = -np.tanh(np.log(r["ratio"]) / p.ratio_scale)
    blended = (vol_term + p.vrp_weight * np.tanh(r["vrp"] / p.vrp_scale)) / (1 + p.vrp_weight)
    np.testing.assert_allclose(advice.strength[has & speaking[:, 0]], blended[has], rtol=1e-12, atol=1e-15)
    same = ~has
    assert np.array_equal(advice.strength[same], plain.strength[same], equal_nan=True)
    assert not np.array_equal(advice.strength[has], plain.strength[has])
    # high implied vol against realised lifts the view: at VIX 80 the VRP term is positive
    assert (r["vrp"][290:300] > 0).all() and (advice.strength[290:300] > plain.strength[290:300]).all()


def test_a_failed_fit_abstains_on_the_rows_it_serves() -> None:
    """A window of constant prices cannot be fitted (no variance): the rows its fit would serve abstain, and
    so do rows with zero realised volatility (no ratio); the others speak."""
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    close[100:260] = close[100]  # returns 101 .. 259 are zero
    col = close.reshape(-1, 1)
    p = Panel(np.arange(400, dtype=np.int64) * _DAY, ("X",), col, col * 1.01, col * 0.99, col, np.ones_like(col))
    strategy = OptionsVol({"train_window": 100, "refit_every": 50, "rv_window": 10})
    assert fit_garch(np.zeros(100)) is None
    advice = strategy.compute(p)
    # refits at 101, 151, ..., 351; the windows of 201 and 251 hold only zero returns
    t = np.arange(400)
    no_fit = (t < 101) | ((t >= 201) & (t < 301))
    omega = advice.rationale["omega"][:, 0]
    assert np.isnan(omega[no_fit]).all() and not np.isnan(omega[~no_fit]).any()
    silent = no_fit | (advice.rationale["realised_vol"][:, 0] == 0.0)
    assert np.isnan(advice.strength[silent, 0]).all() and (advice.confidence[silent, 0] == 0).all()
    assert not np.isnan(advice.strength[~silent, 0]).any() and (~silent[101:201]).sum() == 9


def test_two_instances_agree_bit_for_bit(small_panel: Panel, assert_same_rows) -> None:
    assert_same_rows(OptionsVol(SMALL).compute(small_panel), OptionsVol(SMALL).compute(small_panel), len(small_panel))
