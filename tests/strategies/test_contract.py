"""The contract every registered strategy honours, checked on each one with its default params.

A new module in strategies/ that uses ``@register`` is checked here without edits: abstention exactly
during warm-up, ranges and shapes, prefix stability, no look-ahead, staggered histories with gaps, and
params that validate their defaults, reject unknown keys and are frozen. What is particular to one
strategy (its rule, its params' messages, its warm-up per params) stays in that strategy's test file.

Strategies that need particular instruments declare them on the class, ``required_symbols: ClassVar[tuple[str,
...]]`` (the base class has no such attribute; read it with ``getattr(cls, "required_symbols", ())``). Such a
strategy speaks only for those columns, on the rows where all of them have a bar, and abstains everywhere when
one of them is not in the panel. The contract runs every strategy on ``contract_panel`` and
``contract_gappy_panel``: conftest's four-stock ``panel`` and ``gappy_panel``, or for such a strategy the four
stocks plus SPX and COMP from the shipped data (``index_panel`` / ``gappy_index_panel``). Its warm-up checks
look at those columns only; everything else (ranges, prefix stability, no look-ahead, gaps, params) applies
unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pydantic import ValidationError

from strategies import registry
from strategies.base import Advice, Panel, Strategy

NAMES = sorted(registry.shipped())

# A row count or row index as (anchor, offset): "start" counts from row 0, "warmup" from the strategy's
# warm-up (offset -1 is its first speaking row), "end" from the panel's length.
_FIELDS = ("open", "high", "low", "close", "volume")

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


def _required(strategy: Strategy) -> tuple[str, ...]:
    return tuple(getattr(type(strategy), "required_symbols", ()))


def _with_symbols(strategy: Strategy, stocks_panel: Panel, with_indices: Panel) -> Panel:
    """The panel the contract runs ``strategy`` on: the four stocks, plus SPX and COMP if it requires symbols."""
    required = _required(strategy)
    if not required:
        return stocks_panel
    missing = [s for s in required if s not in with_indices.symbols]
    assert not missing, f"required symbols {missing} are not in the shipped data {with_indices.symbols}"
    return with_indices


def _spoken_for(strategy: Strategy, panel: Panel) -> tuple[np.ndarray, np.ndarray]:
    """(columns the strategy speaks for, where each of them has a bar as the strategy sees it): every column
    and ``panel.valid`` by default; for required symbols, their columns and the rows where all of them have a bar."""
    required = _required(strategy)
    if not required:
        return np.arange(len(panel.symbols)), panel.valid
    cols = np.array([panel.symbols.index(s) for s in required])
    joint = panel.valid[:, cols].all(axis=1)
    return cols, np.repeat(joint[:, None], len(cols), axis=1)


def _columns(advice: Advice, cols: np.ndarray) -> Advice:
    rationale = {key: values[:, cols] for key, values in advice.rationale.items()}
    return Advice(advice.strength[:, cols], advice.confidence[:, cols], rationale)


@pytest.fixture(scope="module", params=NAMES)
def name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def strategy(name: str) -> Strategy:
    return registry.create(name)


# Named fixtures rather than module-level overrides of ``panel``/``gappy_panel``: an override would also be
# what conftest's session fixtures that take ``panel`` receive here, and fail with a ScopeMismatch.
@pytest.fixture(scope="module")
def contract_panel(strategy: Strategy, panel: Panel, index_panel: Panel, add_reference) -> Panel:
    """conftest's 4-stock ``panel``, or ``index_panel`` (plus SPX, COMP) for a strategy with required
    symbols; with the reference series, as the pipeline hands them to every agent."""
    return add_reference(_with_symbols(strategy, panel, index_panel))


@pytest.fixture(scope="module")
def contract_gappy_panel(strategy: Strategy, gappy_panel: Panel, gappy_index_panel: Panel, add_reference) -> Panel:
    """conftest's ``gappy_panel``, or ``gappy_index_panel`` for a strategy with required symbols; with reference."""
    return add_reference(_with_symbols(strategy, gappy_panel, gappy_index_panel))


@pytest.fixture(scope="module")
def full(strategy: Strategy, contract_panel: Panel) -> Advice:
    return strategy.compute(contract_panel)


def test_there_are_strategies_to_check() -> None:
    assert {"momentum", "mean_reversion"} <= set(NAMES)


def test_abstains_exactly_before_warmup(
    strategy: Strategy, contract_panel: Panel, full: Advice, assert_warmup
) -> None:
    assert strategy.warmup >= 1, "advice for row t needs at least bar t"
    cols, valid = _spoken_for(strategy, contract_panel)
    assert valid.all(), "the contract panel has no gaps"
    assert_warmup(_columns(full, cols), strategy.warmup)


def test_ranges_and_shapes(contract_panel: Panel, full: Advice) -> None:
    shape = contract_panel.close.shape
    assert full.strength.shape == full.confidence.shape == shape
    assert full.rationale, "every strategy explains its advice"
    for key, values in full.rationale.items():
        assert values.shape == shape, key
    s = full.strength[~np.isnan(full.strength)]
    assert ((s >= -1) & (s <= 1)).all()
    assert ((full.confidence >= 0) & (full.confidence <= 1)).all()


@pytest.mark.parametrize("prefix", PREFIXES, ids=_row_id)
def test_prefix_stability(
    strategy: Strategy, contract_panel: Panel, full: Advice, head, prefix: Row, assert_same_rows
) -> None:
    k = min(max(_row(prefix, strategy, contract_panel), 1), len(contract_panel))
    part = strategy.compute(head(contract_panel, k))
    assert part.strength.shape == (k, len(contract_panel.symbols))
    assert_same_rows(part, full, k)


@pytest.mark.parametrize("cut", CUTS, ids=_row_id)
@pytest.mark.parametrize("how", ["scale", "random"])
def test_no_look_ahead(
    strategy: Strategy, contract_panel: Panel, full: Advice, perturb_after, cut: Row, how: str, assert_same_rows
) -> None:
    t = _row(cut, strategy, contract_panel)
    changed = strategy.compute(perturb_after(contract_panel, t, how))
    assert_same_rows(changed, full, t + 1)
    later, before = slice(t + 40, None), _arrays(full)
    reacted = [
        key
        for key, values in _arrays(changed).items()
        if not np.array_equal(values[later], before[key][later], equal_nan=True)
    ]
    assert reacted, "the perturbed bars must reach the advice, or the check above proves nothing"


@pytest.fixture(scope="module")
def gappy_full(strategy: Strategy, contract_gappy_panel: Panel) -> Advice:
    return strategy.compute(contract_gappy_panel)


def _goog_start(gappy_panel: Panel) -> int:
    goog = gappy_panel.symbols.index("GOOG")
    return int(np.flatnonzero(gappy_panel.valid[:, goog])[0])


def test_staggered_history_abstains_per_instrument(
    strategy: Strategy, contract_gappy_panel: Panel, gappy_full: Advice, assert_warmup
) -> None:
    assert _goog_start(contract_gappy_panel) > 1000
    cols, valid = _spoken_for(strategy, contract_gappy_panel)
    assert_warmup(_columns(gappy_full, cols), strategy.warmup, valid)


def test_staggered_history_prefix_stability(
    strategy: Strategy, contract_gappy_panel: Panel, gappy_full: Advice, head, assert_same_rows
) -> None:
    start = _goog_start(contract_gappy_panel)
    for k in (start, start + strategy.warmup - 1, start + strategy.warmup + 10, len(contract_gappy_panel) - 1):
        assert_same_rows(strategy.compute(head(contract_gappy_panel, k)), gappy_full, k)


def test_abstains_everywhere_without_a_required_symbol(strategy: Strategy, contract_panel: Panel, head) -> None:
    required = _required(strategy)
    if not required:
        pytest.skip("requires no particular symbols")
    assert all(isinstance(s, str) for s in required)
    for symbol in required:
        keep = [j for j, s in enumerate(contract_panel.symbols) if s != symbol]
        part = head(contract_panel, len(contract_panel))  # a copy
        symbols = tuple(part.symbols[j] for j in keep)
        without = Panel(part.ts, symbols, *(getattr(part, f)[:, keep] for f in _FIELDS))
        advice = strategy.compute(without)
        assert advice.strength.shape == (len(part), len(keep))
        assert np.isnan(advice.strength).all(), symbol
        assert (advice.confidence == 0).all(), symbol


def test_abstains_everywhere_without_its_reference_series(strategy: Strategy, contract_panel: Panel) -> None:
    required = getattr(type(strategy), "required_reference", ())
    if not required:
        pytest.skip("needs no reference series")
    advice = strategy.compute(dataclasses.replace(contract_panel, reference={}))
    assert np.isnan(advice.strength).all()
    assert (advice.confidence == 0).all()


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
