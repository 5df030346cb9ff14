"""Where the IB connection goes, and the guard in front of live trading. Pure (the environment and
the terminal are passed in), so the refusals are unit-tested.

Paper is the default: ``ib-paper`` connects to 4002 (IB Gateway paper; TWS paper is 7497). ``ib-live``
(4001; TWS 7496) needs ``--live`` *and* a confirmation: ``LIVE`` typed on a terminal, or
``FIRM_CONFIRM_LIVE=yes`` for an unattended run. Anything else is refused with a message saying
what is missing. A paper run pointed at a live port is refused too. Account ids are masked in all
output (``DU****567``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from firm.config import IBConfig

PAPER_PORTS = {"gateway": 4002, "tws": 7497}
LIVE_PORTS = {"gateway": 4001, "tws": 7496}
CONFIRM_ENV = "FIRM_CONFIRM_LIVE"
ACCOUNT_ENV = "FIRM_IB_ACCOUNT"


class LiveRefused(RuntimeError):
    """Live trading was asked for without the required confirmation."""


def mask_account(account: str | None) -> str:
    """``DU1234567`` -> ``DU****567``: never print an account id in full."""
    if not account:
        return "(none)"
    if len(account) <= 5:
        return "*" * len(account)
    return account[:2] + "*" * (len(account) - 5) + account[-3:]


@dataclass(frozen=True)
class Endpoint:
    kind: str  # ib-paper | ib-live
    host: str
    port: int
    client_id: int
    account: str | None

    def __str__(self) -> str:
        return f"{self.kind} {self.host}:{self.port} client {self.client_id} account {mask_account(self.account)}"


def endpoint(cfg: IBConfig, kind: str, env: Mapping[str, str] | None = None) -> Endpoint:
    """Host, port, client id and account from the config, overridden by FIRM_IB_HOST / FIRM_IB_PORT /
    FIRM_IB_CLIENT_ID / FIRM_IB_ACCOUNT; the port defaults by kind (4002 paper, 4001 live)."""
    env = os.environ if env is None else env
    if kind not in ("ib-paper", "ib-live"):
        raise ValueError(f"not an IB broker kind: {kind!r}")
    live = kind == "ib-live"
    port = int(env.get("FIRM_IB_PORT") or cfg.port or (LIVE_PORTS if live else PAPER_PORTS)["gateway"])
    if not live and port in LIVE_PORTS.values():
        raise LiveRefused(
            f"broker ib-paper is pointed at port {port}, a live-trading port (Gateway 4001, TWS 7496); "
            "use 4002 (Gateway) or 7497 (TWS) for paper, or --live for live trading"
        )
    return Endpoint(
        kind=kind,
        host=env.get("FIRM_IB_HOST") or cfg.host,
        port=port,
        client_id=int(env.get("FIRM_IB_CLIENT_ID") or cfg.client_id),
        account=env.get(ACCOUNT_ENV) or cfg.account,
    )


def resolve_kind(broker: str | None, live: bool, configured: str) -> str:
    """The broker kind of a run from ``--broker``, ``--live`` and the config. ``--live`` alone means ib-live;
    ib-live without ``--live`` (from the flag or the config) is refused."""
    kind = broker or ("ib-live" if live else configured)
    if live and kind != "ib-live":
        raise LiveRefused(f"--live asks for live trading but the broker is {kind!r}; use --broker ib-live --live")
    if kind == "ib-live" and not live:
        raise LiveRefused(
            "refusing live trading: broker ib-live needs --live on the command line "
            f"(and a confirmation: type LIVE, or set {CONFIRM_ENV}=yes for an unattended run)"
        )
    return kind


def confirm_live(
    ep: Endpoint,
    env: Mapping[str, str] | None = None,
    isatty: bool = False,
    ask: Callable[[str], str] | None = None,
) -> str:
    """Require a confirmation for live trading; returns how it was given, raises :class:`LiveRefused`."""
    env = os.environ if env is None else env
    if env.get(CONFIRM_ENV, "").strip().lower() == "yes":
        return f"{CONFIRM_ENV}=yes"
    if isatty and ask is not None:
        answer = ask(
            f"LIVE TRADING with real money on {ep}.\nType LIVE to confirm, anything else aborts: "
        )
        if answer.strip() == "LIVE":
            return "typed LIVE"
        raise LiveRefused("refusing live trading: the confirmation was not LIVE")
    raise LiveRefused(
        f"refusing live trading on {ep}: no confirmation. Run it on a terminal and type LIVE, "
        f"or set {CONFIRM_ENV}=yes for an unattended run"
    )
