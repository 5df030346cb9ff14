"""Macro regime agent on real reference series (arch): the contract checks on panels that carry them, each
component recomputed with pandas, the combination rule recomputed from the rationale, abstention.

test_contract.py runs on the four-stock panel without reference series, where this agent abstains
everywhere; here the same checks run on ``reference_panel`` (2004-08-19..2013-03-01: no VIX) and on
the S&P 500 2014-2018 with every series (VIX from 2014-01).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from firm.data.reference import REFERENCE, load_reference, publication_times
from firm.data.validate import get_calendar
from strategies import registry
from strategies.base import Advice, Panel
from strategies.macro import COMPONENTS, Macro, MacroParams

_FIELDS = ("open", "high", "low", "close", "volume")


# --- panels -------------------------------------------------------------------------------------------


def _closes_ns(dates: pd.DatetimeIndex) -> np.ndarray:
    """The XNYS session closes (UTC ns) of session dates."""
    closes = get_calendar("XNYS").closes.reindex(dates)
    assert not closes.isna().any()
    return closes.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[ns]").astype(np.int64)


def _with_reference(p: Panel) -> Panel:
    """``p`` (ts = session dates at midnight) with every reference series aligned to its sessions' closes."""
    dates = pd.DatetimeIndex(p.ts.view("datetime64[ns]"))
    return dataclasses.replace(p, reference=load_reference(tuple(REFERENCE), _closes_ns(dates)))


@pytest.fixture(scope="module")
def spx_panel() -> Panel:
    """The S&P 500 (arch, Adj Close scaling) 2014-01-02..2018-12-31 as the one instrument, with all series."""
    import arch.data.sp500

    df = arch.data.sp500.load().loc["2014-01-01":"2018-12-31"]
    factor = df["Adj Close"] / df["Close"]
    cols = [df[c] * factor for c in ("Open", "High", "Low", "Close")] + [df["Volume"].astype("float64")]
    arrays = [c.to_numpy(np.float64)[:, None] for c in cols]
    ts = pd.DatetimeIndex(df.index).as_unit("ns").asi8
    return _with_reference(Panel(ts, ("SPX",), *arrays))


@pytest.fixture(scope="module")
def gappy_reference_panel(gappy_panel: Panel) -> Panel:
    """The four stocks from 2000-03-01 (GOOG NaN before 2004-08-19) with every series."""
    return _with_reference(gappy_panel)


@pytest.fixture(scope="module")
def macro() -> Macro:
    return Macro()


@pytest.fixture(scope="module")
def full(macro: Macro, reference_panel: Panel) -> Advice:
    return macro.compute(reference_panel)


@pytest.fixture(scope="module")
def spx_full(macro: Macro, spx_panel: Panel) -> Advice:
    return macro.compute(spx_panel)


# --- helpers that keep Panel.reference (conftest's head / perturb_after drop it) ---------------------


@pytest.fixture(scope="module")
def head_ref(head):
    def _head(p: Panel, k: int) -> Panel:
        return dataclasses.replace(head(p, k), reference={n: v[:k].copy() for n, v in p.reference.items()})

    return _head


@pytest.fixture(scope="module")
def perturb_ref_after(perturb_after):
    """Bars after t perturbed as conftest does, and every reference series after t too: scaled by 1.5
    ("scale"), replaced by random values ("random") or blanked to NaN ("blank"; bars left as they are)."""

    def _perturb(p: Panel, t: int, how: str) -> Panel:
        bars = p if how == "blank" else perturb_after(p, t, how)
        rng = np.random.default_rng(t + 1)
        reference = {}
        for name, values in p.reference.items():
            v = values.copy()
            tail = slice(t + 1, None)
            if how == "scale":
                v[tail] *= 1.5
            elif how == "random":
                level = np.nanmedian(values) if not np.isnan(values).all() else 1.0
                v[tail] = rng.uniform(0.5, 2.0, v[tail].shape) * level
            else:
                v[tail] = np.nan
            reference[name] = v
        return dataclasses.replace(bars, reference=reference)

    return _perturb


def _arrays(advice: Advice) -> dict[str, np.ndarray]:
    return {"strength": advice.strength, "confidence": advice.confidence, **advice.rationale}


def _col(advice: Advice, key: str) -> np.ndarray:
    """A rationale series as (T,), from the first instrument (the view is the same for all)."""
    return advice.rationale[key][:, 0]


def _weights(p: MacroParams) -> np.ndarray:
    return np.array(p.weights)


# --- the contract, on panels with reference series ----------------------------------------------------


def test_registered_with_its_reference(macro: Macro) -> None:
    assert registry.get("macro") is Macro
    assert Macro.required_reference == ("AAA", "BAA", "CORE_CPI", "WTI", "VIX")
    assert set(Macro.required_reference) <= set(REFERENCE)
    assert macro.warmup == 1


def test_ranges_and_shapes(reference_panel: Panel, full: Advice, spx_panel: Panel, spx_full: Advice) -> None:
    for p, a in ((reference_panel, full), (spx_panel, spx_full)):
        shape = p.close.shape
        assert a.strength.shape == a.confidence.shape == shape
        for key, values in a.rationale.items():
            assert values.shape == shape, key
        s = a.strength[~np.isnan(a.strength)]
        assert s.size and ((s >= -1) & (s <= 1)).all()
        assert ((a.confidence >= 0) & (a.confidence <= 1)).all()
        assert (a.confidence[np.isnan(a.strength)] == 0).all()


def test_speaks_from_the_first_row_when_a_component_is_there(full: Advice, spx_full: Advice, assert_warmup) -> None:
    # warm-up 1: the credit level is available on every row of both panels, so the agent always speaks
    assert_warmup(full, 1)
    assert_warmup(spx_full, 1)


def test_same_view_for_every_instrument(full: Advice) -> None:
    for a in (full.strength, full.confidence, *full.rationale.values()):
        assert np.array_equal(a, np.repeat(a[:, :1], a.shape[1], axis=1), equal_nan=True)


def test_abstains_per_instrument_without_a_bar(
    macro: Macro, gappy_reference_panel: Panel, head_ref, assert_warmup, assert_same_rows
) -> None:
    p = gappy_reference_panel
    a = macro.compute(p)
    assert_warmup(a, 1, p.valid)
    for key, values in a.rationale.items():
        assert np.isnan(values[~p.valid]).all(), key
    goog = p.symbols.index("GOOG")
    start = int(np.flatnonzero(p.valid[:, goog])[0])
    assert start > 1000
    # where GOOG trades it gets the same score as the others
    assert np.array_equal(a.strength[start:, goog], a.strength[start:, 0])
    for k in (start, start + 1, start + 70, len(p) - 1):
        assert_same_rows(macro.compute(head_ref(p, k)), a, k)


PREFIXES = [1, 2, 10, 59, 60, 61, 62, 63, 64, 125, 126, 314, 315, 316, 333, 1000, 1500, 2147]


@pytest.mark.parametrize("k", PREFIXES)
def test_prefix_stability(
    macro: Macro, reference_panel: Panel, full: Advice, head_ref, assert_same_rows, k: int
) -> None:
    part = macro.compute(head_ref(reference_panel, k))
    assert part.strength.shape == (k, len(reference_panel.symbols))
    assert_same_rows(part, full, k)


def test_prefix_stability_with_vix(
    macro: Macro, spx_panel: Panel, spx_full: Advice, head_ref, assert_same_rows
) -> None:
    first_z = int(np.flatnonzero(~np.isnan(_col(spx_full, "vix_z")))[0])
    for k in (1, first_z - 1, first_z, first_z + 1, 700, len(spx_panel) - 1):
        assert_same_rows(macro.compute(head_ref(spx_panel, k)), spx_full, k)


@pytest.mark.parametrize("how", ["scale", "random", "blank"])
@pytest.mark.parametrize("t", [30, 100, 330, 700, 900, 2100])
def test_no_look_ahead(
    macro: Macro, reference_panel: Panel, full: Advice, perturb_ref_after, assert_same_rows, t: int, how: str
) -> None:
    changed = macro.compute(perturb_ref_after(reference_panel, t, how))
    assert_same_rows(changed, full, t + 1)
    later, before = slice(t + 1, None), _arrays(full)
    reacted = [k for k, v in _arrays(changed).items() if not np.array_equal(v[later], before[k][later], equal_nan=True)]
    assert "strength" in reacted, "the perturbed series must reach the advice, or the check above proves nothing"


@pytest.mark.parametrize("how", ["scale", "random", "blank"])
def test_no_look_ahead_vix(
    macro: Macro, spx_panel: Panel, spx_full: Advice, perturb_ref_after, assert_same_rows, how: str
) -> None:
    t = 400
    changed = macro.compute(perturb_ref_after(spx_panel, t, how))
    assert_same_rows(changed, spx_full, t + 1)
    later = slice(t + 1, None)
    vix_before, vix_after = spx_full.rationale["c_vix_level"][later], changed.rationale["c_vix_level"][later]
    assert not np.array_equal(vix_after, vix_before, equal_nan=True)


def test_each_component_waits_for_its_own_lookback(full: Advice, spx_full: Advice, reference_panel: Panel) -> None:
    p = Macro().params
    for name in ("AAA", "BAA", "CORE_CPI", "WTI"):
        assert not np.isnan(reference_panel.reference[name]).any(), name  # so the first rows are set by the lookbacks
    first = {c: int(np.flatnonzero(~np.isnan(_col(full, f"c_{c}")))[0]) for c in COMPONENTS[:4]}
    assert first == {
        "credit_level": 0,
        "credit_change": p.credit_change_n,
        "inflation": p.cpi_yoy_n + p.cpi_accel_n,
        "oil": p.oil_n,
    }
    vix_rows = np.flatnonzero(~np.isnan(_col(spx_full, "vix")))
    first_z = int(np.flatnonzero(~np.isnan(_col(spx_full, "c_vix_z")))[0])
    assert first_z == vix_rows[0] + p.vix_z_n - 1
    assert (np.diff(vix_rows[: p.vix_z_n]) == 1).all()


# --- components, recomputed with pandas on the aligned series ----------------------------------------


def _aligned(p: Panel) -> pd.DataFrame:
    return pd.DataFrame(p.reference)


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert np.array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_allclose(a[~np.isnan(a)], b[~np.isnan(b)], rtol=1e-9, atol=1e-12)


def test_credit_components(reference_panel: Panel, full: Advice) -> None:
    p, ref = Macro().params, _aligned(reference_panel)
    spread = ref["BAA"] - ref["AAA"]
    change = spread - spread.shift(p.credit_change_n)
    _close(_col(full, "credit_spread"), spread.to_numpy())
    _close(_col(full, "credit_spread_change"), change.to_numpy())
    _close(_col(full, "c_credit_level"), -np.tanh((spread.to_numpy() - p.spread_neutral) / p.spread_scale))
    _close(_col(full, "c_credit_change"), -np.tanh(change.to_numpy() / p.spread_change_scale))
    # late 2008: spreads had widened by more than a point in three months, both components risk-off
    fall_2008 = pd.DatetimeIndex(reference_panel.ts.view("datetime64[ns]")) == pd.Timestamp("2008-12-31")
    assert _col(full, "c_credit_level")[fall_2008] < -0.99 and _col(full, "c_credit_change")[fall_2008] < -0.99


def test_inflation_component(reference_panel: Panel, full: Advice) -> None:
    p, cpi = Macro().params, _aligned(reference_panel)["CORE_CPI"]
    yoy = cpi / cpi.shift(p.cpi_yoy_n) - 1
    acc = yoy - yoy.shift(p.cpi_accel_n)
    _close(_col(full, "cpi_yoy"), yoy.to_numpy())
    _close(_col(full, "cpi_yoy_change"), acc.to_numpy())
    _close(_col(full, "c_inflation"), -np.tanh(acc.to_numpy() / p.cpi_accel_scale))


def test_cpi_yoy_over_sessions_is_the_published_twelve_month_change(reference_panel: Panel, full: Advice) -> None:
    """252 sessions of the aligned series vs the 12-month change of the latest published month: they agree
    on all but the few rows per year where 252 sessions straddle one release more or less."""
    public = publication_times("CORE_CPI")
    monthly = public.to_numpy()
    yoy_12 = np.full(len(monthly), np.nan)
    yoy_12[12:] = monthly[12:] / monthly[:-12] - 1
    closes = _closes_ns(pd.DatetimeIndex(reference_panel.ts.view("datetime64[ns]")))
    pos = np.searchsorted(public.index.as_unit("ns").asi8, closes, side="right") - 1
    ours = _col(full, "cpi_yoy")
    has = ~np.isnan(ours)
    agree = ours[has] == yoy_12[pos][has]
    assert agree.mean() > 0.95
    assert np.nanmax(np.abs(ours[has] - yoy_12[pos][has])) < 0.005


def test_oil_component(reference_panel: Panel, full: Advice) -> None:
    p, wti = Macro().params, _aligned(reference_panel)["WTI"]
    r = np.log(wti / wti.shift(p.oil_n)).to_numpy()
    _close(_col(full, "wti_log_change"), r)
    _close(_col(full, "c_oil"), np.tanh(r / p.oil_scale))
    dec_2008 = pd.DatetimeIndex(reference_panel.ts.view("datetime64[ns]")) == pd.Timestamp("2008-12-31")
    assert _col(full, "c_oil")[dec_2008] < -0.95  # the 2008 crash is risk-off


def test_vix_components(spx_panel: Panel, spx_full: Advice) -> None:
    p, vix = Macro().params, _aligned(spx_panel)["VIX"]
    z = ((vix - vix.rolling(p.vix_z_n).mean()) / vix.rolling(p.vix_z_n).std()).to_numpy()
    _close(_col(spx_full, "vix"), vix.to_numpy())
    _close(_col(spx_full, "vix_z"), z)
    _close(_col(spx_full, "c_vix_level"), -np.tanh((vix.to_numpy() - p.vix_neutral) / p.vix_scale))
    _close(_col(spx_full, "c_vix_z"), -np.tanh(z / p.vix_z_scale))
    feb_2018 = pd.DatetimeIndex(spx_panel.ts.view("datetime64[ns]")) == pd.Timestamp("2018-02-07")
    assert _col(spx_full, "c_vix_z")[feb_2018] < -0.9  # Volmageddon (the 2018-02-05 VIX, public a session later)


def test_vix_absent_before_2014_and_present_after(full: Advice, spx_panel: Panel, spx_full: Advice) -> None:
    for key in ("vix", "vix_z", "c_vix_level", "c_vix_z"):
        assert np.isnan(full.rationale[key]).all(), key
    mask = _col(full, "components_mask").astype(np.int64)
    assert not (mask & 0b110000).any()
    assert _col(full, "coverage").max() == pytest.approx(0.6)  # credit 0.35 + inflation 0.10 + oil 0.15

    dates = pd.DatetimeIndex(spx_panel.ts.view("datetime64[ns]"))
    level = ~np.isnan(_col(spx_full, "c_vix_level"))
    assert not level[0]  # 2014-01-02: no VIX close public yet (the series starts 2014-01-03, public a session later)
    assert level[dates >= "2014-01-07"].all()
    mask = _col(spx_full, "components_mask").astype(np.int64)
    after = dates >= "2014-08-01"  # the z window is full
    assert (mask[after] & 0b110000 == 0b110000).all()
    warm = Macro().params.cpi_yoy_n + Macro().params.cpi_accel_n  # the slowest component, inflation, from here on
    assert (mask[warm:] == 0b111111).all()
    assert (_col(spx_full, "coverage")[warm:] == 1.0).all()


# --- the combination rule, recomputed from the rationale ----------------------------------------------


@pytest.mark.parametrize("which", ["reference", "spx"])
def test_combination_rule(which: str, full: Advice, spx_full: Advice) -> None:
    a = full if which == "reference" else spx_full
    w = _weights(Macro().params)
    c = np.column_stack([_col(a, f"c_{k}") for k in COMPONENTS])
    used = ~np.isnan(c)
    wc = np.where(used, w * c, 0.0)
    w_used = (used * w).sum(axis=1)
    signed, absolute = wc.sum(axis=1), np.abs(wc).sum(axis=1)
    score = signed / w_used
    coverage = w_used / w.sum()
    consistency = np.where(absolute > 0, np.abs(signed) / np.where(absolute > 0, absolute, 1), 0.0)
    np.testing.assert_allclose(a.strength[:, 0], score, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(_col(a, "coverage"), coverage, rtol=1e-12)
    np.testing.assert_allclose(_col(a, "consistency"), consistency, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(a.confidence[:, 0], coverage * consistency, rtol=1e-12, atol=1e-15)
    assert np.array_equal(_col(a, "components_used"), used.sum(axis=1))
    assert np.array_equal(_col(a, "components_mask"), (used * (1 << np.arange(len(COMPONENTS)))).sum(axis=1))


def test_weights_are_params() -> None:
    assert Macro({f"w_{c}": (1.0 if c == "oil" else 0.0) for c in COMPONENTS}).params.weights == (0, 0, 0, 1, 0, 0)
    with pytest.raises(ValidationError, match="weight"):
        MacroParams(**{f"w_{c}": 0.0 for c in COMPONENTS})


def test_a_single_component(reference_panel: Panel, full: Advice) -> None:
    a = Macro({f"w_{c}": (1.0 if c == "oil" else 0.0) for c in COMPONENTS}).compute(reference_panel)
    oil = _col(full, "c_oil")
    has = ~np.isnan(oil)
    assert np.array_equal(a.strength[:, 0], oil, equal_nan=True)
    assert np.array_equal(a.confidence[has, 0], (oil[has] != 0).astype(float))  # coverage 1, consistency 1
    assert (_col(a, "components_used")[~has] == 0).all()


# --- abstention -----------------------------------------------------------------------------------------


def _assert_abstains(a: Advice, rows=slice(None)) -> None:
    assert np.isnan(a.strength[rows]).all()
    assert (a.confidence[rows] == 0).all()
    assert (a.rationale["components_used"][rows] == 0).all()
    assert (a.rationale["components_mask"][rows] == 0).all()
    for k in COMPONENTS:
        assert np.isnan(a.rationale[f"c_{k}"][rows]).all(), k


def test_abstains_without_reference(macro: Macro, panel: Panel, reference_panel: Panel) -> None:
    _assert_abstains(macro.compute(panel))  # the contract's panel: no series at all
    missing = {n: np.full(len(reference_panel), np.nan) for n in reference_panel.reference}
    _assert_abstains(macro.compute(dataclasses.replace(reference_panel, reference=missing)))


def test_abstains_where_every_series_is_stale() -> None:
    """Sessions of 2019-06: every shipped series has ended and is older than its max age."""
    sessions = get_calendar("XNYS").sessions_in_range("2019-06-03", "2019-06-28")
    ts = pd.DatetimeIndex(sessions).as_unit("ns").asi8
    bars = np.full((len(ts), 1), 100.0)
    p = _with_reference(Panel(ts, ("X",), bars, bars, bars, bars, bars))
    assert all(np.isnan(v).all() for v in p.reference.values())
    _assert_abstains(Macro().compute(p))


def test_abstains_exactly_where_no_series_is_public(macro: Macro, reference_panel: Panel, full: Advice) -> None:
    gap = slice(1000, 1101)
    reference = {n: v.copy() for n, v in reference_panel.reference.items()}
    for v in reference.values():
        v[gap] = np.nan
    a = macro.compute(dataclasses.replace(reference_panel, reference=reference))
    _assert_abstains(a, gap)
    assert np.array_equal(a.strength[:1000], full.strength[:1000], equal_nan=True)
    # right after the gap only the credit level is back: the lagged components look into the gap
    assert (a.rationale["components_used"][1101] == 1).all()
    assert (a.rationale["components_mask"][1101] == 1).all()
    assert a.confidence[1101] == pytest.approx([0.15] * len(reference_panel.symbols))


def test_no_numpy_transcendentals_in_the_strategy() -> None:
    import strategies.macro

    source = pathlib.Path(strategies.macro.__file__).read_text()
    for ufunc in ("np.log", "np.exp", "np.tanh", "np.sqrt", "np.power", "numpy.log", "numpy.exp", "numpy.tanh"):
        assert ufunc not in source, ufunc
