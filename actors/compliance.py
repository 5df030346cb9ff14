"""Compliance actor: restricted list, blackouts, market hours; second validator, after risk."""

from __future__ import annotations

import ray

from firm.batches import Review
from firm.compliance import ComplianceRules
from firm.config import ComplianceConfig
from firm.validation import review_compliance


@ray.remote(num_cpus=0, max_restarts=0)
class ComplianceActor:
    def __init__(self, cfg: ComplianceConfig):
        self.rules = ComplianceRules(cfg)

    def review(self, review: Review) -> Review:
        return review_compliance(review, self.rules)
