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
