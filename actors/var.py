"""Monte Carlo VaR as Ray tasks, and a thin VaR actor over the pure functions of ``risk/var.py``.

``monte_carlo`` cuts the paths' seed blocks into contiguous ranges, one Ray task each; a task runs the
numba kernel on its blocks with ``threads_per_task`` numba threads and is declared with that many CPUs
(``num_cpus``), so tasks never run more threads than the cores Ray gave them. Each task returns the exact
tail summary of its losses (``risk.var.tail_of``), merged here; the blocks' seeds do not depend on the
split, so the VaR and ES are bit-identical for any number of tasks, threads or workers, and equal to
``risk.var.monte_carlo`` in one process. The kernels are cached in the ``NUMBA_CACHE_DIR`` the workers
share (``firm.pipeline.start_ray`` and the tests' ``ray_local`` set it in the runtime env), so only the
first worker on a machine compiles them.
"""

from __future__ import annotations

import numpy as np
import ray

from risk import var as V


@ray.remote
def _tail_task(model: V.MCModel, n_paths: int, seed: int, alpha: float, first: int, stop: int, n_threads: int):
    return V.simulate_tail(model, n_paths, seed, alpha, first, stop, n_threads)


def monte_carlo(
    values,
    mu,
    cov,
    alpha: float = 0.99,
    n_paths: int = 1_000_000,
    seed: int = 0,
    dist: str = "normal",
    nu: float | None = None,
    horizon: float = 1.0,
    n_tasks: int | None = None,
    threads_per_task: int = 1,
) -> V.Risk:
    """``risk.var.monte_carlo`` with the blocks spread over ``n_tasks`` Ray tasks (default: one per CPU
    of the cluster / ``threads_per_task``), each declared with ``num_cpus=threads_per_task``."""
    model = V.mc_model(values, mu, cov, dist, nu, horizon)
    m = V.tail_count(n_paths, alpha)
    if n_tasks is None:
        n_tasks = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_task)
    task = _tail_task.options(num_cpus=threads_per_task)
    model_ref = ray.put(model)
    refs = [
        task.remote(model_ref, n_paths, seed, alpha, first, stop, threads_per_task)
        for first, stop in V.split_blocks(n_paths, n_tasks)
    ]
    tails = ray.get(refs)
    return V.risk_from_tail(V.merge_tails(tails, m), n_paths, alpha)


@ray.remote(num_cpus=0, max_restarts=0)
class VaRActor:
    """The book's VaR and ES by every method; state: only how to spread Monte Carlo over the cluster.

    Each method returns ``{"var": ..., "es": ...}`` in dollars (positive losses); the conventions are
    those of ``risk/var.py``.
    """

    def __init__(self, n_tasks: int | None = None, threads_per_task: int = 1):
        self.n_tasks = n_tasks
        self.threads_per_task = threads_per_task

    def delta_normal(self, values, mu, cov, alpha: float = 0.99, horizon: float = 1.0) -> dict:
        return V.delta_normal(values, mu, cov, alpha, horizon)._asdict()

    def cornish_fisher(self, values, returns: np.ndarray, alpha: float = 0.99, horizon: float = 1.0) -> dict:
        return V.cornish_fisher(values, returns, alpha, horizon)._asdict()

    def student_t(self, values, mu, scale, nu: float, alpha: float = 0.99, horizon: float = 1.0) -> dict:
        return V.student_t(values, mu, scale, nu, alpha, horizon)._asdict()

    def historical(self, values, returns: np.ndarray, alpha: float = 0.99, horizon: int = 1) -> dict:
        return V.historical(values, returns, alpha, horizon)._asdict()

    def monte_carlo(self, values, mu, cov, alpha: float = 0.99, n_paths: int = 1_000_000, seed: int = 0,
                    dist: str = "normal", nu: float | None = None, horizon: float = 1.0) -> dict:
        return monte_carlo(values, mu, cov, alpha, n_paths, seed, dist, nu, horizon,
                           self.n_tasks, self.threads_per_task)._asdict()
