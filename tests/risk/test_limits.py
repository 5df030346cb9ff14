"""Pre-trade limits: each rule rejects a growing order past its limit and never blocks a reduction."""

from risk.limits import Limits, check_order

LIMITS = Limits(max_position_weight=0.25, max_gross_exposure=1.0, max_net_exposure=0.6, max_drawdown=0.2)


def test_within_limits_passes():
    assert check_order(LIMITS, 1_000_000, 0.0, [0.0, 0.0], 0, 1_000, 100.0, 0).approved


def test_position_limit():
    c = check_order(LIMITS, 1_000_000, 0.0, [0.0, 0.0], 0, 3_000, 100.0, 0)  # 30% of equity
    assert not c.approved and c.rule == "max_position_weight" and "30.00%" in c.reason


def test_gross_and_net_limits():
    values = [250_000.0, 250_000.0, -250_000.0, 200_000.0, 0.0]
    c = check_order(LIMITS, 1_000_000, 0.0, values, 4, 1_000, 100.0, 0)  # gross 95% -> 105%
    assert not c.approved and c.rule == "max_gross_exposure"
    values = [250_000.0, 250_000.0, 0.0, 0.0]
    c = check_order(LIMITS, 1_000_000, 0.0, values, 2, 1_500, 100.0, 0)  # net 50% -> 65%
    assert not c.approved and c.rule == "max_net_exposure"
    c = check_order(LIMITS, 1_000_000, 0.0, values, 2, -1_500, 100.0, 0)  # a short lowers net
    assert c.approved


def test_drawdown_stop_blocks_growth_only():
    c = check_order(LIMITS, 800_000, 0.2, [100_000.0], 0, 100, 100.0, 1_000)
    assert not c.approved and c.rule == "max_drawdown"
    assert check_order(LIMITS, 800_000, 0.2, [100_000.0], 0, -500, 100.0, 1_000).approved


def test_reductions_pass_even_beyond_limits():
    # the position is already 40% of equity (the market moved): selling some must pass
    assert check_order(LIMITS, 1_000_000, 0.5, [400_000.0], 0, -1_000, 100.0, 4_000).approved


def test_non_positive_equity_blocks_growth():
    c = check_order(LIMITS, -5.0, 0.0, [0.0], 0, 1, 10.0, 0)
    assert not c.approved and c.rule == "equity"


# --- sector, concentration, the bar's gate, tiers, daily loss, crash velocity, correlation shift ---

import math  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from firm.config import RiskConfig  # noqa: E402
from firm.data.source import SampleDataSource  # noqa: E402
from risk.limits import (  # noqa: E402
    Gate,
    Tier,
    concentration,
    correlation_shift,
    daily_loss,
    drawdown_tier,
    move_sigmas,
    size_scale,
)
from risk.monitor import limits_from_config  # noqa: E402

TIERS = (Tier(0.10, "reduce_size", 0.5), Tier(0.15, "stop_new_entries"), Tier(0.20, "flatten"))
# AAPL, MSFT, IBM, GOOG share a sector, SPX and COMP another (the default map)
SECTORED = limits_from_config(RiskConfig(max_sector_weight=0.6), ("AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"))


def test_sector_map_from_config():
    assert SECTORED.sector_of == (0, 0, 0, 0, 1, 1)
    assert SECTORED.sector_names == ("technology", "broad_index")
    own = limits_from_config(RiskConfig(sectors={"AAPL": "tech"}), ("AAPL", "XOM"))
    assert own.sector_names == ("tech", "XOM (own sector)") and own.sector_of == (0, 1)


def test_sector_limit():
    # technology holds 200k + 200k + 150k = 55% of equity; 1,000 GOOG at 100 -> 65% > 60%
    values = [200_000.0, 200_000.0, 150_000.0, 0.0, 0.0, 0.0]
    c = check_order(SECTORED, 1_000_000, 0.0, values, 3, 1_000, 100.0, 0)
    assert not c.approved and c.rule == "max_sector_weight" and "technology gross 65.00%" in c.reason
    assert check_order(SECTORED, 1_000_000, 0.0, values, 3, 400, 100.0, 0).approved  # 59%
    assert check_order(SECTORED, 1_000_000, 0.0, values, 4, -1_000, 100.0, 0).approved  # another sector
    short = check_order(SECTORED, 1_000_000, 0.0, values, 3, -1_000, 100.0, 0)  # gross counts shorts too
    assert not short.approved and short.rule == "max_sector_weight"


def test_concentration_limit_applies_once_the_book_is_large():
    limits = Limits(0.5, 2.0, 2.0, 0.5, max_concentration=0.4, concentration_min_gross=0.5)
    # gross 20% + 20% = 40%; 3,000 more of column 0 at 100: 50% / 70% gross = 71% of gross
    values = [200_000.0, 200_000.0]
    assert concentration(values, 0, 500_000.0) == pytest.approx(500 / 700)
    c = check_order(limits, 1_000_000, 0.0, values, 0, 3_000, 100.0, 2_000)
    assert not c.approved and c.rule == "max_concentration" and "71.43%" in c.reason
    # the first position of an empty book is 100% of gross, but the book is below 50% gross
    assert check_order(limits, 1_000_000, 0.0, [0.0, 0.0], 0, 3_000, 100.0, 0).approved


def test_gate_blocks_growth_not_reduction():
    gate = Gate(blocked=(("kill_switch", "engaged by ops"), ("daily_loss", "lost 6%")))
    c = check_order(LIMITS, 1_000_000, 0.0, [100_000.0, 0.0], 1, 10, 100.0, 0, gate)
    assert not c.approved and (c.rule, c.reason) == ("kill_switch", "engaged by ops")
    assert check_order(LIMITS, 1_000_000, 0.0, [100_000.0, 0.0], 0, -500, 100.0, 1_000, gate).approved
    halted = Gate(blocked_columns={1: ("crash_protection", "MSFT moved -6 sigma")})
    assert check_order(LIMITS, 1_000_000, 0.0, [0.0, 0.0], 1, 10, 100.0, 0, halted).rule == "crash_protection"
    assert check_order(LIMITS, 1_000_000, 0.0, [0.0, 0.0], 0, 10, 100.0, 0, halted).approved


def test_reduce_size_tier_scales_the_position_limit():
    gate = Gate(size_scale=0.5, scale_rule="drawdown_tier")
    c = check_order(LIMITS, 1_000_000, 0.11, [0.0], 0, 1_500, 100.0, 0, gate)  # 15% > 25% x 0.5
    assert not c.approved and c.rule == "drawdown_tier" and "12.50%" in c.reason
    assert check_order(LIMITS, 1_000_000, 0.11, [0.0], 0, 1_200, 100.0, 0, gate).approved


def test_drawdown_tiers():
    assert drawdown_tier(0.05, TIERS) is None and size_scale(0.05, TIERS) == 1.0
    assert drawdown_tier(0.10, TIERS).action == "reduce_size" and size_scale(0.12, TIERS) == 0.5
    assert drawdown_tier(0.17, TIERS).action == "stop_new_entries" and size_scale(0.17, TIERS) == 0.0
    assert drawdown_tier(0.35, TIERS).action == "flatten"


def test_daily_loss():
    assert daily_loss(1_000_000, 940_000) == pytest.approx(0.06)
    assert daily_loss(1_000_000, 1_010_000) == pytest.approx(-0.01)
    assert daily_loss(0.0, 5.0) == 0.0


def _closes(symbols, start, end):
    source = SampleDataSource()
    return pd.DataFrame({s: source.load(s)["close"] for s in symbols}).loc[start:end].dropna()


def test_flash_crash_velocity_on_real_data():
    """2010-05-06: the S&P 500 closed down 3.29% (log), 4.0 sigmas of the 60 daily returns before."""
    closes = _closes(["SPX", "COMP", "AAPL"], "2010-01-01", "2010-05-06")
    window = closes.to_numpy()[-62:]
    move, z = move_sigmas(window, 1, 60)
    logret = np.log(closes["SPX"]).diff()
    assert move[0] == pytest.approx(math.log(1128.150024 / 1165.869995), abs=1e-9)
    assert z[0] == pytest.approx(logret.iloc[-1] / logret.iloc[-61:-1].std(ddof=1), rel=1e-12)
    assert z[0] == pytest.approx(-4.0044, abs=1e-4)
    # over three bars, sigma scales by sqrt(3)
    move3, z3 = move_sigmas(closes.to_numpy()[-64:], 3, 60)
    ret = logret.iloc[-63:-3]
    assert z3[0] == pytest.approx((np.log(closes["SPX"]).iloc[-1] - np.log(closes["SPX"]).iloc[-4]) / (ret.std(ddof=1) * math.sqrt(3)))


def test_correlation_shift_on_real_data():
    """March 2007 (after the 27 February sell-off): the 20-day correlations of the six instruments
    moved far from their 250 days before, against pandas' own correlation matrices."""
    symbols = ["AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"]
    returns = np.log(_closes(symbols, "2005-01-01", "2007-03-21")).diff().dropna().to_numpy()[-270:]
    distance, pairs = correlation_shift(returns, 20)
    recent = pd.DataFrame(returns[-20:]).corr().to_numpy()
    before = pd.DataFrame(returns[:-20]).corr().to_numpy()
    iu = np.triu_indices(6, 1)
    assert pairs == 15
    assert distance == pytest.approx(np.abs(recent[iu] - before[iu]).mean(), rel=1e-12)
    assert distance > 0.4  # the default threshold raises the warning here
    calm, _ = correlation_shift(np.log(_closes(symbols, "2005-01-01", "2006-03-01")).diff().dropna().to_numpy()[-270:], 20)
    assert calm < 0.4


def test_correlation_shift_leaves_out_missing_series():
    rng = np.random.default_rng(0)
    r = rng.normal(size=(100, 3))
    r[5, 2] = np.nan
    d, pairs = correlation_shift(r, 20)
    assert pairs == 1 and math.isfinite(d)


def test_the_per_bar_kernels_match_the_numpy_definitions_on_real_data():
    """risk/monitor.py computes velocity and correlation shift with sequential numba loops, one bar at
    a time; on 2007-2010 they agree with move_sigmas and correlation_shift (numpy) to 1e-12."""
    from risk.limits import correlation_shift_at, velocity_at

    symbols = ["AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"]
    closes = _closes(symbols, "2007-01-01", "2010-12-31").to_numpy()
    logp = np.array([[math.log(x) for x in row] for row in closes.tolist()])
    for g in range(300, len(closes), 17):
        for window in (1, 3):
            move, z = velocity_at(logp, g, window, 60)
            ref = move_sigmas(closes[g - 60 - window : g + 1], window, 60)
            np.testing.assert_allclose(move, ref[0], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(z, ref[1], rtol=1e-10)
        returns = np.diff(logp[g - 270 : g + 1], axis=0)
        assert correlation_shift_at(logp, g, 20, 250) == pytest.approx(correlation_shift(returns, 20)[0], rel=1e-10)
    gap = logp.copy()
    gap[500, 2] = np.nan  # a missing price: the series is left out of every window that holds it
    assert math.isnan(velocity_at(gap, 510, 1, 60)[1][2])
    returns = np.diff(gap[500 - 260 : 511], axis=0)
    assert correlation_shift_at(gap, 510, 20, 250) == pytest.approx(correlation_shift(returns, 20)[0], rel=1e-10)
