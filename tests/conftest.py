"""Shared fixtures: one real local Ray for the whole session, and short real-data configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

from firm.config import load_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"


def start_local_ray() -> None:
    """The session's local Ray (also how a module that needed its own Ray, tests/test_multinode.py, restores it)."""
    cache = str(ROOT / ".numba_cache")
    os.environ.setdefault("NUMBA_CACHE_DIR", cache)
    ray.init(
        address="local",  # never a cluster another process started on this machine
        num_cpus=2,
        include_dashboard=False,
        namespace="firm-test",
        logging_level="WARNING",
        runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}},
    )


@pytest.fixture(scope="session")
def ray_local():
    start_local_ray()
    yield
    ray.shutdown()


@pytest.fixture
def short_config(tmp_path):
    """The default config on 2008-01-02..2009-06-30 (the crisis), writing under tmp_path."""

    def make(**overrides):
        base = {"run.output_dir": str(tmp_path / "runs"), "run.progress_every_s": 3600,
                "data.start": "2008-01-02", "data.end": "2009-06-30"}
        base.update(overrides)
        return load_config(DEFAULT_CONFIG, base)

    return make
