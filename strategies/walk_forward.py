"""The walk-forward rule shared by strategies whose parameters are fitted (GARCH, HMM, ...).

Not a strategy (it registers nothing). On one instrument's series of rows ``0 .. n-1``:

  * the model is refitted at the refit rows ``first_valid + train_window + k * refit_every`` (k = 0, 1, ...),
    where ``first_valid`` is the first row whose input is defined (1 for returns, ...). The refit rows are
    a function of the row index only, never of ``n``, so the output at row t does not depend on how many
    rows follow (prefix stability);
  * the fit at refit row r sees exactly the ``train_window`` rows ``r - train_window .. r - 1``, strictly
    before r;
  * rows ``r .. r' - 1`` (r' the next refit row) use the fit made at r, applied causally (the caller runs
    the fitted model's recursion over rows <= t for row t); rows before the first refit row abstain.

Fits are expensive and ``Strategy.compute`` runs on the whole history at every call, so fits are memoised
per strategy instance in a ``FitMemo`` keyed by (column, refit row, a digest of the exact training bytes).
A fit depends only on its window, so a memo hit returns exactly what a refit would: batch replay,
bar-by-bar streaming and any prefix give identical results, and each refit row is fitted once.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Hashable

import numpy as np
from numba import njit

__all__ = ["FitMemo", "WalkForward", "log_returns"]


class FitMemo:
    """Fits memoised by (column, refit row, dtype, shape, BLAKE2b-128 of the training bytes).

    ``fits`` counts the fits actually run, ``hits`` the ones served from the memo.
    """

    def __init__(self) -> None:
        self._store: dict[tuple, Any] = {}
        self.fits = 0
        self.hits = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        self._store.clear()

    def get(self, column: Hashable, refit_row: int, window: np.ndarray, fit: Callable[[np.ndarray], Any]) -> Any:
        """``fit(window)``, run once per distinct key; ``fit`` gets a read-only copy of the window."""
        data = np.ascontiguousarray(window)
        digest = hashlib.blake2b(data.data, digest_size=16).digest()
        key = (column, int(refit_row), data.dtype.str, data.shape, digest)
        try:
            result = self._store[key]
        except KeyError:
            frozen = data.copy()
            frozen.flags.writeable = False
            result = fit(frozen)
            self._store[key] = result
            self.fits += 1
        else:
            self.hits += 1
        return result


@dataclass(frozen=True)
class WalkForward:
    """Refit every ``refit_every`` rows on the trailing ``train_window`` rows strictly before the refit row."""

    train_window: int
    refit_every: int

    def __post_init__(self) -> None:
        if int(self.train_window) != self.train_window or self.train_window < 1:
            raise ValueError(f"train_window must be an integer >= 1, got {self.train_window!r}")
        if int(self.refit_every) != self.refit_every or self.refit_every < 1:
            raise ValueError(f"refit_every must be an integer >= 1, got {self.refit_every!r}")

    def first_refit(self, first_valid: int) -> int:
        """The first refit row: the first row preceded by ``train_window`` rows of defined input."""
        return int(first_valid) + self.train_window

    def refit_rows(self, n_rows: int, first_valid: int) -> np.ndarray:
        """The refit rows below ``n_rows``: first_refit, first_refit + refit_every, ... (int64)."""
        return np.arange(self.first_refit(first_valid), max(int(n_rows), 0), self.refit_every, dtype=np.int64)

    def fit_index(self, n_rows: int, first_valid: int) -> np.ndarray:
        """For each row, the index (into ``refit_rows``) of the fit in force there; -1 before the first refit."""
        first = self.first_refit(first_valid)
        t = np.arange(int(n_rows), dtype=np.int64)
        return np.where(t >= first, (t - first) // self.refit_every, -1)

    def fits(
        self,
        x: np.ndarray,
        *,
        first_valid: int,
        column: Hashable,
        fit: Callable[[np.ndarray], Any],
        memo: FitMemo,
    ) -> tuple[np.ndarray, list[Any]]:
        """(refit rows, the fit at each): ``memo.get(column, r, x[r - train_window : r], fit)`` for each refit row r.

        ``x`` holds one instrument's rows (first axis = row); ``fit`` must depend on its window only.
        """
        rows = self.refit_rows(len(x), first_valid)
        w = self.train_window
        return rows, [memo.get(column, int(r), x[r - w : r], fit) for r in rows]


@njit(cache=True)
def _log_returns(close: np.ndarray) -> np.ndarray:
    out = np.full(close.shape[0], np.nan)
    for t in range(1, close.shape[0]):
        out[t] = math.log(close[t] / close[t - 1])
    return out


def log_returns(close: np.ndarray) -> np.ndarray:
    """ln(C_t / C_{t-1}) through the C library's scalar log (as strategies.indicators.tanh); NaN at row 0."""
    return _log_returns(np.ascontiguousarray(close, dtype=np.float64))
