"""The actors on a real local Ray: the CIO is a named singleton; an agent streams what it batches."""

from pathlib import Path

import numpy as np
import pytest
import ray

from firm.config import load_config
from firm.data.market import load_market_data
from firm.pipeline import Pipeline, batches

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"

pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def data():
    cfg = load_config(DEFAULT_CONFIG, {"data.start": "2008-01-02", "data.end": "2008-12-31"})
    return cfg, load_market_data(cfg.data)


def test_agent_streaming_equals_batch(data):
    from actors.signal_agent import SignalAgent

    cfg, market = data
    symbols = market.panel.symbols
    params = cfg.agents["momentum"].params
    streaming = SignalAgent.remote("momentum", params, symbols)
    batched = SignalAgent.remote("momentum", params, symbols)
    one = ray.get([streaming.on_bars.remote(b) for b in batches(market, 1)])
    many = ray.get([batched.on_bars.remote(b) for b in batches(market, 100)])
    for field in ("strength", "confidence"):
        a = np.concatenate([getattr(s, field) for s in one])
        b = np.concatenate([getattr(s, field) for s in many])
        assert np.array_equal(a, b, equal_nan=True)
    assert np.isfinite(np.concatenate([s.strength for s in one])).sum() > 500
    ray.kill(streaming)
    ray.kill(batched)


def test_agent_refuses_bars_out_of_order(data):
    from actors.signal_agent import SignalAgent

    cfg, market = data
    agent = SignalAgent.remote("mean_reversion", cfg.agents["mean_reversion"].params, market.panel.symbols)
    first, second = list(batches(market, 50))[:2]
    ray.get(agent.on_bars.remote(second))
    with pytest.raises(ray.exceptions.RayTaskError, match="time order"):
        ray.get(agent.on_bars.remote(first))
    ray.kill(agent)


def test_the_cio_is_a_named_singleton(data, tmp_path):
    cfg, market = data
    pipeline = Pipeline(cfg, market.panel.symbols, tmp_path)
    try:
        assert ray.get_actor(cfg.cio.name) is not None
        with pytest.raises(RuntimeError, match="one decision authority"):
            Pipeline(cfg, market.panel.symbols, tmp_path / "second")
    finally:
        pipeline.shutdown()
    with pytest.raises(ValueError):
        ray.get_actor(cfg.cio.name)
