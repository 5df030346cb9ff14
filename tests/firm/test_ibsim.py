"""The fake gateway end to end: the real ib_async.IB client over loopback, orders on replayed real bars.

No mocks of ib_async and no timed assertions: each test waits for a state (with a generous guard
that only turns a hang into a failure) and then checks what the client and the fake recorded.
"""

from __future__ import annotations

import asyncio
import logging
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock, StopOrder

from firm.broker.ibsim import DEFAULT_ACCOUNT, IBSim, IBSimConfig, load_replay
from firm.portfolio import Costs

START = "2012-01-03"
AAPL = Stock("AAPL", "SMART", "USD")
STARTUP = ["reqPositions", "reqOpenOrders", "reqCompletedOrders", "reqAccountUpdates", "reqAccountUpdatesMulti", "reqExecutions"]
COSTS = Costs()

logging.getLogger("ib_async").setLevel(logging.CRITICAL)  # the faults make it log errors on purpose


@lru_cache(maxsize=1)
def data():
    return load_replay(("AAPL", "MSFT", "IBM"))


def run(coro):
    """Run a test coroutine; the guard only turns a hang into a failure."""
    return asyncio.run(asyncio.wait_for(coro, 30))


async def until(pred, what: str):
    for _ in range(2000):
        if pred():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def working(*trades):
    """Wait until the fake has acknowledged the orders (a step before that would not see them)."""
    await until(lambda: all(t.orderStatus.status in ("Submitted", "Cancelled") for t in trades), "orders acknowledged")


async def connect(sim: IBSim, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, timeout=10)
    return ib


class Errors:
    def __init__(self, ib: IB):
        self.seen: list[tuple[int, int, str]] = []
        ib.errorEvent += lambda req_id, code, msg, contract: self.seen.append((req_id, code, msg))

    def codes(self) -> list[int]:
        return [c for _, c, _ in self.seen]


def bar(sim: IBSim, symbol: str, i: int) -> tuple[float, ...]:
    s = sim.symbols.index(symbol)
    return tuple(float(x[i, s]) for x in sim.ohlcv)


def new_sim(**cfg) -> IBSim:
    return IBSim(data(), START, IBSimConfig(**cfg))


# --------------------------------------------------------------------------------------------------------
# connecting


def test_connect_answers_every_startup_request():
    async def go():
        async with new_sim(next_valid_id=17) as sim:
            ib = await connect(sim)
            s = sim.sessions[1]
            assert s.answered == ["startApi", *STARTUP]
            assert s.unhandled == []
            assert ib.isConnected() and ib.managedAccounts() == [DEFAULT_ACCOUNT]
            assert ib.positions() == [] and ib.openTrades() == [] and ib.fills() == []
            values = {v.tag: v.value for v in ib.accountValues() if v.currency in ("USD", "")}
            assert float(values["NetLiquidation"]) == 1_000_000.0 and values["AccountCode"] == DEFAULT_ACCOUNT
            assert ib.client.getReqId() >= 17  # nextValidId reached the client
            # the sequence TWS answers with: hello, managedAccounts, nextValidId, farm OK x3, then the answers
            assert s.sent[:6] == [178, 15, 9, 4, 4, 4]
            assert {62, 53, 102, 6, 8, 54, 73, 74, 55} <= set(s.sent)  # no positions yet: no 61, no 7
            ib.disconnect()
            await until(lambda: not sim.sessions, "the fake sees the disconnect")

    run(go())


def test_state_at_the_broker_is_reported_at_connect():
    """Positions, working orders, completed orders, executions with commissions: a new connection sees them."""

    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            filled = ib.placeOrder(AAPL, MarketOrder("BUY", 100))
            resting = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 1.0, tif="GTC"))
            await working(filled, resting)
            sim.step()
            await until(lambda: filled.isDone() and ib.positions(), "fill and position")
            ib.disconnect()
            await until(lambda: not sim.sessions, "disconnect")

            ib = await connect(sim)
            assert sim.sessions[1].answered == ["startApi", *STARTUP]
            [pos] = ib.positions()
            assert pos.contract.symbol == "AAPL" and pos.position == 100
            [open_trade] = ib.openTrades()
            assert open_trade.order.orderId == resting.order.orderId and open_trade.orderStatus.status == "Submitted"
            [fill] = ib.fills()
            assert fill.execution.shares == 100 and fill.commissionReport.commission == 1.0
            done = [t for t in ib.trades() if t.orderStatus.status == "Filled"]
            assert len(done) == 1 and done[0].order.permId == filled.order.permId
            ib.disconnect()

    run(go())


# --------------------------------------------------------------------------------------------------------
# orders


def test_market_order_fills_at_next_open_in_tws_sequence():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            s = sim.sessions[1]
            trade = ib.placeOrder(AAPL, MarketOrder("BUY", 100, orderRef="firm-1"))
            await until(lambda: trade.orderStatus.status == "Submitted", "acknowledged")
            assert trade.order.permId > 0
            before = len(s.sent)
            sim.step()
            await until(lambda: trade.isDone() and trade.fills and trade.fills[0].commissionReport.execId and ib.positions(), "filled")
            o, h, lo, c, v = bar(sim, "AAPL", sim.bar)
            commission = COSTS.commission(100, o)
            assert trade.orderStatus.status == "Filled" and trade.orderStatus.avgFillPrice == o
            [fill] = trade.fills
            ex = fill.execution
            assert (ex.shares, ex.price, ex.side, ex.orderRef, ex.permId) == (100, o, "BOT", "firm-1", trade.order.permId)
            assert ex.time.date().isoformat() == str(sim.date)
            assert fill.commissionReport.commission == commission
            assert [e.status for e in trade.log] == ["PendingSubmit", "PreSubmitted", "Submitted", "Submitted", "Filled"]
            # execDetails, orderStatus Filled, openOrder, commissionReport, position, then the account pushes
            assert s.sent[before : before + 6] == [11, 3, 5, 59, 61, 7]
            assert s.sent[-1] == 8
            [pos] = ib.positions()
            assert pos.position == 100 and pos.avgCost == pytest.approx(o + commission / 100)
            [item] = ib.portfolio()
            assert item.marketPrice == c and item.marketValue == pytest.approx(100 * c, abs=0.01)
            cash = float(next(v.value for v in ib.accountValues() if v.tag == "TotalCashValue"))
            assert cash == pytest.approx(1_000_000 - 100 * o - commission, abs=0.01)
            assert sim.position_of("AAPL") == 100
            ib.disconnect()

    run(go())


def _first_cross(sim: IBSim, symbol: str, side: str) -> tuple[int, float]:
    """A bar k >= 2 bars ahead where a level first reached intrabar (not at the open) is crossed, and the level."""
    i = sim.bar
    for k in range(2, 60):
        prev = [bar(sim, symbol, i + j) for j in range(1, k)]
        o, h, lo, c, v = bar(sim, symbol, i + k)
        if side == "low":
            floor = min(min(b[2] for b in prev), o)
            if lo < floor - 0.02:
                return k, round((lo + floor) / 2, 2)
        else:
            ceiling = max(max(b[1] for b in prev), o)
            if h > ceiling + 0.02:
                return k, round((h + ceiling) / 2, 2)
    raise AssertionError("no crossing bar in the data")


def test_limit_order_rests_then_fills_at_its_limit_when_the_bar_crosses():
    async def go():
        async with new_sim() as sim:
            k, level = _first_cross(sim, "AAPL", "high")  # AAPL rallied in early 2012: sell into it
            ib = await connect(sim)
            trade = ib.placeOrder(AAPL, LimitOrder("SELL", 50, level, tif="GTC"))
            await working(trade)
            for _ in range(k - 1):
                sim.step()
            await until(lambda: sim.sessions[1].sent[-1] == 8, "bars pushed")
            assert trade.orderStatus.status == "Submitted" and trade.fills == []
            sim.step()
            await until(lambda: trade.isDone() and ib.positions(), "filled")
            assert trade.orderStatus.status == "Filled" and trade.fills[0].execution.price == level
            ib.disconnect()

    run(go())


def test_stop_order_triggers_when_the_bar_reaches_it():
    async def go():
        async with new_sim() as sim:
            k, level = _first_cross(sim, "AAPL", "high")
            ib = await connect(sim)
            trade = ib.placeOrder(AAPL, StopOrder("BUY", 30, level, tif="GTC"))
            await working(trade)
            for _ in range(k - 1):
                sim.step()
            await until(lambda: sim.sessions[1].sent[-1] == 8, "bars pushed")
            assert trade.orderStatus.status == "Submitted" and trade.fills == []
            sim.step()
            await until(lambda: trade.isDone(), "filled")
            assert trade.fills[0].execution.price == level and trade.orderStatus.filled == 30
            ib.disconnect()

    run(go())


def test_partial_fills_by_share_of_volume():
    async def go():
        async with new_sim(fill_share=1e-6) as sim:  # AAPL trades ~1e8 shares a day: ~100 a bar
            ib = await connect(sim)
            qty = 250
            trade = ib.placeOrder(AAPL, MarketOrder("BUY", qty, tif="GTC"))
            await working(trade)
            sim.step()
            cap = np.floor(1e-6 * bar(sim, "AAPL", sim.bar)[4])
            await until(lambda: len(trade.fills) == 1 and trade.orderStatus.filled == cap, "first partial fill")
            assert 0 < cap < qty and trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == qty - cap
            while not trade.isDone():
                n = len(trade.fills)
                sim.step()
                await until(lambda: len(trade.fills) == n + 1, "next partial fill")
            fills = trade.fills
            assert len(fills) >= 3 and sum(f.execution.shares for f in fills) == qty
            assert fills[-1].execution.cumQty == qty
            vwap = sum(f.execution.shares * f.execution.price for f in fills) / qty
            assert trade.orderStatus.avgFillPrice == pytest.approx(vwap)
            assert all(f.commissionReport.commission == COSTS.commission(int(f.execution.shares), f.execution.price) for f in fills)
            await until(lambda: ib.positions() and ib.positions()[0].position == qty, "position")
            ib.disconnect()

    run(go())


def test_cancel_202_and_cancel_of_a_filled_order_10148_and_day_expiry():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            errors = Errors(ib)
            resting = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 1.0, tif="GTC"))
            day = ib.placeOrder(AAPL, LimitOrder("BUY", 10, 1.0))  # tif DAY: lives one session
            filled = ib.placeOrder(AAPL, MarketOrder("SELL", 10))
            await working(resting, day, filled)
            sim.step()
            await until(lambda: filled.isDone() and day.isDone(), "fill and expiry")
            assert day.orderStatus.status == "Cancelled" and filled.orderStatus.status == "Filled"
            assert resting.orderStatus.status == "Submitted"
            ib.cancelOrder(resting.order)
            ib.cancelOrder(filled.order)
            await until(lambda: resting.isDone() and 10148 in errors.codes(), "cancel answers")
            assert resting.orderStatus.status == "Cancelled"
            assert (resting.order.orderId, 202) in [(r, c) for r, c, _ in errors.seen]
            assert filled.orderStatus.status == "Filled"
            assert sim.position_of("AAPL") == -10  # short: the sell filled, nothing else did
            ib.disconnect()

    run(go())


def test_historical_daily_bars_up_to_the_replay_clock():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            bars = await ib.reqHistoricalDataAsync(AAPL, "", "1 M", "1 day", "TRADES", True)
            assert bars and str(bars[-1].date) == str(sim.date)  # nothing after the current bar
            o, h, lo, c, v = bar(sim, "AAPL", sim.bar)
            assert (bars[-1].open, bars[-1].high, bars[-1].low, bars[-1].close, bars[-1].volume) == (o, h, lo, c, v)
            assert 18 <= len(bars) <= 23  # a month of sessions
            sim.step()
            later = await ib.reqHistoricalDataAsync(AAPL, "", "1 M", "1 day", "MIDPOINT", True)
            assert str(later[-1].date) == str(sim.date) and later[-2].date == bars[-1].date
            [details] = await ib.reqContractDetailsAsync(Stock("IBM", "SMART", "USD"))
            assert details.contract.conId == 8314 and details.longName
            ib.disconnect()

    run(go())


# --------------------------------------------------------------------------------------------------------
# scripted faults


def test_order_rejected_201_cancels_the_trade():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            sim.fault_reject_next_order("insufficient margin (scripted)")
            trade = ib.placeOrder(AAPL, MarketOrder("BUY", 100))
            await until(trade.isDone, "rejected")
            assert trade.orderStatus.status == "Cancelled"
            assert trade.log[-1].errorCode == 201 and "insufficient margin" in trade.log[-1].message
            unknown = ib.placeOrder(Stock("XYZ", "SMART", "USD"), MarketOrder("BUY", 1))
            await until(unknown.isDone, "unknown contract")
            assert unknown.log[-1].errorCode == 200
            sim.step()
            await until(lambda: sim.sessions[1].sent[-1] == 8, "bar pushed")
            assert trade.fills == [] and ib.positions() == [] and sim.orders.get((1, trade.order.orderId)) is None
            ib.disconnect()

    run(go())


def test_duplicate_client_id_326_refuses_the_second_connection():
    async def go():
        async with new_sim() as sim:
            first = await connect(sim, client_id=5)
            second = IB()
            errors = Errors(second)
            api_errors: list[str] = []
            second.client.apiError += api_errors.append
            task = asyncio.ensure_future(second.connectAsync("127.0.0.1", sim.port, clientId=5, timeout=20))
            await until(lambda: api_errors, "the second connection is closed")
            assert 326 in errors.codes() and "already in use" in api_errors[0]
            assert not second.isConnected()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert first.isConnected() and sim.sessions[5] is not None
            assert [len(sim.sessions)] == [1]
            first.disconnect()

    run(go())


def test_connectivity_and_farm_codes_reach_the_error_event():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            errors = Errors(ib)
            sim.connectivity_lost()
            sim.farm_broken()
            sim.farm_ok()
            sim.connectivity_restored(data_kept=False)
            sim.connectivity_restored(data_kept=True)
            await until(lambda: len(errors.seen) == 5, "five messages")
            assert errors.codes() == [1100, 2103, 2104, 1101, 1102]
            assert all(r == -1 for r, _, _ in errors.seen)
            # after 1102 ib_async re-requests the account summary; the fake answers it
            await until(lambda: "reqAccountSummary" in sim.sessions[1].answered, "account summary")
            assert ib.isConnected()
            ib.disconnect()

    run(go())


def test_socket_drop_in_the_middle_of_an_order():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            dropped: list[bool] = []
            ib.disconnectedEvent += lambda: dropped.append(True)
            sim.fault_drop_mid_order()
            trade = ib.placeOrder(AAPL, MarketOrder("BUY", 40, tif="GTC"))
            await until(lambda: dropped, "disconnectedEvent")
            assert not ib.isConnected() and ib.trades() == []  # ib_async forgets everything on a drop
            assert trade.orderStatus.status in ("PendingSubmit", "PreSubmitted")
            # the order is live at the broker: after a reconnect it is reported, then fills
            ib = await connect(sim)
            [open_trade] = ib.openTrades()
            assert open_trade.order.orderId == trade.order.orderId and open_trade.order.permId > 0
            sim.step()
            await until(lambda: open_trade.isDone() and ib.positions(), "filled after reconnect")
            assert open_trade.fills[0].execution.shares == 40
            ib.disconnect()

    run(go())


def test_fill_arriving_after_the_cancel_request():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            errors = Errors(ib)
            trade = ib.placeOrder(AAPL, LimitOrder("BUY", 20, 1.0, tif="GTC"))
            await until(lambda: trade.orderStatus.status == "Submitted", "working")
            sim.fault_fill_after_cancel()
            ib.cancelOrder(trade.order)
            assert trade.orderStatus.status == "PendingCancel"
            await until(lambda: 10148 in errors.codes(), "cancel refused")
            assert trade.orderStatus.status == "Filled" and len(trade.fills) == 1
            assert trade.fills[0].execution.price == bar(sim, "AAPL", sim.bar)[3]  # the last close
            assert [e.status for e in trade.log][-3:] == ["PendingCancel", "PendingCancel", "Filled"]
            ib.disconnect()

    run(go())


def test_exec_details_without_order_status():
    async def go():
        async with new_sim() as sim:
            ib = await connect(sim)
            trade = ib.placeOrder(AAPL, MarketOrder("BUY", 100))
            await working(trade)
            sim.fault_exec_without_status()
            sim.step()
            await until(lambda: trade.fills and trade.fills[0].commissionReport.commission and ib.positions(), "fill")
            # the client has the execution, the commission and the position, but the trade is not Filled
            assert trade.orderStatus.status == "Submitted" and trade.orderStatus.filled == 0
            assert ib.positions()[0].position == 100
            ib.disconnect()

    run(go())


def test_restart_with_next_valid_id_going_backwards():
    async def go():
        async with new_sim(next_valid_id=100) as sim:
            ib = await connect(sim)  # ib_async spends two request ids at connect (100, 101)
            first = ib.placeOrder(AAPL, MarketOrder("BUY", 10))
            assert first.order.orderId == 102
            await working(first)
            sim.step()
            await until(first.isDone, "filled")
            dropped: list[bool] = []
            ib.disconnectedEvent += lambda: dropped.append(True)
            sim.restart(next_valid_id=100)
            await until(lambda: dropped, "disconnected by the restart")
            ib = await connect(sim)
            assert sim.sessions[1].sent[2] == 9 and sim.next_valid_id == 100
            # a filled order does not lift ib_async's id sequence (a working one would: openOrder does)
            again = ib.placeOrder(AAPL, MarketOrder("BUY", 10))
            assert again.order.orderId == first.order.orderId  # the id went backwards and is reused
            await until(again.isDone, "refused")
            assert again.orderStatus.status == "Cancelled" and again.log[-1].errorCode == 103
            sim.step()
            await until(lambda: sim.sessions[1].sent[-1] == 8, "bar pushed")
            assert sim.position_of("AAPL") == 10 and again.fills == []
            ib.disconnect()

    run(go())


def test_historical_pacing_violation_162():
    async def go():
        async with new_sim() as sim:
            now = [1000.0]
            sim.clock = lambda: now[0]
            ib = await connect(sim)
            errors = Errors(ib)
            first = await ib.reqHistoricalDataAsync(AAPL, "", "5 D", "1 day", "TRADES", True)
            same = await ib.reqHistoricalDataAsync(AAPL, "", "5 D", "1 day", "TRADES", True)
            assert len(first) > 0 and len(same) == 0 and errors.codes() == [162]
            now[0] += 16  # IB allows an identical request again after 15 s
            assert len(await ib.reqHistoricalDataAsync(AAPL, "", "5 D", "1 day", "TRADES", True)) > 0
            sim.fault_historical(162)
            assert len(await ib.reqHistoricalDataAsync(AAPL, "", "1 W", "1 day", "TRADES", True)) == 0
            assert errors.codes() == [162, 162]
            ib.disconnect()

    run(go())


# --------------------------------------------------------------------------------------------------------
# the command


def test_firm_ibsim_command_serves_fills_and_stops_on_ctrl_c():
    import re
    import signal
    import sys

    async def go():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "firm.cli", "ibsim", "--port", "0", "--symbols", "AAPL,IBM",
            "--start", START, "--bar-interval", "0.2",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        lines: list[str] = []
        port = None
        while port is None:
            line = (await proc.stdout.readline()).decode()
            assert line, f"firm ibsim exited: {(await proc.stderr.read()).decode()}"
            lines.append(line)
            m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        ib = IB()
        await ib.connectAsync("127.0.0.1", port, clientId=3, timeout=10)
        trade = ib.placeOrder(Stock("IBM", "SMART", "USD"), MarketOrder("BUY", 5))
        await until(lambda: trade.isDone() and ib.positions(), "filled by the running clock")
        assert trade.orderStatus.status == "Filled" and ib.positions()[0].position == 5
        ib.disconnect()
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()
        lines += out.decode().splitlines()
        assert proc.returncode == 0, err.decode()
        text = "\n".join(lines)
        assert "client 3 connected" in text and "fill: client 3" in text and "BUY 5 IBM" in text
        assert lines[-1].endswith("stopped")

    run(go())


def test_firm_ibsim_serves_its_replay_clock_on_the_control_port():
    """``--control-port 0``: the command prints the clock's address, and a ReplayClock moves the market."""
    import re
    import signal
    import sys

    from firm.broker.ibreplay import ReplayClock

    async def go():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "firm.cli", "ibsim", "--port", "0", "--control-port", "0", "--symbols", "AAPL,IBM",
            "--start", START, "--bar-interval", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        control = None
        while control is None:
            line = (await proc.stdout.readline()).decode()
            assert line, f"firm ibsim exited: {(await proc.stderr.read()).decode()}"
            m = re.search(r"--replay-control (127\.0\.0\.1:\d+)", line)
            control = m.group(1) if m else None
        clock = ReplayClock(control)
        before = await asyncio.to_thread(clock.date)
        target = pd.Timestamp(f"{before} 16:00", tz="America/New_York") + pd.Timedelta(days=7)
        after = await asyncio.to_thread(clock.step_to, target)
        await asyncio.to_thread(clock.close)
        proc.send_signal(signal.SIGINT)
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        return before, after

    before, after = run(go())
    assert pd.Timestamp(before) < pd.Timestamp(after) <= pd.Timestamp(before) + pd.Timedelta(days=7)
