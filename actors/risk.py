"""Risk actor: pre-trade limits on every decision, first of the two validators."""

from __future__ import annotations

import ray

from firm.batches import Bars, Proposal, Review
from firm.config import RiskConfig
from firm.validation import review_risk
from risk.limits import Limits


@ray.remote(num_cpus=0, max_restarts=0)
class RiskActor:
    def __init__(self, cfg: RiskConfig):
        self.limits = Limits(cfg.max_position_weight, cfg.max_gross_exposure, cfg.max_net_exposure, cfg.max_drawdown)

    def review(self, proposal: Proposal, bars: Bars) -> Review:
        return review_risk(proposal, bars, self.limits)
