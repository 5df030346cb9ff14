"""Monte Carlo VaR: the numba kernel against plain numpy on the same model, the kernel against its random
numbers alone, Ray tasks, and cold compile against a cached start in fresh Ray workers.

Usage: python bench/var.py [--paths N] [--repeat R]

The model: the default config's six instruments (AAPL, MSFT, IBM, GOOG, SPX, COMP), mean and covariance
of their shipped daily returns, a long/short book, 99% one-day VaR and ES, multivariate normal and
Student-t (nu = 5). Every time is the best of --repeat runs in this process (the machine may be shared).
numba: ``risk.var.monte_carlo`` (kernel, tail summary, VaR/ES); numpy: ``risk.var.mc_losses_numpy``
(default_rng per block, normals @ chol.T, chi-square scaling) then the same VaR/ES.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
import ray

from firm.config import load_config
from firm.data.market import load_market_data

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))

from risk import var as V  # noqa: E402  (after NUMBA_CACHE_DIR)

BOOK = np.array([300_000.0, 250_000.0, -150_000.0, 200_000.0, -400_000.0, 100_000.0])
NU = 5.0


CPU_TIMES: list[float] = []  # the best process CPU time of each ``best`` call, in order


def best(f, repeat: int) -> float:
    """Best wall time of ``repeat`` calls; the best CPU time of this process (all its threads, BLAS's and
    numba's included) goes to CPU_TIMES, a figure that other load on the machine disturbs less."""
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    CPU_TIMES.append(min(cpus))
    return min(walls)


def cpu() -> float:
    return CPU_TIMES[-1]


def cold_and_cached(n_starts: int = 3) -> None:
    """Fresh Ray workers (max_calls=1: a new process per call) on an empty, then warm, NUMBA_CACHE_DIR."""
    cache = tempfile.mkdtemp(prefix="numba-cache-")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"NUMBA_CACHE_DIR": cache}})

    @ray.remote(num_cpus=1, max_calls=1)
    def first_call() -> tuple[int, float, float]:
        t0 = time.perf_counter()
        from risk import var

        t1 = time.perf_counter()
        var.monte_carlo(BOOK, np.zeros(6), np.eye(6) * 1e-4, n_paths=1000, dist="t", nu=NU)
        return os.getpid(), t1 - t0, time.perf_counter() - t1

    try:
        print(f"\nfresh Ray workers, NUMBA_CACHE_DIR={cache} (empty at first):")
        pids = set()
        for i in range(n_starts):
            t0 = time.perf_counter()
            pid, imp, call = ray.get(first_call.remote())
            total = time.perf_counter() - t0
            pids.add(pid)
            label = "cold (compiles)" if i == 0 else "cached"
            print(f"  {label:16s} pid {pid}: import risk.var {imp:5.2f} s, first monte_carlo {call:5.2f} s "
                  f"(submit to result {total:5.2f} s)")
        files = sorted(p.name for p in Path(cache).rglob("var.*.nbi"))
        print(f"  {len(pids)} distinct worker processes; cache index files: {', '.join(files)}")
    finally:
        ray.shutdown()
        shutil.rmtree(cache, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=1 << 22)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    n, rep = args.paths, args.repeat
    cores = numba.config.NUMBA_NUM_THREADS
    print(f"{os.cpu_count()} CPUs, numba {numba.__version__} ({cores} threads max), numpy {np.__version__}; "
          f"load average {os.getloadavg()[0]:.1f} at start")

    returns = V.simple_returns(load_market_data(load_config(ROOT / "configs" / "default.yaml").data).panel.close)
    mu, cov = V.moments(returns)
    print(f"{n:,} paths, 6 instruments, best of {rep}")

    for dist, nu in (("normal", None), ("t", NU)):
        sigma = cov if nu is None else cov * (NU - 2) / NU
        exact = V.delta_normal(BOOK, mu, sigma) if nu is None else V.student_t(BOOK, mu, sigma, NU)
        model = V.mc_model(BOOK, mu, sigma, dist, nu)
        V.monte_carlo(BOOK, mu, sigma, n_paths=1000, dist=dist, nu=nu, n_threads=cores)  # load or compile
        print(f"\n{dist}{'' if nu is None else f' (nu={NU:g})'}: closed form VaR {exact.var:,.0f} ES {exact.es:,.0f}")
        times, cpus = {}, {}
        for k in sorted({1, cores}):
            results = []
            times[k] = best(lambda: results.append(
                V.monte_carlo(BOOK, mu, sigma, n_paths=n, dist=dist, nu=nu, n_threads=k)), rep)
            cpus[k] = cpu()
            r = results[-1]
            print(f"  numba  {k} thread{'s' if k > 1 else ' '} {n / times[k] / 1e6:7.2f} M paths/s "
                  f"({times[k] * 1e3:7.1f} ms wall, {cpus[k] * 1e3:7.1f} ms CPU)  VaR {r.var:,.0f} ES {r.es:,.0f}")
        numpy_results = []
        t_np = best(lambda: numpy_results.append(V.empirical(V.mc_losses_numpy(model, n, 0))), max(1, rep // 2))
        c_np = cpu()
        r = numpy_results[-1]
        print(f"  numpy            {n / t_np / 1e6:7.2f} M paths/s ({t_np * 1e3:7.1f} ms wall, {c_np * 1e3:7.1f} ms CPU)"
              f"  VaR {r.var:,.0f} ES {r.es:,.0f}")
        print(f"  numba/numpy paths/s (wall): {t_np / times[cores]:.2f}x on {cores} threads, "
              f"{t_np / times[1]:.2f}x on 1 thread; per CPU second: {c_np / cpus[1]:.2f}x on 1 thread")

        keys = V.block_keys(0, 0, V.n_blocks(n))
        out = np.empty(n)
        for k in sorted({1, cores}):
            with V.threads(k) as kk:
                t_kernel = best(lambda: V.mc_losses_kernel(keys, V.BLOCK, n, model.loc, model.chol, model.values,
                                                           model.nu, kk, *V.ZIGGURAT, out), rep)
                c_kernel = cpu()
                t_rng = best(lambda: V.rng_kernel(keys, V.BLOCK, n, 6, model.nu, kk, *V.ZIGGURAT, out), rep)
                c_rng = cpu()
            draws = n * (6 + (nu is not None))
            print(f"  {k} thread{'s' if k > 1 else ' '}: kernel {t_kernel * 1e3:6.1f} ms, its random numbers alone "
                  f"{t_rng * 1e3:6.1f} ms ({draws / t_rng / 1e6:.0f} M draws/s): kernel/RNG {t_kernel / t_rng:.2f}x wall, "
                  f"{c_kernel / c_rng:.2f}x CPU")
        gen = np.random.default_rng(0)
        if nu is None:
            t_np_rng = best(lambda: gen.standard_normal((n, 6)), rep)
        else:
            t_np_rng = best(lambda: (gen.standard_normal((n, 6)), gen.chisquare(NU, n)), rep)
        c_np_rng = cpu()
        print(f"  numpy default_rng, the same draws alone: {t_np_rng * 1e3:6.1f} ms wall, {c_np_rng * 1e3:6.1f} ms CPU "
              f"(numba kernel on {cores} threads / numpy RNG alone: {t_kernel / t_np_rng:.2f}x wall, "
              f"{c_kernel / c_np_rng:.2f}x CPU)")

    # Ray tasks: the same result whatever the split, and what the fan-out costs
    from actors.var import monte_carlo as ray_monte_carlo

    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level="WARNING",
             runtime_env={"env_vars": {"NUMBA_CACHE_DIR": os.environ["NUMBA_CACHE_DIR"]}})
    try:
        local = V.monte_carlo(BOOK, mu, cov, n_paths=n)
        print(f"\nRay tasks ({cores} CPUs), normal, {n:,} paths:")
        for tasks, threads in ((1, 1), (2, 1), (4, 1), (1, 2)):
            ray_monte_carlo(BOOK, mu, cov, n_paths=1000, n_tasks=tasks, threads_per_task=threads)  # workers up
            res = []
            t = best(lambda: res.append(ray_monte_carlo(BOOK, mu, cov, n_paths=n, n_tasks=tasks,
                                                        threads_per_task=threads)), max(1, rep // 2))
            print(f"  {tasks} task(s) x {threads} thread(s): {n / t / 1e6:6.2f} M paths/s ({t * 1e3:6.1f} ms), "
                  f"bit-identical to one process: {res[-1] == local}")
    finally:
        ray.shutdown()

    cold_and_cached()
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
