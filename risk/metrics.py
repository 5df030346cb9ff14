"""Performance statistics of an equity curve (daily marks, 252 sessions a year, risk-free rate 0)."""

from __future__ import annotations

import numpy as np

TRADING_DAYS = 252


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a positive fraction of that peak."""
    equity = np.asarray(equity, dtype=float)
    if equity.size == 0:
        return 0.0
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak))


def performance(equity: np.ndarray, initial: float) -> dict[str, float]:
    """Total and annualised (geometric) return, annualised volatility (ddof=1), Sharpe, max drawdown.

    Returns are close-to-close on the marks, the first one measured from ``initial``.
    """
    equity = np.asarray(equity, dtype=float)
    n = equity.size
    if n == 0:
        return {"total_return": 0.0, "annual_return": 0.0, "annual_volatility": 0.0, "sharpe": 0.0, "max_drawdown": 0.0}
    returns = np.diff(np.concatenate(([initial], equity))) / np.concatenate(([initial], equity[:-1]))
    total = equity[-1] / initial - 1.0
    annual = (equity[-1] / initial) ** (TRADING_DAYS / n) - 1.0 if equity[-1] > 0 else -1.0
    vol = float(np.std(returns, ddof=1) * np.sqrt(TRADING_DAYS)) if n > 1 else 0.0
    sharpe = float(np.mean(returns) / np.std(returns, ddof=1) * np.sqrt(TRADING_DAYS)) if n > 1 and vol > 0 else 0.0
    return {
        "total_return": float(total),
        "annual_return": float(annual),
        "annual_volatility": vol,
        "sharpe": sharpe,
        "max_drawdown": max_drawdown(np.concatenate(([initial], equity))),
    }
