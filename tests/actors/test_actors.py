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


def test_the_cio_is_a_detached_singleton_that_outlives_its_run(data, tmp_path):
    cfg, market = data
    cfg = cfg.model_copy(update={"agents": {"momentum": cfg.agents["momentum"]}})
    pipeline = Pipeline(cfg, market.panel.symbols, tmp_path)
    try:
        first = ray.get_actor(cfg.cio.name)
        assert ray.get(first.status.remote())["state"] == "running"
        with pytest.raises(RuntimeError, match="still running a run .* one decision authority"):
            Pipeline(cfg, market.panel.symbols, tmp_path / "second")
    finally:
        pipeline.shutdown()
    assert ray.get_actor(cfg.cio.name)._actor_id == first._actor_id  # the driver's shutdown left it, finished
    assert ray.get(first.status.remote())["state"] == "finished"
    with pytest.raises(ray.exceptions.RayTaskError, match="run_batch refused: the run has finished"):
        ray.get(first.run_batch.remote(None, [], [], capability=pipeline.capability))
    (tmp_path / "second").mkdir()
    second = Pipeline(cfg, market.panel.symbols, tmp_path / "second")  # the next run replaces it
    try:
        assert ray.get_actor(cfg.cio.name)._actor_id != first._actor_id
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(first.status.remote())
    finally:
        second.shutdown()


@ray.remote(num_cpus=0)
def _late(agent, bars_ref, delay_s):
    """The agent's real signals, delivered after ``delay_s``: a slow agent as the CIO sees it."""
    import time

    time.sleep(delay_s)
    return ray.get(agent.on_bars.remote(bars_ref))


@ray.remote(num_cpus=0)
def _broken():
    raise RuntimeError("feed handler crashed")


def test_the_cio_decides_without_late_or_failed_agents_and_says_so(data, tmp_path):
    from firm.journal import Journal, read_jsonl
    from firm.pipeline import journal_batch

    cfg, market = data
    cfg = cfg.model_copy(update={"cio": cfg.cio.model_copy(update={"barrier_timeout_s": 0.5})})
    pipeline = Pipeline(cfg, market.panel.symbols, tmp_path)
    try:
        bars = next(iter(batches(market, 120)))
        bars_ref = ray.put(bars)
        with pytest.raises(ray.exceptions.RayTaskError):
            ray.get(_broken.remote())  # a worker process is started, so the next failure is immediate
        momentum = pipeline.agents[pipeline.agent_names.index("momentum")]
        mean_rev = pipeline.agents[pipeline.agent_names.index("mean_reversion")]
        broken = _broken.remote()  # first, so it gets the warm worker
        refs = [momentum.on_bars.remote(bars_ref), _late.remote(mean_rev, bars_ref, 5.0), broken]
        names = ["momentum", "mean_reversion", "sentiment"]
        result = ray.get(pipeline.cio.run_batch.remote(bars_ref, names, refs, capability=pipeline.capability))
        assert result.late == ["mean_reversion"]
        assert "feed handler crashed" in result.failed["sentiment"]
        assert 0.45 <= result.barrier_wait_s < 3.0
        assert [s.agent for s in result.signals] == ["momentum"]
        committed = result.committed
        decisions = [vd.decision for part in committed for row in part.validated for vd in row]
        assert decisions, "momentum alone should still trade in 2008"
        for d in decisions:
            assert d.late_agents == ("mean_reversion", "sentiment")
            assert all(sid.startswith("sig:momentum:") for sid in d.signal_ids)

        journal = Journal(tmp_path / "journal.jsonl")
        journal_batch(journal, bars, result)
        journal.close()
        late = [r for r in read_jsonl(tmp_path / "journal.jsonl") if r["type"] == "LateSignalEvent"]
        assert {r["agent"]: r["reason"][:6] for r in late} == {"mean_reversion": "missed", "sentiment": "Runtim"}
    finally:
        pipeline.shutdown()


def test_agent_history_keeps_the_reference_series(data):
    from actors.signal_agent import _History

    cfg, market = data
    history = _History(market.panel.symbols, capacity=8)
    for bars in batches(market, 7):
        history.extend(bars.panel)
    panel = history.panel()
    assert set(panel.reference) == set(cfg.data.reference)
    for name, values in market.panel.reference.items():
        assert np.array_equal(panel.reference[name], values, equal_nan=True)
    assert np.array_equal(panel.close, market.panel.close, equal_nan=True)


@ray.remote(num_cpus=0)
class _Gate:
    """Holds back whatever awaits it until ``open``."""

    def __init__(self):
        import asyncio

        self.opened = asyncio.Event()

    async def wait(self):
        await self.opened.wait()

    async def open(self):
        self.opened.set()


@ray.remote(num_cpus=0)
def _gated(gate, agent, bars_ref):
    ray.get(gate.wait.remote())
    return ray.get(agent.on_bars.remote(bars_ref))


def test_the_cio_answers_reads_while_a_batch_waits_at_the_barrier(data, tmp_path):
    cfg, market = data
    cfg = cfg.model_copy(
        update={"agents": {"momentum": cfg.agents["momentum"]}, "cio": cfg.cio.model_copy(update={"barrier_timeout_s": 300})}
    )
    pipeline = Pipeline(cfg, market.panel.symbols, tmp_path)
    gate = _Gate.remote()
    try:
        bars_ref = ray.put(next(iter(batches(market, 120))))
        signals = _gated.remote(gate, pipeline.agents[0], bars_ref)
        batch = pipeline.cio.run_batch.remote(bars_ref, ["momentum"], [signals], capability=pipeline.capability)
        while (st := ray.get(pipeline.cio.status.remote(), timeout=60))["in_batch_s"] is None:
            assert not ray.wait([batch], timeout=0.05)[0], "the batch ended before the gate opened"
        assert st["state"] == "running" and st["batches"] == 0  # read while run_batch waits at the barrier
        assert ray.get(pipeline.cio.positions.remote(), timeout=60)["totals"]["equity"] == cfg.broker.initial_cash
        assert not ray.wait([batch], timeout=0)[0]
        ray.get(gate.open.remote())
        result = ray.get(batch, timeout=300)
        st = ray.get(pipeline.cio.status.remote())
        assert st["batches"] == 1 and st["in_batch_s"] is None and st["sessions"] == 120
        counts = ray.get(pipeline.cio.counts.remote())
        assert counts["decisions"] == sum(len(row) for part in result.committed for row in part.validated) > 0
        assert counts["orders"] == sum(len(row) for part in result.committed for row in part.orders)
        ts, equity = ray.get(pipeline.cio.equity_curve.remote())
        assert equity == [e for part in result.committed for e in part.equity] and len(ts) == 120
    finally:
        pipeline.shutdown()
        ray.kill(gate)
