"""The momentum strategy on a real 4-stock panel: its params, warm-up per params and rule.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel
from strategies.momentum import Momentum

RATIONALE = {"sma_fast", "sma_slow", "roc", "rsi", "macd_hist", "atr", "adx"}


@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return Momentum().compute(panel)


def test_registry_finds_momentum() -> None:
    assert registry.get("momentum") is Momentum
    assert "momentum" in registry.available()
    strategy = registry.create("momentum", {"fast": 10, "slow": 30})
    assert isinstance(strategy, Momentum) and strategy.params.fast == 10


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"fast": 50, "slow": 50}, r"fast \(50\) must be < slow \(50\)"),
        ({"fast": 60}, "must be < slow"),
        ({"macd_fast": 30}, "macd_fast"),
        ({"rsi_oversold": 80}, r"rsi_oversold \(80\.0\) must be < rsi_overbought \(70\.0\)"),
        ({"adx_n": 1}, "adx_n"),
        ({"threshold": 20}, "threshold"),
        ({"fast": "quick"}, "fast"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Momentum(params)


@pytest.mark.parametrize(
    ("params", "warmup"),
    [({}, 50), ({"fast": 3, "slow": 10}, 34), ({"adx_n": 30}, 60), ({"roc_n": 70}, 71)],
)
def test_abstains_exactly_during_warmup(panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = Momentum(params)
    assert strategy.warmup == warmup
    assert_warmup(strategy.compute(panel), warmup)


def test_rationale_and_the_span_of_advice(full: Advice) -> None:
    assert set(full.rationale) == RATIONALE
    s = full.strength[~np.isnan(full.strength)]
    assert s.min() < -0.5 and s.max() > 0.5
    assert (full.confidence == 0).any() and (full.confidence == 1).any()


def test_strength_and_confidence_follow_the_documented_rule(panel: Panel, full: Advice) -> None:
    p = Momentum().params
    r = full.rationale
    rows = slice(Momentum().warmup - 1, None)
    close = panel.close[rows]
    atr = r["atr"][rows]
    trend = np.sign(r["sma_fast"][rows] - r["sma_slow"][rows])
    macd_term = np.tanh(r["macd_hist"][rows] / atr)
    roc_term = np.tanh(r["roc"][rows] / 100 / (atr / close * np.sqrt(p.roc_n)))
    raw = (trend + macd_term + roc_term) / 3
    rsi = r["rsi"][rows]
    damp = np.where((raw > 0) & (rsi > 70), (100 - rsi) / 30, np.where((raw < 0) & (rsi < 30), rsi / 30, 1.0))
    np.testing.assert_allclose(full.strength[rows], raw * damp, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(full.confidence[rows], np.clip((r["adx"][rows] - 20) / 20, 0, 1), rtol=1e-12)
    assert ((raw > 0) & (rsi > 70)).any() and ((raw < 0) & (rsi < 30)).any()


def test_follows_a_steady_uptrend() -> None:
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(0.004 + rng.normal(0, 0.01, (300, 2)), axis=0))
    ts = np.arange(300, dtype=np.int64) * 86_400_000_000_000
    advice = Momentum().compute(Panel(ts, ("A", "B"), close, close * 1.01, close * 0.99, close, np.ones_like(close)))
    assert np.nanmean(advice.strength) > 0.3
