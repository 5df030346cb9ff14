"""Book accounting against hand-computed figures; IB fixed commission schedule; fill model."""

import math
import subprocess
import sys

import numpy as np
import pytest

from firm.portfolio import Book, Costs, PendingOrder

FREE = Costs(slippage_bps=0, slippage_noise_bps=0, commission_per_share=0, commission_min=0, commission_max_pct=0)


@pytest.mark.parametrize(
    "shares, price, fee",
    [
        (100, 50.0, 1.00),  # 0.5 USD by the share: the 1 USD minimum applies
        (1_000, 50.0, 5.00),  # 0.005 * 1000
        (10_000, 20.0, 50.00),
        (10, 0.5, 0.05),  # capped at 1% of the 5 USD trade value
        (-300, 30.0, 1.50),  # sells pay the same
    ],
)
def test_ib_fixed_commission(shares, price, fee):
    assert Costs().commission(shares, price) == fee


def test_slippage_is_adverse_and_seeded_by_order_ref():
    costs = Costs(slippage_bps=2, slippage_noise_bps=1, seed=7)
    buy = costs.fill_price(100.0, 10, "firm-A")
    sell = costs.fill_price(100.0, -10, "firm-A")
    assert buy > 100.02 - 1e-9 and sell < 99.98 + 1e-9
    assert buy == costs.fill_price(100.0, 10, "firm-A")
    assert Costs(slippage_bps=2, slippage_noise_bps=1, seed=8).fill_price(100.0, 10, "firm-A") != buy
    code = "from firm.portfolio import Costs; print(Costs(slippage_bps=2, slippage_noise_bps=1, seed=7).fill_price(100.0, 10, 'firm-A'))"
    other_process = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(other_process.stdout) == buy


def _trade(book, qty, price, ref):
    book.submit(PendingOrder(ref, 0, qty, "dec:" + ref))
    fills = book.fill_at_open(np.array([price]))
    book.mark(np.array([price]))
    return fills


def test_realized_and_unrealized_pnl_through_a_flip():
    book = Book.new(("X",), 10_000.0, FREE)
    _trade(book, 100, 10.0, "a")  # long 100 @ 10
    _trade(book, -50, 12.0, "b")  # +100 realized
    assert book.realized[0] == pytest.approx(100.0)
    _trade(book, -100, 11.0, "c")  # closes 50 @ 11 (+50), opens short 50 @ 11
    assert book.positions[0] == -50
    assert book.realized[0] == pytest.approx(150.0)
    assert book.cost_basis[0] == pytest.approx(-550.0)
    book.mark(np.array([9.5]))
    assert book.position_value(0) - book.cost_basis[0] == pytest.approx(75.0)  # short 50 from 11 to 9.5
    _trade(book, 50, 9.0, "d")  # +100 realized
    assert book.positions[0] == 0 and book.realized[0] == pytest.approx(250.0)
    assert book.cash == pytest.approx(10_250.0)
    assert book.equity == pytest.approx(10_250.0)


def test_orders_wait_for_a_valid_open_and_drawdown_tracks_peak():
    book = Book.new(("X", "Y"), 1_000.0, FREE)
    book.submit(PendingOrder("r", 1, 10, "dec:r"))
    assert book.fill_at_open(np.array([5.0, math.nan])) == []  # Y has no bar: the order waits
    assert book.working(1) == 10
    fills = book.fill_at_open(np.array([5.0, 20.0]))
    assert [(f.quantity, f.price) for f in fills] == [(10, 20.0)]
    book.mark(np.array([5.0, 20.0]))
    book.mark(np.array([5.0, 10.0]))  # Y halves: equity 1000 -> 900
    assert book.equity == pytest.approx(900.0)
    assert book.drawdown == pytest.approx(0.1)
    assert book.prev_drawdown == pytest.approx(0.0)


def test_copy_is_independent_and_fingerprint_tracks_state():
    book = Book.new(("X",), 100.0, FREE)
    twin = book.copy()
    assert twin.fingerprint() == book.fingerprint()
    _trade(twin, 1, 10.0, "z")
    assert twin.fingerprint() != book.fingerprint()
    assert book.positions == [0]
