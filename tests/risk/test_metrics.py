"""Performance statistics against closed forms on constructed curves."""

import numpy as np
import pytest

from risk.metrics import max_drawdown, performance


def test_max_drawdown_closed_form():
    assert max_drawdown(np.array([100, 120, 90, 130, 65, 140])) == pytest.approx(0.5)
    assert max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0


def test_constant_growth_has_known_annual_return_and_zero_vol():
    daily = 0.001
    equity = 100 * (1 + daily) ** np.arange(1, 253)
    p = performance(equity, 100.0)
    assert p["total_return"] == pytest.approx((1 + daily) ** 252 - 1)
    assert p["annual_return"] == pytest.approx((1 + daily) ** 252 - 1)
    assert p["annual_volatility"] == pytest.approx(0.0, abs=1e-12)


def test_sharpe_and_volatility_match_numpy():
    rng = np.random.default_rng(3)
    r = rng.normal(0.0005, 0.01, 500)
    equity = 1e6 * np.cumprod(1 + r)
    p = performance(equity, 1e6)
    assert p["annual_volatility"] == pytest.approx(np.std(r, ddof=1) * np.sqrt(252), rel=1e-9)
    assert p["sharpe"] == pytest.approx(np.mean(r) / np.std(r, ddof=1) * np.sqrt(252), rel=1e-9)
