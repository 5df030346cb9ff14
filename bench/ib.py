"""The IB path's latency and order rate: IBBroker (the real ib_async client) against the fake gateway on loopback.

Usage: python bench/ib.py [--orders N] [--rate-orders N]
Latency, per order: from the execution engine handing the order to the broker (``submit``) to IB's
acknowledgement (the order's state reaches submitted) and to its fill (the replay clock moves to the next
bar, the broker returns the fill with its commission); p50/p99 over --orders orders, one at a time.
Rate: --rate-orders orders submitted back to back under the configured limits (IBConfig: orders per
minute and the minimum spacing); prints the sustained orders/s and the smallest gap between two submit() returns (a send returns a
little after it leaves, so a return gap can be a few ms under the spacing the sends keep).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import time

import numpy as np
import pandas as pd

from firm.broker.endpoint import endpoint
from firm.broker.ib import IBBroker
from firm.broker.ibreplay import BackgroundGateway
from firm.broker.ibsim import IBSim, IBSimConfig, load_replay
from firm.config import IBConfig
from firm.events import OrderEvent, Side
from firm.portfolio import Costs

SYMBOLS = ("AAPL", "MSFT", "IBM")
START = "2012-01-03"


def broker(gw: BackgroundGateway, **limits) -> IBBroker:
    cfg = IBConfig(port=gw.sim.port, replay_control=f"127.0.0.1:{gw.control_port}", **limits)
    return IBBroker(SYMBOLS, 1e7, Costs(slippage_bps=0.0, slippage_noise_bps=0.0), cfg, endpoint(cfg, "ib-paper", env={}), seed=1)


def order(ref: str, k: int) -> OrderEvent:
    ts = dt.datetime(2012, 1, 3, 21, tzinfo=dt.timezone.utc)
    side = Side.BUY if k % 2 == 0 else Side.SELL
    return OrderEvent(id=f"ord:{ref}", ts=ts, order_ref=ref, symbol=SYMBOLS[k % 3], side=side, quantity=10, decision_id=f"dec:{ref}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--rate-orders", type=int, default=60)
    args = ap.parse_args()
    logging.getLogger("ib_async").setLevel(logging.CRITICAL)
    data = load_replay(SYMBOLS)
    p = data.panel
    sessions = pd.DatetimeIndex(pd.to_datetime(p.ts, utc=True)).tz_convert("America/New_York").normalize()
    first = int(np.searchsorted(sessions.tz_localize(None).values, np.datetime64(pd.Timestamp(START)))) + 1

    gw = BackgroundGateway(IBSim(data, START, IBSimConfig()))
    b = broker(gw, orders_per_minute=10_000, min_order_spacing_s=0.0)  # latency without the limiter's waits
    ack, fill, step = [], [], []
    for k in range(args.orders):
        i = first + k
        ref = f"firm-bench-{k}"
        t0 = time.perf_counter()
        b.submit(order(ref, k))
        while b.order_states()[ref] not in ("submitted", "filled", "partially_filled"):
            pass
        t1 = time.perf_counter()
        opened = dt.datetime.fromtimestamp(int(data.session_open[i]) // 1_000_000_000, tz=dt.timezone.utc)
        b.market_time(opened)
        fills = b.on_bar(p.open[i], p.close[i])
        t2 = time.perf_counter()
        assert [f.order_ref for f in fills] == [ref], fills
        ack.append(t1 - t0)
        fill.append(t2 - t0)
        step.append(t2 - t1)
    b.close()

    def q(xs):
        a = np.array(xs) * 1e3
        return f"p50 {np.percentile(a, 50):6.2f} ms, p99 {np.percentile(a, 99):6.2f} ms"

    print(f"IBBroker (ib_async 2.1) -> fake gateway on loopback, {args.orders} orders one at a time")
    print(f"  submit -> acknowledged (Submitted):        {q(ack)}")
    print(f"  submit -> fill with commission:            {q(fill)}   (includes moving the replay clock one bar)")
    print(f"  next bar -> fill returned by on_bar:       {q(step)}")
    slow = sorted(range(len(ack)), key=ack.__getitem__)[-3:]
    print("  slowest acknowledgements: " + ", ".join(f"order {k} {ack[k] * 1e3:.1f} ms" for k in reversed(slow)))

    limits = IBConfig()
    rate_cfg = {"orders_per_minute": 600, "min_order_spacing_s": limits.min_order_spacing_s}
    b = broker(gw, **rate_cfg)
    sent = []
    t0 = time.perf_counter()
    for k in range(args.rate_orders):
        b.submit(order(f"firm-rate-{k}", k))
        sent.append(time.perf_counter())
    elapsed = sent[-1] - t0
    gaps = np.diff(sent)
    b.close()
    cap = min(rate_cfg["orders_per_minute"] / 60.0, 1.0 / rate_cfg["min_order_spacing_s"])
    print(f"rate: {args.rate_orders} orders back to back, limits {rate_cfg['orders_per_minute']}/min and "
          f"{rate_cfg['min_order_spacing_s'] * 1e3:.0f} ms spacing (cap {cap:.1f}/s): sustained "
          f"{(args.rate_orders - 1) / elapsed:.2f} orders/s, smallest gap {gaps.min() * 1e3:.1f} ms")
    print(f"  (the default config, {limits.orders_per_minute}/min, caps a burst at {limits.orders_per_minute / 60:.3f} orders/s)")


if __name__ == "__main__":
    main()
