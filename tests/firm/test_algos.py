"""TWAP / VWAP schedules and the volume profile (firm/algos.py): exact sums, hand-computed roundings,
determinism, and a profile that reads past volume only."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from firm.algos import ParentOrder, Schedule, allocate, twap_schedule, volume_profile, vwap_schedule
from firm.data.source import SampleDataSource
from firm.events import Side


def test_largest_remainder_by_hand():
    # 1000 / 3 = 333.33 each: floors 333, the one share left goes to the earliest of the tied fractions.
    assert allocate(1000, [1, 1, 1]).tolist() == [334, 333, 333]
    # ideal 99.9, 199.8, 299.7, 399.6: floors sum to 996, the 3 left go to fractions .9, .8, .7.
    assert allocate(999, [0.1, 0.2, 0.3, 0.4]).tolist() == [100, 200, 300, 399]
    # lots of 100: 10 lots over 4 slots = 2.5 each -> 3, 3, 2, 2 lots; the odd 50 rides on the last slice.
    assert twap_schedule(1050, 4, min_lot=100).quantities == (300, 300, 200, 250)
    # 2 lots over 5 slots: two slices of a lot, the rest merged away (no child below a lot).
    assert allocate(250, np.ones(5), min_lot=100).tolist() == [100, 150, 0, 0, 0]
    # less than a lot: one slice, in the heaviest slot.
    assert allocate(50, [1, 3, 3], min_lot=100).tolist() == [0, 50, 0]


@pytest.mark.parametrize("min_lot", [1, 7, 100])
def test_schedules_sum_exactly_respect_the_lot_and_are_deterministic(min_lot):
    rng = np.random.default_rng(3)
    for _ in range(300):
        q = int(rng.integers(1, 50_000))
        n = int(rng.integers(1, 13))
        w = rng.random(n)
        w[rng.random(n) < 0.3] = 0.0  # some slots with no expected volume
        if w.sum() == 0:
            continue
        a = allocate(q, w, min_lot)
        assert a.sum() == q and a.dtype == np.int64 and (a >= 0).all()
        assert (a[w == 0] == 0).all()  # a slot with no expected volume gets nothing
        assert np.array_equal(a, allocate(q, w.copy(), min_lot))
        nz = np.flatnonzero(a)
        if q >= min_lot:
            assert (a[nz] >= min_lot).all()
            assert (a[nz[:-1]] % min_lot == 0).all() and a[nz[-1]] % min_lot == q % min_lot
        else:
            assert nz.size == 1
        # proportional to within a lot (plus the odd lot on the last slice)
        assert np.abs(a - q * w / w.sum()).max() <= min_lot + q % min_lot + 1e-9
    t = twap_schedule(12_345, 7, min_lot=min_lot)
    assert t.total == 12_345 and t == twap_schedule(12_345, 7, min_lot=min_lot)


def test_twap_slot_times():
    start = datetime(2012, 1, 3, 14, 30, tzinfo=timezone.utc)
    s = twap_schedule(10_000, 13, start, start + timedelta(hours=6, minutes=30))
    assert s.quantities == (770,) * 3 + (769,) * 10  # 13 x 769 = 9,997: 3 shares left, to the first slots
    assert s.starts[0] == start and s.starts[1] - s.starts[0] == timedelta(minutes=30)
    assert s.starts[-1] == start + timedelta(hours=6)
    with pytest.raises(ValueError):
        twap_schedule(100, 2, start, start)


def test_vwap_is_proportional_to_the_intraday_profile_by_hand():
    # day 1 shares .1 .2 .7, day 2 shares .2 .2 .6: the profile is their mean .15 .2 .65
    history = np.array([[10.0, 20.0, 70.0], [200.0, 200.0, 600.0]])
    profile = volume_profile(history)
    np.testing.assert_allclose(profile, [0.15, 0.2, 0.65], rtol=0, atol=1e-15)
    assert vwap_schedule(2_000, profile).quantities == (300, 400, 1300)
    # 1001: ideal 150.15, 200.2, 650.65 -> floors 150, 200, 650, the share left to the largest fraction (.65)
    assert vwap_schedule(1_001, profile).quantities == (150, 200, 651)


def test_intraday_profile_reads_only_the_past():
    rng = np.random.default_rng(0)
    volumes = rng.lognormal(10, 1, size=(40, 13))
    asof = 29
    before = volume_profile(volumes, asof=asof, lookback=20)
    changed = volumes.copy()
    changed[asof + 1 :] *= rng.lognormal(0, 2, size=changed[asof + 1 :].shape)
    assert np.array_equal(before, volume_profile(changed, asof=asof, lookback=20))
    np.testing.assert_allclose(before, (volumes[10:30] / volumes[10:30].sum(1, keepdims=True)).mean(0), rtol=1e-14)
    changed[asof] *= 5.0  # the decision day's volume is known at its close and is used
    assert not np.array_equal(before, volume_profile(changed, asof=asof, lookback=20))


def test_daily_weekday_profile_by_hand():
    dates = pd.bdate_range("2012-01-02", periods=10)  # two weeks from a Monday
    volumes = np.where(dates.day_of_week == 0, 50.0, 100.0)
    future = pd.bdate_range("2012-01-16", periods=5)  # Monday .. Friday
    # mean 90: Monday factor 50/90, the others 100/90 -> shares 50/450, 100/450 x 4
    profile = volume_profile(volumes, dates=dates, sessions=future, lookback=10)
    np.testing.assert_allclose(profile, np.array([50, 100, 100, 100, 100]) / 450, rtol=1e-15)
    assert vwap_schedule(9_000, profile, min_lot=100).quantities == (1000, 2000, 2000, 2000, 2000)
    flat = volume_profile(volumes, dates=dates, sessions=future, seasonality="flat")
    np.testing.assert_array_equal(flat, np.full(5, 0.2))


def test_daily_profile_on_shipped_volume_uses_only_the_past():
    frame = SampleDataSource().load("AAPL")
    volumes, dates = frame["volume"].to_numpy(), frame.index
    asof = int(np.searchsorted(dates, pd.Timestamp("2008-09-12")))  # the Friday before Lehman's filing
    future = dates[asof + 1 : asof + 6]
    profile = volume_profile(volumes, asof=asof, dates=dates, sessions=future)
    assert profile.sum() == pytest.approx(1.0) and profile.shape == (5,)
    changed = volumes.copy()
    changed[asof + 1 :] = changed[asof + 1 :][::-1] * 10.0
    assert np.array_equal(profile, volume_profile(changed, asof=asof, dates=dates, sessions=future))
    # Monday (the first future session) carries less than the mean share: the measured Monday effect.
    past = pd.Series(volumes[asof - 251 : asof + 1], dates[asof - 251 : asof + 1])
    monday = past[past.index.day_of_week == 0].mean() / past.mean()
    factors = [past[past.index.day_of_week == d.day_of_week].mean() / past.mean() for d in future]
    np.testing.assert_allclose(profile, np.array(factors) / sum(factors), rtol=1e-12)
    assert future[0].day_of_week == 0 and monday < 1.0 and profile[0] < 0.2


def test_child_orders_have_deterministic_unique_ids():
    parent = ParentOrder("firm-AAPL-20041015T2000", "AAPL", Side.BUY, 39_979, arrival_price=2.9237)
    kids = parent.children(twap_schedule(parent.quantity, 5, min_lot=100))
    assert [k.order_ref for k in kids] == [f"firm-AAPL-20041015T2000-s{k}" for k in range(1, 6)]
    assert sum(k.quantity for k in kids) == 39_979 and all(k.side is Side.BUY for k in kids)
    assert kids == parent.children(twap_schedule(parent.quantity, 5, min_lot=100))
    sparse = parent.children(Schedule((0, 39_000, 0, 979)))
    assert [k.order_ref for k in sparse] == ["firm-AAPL-20041015T2000-s2", "firm-AAPL-20041015T2000-s4"]
    with pytest.raises(ValueError, match="sums to"):
        parent.children(Schedule((1, 2)))
    with pytest.raises(ValueError, match="child id"):
        ParentOrder("firm-AAPL-20041015T2000-s3", "AAPL", Side.BUY, 10)


def test_bad_inputs_are_refused():
    for args in [(-1, [1]), (10, []), (10, [0, 0]), (10, [1, np.nan]), (10, [1, -1])]:
        with pytest.raises(ValueError):
            allocate(*args)
    with pytest.raises(ValueError):
        allocate(10, [1], min_lot=0)
    with pytest.raises(ValueError):
        volume_profile(np.ones(5))  # daily volume without the future sessions
    with pytest.raises(ValueError):
        volume_profile(np.ones((3, 2)), asof=3)
