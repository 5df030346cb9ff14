"""The contract every registered strategy honours, checked on each one with its default params.

A new module in strategies/ that uses ``@register`` is checked here without edits: abstention exactly
during warm-up, ranges and shapes, prefix stability, no look-ahead, staggered histories with gaps, and
params that validate their defaults, reject unknown keys and are frozen. What is particular to one
strategy (its rule, its params' messages, its warm-up per params) stays in that strategy's test file.
"""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel, Strategy

NAMES = sorted(registry.available())

# A row count or row index as (anchor, offset): "start" counts from row 0, "warmup" from the strategy's
# warm-up (offset -1 is its first speaking row), "end" from the panel's length.
Row = tuple[str, int]
PREFIXES: list[Row] = [
    ("start", 1),
    ("start", 10),
    ("warmup", -2),
    ("warmup", -1),
    ("warmup", 0),
    ("warmup", 1),
    ("start", 333),
    ("start", 444),
    ("start", 1000),
    ("start", 1500),
    ("end", -1),
]
CUTS: list[Row] = [("start", 30), ("warmup", 10), ("start", 700), ("start", 900), ("start", 2100)]


def _row_id(row: Row) -> str:
    return f"{row[0]}{row[1]:+d}"


def _row(row: Row, strategy: Strategy, panel: Panel) -> int:
    anchor, offset = row
    return {"start": 0, "warmup": strategy.warmup, "end": len(panel)}[anchor] + offset


def _arrays(advice: Advice) -> dict[str, np.ndarray]:
    return {"strength": advice.strength, "confidence": advice.confidence, **advice.rationale}


@pytest.fixture(scope="module", params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def strategy(name: str) -> Strategy:
    return registry.create(name)


@pytest.fixture(scope="module")
def full(strategy: Strategy, panel: Panel) -> Advice:
    return strategy.compute(panel)


def test_there_are_strategies_to_check() -> None:
    assert {"momentum", "mean_reversion"} <= set(NAMES)


def test_abstains_exactly_before_warmup(strategy: Strategy, full: Advice, assert_warmup) -> None:
    assert strategy.warmup >= 1, "advice for row t needs at least bar t"
    assert_warmup(full, strategy.warmup)


def test_ranges_and_shapes(panel: Panel, full: Advice) -> None:
    shape = panel.close.shape
    assert full.strength.shape == full.confidence.shape == shape
    assert full.rationale, "every strategy explains its advice"
    for key, values in full.rationale.items():
        assert values.shape == shape, key
    s = full.strength[~np.isnan(full.strength)]
    assert ((s >= -1) & (s <= 1)).all()
    assert ((full.confidence >= 0) & (full.confidence <= 1)).all()


@pytest.mark.parametrize("prefix", PREFIXES, ids=_row_id)
def test_prefix_stability(strategy: Strategy, panel: Panel, full: Advice, head, prefix: Row, assert_same_rows) -> None:
    k = min(max(_row(prefix, strategy, panel), 1), len(panel))
    part = strategy.compute(head(panel, k))
    assert part.strength.shape == (k, len(panel.symbols))
    assert_same_rows(part, full, k)


@pytest.mark.parametrize("cut", CUTS, ids=_row_id)
@pytest.mark.parametrize("how", ["scale", "random"])
def test_no_look_ahead(
    strategy: Strategy, panel: Panel, full: Advice, perturb_after, cut: Row, how: str, assert_same_rows
) -> None:
    t = _row(cut, strategy, panel)
    changed = strategy.compute(perturb_after(panel, t, how))
    assert_same_rows(changed, full, t + 1)
    later, before = slice(t + 40, None), _arrays(full)
    reacted = [
        key
        for key, values in _arrays(changed).items()
        if not np.array_equal(values[later], before[key][later], equal_nan=True)
    ]
    assert reacted, "the perturbed bars must reach the advice, or the check above proves nothing"


@pytest.fixture(scope="module")
def gappy_full(strategy: Strategy, gappy_panel: Panel) -> Advice:
    return strategy.compute(gappy_panel)


def _goog_start(gappy_panel: Panel) -> int:
    goog = gappy_panel.symbols.index("GOOG")
    return int(np.flatnonzero(gappy_panel.valid[:, goog])[0])


def test_staggered_history_abstains_per_instrument(
    strategy: Strategy, gappy_panel: Panel, gappy_full: Advice, assert_warmup
) -> None:
    assert _goog_start(gappy_panel) > 1000
    assert_warmup(gappy_full, strategy.warmup, gappy_panel.valid)


def test_staggered_history_prefix_stability(
    strategy: Strategy, gappy_panel: Panel, gappy_full: Advice, head, assert_same_rows
) -> None:
    start = _goog_start(gappy_panel)
    for k in (start, start + strategy.warmup - 1, start + strategy.warmup + 10, len(gappy_panel) - 1):
        assert_same_rows(strategy.compute(head(gappy_panel, k)), gappy_full, k)


def test_params_validate_their_defaults(name: str) -> None:
    params_cls = registry.get(name).Params
    defaults = params_cls()
    assert params_cls.model_validate(defaults.model_dump()) == defaults
    assert registry.create(name).params == defaults


def test_params_reject_an_unknown_key(name: str) -> None:
    with pytest.raises(ValidationError, match="not_a_param"):
        registry.get(name).Params.model_validate({"not_a_param": 1})


def test_params_are_frozen(strategy: Strategy) -> None:
    params = strategy.params
    assert type(params).model_config.get("frozen")
    for field in type(params).model_fields:
        with pytest.raises(ValidationError):
            setattr(params, field, getattr(params, field))
