"""Faults on a real local Ray, through the whole pipeline: an agent that sleeps past the CIO's barrier, one
that raises, one killed with ``ray.kill`` while it works. The CIO decides without each, journals why, and
each rejoins; the killed one (restarted by Ray, ``cio.agent_max_restarts``) first rebuilds its history from
the pipeline's bars archive, so what it says after the restart is what it would have said had it never died.
Also: an agent disabled at run time (journaled, from the next batch), a required agent missing (exits only).

The three test strategies are registered here and pickled by value to the agents' processes."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import ray
import ray.cloudpickle

from firm import capability
from firm.config import load_config
from firm.data.market import load_market_data
from firm.journal import read_jsonl
from firm.pipeline import run
from strategies.base import Advice, Panel, Strategy
from strategies.registry import register

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"
BATCH = 20
SLEEP_AT, CRASH_AT, KILL_AT, DISABLE_AFTER = 60, 100, 140, 180  # history lengths (= batch ends) / a batch end
BARRIER_S = 1.0


def _trend(panel: Panel) -> Advice:
    """Sign of the 5-bar change, confidence 0.6: causal, warm after 5 bars."""
    close = panel.close
    strength = np.full(close.shape, np.nan)
    strength[5:] = np.tanh(20 * (close[5:] / close[:-5] - 1))
    return Advice(strength, np.where(np.isnan(strength), 0.0, 0.6), {})


class _Test(Strategy):
    @property
    def warmup(self) -> int:
        return 5


@register
class Sleepy(_Test):
    name = "test_sleepy"

    def compute(self, panel: Panel) -> Advice:
        if len(panel) == SLEEP_AT:
            time.sleep(4 * BARRIER_S)
        return _trend(panel)


@register
class Crashy(_Test):
    name = "test_crashy"

    def compute(self, panel: Panel) -> Advice:
        if len(panel) == CRASH_AT:
            raise RuntimeError("feed handler crashed")
        return _trend(panel)


@register
class Doomed(_Test):
    """Stalls on one batch (the driver kills it there); otherwise a contrarian 5-bar signal."""

    name = "test_doomed"

    def compute(self, panel: Panel) -> Advice:
        if len(panel) == KILL_AT:
            time.sleep(120)
        advice = _trend(panel)
        return Advice(-advice.strength * 0.5, advice.confidence, {})


pytestmark = pytest.mark.usefixtures("ray_local")


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    base = load_config(
        DEFAULT_CONFIG,
        {
            "run.output_dir": str(out),
            "run.progress_every_s": 3600,
            "run.batch": BATCH,
            "data.start": "2008-01-02",
            "data.end": "2008-12-31",
            "cio.barrier_timeout_s": BARRIER_S,
            "cio.vol_min_obs": 10,
        },
    )
    wanted = {"momentum": 1.0, "test_sleepy": 1.0, "test_crashy": 1.0, "test_doomed": 1.0}
    agents = {
        name: base.agents["momentum"].model_copy(
            update={"weight": w, "params": {} if name.startswith("test_") else base.agents[name].params}
        )
        for name, w in wanted.items()
    }
    cfg = base.model_copy(
        update={"agents": agents, "cio": base.cio.model_copy(update={"required_agents": ("test_crashy",)})}
    )
    status = {}

    def on_batch(bars, result):
        end = bars.offset + len(bars)
        if end == KILL_AT:  # the doomed agent is still stuck in this batch's call: kill it, let Ray restart it
            ray.kill(ray.get_actor("agent:test_doomed"), no_restart=False)
        if end == DISABLE_AFTER:
            token = capability.held(capability.run_key(ray.get_runtime_context().namespace, cfg.cio.name))
            cio = ray.get_actor(cfg.cio.name)
            ray.get(cio.set_agent_enabled.remote("test_sleepy", False, "operator test", capability=token))
        if end >= 240:  # the last batch: how the restarted agent got its history
            status.update(ray.get(ray.get_actor("agent:test_doomed").status.remote()))

    result = run(cfg, config_name="faults", progress=False, on_batch=on_batch)
    return cfg, read_jsonl(result.run_dir / "journal.jsonl"), status


def _batches(journal):
    """Per batch start (its first bar's ts): which agents signalled, which were journaled late/failed."""
    spoke = defaultdict(set)
    for r in journal:
        if r["type"] == "SignalEvent":
            spoke[r["ts"]].add(r["agent"])
    late = defaultdict(dict)
    for r in journal:
        if r["type"] == "LateSignalEvent":
            late[r["ts"]][r["agent"]] = r["reason"]
    return spoke, late


def test_faulty_agents_are_left_out_journaled_and_rejoin(faulty_run):
    cfg, journal, status = faulty_run
    stamps = sorted({r["ts"] for r in journal if r["type"] == "MarketDataEvent"})
    starts = stamps[::BATCH]
    spoke, late = _batches(journal)
    first = {s: starts[(s - 1) // BATCH] for s in (SLEEP_AT, CRASH_AT, KILL_AT)}  # start of the batch ending there

    assert late[first[SLEEP_AT]]["test_sleepy"].startswith("missed the")
    assert late[first[CRASH_AT]]["test_crashy"].startswith("RuntimeError: feed handler crashed")
    assert late[first[KILL_AT]]["test_doomed"].startswith("missed the")

    # every batch, every test agent (warm after 5 bars): it spoke at the batch's last row or the journal says
    # why not (no silent gap); a disabled agent keeps speaking, the CIO leaves it out
    for i, start in enumerate(starts[1:], 1):
        last_row = stamps[min(len(stamps), (i + 1) * BATCH) - 1]
        for agent in ("test_sleepy", "test_crashy", "test_doomed"):
            assert (agent in late[start]) != (agent in spoke[last_row]), (agent, start, late[start])

    # each rejoined: it speaks again two batches after its fault (the one in flight may be late too)
    for agent, at in (("test_sleepy", SLEEP_AT), ("test_crashy", CRASH_AT), ("test_doomed", KILL_AT)):
        assert any(agent in spoke[t] for t in stamps[at + 2 * BATCH :]), agent

    # decisions in a batch with a missing agent name it and use none of its signals
    for d in (r for r in journal if r["type"] == "DecisionEvent"):
        start = starts[stamps.index(d["ts"]) // BATCH]
        assert set(d["late_agents"]) == set(late[start]), d
        assert not any(sid.split(":")[1] in late[start] for sid in d["signal_ids"])


def test_the_killed_agent_rebuilt_its_history_and_says_what_it_would_have_said(faulty_run):
    cfg, journal, status = faulty_run
    assert status["rebuilt_rows"] >= KILL_AT, status  # it restarted and took the rows before its batch from the archive
    market = load_market_data(cfg.data)
    reference = Doomed().compute(market.panel)  # the same strategy on the whole, uninterrupted history
    stamps = sorted({r["ts"] for r in journal if r["type"] == "MarketDataEvent"})
    symbols = market.panel.symbols
    after = [
        r
        for r in journal
        if r["type"] == "SignalEvent" and r["agent"] == "test_doomed" and stamps.index(r["ts"]) >= KILL_AT
    ]
    assert len(after) > 50
    for r in after:
        k, j = stamps.index(r["ts"]), symbols.index(r["symbol"])
        assert r["strength"] == pytest.approx(round(float(reference.strength[k, j]), 9), abs=1e-12)


def test_required_agent_missing_takes_no_new_risk_and_is_journaled(faulty_run):
    cfg, journal, _ = faulty_run
    stamps = sorted({r["ts"] for r in journal if r["type"] == "MarketDataEvent"})
    missing = [r for r in journal if r["type"] == "RequiredAgentMissingEvent"]
    crash_start = stamps[(CRASH_AT - 1) // BATCH * BATCH]
    assert any(r["ts"] == crash_start and r["agents"] == ["test_crashy"] for r in missing), missing
    for m in missing:
        k = stamps.index(m["ts"])
        rows = set(stamps[k : k + m["bars"]])
        for d in (r for r in journal if r["type"] == "DecisionEvent" and r["ts"] in rows):
            assert d["reason"].startswith("exit "), d
    decided = [r for r in journal if r["type"] == "DecisionEvent"]
    assert any(not d["reason"].startswith("exit ") for d in decided)


def test_an_agent_disabled_at_run_time_is_journaled_and_left_out_from_the_next_batch(faulty_run):
    cfg, journal, _ = faulty_run
    stamps = sorted({r["ts"] for r in journal if r["type"] == "MarketDataEvent"})
    toggles = [r for r in journal if r["type"] == "AgentToggleEvent"]
    assert len(toggles) == 1
    t = toggles[0]
    assert t["agent"] == "test_sleepy" and t["enabled"] is False and t["reason"] == "operator test"
    # the CIO applies it when it starts a batch after the call: one of the next two (one batch is in flight)
    k = stamps.index(t["ts"])
    assert k in (DISABLE_AFTER + BATCH, DISABLE_AFTER + 2 * BATCH)
    decisions = [r for r in journal if r["type"] == "DecisionEvent"]
    before = [d for d in decisions if stamps.index(d["ts"]) < k]
    after = [d for d in decisions if stamps.index(d["ts"]) >= k]
    assert any(any(":test_sleepy:" in s for s in d["signal_ids"]) for d in before)
    assert after and not any(any(":test_sleepy:" in s for s in d["signal_ids"]) for d in after)
