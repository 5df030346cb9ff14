"""The one interface every signal strategy implements.

A strategy is a pure, causal function of the bar history: ``compute(panel)`` returns, for every row
``t`` of the panel, advice that depends only on rows ``<= t``. The generic signal-agent actor feeds it
the history it has seen and keeps the rows that are new, so batch replay and bar-by-bar streaming
give identical signals.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True)
class Panel:
    """Bars of several instruments on one time axis; NaN where an instrument has no valid bar."""

    ts: np.ndarray  # (T,) int64, ns since epoch (UTC), strictly increasing
    symbols: tuple[str, ...]
    open: np.ndarray  # (T, m) float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    # Series shared by all instruments (indices, VIX, yields...), (T,) each, as public at each row's
    # close; NaN where not available. See firm/data/reference.py for what is shipped.
    reference: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def valid(self) -> np.ndarray:
        return ~np.isnan(self.close)

    def __len__(self) -> int:
        return len(self.ts)


@dataclass
class Advice:
    """Per row and instrument: strength in [-1, 1] (NaN = abstain), confidence in [0, 1], rationale."""

    strength: np.ndarray  # (T, m)
    confidence: np.ndarray  # (T, m)
    rationale: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (T, m)


class StrategyParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def check_rsi_band(rsi_oversold: float, rsi_overbought: float) -> None:
    """The RSI band rule for params with ``rsi_oversold`` and ``rsi_overbought``: call it from a model validator."""
    if rsi_oversold >= rsi_overbought:
        raise ValueError(f"rsi_oversold ({rsi_oversold}) must be < rsi_overbought ({rsi_overbought})")


class Strategy(ABC):
    """Base class: set ``name`` and ``Params``, implement ``compute``."""

    name: ClassVar[str]
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams | dict | None = None):
        if not isinstance(params, StrategyParams):
            params = self.Params.model_validate(params or {})
        self.params = params

    @property
    def warmup(self) -> int:
        """Bars of history needed before the first non-abstaining signal."""
        return 0

    @abstractmethod
    def compute(self, panel: Panel) -> Advice:
        """Advice for every row of ``panel``; row t may only use rows <= t."""


PerSymbolFn = Callable[..., tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]


def per_symbol(panel: Panel, fn: PerSymbolFn) -> Advice:
    """Run ``fn(open, high, low, close, volume)`` on each instrument's valid bars and scatter back.

    ``fn`` gets 1-D arrays without gaps and returns ``(strength, confidence, rationale)`` of the same
    length; rows where an instrument has no valid bar stay NaN (abstain).
    """
    shape = panel.close.shape
    strength = np.full(shape, np.nan)
    confidence = np.zeros(shape)
    rationale: dict[str, np.ndarray] = {}
    for j in range(shape[1]):
        rows = np.flatnonzero(~np.isnan(panel.close[:, j]))
        if rows.size == 0:
            continue
        s, c, r = fn(
            panel.open[rows, j], panel.high[rows, j], panel.low[rows, j], panel.close[rows, j], panel.volume[rows, j]
        )
        strength[rows, j] = s
        confidence[rows, j] = c
        for key, values in r.items():
            rationale.setdefault(key, np.full(shape, np.nan))[rows, j] = values
    return Advice(strength, confidence, rationale)
