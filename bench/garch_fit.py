"""GARCH(1,1) fit: firm's projected Newton (strategies/options_vol.fit_garch) against arch's own fit.

On every 2-year window (one every 63 sessions) of the shipped AAPL, MSFT, IBM and GOOG returns: the
median time of a fit, and the log-likelihood of each estimate under arch (ours less arch's; arch's SLSQP
may stop slightly outside alpha + beta <= 1, the constraint ours holds exactly).
"""

from __future__ import annotations

import time
import warnings

import numpy as np
from arch import arch_model

from firm.data.source import _bokeh_stocks
from strategies.options_vol import fit_garch
from strategies.walk_forward import log_returns


def main() -> None:
    stocks = _bokeh_stocks()
    ours_s, arch_s, gaps, outside = [], [], [], 0
    fit_garch(np.random.default_rng(0).standard_normal(504))  # compile outside the timing
    for symbol in ("AAPL", "MSFT", "IBM", "GOOG"):
        close = stocks[symbol]["adj close"].to_numpy(float)
        e = log_returns(close) * 100.0
        e = e[np.isfinite(e)]
        for s in range(1, e.size - 504, 63):
            y = e[s : s + 504]
            t0 = time.perf_counter()
            fit = fit_garch(y)
            ours_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = arch_model(y, vol="GARCH", p=1, q=1, mean="Zero").fit(disp="off")
            arch_s.append(time.perf_counter() - t0)
            ll = arch_model(y, vol="GARCH", p=1, q=1, mean="Zero").fix([fit.omega, fit.alpha, fit.beta]).loglikelihood
            gaps.append(ll - res.loglikelihood)
            outside += res.params.iloc[1] + res.params.iloc[2] > 1.0
    gaps = np.array(gaps)
    print(f"windows: {len(gaps)} (504 returns each)")
    print(f"fit: ours {1e3 * np.median(ours_s):.2f} ms median, arch_model(...).fit() {1e3 * np.median(arch_s):.2f} ms")
    print(f"log-likelihood ours - arch: min {gaps.min():+.2e}, median {np.median(gaps):+.2e}, max {gaps.max():+.2e}; "
          f"arch outside alpha + beta <= 1 on {outside} windows")


if __name__ == "__main__":
    main()
