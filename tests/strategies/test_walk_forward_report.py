"""The walk-forward report (strategies/walk_forward_report.py) on the shipped data: its windows, its scores
against arch, hmmlearn, statsmodels, scipy and plain loops, its frozen-fit signals against what the agents
publish, its summaries and its determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import statsmodels.api as sm
from arch import arch_model
from hmmlearn.hmm import GaussianHMM
from scipy.stats import spearmanr

from strategies import registry
from strategies.base import Panel
from strategies.index_spread import IndexSpread
from strategies.mean_reversion import MeanReversion
from strategies.options_vol import OptionsVol, fit_garch
from strategies.regime import Regime, regime_features
from strategies.stat_arb import StatArb
from strategies.walk_forward import log_returns
from strategies.walk_forward_report import (
    AGENTS,
    Validation,
    hit_rate,
    hmm_loglik_rows,
    ols,
    spearman,
    validate,
    windows,
)

_FIELDS = ("open", "high", "low", "close", "volume")
# The fitted agents' walk-forward, stated here (not their defaults, which may be tuned): 79 windows on AAPL.
FIT = {"train_window": 504, "refit_every": 21}


def _cols(panel: Panel, symbols: tuple[str, ...], rows: slice = slice(None)) -> Panel:
    idx = [panel.symbols.index(s) for s in symbols]
    return Panel(panel.ts[rows].copy(), symbols, *(getattr(panel, f)[rows][:, idx].copy() for f in _FIELDS))


@pytest.fixture(scope="module")
def aapl_panel(panel: Panel) -> Panel:
    """AAPL alone, 2004-08-19 .. 2013-03-01 (2148 rows)."""
    return _cols(panel, ("AAPL",))


@pytest.fixture(scope="module")
def garch(aapl_panel: Panel) -> Validation:
    """options_vol with a walk-forward of 504 returns, refit every 21, on AAPL: 79 windows."""
    (v,) = validate(aapl_panel, {"options_vol": FIT}).validations
    return v


@pytest.fixture(scope="module")
def hmm(aapl_panel: Panel) -> Validation:
    (v,) = validate(aapl_panel, {"regime": FIT}).validations
    return v


@pytest.fixture(scope="module")
def rolling(index_panel: Panel):
    """mean_reversion on IBM and the two pair agents on the six-instrument panel, test blocks of 15 rows."""
    report = validate(index_panel, ["mean_reversion", "stat_arb", "index_spread"], test_window=15, symbols=["IBM"])
    return {(v.agent, v.instrument): v for v in report.validations}


def _k(v: Validation, fraction: float) -> int:
    return min(int(fraction * len(v.windows)), len(v.windows) - 1)


# --- windows -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, W, step, first", [(2148, 504, 21, 1), (2148, 60, 15, 1), (300, 250, 21, 0), (505, 504, 21, 1)])
def test_windows_train_before_test_and_tests_do_not_overlap(n: int, W: int, step: int, first: int) -> None:
    ws = windows(n, W, step, first)
    assert len(ws) == len(range(first + W, n, step))
    covered = np.zeros(n, dtype=int)
    for k, (start, r, stop) in enumerate(ws):
        assert start >= first and r - start == W and r < stop <= n
        assert stop - r == (step if k + 1 < len(ws) else n - r)
        covered[r:stop] += 1
    # the test blocks tile the rows from the first refit row to the end, each row once
    assert (covered[first + W :] == 1).all() and (covered[: first + W] == 0).all()


def test_report_windows_are_the_agents_refit_schedule_and_dates_are_ordered(garch: Validation, hmm: Validation, rolling) -> None:
    assert [w.test_start for w in garch.windows] == OptionsVol(FIT).walk_forward.refit_rows(2148, 1).tolist()
    assert [w.test_start for w in hmm.windows] == Regime(FIT).walk_forward.refit_rows(2148, 21).tolist()
    assert len(garch.windows) == 79 and garch.split == {"train_window": 504, "step": 21, "first_valid": 1}
    for v in (garch, hmm, *rolling.values()):
        assert v.windows
        for a, b in zip(v.windows, v.windows[1:]):
            assert a.test_stop == b.test_start
        for w in v.windows:
            assert w.test_start - w.train_start == v.split["train_window"]
            assert w.train_dates[0] <= w.train_dates[1] < w.test_dates[0] <= w.test_dates[1]


# --- GARCH (options_vol) -----------------------------------------------------------------------------------------


def test_garch_in_sample_ll_is_arch_loglikelihood(aapl_panel: Panel, garch: Validation) -> None:
    eps = log_returns(aapl_panel.close[:, 0]) * 100.0
    for k in (0, _k(garch, 0.5), len(garch.windows) - 1):
        w = garch.windows[k]
        y = eps[w.train_start : w.test_start]
        ll_is = w.scores["ll"][0]
        # arch's own fit of the window, as the issue states the model
        res = arch_model(y, mean="Zero", vol="GARCH", p=1, q=1).fit(disp="off")
        assert ll_is == pytest.approx(res.loglikelihood / y.size, rel=1e-8, abs=0.0)  # measured: 1e-11
        # arch's likelihood at the report's own parameters: the same number up to rounding
        fit = fit_garch(y)
        fixed = arch_model(y, mean="Zero", vol="GARCH", p=1, q=1).fix([fit.omega, fit.alpha, fit.beta])
        assert ll_is == pytest.approx(fixed.loglikelihood / y.size, rel=1e-12, abs=0.0)


def test_garch_out_of_sample_scores_are_a_plain_loop(aapl_panel: Panel, garch: Validation) -> None:
    """The frozen fit's recursion continued past the window, computed with arch (in the window) and a Python loop."""
    eps = log_returns(aapl_panel.close[:, 0]) * 100.0
    for k in (0, _k(garch, 0.3), _k(garch, 0.8), len(garch.windows) - 1):
        w = garch.windows[k]
        fit = fit_garch(eps[w.train_start : w.test_start])
        fixed = arch_model(eps[w.train_start : w.test_start], mean="Zero", vol="GARCH", p=1, q=1).fix(
            [fit.omega, fit.alpha, fit.beta]
        )
        s2 = float(np.asarray(fixed.conditional_volatility)[-1]) ** 2
        prev = float(eps[w.test_start - 1])
        ll, ql = [], []
        for t in range(w.test_start, w.test_stop):
            s2 = fit.omega + fit.alpha * prev * prev + fit.beta * s2
            e = float(eps[t])
            ll.append(-0.5 * (math.log(2.0 * math.pi) + math.log(s2) + e * e / s2))
            if e != 0.0:
                q = e * e / s2
                ql.append(q - math.log(q) - 1.0)
            prev = e
        assert w.scores["ll"][1] == pytest.approx(sum(ll) / len(ll), rel=1e-10)
        assert w.scores["qlike"][1] == pytest.approx(sum(ql) / len(ql), rel=1e-10)


def test_frozen_signals_on_test_rows_are_what_the_agents_publish(aapl_panel: Panel, garch: Validation, hmm: Validation) -> None:
    """The OOS rows of the signal check are the rows each fit serves, with the agent's own strength there."""
    for v, strategy in ((garch, OptionsVol(FIT)), (hmm, Regime(FIT))):
        published = strategy.compute(aapl_panel).strength[:, 0]
        first = v.windows[0].test_start
        ours = np.concatenate([s for s, _ in v.pooled_rows[1]])
        assert ours.size == len(published) - 1 - first  # every served row with a next return, once
        assert not np.isnan(ours).all()
        np.testing.assert_allclose(ours, published[first:-1], rtol=0, atol=1e-12, equal_nan=True)
        ret = np.concatenate([r for _, r in v.pooled_rows[1]])
        expected = np.diff(np.log(aapl_panel.close[:, 0]))[first:]
        np.testing.assert_allclose(ret, expected, rtol=1e-12, atol=1e-15)


# --- HMM (regime) ------------------------------------------------------------------------------------------------


def _hmmlearn(fit) -> GaussianHMM:
    model = GaussianHMM(n_components=len(fit.startprob), covariance_type="full")
    model.startprob_, model.transmat_, model.means_, model.covars_ = fit.startprob, fit.transmat, fit.means, fit.covars
    return model


def test_hmm_ll_is_hmmlearn_score(aapl_panel: Panel, hmm: Validation) -> None:
    strategy = Regime(FIT)
    x = regime_features(aapl_panel.close[:, 0], strategy.params.vol_window)
    for k in (0, _k(hmm, 0.5), len(hmm.windows) - 1):
        w = hmm.windows[k]
        fit = strategy._fit(x[w.train_start : w.test_start])
        model = _hmmlearn(fit)
        train = model.score(x[w.train_start : w.test_start])
        both = model.score(x[w.train_start : w.test_stop])
        assert hmm_loglik_rows(x[w.train_start : w.test_start], fit).sum() == pytest.approx(train, rel=1e-10)
        assert w.scores["ll"][0] == pytest.approx(train / (w.test_start - w.train_start), rel=1e-10)
        # OOS: log p(test rows | training rows) per test row
        assert w.scores["ll"][1] == pytest.approx((both - train) / (w.test_stop - w.test_start), rel=1e-8, abs=1e-10)


# --- rolling-window agents: AR(1) half-life, hedge ratios --------------------------------------------------------


def test_mean_reversion_fits_the_agents_ar1_and_its_ll_is_statsmodels(index_panel: Panel, rolling) -> None:
    v = rolling[("mean_reversion", "IBM")]
    close = index_panel.close[:, index_panel.symbols.index("IBM")]
    p = MeanReversion().params
    half_life = MeanReversion().compute(_cols(index_panel, ("IBM",))).rationale["half_life"][:, 0]
    for k in (0, _k(v, 0.5), len(v.windows) - 1):
        w = v.windows[k]
        s = np.arange(w.train_start, w.test_start)  # pairs: dx[s] on close[s - 1]
        dx, lag = close[s] - close[s - 1], close[s - 1]
        a, b = ols(dx, lag)
        # the agent's half-life at the last training row is this window's fit
        assert half_life[w.test_start - 1] == pytest.approx(-math.log(2.0) / b if b < 0 else math.inf, rel=1e-10)
        res = sm.OLS(dx, sm.add_constant(lag)).fit()
        assert (a, b) == pytest.approx(tuple(res.params), rel=1e-9)
        assert w.scores["ll"][0] == pytest.approx(res.llf / p.ou_n, rel=1e-10)
        t = np.arange(w.test_start, w.test_stop)
        u = close[t] - close[t - 1] - a - b * close[t - 1]
        var = res.ssr / p.ou_n
        assert w.scores["ll"][1] == pytest.approx(np.mean(-0.5 * (np.log(2 * np.pi * var) + u * u / var)), rel=1e-10)


@pytest.mark.parametrize("agent, pair", [("stat_arb", ("MSFT", "IBM")), ("stat_arb", ("AAPL", "GOOG")), ("index_spread", ("COMP", "SPX"))])
def test_hedge_ratio_is_the_agents_and_residual_sd_is_statsmodels(index_panel: Panel, rolling, agent: str, pair) -> None:
    v = rolling[(agent, "/".join(pair))]
    a_col, b_col = (index_panel.symbols.index(s) for s in pair)
    la, lb = np.log(index_panel.close[:, a_col]), np.log(index_panel.close[:, b_col])
    if agent == "stat_arb":
        W = StatArb().params.coint_window
        agent_beta = StatArb().compute(index_panel).rationale[f"{pair[0]}/{pair[1]}:ols_beta"][:, a_col]
    else:
        W = IndexSpread().params.hedge_window
        agent_beta = IndexSpread().compute(index_panel).rationale["beta"][:, a_col]
    assert v.split["train_window"] == W
    for k in (0, _k(v, 0.5), len(v.windows) - 1):
        w = v.windows[k]
        tr, te = slice(w.train_start, w.test_start), slice(w.test_start, w.test_stop)
        res = sm.OLS(la[tr], sm.add_constant(lb[tr])).fit()
        assert res.params[1] == pytest.approx(agent_beta[w.test_start - 1], rel=1e-9)
        assert w.scores["resid_sd"][0] == pytest.approx(math.sqrt(res.ssr / W), rel=1e-9)
        u = la[te] - res.params[0] - res.params[1] * lb[te]
        assert w.scores["resid_sd"][1] == pytest.approx(math.sqrt(np.mean(u * u)), rel=1e-9)


# --- the signal check: Spearman IC and hit rate ------------------------------------------------------------------


def test_spearman_is_scipy_and_hit_rate_counts_signs() -> None:
    rng = np.random.default_rng(3)
    for n in (3, 21, 500):
        a = np.round(rng.normal(size=n), 1)  # ties
        b = rng.normal(size=n)
        b[: n // 3] = 0.0
        assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    a[5], b[9] = np.nan, np.nan
    ok = ~(np.isnan(a) | np.isnan(b))
    assert spearman(a, b) == pytest.approx(spearmanr(a[ok], b[ok]).statistic, abs=1e-12)
    assert math.isnan(spearman(np.ones(10), rng.normal(size=10))) and math.isnan(spearman(a[:2], b[:2]))
    s, r = np.array([1.0, -0.5, 0.0, 0.3, np.nan, -1.0]), np.array([0.1, 0.2, 0.3, -0.1, 0.1, -0.2])
    assert hit_rate(s, r) == 2 / 4
    assert math.isnan(hit_rate(np.zeros(4), r[:4]))


def test_ic_and_hit_are_scipy_on_the_windows_and_pooled(garch: Validation, rolling) -> None:
    for v in (garch, rolling[("index_spread", "COMP/SPX")], rolling[("mean_reversion", "IBM")]):
        checked = 0
        for w, is_rows, oos_rows in zip(v.windows, *v.pooled_rows):
            for (s, r), (ic, hit) in zip((is_rows, oos_rows), zip(w.scores["ic"], w.scores["hit"])):
                assert s.size == oos_rows[0].size  # IS and OOS on as many rows
                ok = np.isfinite(s) & np.isfinite(r)
                if ok.sum() >= 3 and np.ptp(s[ok]) > 0:
                    assert ic == pytest.approx(spearmanr(s[ok], r[ok]).statistic, abs=1e-12)
                    checked += 1
                else:
                    assert math.isnan(ic)
                on = ok & (s != 0) & (r != 0)
                assert (hit == pytest.approx(np.mean(np.sign(s[on]) == np.sign(r[on])))) if on.any() else math.isnan(hit)
        assert checked > len(v.windows)
        pooled = v.pooled()
        for side in (0, 1):
            s = np.concatenate([x for x, _ in v.pooled_rows[side]])
            r = np.concatenate([y for _, y in v.pooled_rows[side]])
            ok = np.isfinite(s) & np.isfinite(r)
            assert pooled["ic"][side] == pytest.approx(spearmanr(s[ok], r[ok]).statistic, abs=1e-12)


def test_signal_rows_are_training_rows_before_the_test_block(rolling) -> None:
    """IS signal rows t have their return t -> t+1 inside the training rows; OOS rows are the test rows."""
    v = rolling[("index_spread", "COMP/SPX")]
    from strategies.walk_forward_report import _signal_rows

    for w in v.windows:
        is_rows, oos_rows = _signal_rows(w.test_start, w.test_stop, w.test_stop if w is v.windows[-1] else 10**9, w.train_start)
        is_t = np.arange(w.train_start, w.test_stop)[is_rows]
        oos_t = np.arange(w.train_start, w.test_stop)[oos_rows]
        assert is_t.size == oos_t.size > 0
        assert is_t.min() >= w.train_start and is_t.max() + 1 <= w.test_start - 1
        assert oos_t.min() == w.test_start and oos_t.max() < w.test_stop


# --- summaries, report, determinism -------------------------------------------------------------------------------


def test_summary_is_the_mean_over_windows(garch: Validation) -> None:
    by_metric = {s.metric: s for s in garch.summary()}
    for metric, higher in (("ll", True), ("qlike", False), ("ic", True)):
        arr = np.array([w.scores[metric] for w in garch.windows])
        arr = arr[np.isfinite(arr).all(axis=1)]
        s = by_metric[metric]
        assert s.windows == len(arr) > 70
        assert s.is_mean == pytest.approx(arr[:, 0].mean()) and s.oos_mean == pytest.approx(arr[:, 1].mean())
        assert s.degradation == pytest.approx(s.oos_mean - s.is_mean)
        worse = arr[:, 1] < arr[:, 0] if higher else arr[:, 1] > arr[:, 0]
        assert s.share_oos_worse == pytest.approx(worse.mean())


def test_report_is_deterministic_and_strict_json(index_panel: Panel) -> None:
    small = _cols(index_panel, ("IBM", "SPX", "COMP"), slice(0, 900))
    agents = {"options_vol": {"train_window": 300, "refit_every": 63}, "regime": {"train_window": 300, "refit_every": 63},
              "mean_reversion": None, "index_spread": None}
    one, two = validate(small, agents), validate(small, agents)
    assert one.to_json() == two.to_json()  # same bytes
    doc = json.loads(one.to_json())
    assert set(doc["agents"]) == set(agents)
    assert doc["agents"]["index_spread"]["instruments"]["COMP/SPX"]["summary"]["resid_sd"]["windows"] > 0
    assert doc["agents"]["options_vol"]["params"]["train_window"] == 300
    assert "NaN" not in one.to_json() and "Infinity" not in one.to_json()
    table, md = one.table(), one.to_markdown()
    assert table.splitlines()[0].split() == ["agent", "instrument", "windows", "metric", "IS", "mean", "OOS", "mean", "degradation", "OOS", "worse"]
    assert "| options_vol | IBM |" in md and "`qlike`" in md


def test_validators_cover_the_fitted_agents_and_reject_others(aapl_panel: Panel) -> None:
    assert set(AGENTS) <= set(registry.available())
    assert "walk_forward_report" not in registry.available()
    with pytest.raises(ValueError, match="no walk-forward validator for momentum"):
        validate(aapl_panel, ["momentum"])
    with pytest.raises(ValueError, match="test_window"):
        validate(aapl_panel, ["mean_reversion"], test_window=0)
