"""Attach to a running (or finished) firm on a Ray cluster, read-only: ``attach(address) -> FirmView``.

``attach`` joins the cluster (``address``, else ``RAY_ADDRESS``, else a local ``ray start`` cluster) in
firm's namespace and finds the CIO by its name. A :class:`FirmView` only reads: the book, the equity curve,
recent signals, the decision counts and the run's state, as pandas objects, and can stress-test the book it
reads (``actors/stress.py``, Ray tasks on the cluster). It holds no order capability: the CIO's and
execution's order-driving calls refuse it, and this process may no longer open a broker connection
(``firm.capability``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import ray

from firm import capability
from firm.config import CIOConfig, RayConfig


class NotAttached(LookupError):
    """No firm CIO of that name in that namespace of the cluster."""


def attach(address: str | None = None, namespace: str | None = None, cio: str | None = None) -> "FirmView":
    """A read-only view of the firm whose CIO is named ``cio`` (default ``cio.name``'s default) in
    ``namespace`` (default ``ray.namespace``'s default) on the cluster at ``address``."""
    namespace = namespace or RayConfig().namespace
    cio = cio or CIOConfig().name
    if not ray.is_initialized():
        from firm.status import bootstrap_address, resolve_address

        gcs = bootstrap_address(resolve_address(address))  # ClusterUnreachable at once if nothing listens there
        ray.init(address=gcs, namespace=namespace, logging_level="WARNING", log_to_driver=False)
    try:
        handle = ray.get_actor(cio, namespace=namespace)
    except ValueError:
        raise NotAttached(
            f"no CIO named {cio!r} in namespace {namespace!r} of the Ray cluster at "
            f"{ray.get_runtime_context().gcs_address}: start a run there first (firm run --address ...)"
        ) from None
    capability.mark_read_only()
    return FirmView(handle, cio, namespace)


class FirmView:
    """Read methods on one firm's CIO; every call asks the CIO afresh."""

    def __init__(self, handle, name: str, namespace: str):
        self._cio = handle
        self.name = name
        self.namespace = namespace

    def __repr__(self) -> str:
        return f"FirmView(cio={self.name!r}, namespace={self.namespace!r})"

    def _get(self, method: str, *args, timeout_s: float = 60.0):
        return ray.get(getattr(self._cio, method).remote(*args), timeout=timeout_s)

    def status(self) -> pd.Series:
        """state (running | finished | abandoned), config, run_dir, symbols, agents, progress and heartbeat."""
        st = self._get("status")
        st.pop("data", None)
        for key in ("started_at", "finished_at", "last_batch_at"):
            st[key] = pd.Timestamp(st[key], unit="s", tz="UTC") if st[key] is not None else None
        if st["last_session"] is not None:
            st["last_session"] = pd.Timestamp(st["last_session"], unit="ns", tz="UTC")
        return pd.Series(st, name=self.name)

    def positions(self) -> pd.DataFrame:
        """The book by instrument: position, working orders, last close, market value, weight, P&L."""
        return pd.DataFrame(self._get("positions")["rows"]).set_index("symbol")

    def account(self) -> pd.Series:
        """Cash, equity, peak equity, drawdown, commissions."""
        return pd.Series(self._get("positions")["totals"], name="account")

    def equity(self) -> pd.Series:
        """Equity at each committed session's close."""
        ts, eq = self._get("equity_curve")
        return pd.Series(eq, index=pd.to_datetime(np.asarray(ts, dtype=np.int64), utc=True), name="equity", dtype=float)

    def signals(self, agent: str | None = None, field: str = "strength") -> pd.DataFrame:
        """The recent sessions' ``field`` (strength or confidence; NaN: abstained) by session; columns are the
        symbols for one ``agent``, or (agent, symbol) for all."""
        if field not in ("strength", "confidence"):
            raise ValueError(f"field = {field!r}: strength or confidence")
        symbols = self._get("status")["symbols"]
        frames = {
            name: pd.DataFrame(getattr(s, field), index=pd.to_datetime(s.ts, utc=True), columns=symbols)
            for name, s in self._get("signals", agent).items()
        }
        if agent is not None:
            return frames.get(agent, pd.DataFrame(columns=symbols, dtype=float))
        return pd.concat(frames, axis=1, names=["agent", "symbol"]) if frames else pd.DataFrame()

    def counts(self) -> pd.Series:
        """Decisions, orders and fills so far (as the run's summary counts them)."""
        c = self._get("counts")
        return pd.Series({k: c[k] for k in ("decisions", "orders", "fills")}, name="counts")

    def rejections(self) -> pd.Series:
        """Rejected decisions by ``validator/rule``."""
        return pd.Series(self._get("counts")["rejections"], name="rejections", dtype=int)

    def stress(self, scenarios: str | list[str] | None = None, mode: str = "ray") -> pd.DataFrame:
        """The firm's stress scenarios (``risk/stress.py``; all by default) on the book this view reads,
        valued at the last committed session, run as Ray tasks on the cluster (``actors/stress.py``; ``mode``
        "auto" lets it run them here when that is faster). ``attrs``: how it ran, the valuation date, equity."""
        from actors import stress as stress_tasks
        from firm.config import DataConfig
        from firm.data.source import make_source
        from risk import stress

        st = self._get("status")
        book = self._get("positions")
        held = [(r["symbol"], "quantity", float(r["position"])) for r in book["rows"] if r["position"]]
        if not held or st["last_session"] is None:
            raise ValueError(f"the book of {self.name!r} is flat: nothing to stress")
        as_of = str(pd.Timestamp(st["last_session"], unit="ns", tz="UTC").date())
        sources = [make_source(DataConfig(**st["data"]))] if st.get("data") else []
        history = stress.load_history([h[0] for h in held], sources)
        pf = stress.build_portfolio(held, 0.0, as_of, history, f"book of CIO {self.name!r}")
        pf = stress.build_portfolio(held, book["totals"]["equity"] - pf.net, as_of, history, pf.origin)
        jobs = [stress.prepare(s, pf, history) for s in stress.select(scenarios)]
        results, plan = stress_tasks.run(jobs, mode=mode)
        rows = [{"scenario": r.name, "kind": r.kind, "pnl": r.pnl, "pnl_pct": r.pnl_pct, "max_drawdown": r.max_drawdown,
                 "worst_instrument": r.worst_instrument, "window": "..".join(r.window) if r.window else ""}
                for r in results]  # fmt: skip
        report = pd.DataFrame(rows).set_index("scenario")
        report.attrs.update(plan=plan.as_dict(), as_of=as_of, equity=pf.equity)
        return report
