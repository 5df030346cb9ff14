"""The mean-reversion strategy on a real 4-stock panel: its params, warm-up per params, rule and OU filter.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from strategies import indicators as ind
from strategies import registry
from strategies.base import Advice, Panel
from strategies.mean_reversion import MeanReversion

RATIONALE = {"z", "bb_mid", "bb_std", "rsi", "half_life"}


@pytest.fixture(scope="module")
def full(panel: Panel) -> Advice:
    return MeanReversion().compute(panel)


def test_registry_finds_mean_reversion() -> None:
    assert registry.get("mean_reversion") is MeanReversion
    assert "mean_reversion" in registry.available()
    strategy = registry.create("mean_reversion", {"entry_z": 2.0, "max_half_life": 10})
    assert isinstance(strategy, MeanReversion) and strategy.params.max_half_life == 10.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"entry_z": 3.0}, "entry_z"),
        ({"entry_z": 2.0, "full_z": 1.0}, "entry_z"),
        ({"rsi_oversold": 75}, r"rsi_oversold \(75\.0\) must be < rsi_overbought \(70\.0\)"),
        ({"ou_n": 2}, "ou_n"),
        ({"max_half_life": 0}, "max_half_life"),
        ({"rsi_boost": 0.5}, "rsi_boost"),
        ({"half_life": 30}, "half_life"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MeanReversion(params)


@pytest.mark.parametrize(("params", "warmup"), [({}, 61), ({"ou_n": 10}, 20), ({"bb_n": 100}, 100)])
def test_abstains_exactly_during_warmup(panel: Panel, params: dict, warmup: int, assert_warmup) -> None:
    strategy = MeanReversion(params)
    assert strategy.warmup == warmup
    assert_warmup(strategy.compute(panel), warmup)


def test_rationale_and_the_span_of_advice(full: Advice) -> None:
    assert set(full.rationale) == RATIONALE
    s = full.strength[~np.isnan(full.strength)]
    assert s.min() == -1 and s.max() == 1


def test_strength_and_confidence_follow_the_documented_rule(panel: Panel, full: Advice) -> None:
    rows = slice(MeanReversion().warmup - 1, None)
    close = panel.close[rows]
    z, rsi, hl = (full.rationale[k][rows] for k in ("z", "rsi", "half_life"))
    strength, confidence = full.strength[rows], full.confidence[rows]
    for j in range(close.shape[1]):
        c = panel.close[:, j]
        np.testing.assert_allclose(z[:, j], ((c - ind.sma(c, 20)) / ind.stddev(c, 20))[rows], rtol=1e-12)
        np.testing.assert_array_equal(hl[:, j], ind.ou_half_life(c, 60)[rows])

    flat = ~np.isfinite(hl) | (hl > 30)
    assert flat.any() and (~flat).any() and np.isinf(hl).any()
    assert (strength[flat] == 0).all() and (confidence[flat] == 0).all()

    active = ~flat
    np.testing.assert_allclose(confidence[active], 1 - hl[active] / 30, rtol=1e-12)
    confirmed = ((z < 0) & (rsi < 30)) | ((z > 0) & (rsi > 70))
    expected = np.where(np.abs(z) > 1.5, -np.sign(z) * np.minimum(1, np.abs(z) / 3 * np.where(confirmed, 1.5, 1)), 0)
    np.testing.assert_allclose(strength[active], expected[active], rtol=1e-12)
    assert (active & (np.abs(z) > 1.5) & confirmed).any()
    assert (strength[active & (z > 1.5)] < 0).all() and (strength[active & (z < -1.5)] > 0).all()
    assert (strength[active & (np.abs(z) <= 1.5)] == 0).all()


def test_fades_a_simulated_mean_reverting_series() -> None:
    rng = np.random.default_rng(11)
    x = np.zeros((600, 2))
    for t in range(1, 600):
        x[t] = 0.8 * x[t - 1] + rng.normal(0, 1, 2)
    close = 100 + x
    ts = np.arange(600, dtype=np.int64) * 86_400_000_000_000
    advice = MeanReversion().compute(Panel(ts, ("A", "B"), close, close + 0.5, close - 0.5, close, np.ones_like(close)))
    warm = ~np.isnan(advice.strength)
    assert (advice.confidence[warm] > 0).mean() > 0.9
    z = advice.rationale["z"][warm]
    assert np.corrcoef(advice.strength[warm], z)[0, 1] < -0.7
