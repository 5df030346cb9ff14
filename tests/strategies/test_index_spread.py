"""The index-spread strategy (COMP vs SPX) on the shipped data: its model against numpy and pandas, its
documented rule recomputed from its rationale, its legs, and its abstention without them.

The contract every strategy honours (ranges, prefix stability, no look-ahead, gaps) is in test_contract.py,
which runs this strategy on ``index_panel`` because it declares ``required_symbols``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel, Strategy
from strategies.index_spread import RATIONALE, IndexSpread, IndexSpreadParams, pair_model

_FIELDS = ("open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def legs(index_panel: Panel) -> tuple[int, int]:
    """Columns of COMP (leg A) and SPX (leg B) in ``index_panel``."""
    return index_panel.symbols.index("COMP"), index_panel.symbols.index("SPX")


@pytest.fixture(scope="module")
def full(index_panel: Panel) -> Advice:
    return IndexSpread().compute(index_panel)


def _drop_columns(p: Panel, symbols: set[str]) -> Panel:
    keep = [j for j, s in enumerate(p.symbols) if s not in symbols]
    return Panel(p.ts.copy(), tuple(p.symbols[j] for j in keep), *(getattr(p, f)[:, keep].copy() for f in _FIELDS))


def _assert_abstains(advice: Advice) -> None:
    assert np.isnan(advice.strength).all()
    assert (advice.confidence == 0).all()
    assert set(advice.rationale) == set(RATIONALE)
    assert all(np.isnan(v).all() for v in advice.rationale.values())


def test_registry_finds_it_and_it_declares_its_legs() -> None:
    assert registry.get("index_spread") is IndexSpread
    defaults = IndexSpreadParams()
    assert (defaults.leg_a, defaults.leg_b) == ("COMP", "SPX")
    assert IndexSpread.required_symbols == (defaults.leg_a, defaults.leg_b)
    assert not hasattr(Strategy, "required_symbols"), "the declaration belongs to the strategies that need it"
    strategy = registry.create("index_spread", {"hedge_window": 60, "entry_z": 1.5})
    assert isinstance(strategy, IndexSpread) and strategy.params.hedge_window == 60


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"leg_a": "SPX"}, r"leg_a and leg_b must differ, both are 'SPX'"),
        ({"leg_b": ""}, "leg_b"),
        ({"exit_z": 2.0}, r"exit_z \(2\.0\) must be < entry_z \(2\.0\)"),
        ({"exit_z": -0.1}, "exit_z"),
        ({"entry_z": 3.5}, r"entry_z \(3\.5\) must be <= full_z \(3\.0\)"),
        ({"hedge_window": 2}, "hedge_window"),
        ({"z_window": 1}, "z_window"),
        ({"max_beta_cv": 0}, "max_beta_cv"),
        ({"window": 120}, "window"),
    ],
)
def test_bad_params_raise_validation_error(params: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IndexSpread(params)


@pytest.mark.parametrize(
    ("params", "warmup"),
    [({}, 179), ({"hedge_window": 30, "z_window": 20}, 49), ({"hedge_window": 3, "z_window": 2}, 4)],
)
def test_abstains_exactly_during_warmup_on_the_legs(
    index_panel: Panel, legs: tuple[int, int], params: dict, warmup: int, assert_warmup
) -> None:
    strategy = IndexSpread(params)
    assert strategy.warmup == warmup
    advice = strategy.compute(index_panel)
    cols = list(legs)
    assert_warmup(Advice(advice.strength[:, cols], advice.confidence[:, cols]), warmup)


@pytest.mark.parametrize(
    ("window", "reference"), [(3, "lstsq"), (20, "polyfit"), (120, "lstsq"), (120, "polyfit"), (500, "lstsq")]
)
def test_hedge_ratio_matches_numpy(index_panel: Panel, legs: tuple[int, int], window: int, reference: str) -> None:
    a, b = index_panel.close[:, legs[0]], index_panel.close[:, legs[1]]
    m = pair_model(a, b, IndexSpreadParams(hedge_window=window, z_window=2))
    la, lb = np.log(a), np.log(b)
    expected = np.full((len(a), 2), np.nan)
    for t in range(window - 1, len(a)):
        x, y = lb[t - window + 1 : t + 1], la[t - window + 1 : t + 1]
        if reference == "lstsq":
            expected[t] = np.linalg.lstsq(np.column_stack([x, np.ones(window)]), y, rcond=None)[0]
        else:
            expected[t] = np.polyfit(x, y, 1)
    assert np.isnan(m["beta"][: window - 1]).all() and not np.isnan(m["beta"][window - 1 :]).any()
    np.testing.assert_allclose(m["beta"], expected[:, 0], rtol=1e-9)
    # alpha = mean(ln A) - beta * mean(ln B) is a difference of terms near 8 that can cancel to ~1e-3 (short
    # windows), so it is compared at 1e-9 of the size of those terms
    np.testing.assert_allclose(m["alpha"], expected[:, 1], rtol=1e-9, atol=1e-9 * np.abs(la).max())


@pytest.mark.parametrize("z_window", [2, 20, 60, 250])
def test_z_score_matches_pandas_rolling(index_panel: Panel, legs: tuple[int, int], z_window: int) -> None:
    a, b = index_panel.close[:, legs[0]], index_panel.close[:, legs[1]]
    m = pair_model(a, b, IndexSpreadParams(z_window=z_window))
    spread = pd.Series(m["spread"])
    roll = spread.rolling(z_window)
    expected = ((spread - roll.mean()) / roll.std(ddof=0)).to_numpy()
    assert np.array_equal(np.isnan(m["z"]), np.isnan(expected))
    np.testing.assert_allclose(m["z"], expected, rtol=1e-9, atol=1e-9)


def test_documented_rule_recomputed_from_the_rationale(
    index_panel: Panel, legs: tuple[int, int], full: Advice
) -> None:
    ja, jb = legs
    p = IndexSpreadParams()
    r = {k: v[:, ja] for k, v in full.rationale.items()}
    for key in RATIONALE:
        if key == "position":
            assert np.array_equal(full.rationale[key][:, jb], -r[key] + 0.0, equal_nan=True)
        else:
            assert np.array_equal(full.rationale[key][:, jb], r[key], equal_nan=True), key

    # spread = ln A - beta ln B - alpha, bit for bit with libm's scalar log
    la = np.array([math.log(v) for v in index_panel.close[:, ja]])
    lb = np.array([math.log(v) for v in index_panel.close[:, jb]])
    np.testing.assert_array_equal(r["spread"], la - r["beta"] * lb - r["alpha"])

    # z-score of the spread and the dispersion of beta over z_window (population std)
    spread, beta = pd.Series(r["spread"]), pd.Series(r["beta"])
    z = ((spread - spread.rolling(p.z_window).mean()) / spread.rolling(p.z_window).std(ddof=0)).to_numpy()
    np.testing.assert_allclose(r["z"], z, rtol=1e-9, atol=1e-9)
    cv = (beta.rolling(p.z_window).std(ddof=0) / beta.abs()).to_numpy()
    np.testing.assert_allclose(r["beta_cv"], cv, rtol=1e-9)

    # the position's hysteresis, strength and confidence from z and beta_cv as documented
    warm = IndexSpread().warmup - 1
    position = np.full(len(index_panel), np.nan)
    pos = 0.0
    for t in range(warm, len(index_panel)):
        zt = r["z"][t]
        if zt < -p.entry_z:
            pos = 1.0
        elif zt > p.entry_z:
            pos = -1.0
        elif (pos > 0 and zt >= -p.exit_z) or (pos < 0 and zt <= p.exit_z):
            pos = 0.0
        position[t] = pos
    np.testing.assert_array_equal(r["position"], position)
    assert {-1.0, 0.0, 1.0} <= set(position[warm:])
    held = (position != 0) & (np.abs(r["z"]) <= p.entry_z)
    assert held.any(), "some positions are held inside the entry band (hysteresis)"
    np.testing.assert_array_equal(full.strength[:, ja], position * np.minimum(1.0, np.abs(r["z"]) / p.full_z))
    np.testing.assert_array_equal(full.confidence[warm:, ja], np.clip(1 - r["beta_cv"][warm:] / p.max_beta_cv, 0, 1))
    np.testing.assert_array_equal(full.confidence[warm:, jb], full.confidence[warm:, ja])
    c = full.confidence[warm:, ja]
    assert (c == 0).any() and (c > 0.8).any()


def test_legs_get_opposite_signs_and_other_columns_abstain(
    index_panel: Panel, legs: tuple[int, int], full: Advice
) -> None:
    ja, jb = legs
    warm = IndexSpread().warmup - 1
    sa, sb = full.strength[warm:, ja], full.strength[warm:, jb]
    np.testing.assert_array_equal(sb, -sa + 0.0)
    np.testing.assert_array_equal(np.sign(sb), -np.sign(sa))
    assert (sa > 0).any() and (sa < 0).any() and (sa == 0).any()
    assert not np.signbit(sa[sa == 0]).any() and not np.signbit(sb[sb == 0]).any(), "flat is +0.0 on both legs"
    assert sa.max() == 1 and sa.min() == -1
    others = [j for j in range(len(index_panel.symbols)) if j not in legs]
    assert np.isnan(full.strength[:, others]).all()
    assert (full.confidence[:, others] == 0).all()
    assert all(np.isnan(v[:, others]).all() for v in full.rationale.values())


@pytest.mark.parametrize("missing", [{"SPX"}, {"COMP"}, {"SPX", "COMP"}])
def test_abstains_everywhere_without_a_leg(index_panel: Panel, missing: set[str]) -> None:
    without = _drop_columns(index_panel, missing)
    # the indices' closes as reference series do not stand in for the columns: no column, no advice
    reference = {s: index_panel.close[:, index_panel.symbols.index(s)].copy() for s in ("SPX", "COMP")}
    without = Panel(without.ts, without.symbols, *(getattr(without, f) for f in _FIELDS), reference)
    _assert_abstains(IndexSpread().compute(without))


def test_abstains_on_the_stock_panel_and_trades_other_legs(panel: Panel) -> None:
    _assert_abstains(IndexSpread().compute(panel))
    _assert_abstains(IndexSpread({"leg_a": "NDX"}).compute(panel))
    advice = IndexSpread({"leg_a": "AAPL", "leg_b": "MSFT"}).compute(panel)
    ja, jb = panel.symbols.index("AAPL"), panel.symbols.index("MSFT")
    warm = IndexSpread().warmup - 1
    assert not np.isnan(advice.strength[warm:, [ja, jb]]).any()
    np.testing.assert_array_equal(advice.strength[:, jb], -advice.strength[:, ja] + 0.0)
    others = [j for j in range(len(panel.symbols)) if j not in (ja, jb)]
    assert np.isnan(advice.strength[:, others]).all()


def test_rows_where_a_leg_has_no_bar_are_skipped(
    index_panel: Panel, legs: tuple[int, int], full: Advice, assert_warmup
) -> None:
    ja, jb = legs
    holes = {jb: [5, 150, 151, 900, 2000], ja: [160, 900, 1500]}
    arrays = {f: getattr(index_panel, f).copy() for f in _FIELDS}
    for j, rows in holes.items():
        for f in _FIELDS:
            arrays[f][rows, j] = np.nan
    gappy = Panel(index_panel.ts.copy(), index_panel.symbols, *(arrays[f] for f in _FIELDS))
    advice = IndexSpread().compute(gappy)

    pair = ~np.isnan(arrays["close"][:, ja]) & ~np.isnan(arrays["close"][:, jb])
    valid = np.repeat(pair[:, None], 2, axis=1)
    assert_warmup(Advice(advice.strength[:, [ja, jb]], advice.confidence[:, [ja, jb]]), IndexSpread().warmup, valid)

    # on the pair's rows, exactly the advice computed without the other rows
    rows = np.flatnonzero(pair)
    dense = Panel(index_panel.ts[rows], index_panel.symbols, *(arrays[f][rows] for f in _FIELDS))
    expected = IndexSpread().compute(dense)
    for j in legs:
        np.testing.assert_array_equal(advice.strength[rows, j], expected.strength[:, j])
        np.testing.assert_array_equal(advice.confidence[rows, j], expected.confidence[:, j])
        for key in RATIONALE:
            np.testing.assert_array_equal(advice.rationale[key][rows, j], expected.rationale[key][:, j])
    assert not np.array_equal(advice.strength[rows, ja], full.strength[rows, ja], equal_nan=True)

