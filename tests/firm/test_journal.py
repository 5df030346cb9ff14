"""The journal's fast path: the SignalEvent lines an agent writes itself are the lines of the events."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from firm.config import load_config
from firm.data.market import load_market_data
from firm.events import SignalEvent
from firm.journal import event_line, signal_lines
from firm.pipeline import batches
from strategies import registry

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


@pytest.fixture(scope="module")
def bars():
    cfg = load_config(DEFAULT_CONFIG, {"data.end": "2007-12-31"})
    data = load_market_data(cfg.data)
    return cfg, data, list(batches(data, 700))


def _slow(agent, bars, strength, confidence, rationale) -> list[str]:
    """The lines as the journal built them from SignalEvent models (validated, then dumped)."""
    rows = []
    for k, (stamp, ts) in enumerate(zip(bars.stamps, bars.closes_at)):
        lines = []
        for j, symbol in enumerate(bars.panel.symbols):
            s = float(strength[k, j])
            if math.isnan(s):
                continue
            event = SignalEvent(
                id=f"sig:{agent}:{symbol}:{stamp}",
                cause_id=f"bar:{symbol}:{stamp}",
                ts=ts,
                agent=agent,
                symbol=symbol,
                direction=(s > 0) - (s < 0),
                strength=s,
                confidence=float(confidence[k, j]),
                rationale={key: float(v[k, j]) for key, v in rationale.items() if math.isfinite(v[k, j])},
            )
            lines.append(event_line(event))
        rows.append("".join(lines))
    return rows


@pytest.mark.parametrize("name", sorted(registry.shipped()))
def test_signal_lines_are_the_event_lines_byte_for_byte(bars, name: str) -> None:
    """Every registered agent on real data (history to 2007, last batch of 700 rows): same bytes, and
    each line parses back into the SignalEvent it stands for."""
    cfg, data, parts = bars
    last = parts[-1]
    strategy = registry.create(name, cfg.agents[name].params if name in cfg.agents else None)
    advice = strategy.compute(data.panel)
    rows = slice(last.offset, last.offset + len(last))
    strength = np.round(advice.strength[rows], 9)
    confidence = np.round(np.clip(advice.confidence[rows], 0.0, 1.0), 9)
    rationale = {key: np.ascontiguousarray(v[rows]) for key, v in advice.rationale.items()}
    fast = signal_lines(name, last.panel.symbols, last.stamps, last.closes_at, strength, confidence, rationale)
    assert fast == _slow(name, last, strength, confidence, rationale)
    lines = "".join(fast).splitlines()
    assert len(lines) == int((~np.isnan(strength)).sum()) > 0
    for line in lines[:50]:
        assert event_line(SignalEvent.model_validate_json(line.replace('"type":"SignalEvent",', ""))) == line + "\n"
