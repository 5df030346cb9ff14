"""Risk actor: pre-trade limits and the bar's risk state on every decision, first of the two validators."""

from __future__ import annotations

import ray

from firm.batches import Bars, Proposal, Review
from firm.config import RiskConfig
from firm.kill_switch import KillSwitchState
from firm.validation import review_risk
from risk.monitor import RiskMonitor


@ray.remote(num_cpus=0, max_restarts=0)
class RiskActor:
    def __init__(self, cfg: RiskConfig, symbols: tuple[str, ...], kill_switch: KillSwitchState | None = None):
        self.monitor = RiskMonitor(cfg, tuple(symbols), kill_switch)

    def review(self, proposal: Proposal, bars: Bars) -> Review:
        return review_risk(proposal, bars, self.monitor)
