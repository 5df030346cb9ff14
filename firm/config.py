"""Configuration, declared once and validated on load.

Every model forbids unknown keys. A mistake exits with a :class:`ConfigError` whose message names
the full key path, the offending value and the rule it breaks. Secrets never live in the file:
they are read from the environment variables the config names.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A config file that cannot be used; the message says where and why."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunConfig(_Model):
    seed: int = Field(7, ge=0, description="Seeds every random draw of the run (slippage noise).")
    batch: int = Field(256, ge=1, le=65536, description="Bars handed to each agent per call.")
    output_dir: Path = Field(Path("runs"), description="Each run writes a directory under this one.")
    progress_every_s: float = Field(1.0, gt=0, description="Seconds between progress lines.")


class RayConfig(_Model):
    address: str | None = Field(None, description="None starts a local Ray; 'auto' or host:port joins one.")
    namespace: str = Field("firm", min_length=1)
    num_cpus: int | None = Field(None, ge=1, description="CPUs for a local Ray (None: all cores).")
    execution_resource: str | None = Field(
        None,
        min_length=1,
        description="Custom resource of the node that reaches the broker (e.g. ib_gateway): the execution actor "
        "takes one whole unit of it, so it runs on that node and one unit admits one execution actor. "
        "None: execution runs on the head node with the CIO, risk and compliance.",
    )

    @field_validator("execution_resource")
    @classmethod
    def _custom_resource(cls, v: str | None) -> str | None:
        if v is not None and (v in ("CPU", "GPU", "memory", "object_store_memory") or v.startswith("node:")):
            raise ValueError(f"{v!r} is one of Ray's own resources; name the custom resource of the broker's node")
        return v


class DataConfig(_Model):
    source: Literal["sample", "file"] = "sample"
    symbols: tuple[str, ...] = Field(("AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP"), min_length=1)
    start: date | None = date(2004, 8, 19)
    end: date | None = date(2013, 3, 1)
    calendar: str = Field("XNYS", description="exchange_calendars code the sessions are checked against.")
    path: Path | None = Field(None, description="For source 'file': a CSV/Parquet file or a directory of them.")
    adjust_splits: bool = Field(True, description="Scale OHLC by Adj Close / Close where the data has it.")
    reference: tuple[str, ...] = Field(
        ("SPX", "COMP", "VIX", "WTI", "AAA", "BAA", "CORE_CPI"),
        description="Reference series handed to every agent (firm/data/reference.py), as public at each close.",
    )

    @field_validator("reference")
    @classmethod
    def _known_reference(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from firm.data.reference import REFERENCE

        unknown = [name for name in v if name not in REFERENCE]
        if unknown:
            raise ValueError(f"unknown reference series {', '.join(unknown)}; available: {', '.join(REFERENCE)}")
        return v

    @field_validator("symbols")
    @classmethod
    def _unique_symbols(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        dupes = sorted({s for s in v if v.count(s) > 1})
        if dupes:
            raise ValueError(f"symbols must be unique, repeated: {', '.join(dupes)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> "DataConfig":
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.source == "file" and self.path is None:
            raise ValueError("source 'file' needs data.path")
        return self


class AgentConfig(_Model):
    enabled: bool = True
    weight: float = Field(1.0, ge=0, description="Weight of this agent's signals in the CIO's blend.")
    params: dict[str, Any] = Field(default_factory=dict)


class RegimeWeight(_Model):
    calm: float = Field(1.0, ge=0, le=10, description="Multiplier on the agent's weight when P(turbulent) = 0.")
    turbulent: float = Field(1.0, ge=0, le=10, description="...and when P(turbulent) = 1 (linear in between).")


DEFAULT_REGIME_WEIGHTS = {
    "mean_reversion": RegimeWeight(turbulent=0.5),
    "market_making": RegimeWeight(turbulent=0.25),
    "stat_arb": RegimeWeight(turbulent=0.5),
    "index_spread": RegimeWeight(turbulent=0.5),
}


class CIOConfig(_Model):
    name: str = Field("cio", min_length=1, description="Name of the singleton CIO actor.")
    barrier_timeout_s: float = Field(10.0, gt=0, description="ray.wait timeout for the agents' signals.")
    entry_threshold: float = Field(0.15, ge=0, lt=1, description="|blended score| needed to open a position.")
    exit_threshold: float = Field(
        0.05, ge=0, lt=1, description="An open position is kept while the score on its side stays above this."
    )
    max_position_weight: float = Field(0.20, gt=0, le=1, description="Cap on |position| / equity set by the CIO.")
    rebalance_band: float = Field(0.02, ge=0, lt=1, description="Skip trades smaller than this share of equity.")
    allow_short: bool = True
    # Sizing: fractional Kelly (firm/sizing.py, firm/cio.py)
    kelly_fraction: float = Field(0.5, gt=0, le=1, description="Share of the Kelly fraction mu / sigma^2 that is bet.")
    vol_target: float | None = Field(
        0.05, gt=0, le=1, description="Cap on one position's annualised volatility |w| * sigma (null: no cap)."
    )
    vol_halflife: int = Field(21, ge=2, le=1000, description="Half-life (bars) of the EWMA of squared returns.")
    vol_min_obs: int = Field(20, ge=2, le=1000, description="Returns needed before an instrument is sized.")
    edge_prior: float = Field(
        0.1, ge=0, le=1, description="Prior edge: next-bar return in volatility units per unit of blended score."
    )
    edge_prior_strength: float = Field(
        50.0, ge=0, description="Weight of edge_prior, in units of sum(score^2) of observations (shrinkage)."
    )
    perf_halflife: int = Field(
        252, ge=10, le=10000, description="Half-life (bars) of the realised-performance statistics (edge, agent IC)."
    )
    # Agent weights from realised performance, and by regime
    perf_gain: float = Field(
        10.0, ge=0, le=100, description="Agent weight x (1 + perf_gain * shrunk IC); 0 keeps the configured weights."
    )
    perf_prior_obs: float = Field(
        500.0, ge=0, description="IC shrinkage: IC x n / (n + perf_prior_obs), n the agent's effective observations."
    )
    weight_floor: float = Field(0.25, ge=0, le=1, description="Lowest performance multiplier of an agent's weight.")
    weight_cap: float = Field(2.0, ge=1, le=10, description="Highest performance multiplier of an agent's weight.")
    regime_agent: str = Field("regime", min_length=1, description="Agent whose p_turbulent rationale is the regime.")
    regime_weights: dict[str, RegimeWeight] = Field(
        default_factory=lambda: dict(DEFAULT_REGIME_WEIGHTS),
        description="Agent -> weight multiplier in calm / turbulent regimes; agents not listed: 1 and 1.",
    )
    turbulent_size_scale: float = Field(
        0.5, ge=0, le=1, description="Target size x this when P(turbulent) = 1 (linear in between): de-risking."
    )
    # Position management: 0 or null disables each rule
    stop_loss: float | None = Field(
        0.10, ge=0, lt=1, description="Exit when the position lost this share of its average entry price."
    )
    take_profit: float | None = Field(
        None, ge=0, description="Exit when the position gained this share of its average entry price."
    )
    trailing_stop: float | None = Field(
        0.15, ge=0, lt=1, description="Exit when the close retreats this share from the best close since entry."
    )
    max_holding_bars: int | None = Field(None, ge=0, description="Exit after holding this many bars (time stop).")
    regime_exit: float | None = Field(
        None, ge=0, le=1, description="Exit when the instrument's P(turbulent) reaches this (exit on regime change)."
    )
    reentry_cooldown_bars: int = Field(
        5, ge=0, le=250, description="Bars after an exit rule fired before the blend may re-enter on that side."
    )
    required_agents: tuple[str, ...] = Field(
        (),
        description="If one is late, failed or disabled for a batch, its rows take no new risk (exits still apply).",
    )
    agent_max_restarts: int = Field(3, ge=0, le=100, description="Ray restarts of a signal agent that died.")

    @model_validator(mode="after")
    def _hysteresis(self) -> "CIOConfig":
        if self.exit_threshold > self.entry_threshold:
            raise ValueError(
                f"exit_threshold {self.exit_threshold} must not exceed entry_threshold {self.entry_threshold}"
            )
        if self.vol_min_obs > 10 * self.vol_halflife:
            raise ValueError(f"vol_min_obs {self.vol_min_obs} must not exceed 10 x vol_halflife {self.vol_halflife}")
        return self


DEFAULT_SECTORS = {
    "AAPL": "technology",
    "MSFT": "technology",
    "IBM": "technology",
    "GOOG": "technology",
    "SPX": "broad_index",
    "COMP": "broad_index",
}


class DrawdownTier(_Model):
    at: float = Field(gt=0, lt=1, description="Drawdown from peak equity at which the tier applies.")
    action: Literal["reduce_size", "stop_new_entries", "flatten"] = Field(
        description="reduce_size: position limit x scale; stop_new_entries: only reducing orders pass; "
        "flatten: trips the kill switch, which cancels working orders and closes every position."
    )
    scale: float | None = Field(None, gt=0, lt=1, description="reduce_size only: factor on the position limit.")

    @model_validator(mode="after")
    def _scale(self) -> "DrawdownTier":
        if self.action == "reduce_size" and self.scale is None:
            raise ValueError("action reduce_size needs a scale in (0, 1)")
        if self.action != "reduce_size" and self.scale is not None:
            raise ValueError(f"scale applies to reduce_size only, not to {self.action}")
        return self


class CrashProtection(_Model):
    enabled: bool = True
    window: int = Field(1, ge=1, le=20, description="Bars the move is measured over (velocity window).")
    lookback: int = Field(60, ge=10, le=2000, description="One-bar returns before the window that give sigma.")
    sigmas: float = Field(4.0, gt=0, description="An instrument moving this many sigmas halts its new entries.")
    min_move: float = Field(0.03, ge=0, lt=1, description="...and at least this absolute log move.")
    portfolio_sigmas: float = Field(4.0, gt=0, description="The equity moving this many sigmas halts all entries.")
    portfolio_min_move: float = Field(0.02, ge=0, lt=1, description="...and at least this absolute log move.")
    halt_bars: int = Field(3, ge=1, le=250, description="Bars the halt lasts, the triggering bar included.")


class CorrelationAlert(_Model):
    enabled: bool = True
    short_window: int = Field(20, ge=5, le=250, description="Recent returns whose correlations are compared.")
    long_window: int = Field(250, ge=20, le=2000, description="Returns before them: the longer history.")
    threshold: float = Field(
        0.4, gt=0, le=2, description="Mean |change| of the pairwise correlations that raises a warning."
    )

    @model_validator(mode="after")
    def _windows(self) -> "CorrelationAlert":
        if self.long_window < 2 * self.short_window:
            raise ValueError(
                f"long_window {self.long_window} must be at least twice short_window {self.short_window}"
            )
        return self


class KillSwitchConfig(_Model):
    state_file: Path | None = Field(
        None,
        description="Where the kill switch state persists across runs (None: <run.output_dir>/state/kill_switch.json).",
    )


class RiskConfig(_Model):
    max_position_weight: float = Field(0.25, gt=0, le=10, description="|position value| / equity after the trade.")
    max_gross_exposure: float = Field(1.0, gt=0, le=10, description="sum |position value| / equity.")
    max_net_exposure: float = Field(0.6, ge=0, le=10, description="|sum position value| / equity.")
    max_drawdown: float = Field(0.25, gt=0, lt=1, description="From peak equity; past it only reducing orders pass.")
    sectors: dict[str, str] = Field(
        default_factory=lambda: dict(DEFAULT_SECTORS),
        description="Symbol -> sector; a symbol not listed is a sector of its own.",
    )
    max_sector_weight: float = Field(0.8, gt=0, le=10, description="sum |position value| of a sector / equity.")
    max_concentration: float = Field(
        0.5, gt=0, le=1, description="Largest |position| / gross, once gross reaches concentration_min_gross."
    )
    concentration_min_gross: float = Field(0.5, ge=0, le=10, description="Gross / equity from which it applies.")
    daily_loss_limit: float = Field(
        0.05, gt=0, lt=1, description="Loss since the previous close, as a share of its equity, that halts new risk."
    )
    daily_loss_action: Literal["halt", "kill_switch"] = Field(
        "halt",
        description="halt: no order that increases risk for daily_loss_halt_bars bars (the breaching close "
        "included); kill_switch: trips the kill switch (working orders cancelled, positions kept).",
    )
    daily_loss_halt_bars: int = Field(1, ge=1, le=250)
    drawdown_tiers: tuple[DrawdownTier, ...] = Field(
        (
            DrawdownTier(at=0.10, action="reduce_size", scale=0.5),
            DrawdownTier(at=0.15, action="stop_new_entries"),
            DrawdownTier(at=0.20, action="flatten"),
        ),
        description="From peak equity, in increasing order of 'at' and of severity.",
    )
    crash: CrashProtection = CrashProtection()
    correlation: CorrelationAlert = CorrelationAlert()
    kill_switch: KillSwitchConfig = KillSwitchConfig()

    @field_validator("drawdown_tiers")
    @classmethod
    def _tiers_in_order(cls, v: tuple[DrawdownTier, ...]) -> tuple[DrawdownTier, ...]:
        rank = {"reduce_size": 0, "stop_new_entries": 1, "flatten": 2}
        for lo, hi in zip(v, v[1:]):
            if hi.at <= lo.at:
                raise ValueError(f"tiers must be in increasing order of 'at': {hi.at} after {lo.at}")
            if rank[hi.action] < rank[lo.action]:
                raise ValueError(f"tier at {hi.at} ({hi.action}) is milder than the tier at {lo.at} ({lo.action})")
        return v

    @field_validator("sectors")
    @classmethod
    def _sector_names(cls, v: dict[str, str]) -> dict[str, str]:
        empty = sorted(s for s, name in v.items() if not name.strip())
        if empty:
            raise ValueError(f"empty sector name for {', '.join(empty)}")
        return v


class Blackout(_Model):
    symbol: str
    start: date
    end: date
    reason: str = "blackout period"

    @model_validator(mode="after")
    def _order(self) -> "Blackout":
        if self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        return self


class ComplianceConfig(_Model):
    restricted: tuple[str, ...] = Field((), description="Symbols that may not be traded.")
    blackouts: tuple[Blackout, ...] = ()
    calendar: str = Field("XNYS", description="Orders must execute inside this exchange's sessions.")


class IBConfig(_Model):
    """Interactive Brokers (``broker.kind`` ib-paper / ib-live). Host, port, client id and account may also
    come from FIRM_IB_HOST, FIRM_IB_PORT, FIRM_IB_CLIENT_ID and FIRM_IB_ACCOUNT (the environment wins)."""

    host: str = Field("127.0.0.1", min_length=1, description="IB Gateway / TWS host.")
    port: int | None = Field(
        None, ge=1, le=65535, description="None: 4002 for ib-paper, 4001 for ib-live (Gateway; TWS: 7497 / 7496)."
    )
    client_id: int = Field(1, ge=0, le=2**31 - 1, description="API client id; one connection per id.")
    account: str | None = Field(None, description="Account id; None: FIRM_IB_ACCOUNT or the only managed account.")
    connect_timeout_s: float = Field(10.0, gt=0, le=300)
    fill_timeout_s: float = Field(30.0, gt=0, le=3600, description="How long a bar waits for its fills and commissions.")
    order_tif: Literal["DAY", "GTC"] = "DAY"
    orders_per_minute: int = Field(10, ge=1, le=10_000)
    min_order_spacing_s: float = Field(0.1, ge=0, le=60)
    messages_per_s: int = Field(50, ge=1, le=50, description="IB's budget of API messages per second.")
    historical_per_10min: int = Field(60, ge=1, le=60)
    historical_identical_s: float = Field(15.0, ge=15, description="No identical historical request within this.")
    breaker_failures: int = Field(3, ge=1, le=100, description="Failed reconnects that open the circuit breaker.")
    breaker_cooldown_s: float = Field(30.0, gt=0, le=3600, description="Open breaker: no attempt for this long.")
    backoff_base_s: float = Field(0.5, gt=0, le=60)
    backoff_max_s: float = Field(30.0, gt=0, le=3600)
    actor_max_restarts: int = Field(
        3, ge=0, le=100,
        description="Ray restarts of the execution actor; a restarted one resumes from the order WAL and IB.",
    )  # fmt: skip
    replay_control: str | None = Field(
        None, description="host:port of a fake gateway's replay clock (firm.broker.ibreplay); replay rehearsals only."
    )


class BrokerConfig(_Model):
    kind: Literal["sim", "ib-paper", "ib-live"] = Field(
        "sim", description="sim: the simulated broker; ib-paper / ib-live: Interactive Brokers (live needs --live)."
    )
    ib: IBConfig = IBConfig()
    initial_cash: float = Field(1_000_000.0, gt=0)
    slippage_bps: float = Field(2.0, ge=0, le=1000, description="Fixed adverse slippage on the next open.")
    slippage_noise_bps: float = Field(1.0, ge=0, le=1000, description="Seeded |N(0, x)| extra slippage per order.")
    commission_per_share: float = Field(0.005, ge=0)
    commission_min: float = Field(1.0, ge=0)
    commission_max_pct: float = Field(0.01, ge=0, le=1, description="Cap as a share of trade value (IB fixed).")


class LiveConfig(_Model):
    """Live trading on Interactive Brokers' daily bars (``firm run --feed ib``, firm/live.py)."""

    feed: Literal["replay", "ib"] = Field(
        "replay", description="replay: the data section's bars; ib: live daily bars from IB after each session close."
    )
    warmup_sessions: int | None = Field(
        None, ge=1, le=10_000,
        description="Sessions of history before the first live bar (None: the longest warm-up of the enabled agents + 20).",
    )  # fmt: skip
    what_to_show: Literal["ADJUSTED_LAST", "TRADES"] = Field(
        "ADJUSTED_LAST",
        description="IB bar type: ADJUSTED_LAST is dividend- and split-adjusted like the shipped data; TRADES is "
        "adjusted for splits only.",
    )
    poll_delay_s: float = Field(
        600.0, ge=0, le=86_400, description="Seconds after a session's close before asking IB for its daily bar."
    )
    poll_retry_s: float = Field(60.0, gt=0, le=3600, description="Seconds between asks while the bar is not there yet.")
    poll_give_up_s: float = Field(
        7200.0, gt=0, le=86_400,
        description="After this long past the close without the bar, the session is left out (reported missing).",
    )  # fmt: skip
    sessions: int | None = Field(None, ge=1, description="Stop after this many live sessions (None: until Ctrl-C).")


class JournalConfig(_Model):
    fsync: bool = Field(True, description="fsync the order write-ahead log before each send.")


class Config(_Model):
    run: RunConfig = RunConfig()
    ray: RayConfig = RayConfig()
    data: DataConfig = DataConfig()
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    cio: CIOConfig = CIOConfig()
    risk: RiskConfig = RiskConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    broker: BrokerConfig = BrokerConfig()
    journal: JournalConfig = JournalConfig()
    live: LiveConfig = LiveConfig()

    @model_validator(mode="after")
    def _agents_exist(self) -> "Config":
        if not any(a.enabled for a in self.agents.values()):
            raise ValueError("at least one agent must be enabled under 'agents'")
        return self

    def kill_switch_path(self) -> Path:
        """The file the kill switch state persists in (risk.kill_switch.state_file or its default)."""
        return self.risk.kill_switch.state_file or Path(self.run.output_dir) / "state" / "kill_switch.json"

    def enabled_agents(self) -> dict[str, AgentConfig]:
        return {name: a for name, a in self.agents.items() if a.enabled}


def _format_errors(err: ValidationError, prefix: str = "") -> list[str]:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        value = e.get("input")
        if e["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key (value {value!r}); check the spelling against configs/default.yaml")
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"{path} = {value!r}: {msg}")
    return lines


def parse_config(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a mapping into a :class:`Config`, including each agent's strategy parameters."""
    from strategies import registry

    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, got {type(raw).__name__}")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(_format_errors(err))) from None

    problems: list[str] = []
    if "sectors" in cfg.risk.model_fields_set:  # the default map covers the default universe only
        for symbol in cfg.risk.sectors:
            if symbol not in cfg.data.symbols:
                problems.append(f"risk.sectors.{symbol}: not in data.symbols ({', '.join(cfg.data.symbols)})")
    agents: dict[str, AgentConfig] = {}
    for name, agent in cfg.agents.items():
        if name not in registry.available():
            problems.append(
                f"agents.{name}: unknown agent; available: {', '.join(sorted(registry.available()))}"
            )
            continue
        try:
            params = registry.get(name).Params.model_validate(agent.params)
        except ValidationError as err:
            problems.extend(_format_errors(err, f"agents.{name}.params"))
            continue
        agents[name] = agent.model_copy(update={"params": params.model_dump()})
    for name in cfg.cio.required_agents:
        if not (name in cfg.agents and cfg.agents[name].enabled):
            problems.append(f"cio.required_agents = {name!r}: a required agent must be enabled under 'agents'")
    for name in cfg.cio.regime_weights:
        if name not in registry.available():
            known = ", ".join(sorted(registry.available()))
            problems.append(f"cio.regime_weights.{name}: unknown agent; available: {known}")
    if problems:
        raise ConfigError(f"{source}: invalid config\n  " + "\n  ".join(problems))
    return cfg.model_copy(update={"agents": agents})


def load_config(path: str | os.PathLike[str], overrides: dict[str, Any] | None = None) -> Config:
    """Read a YAML config file; ``overrides`` maps dotted keys (``run.seed``) to values."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_config(raw, str(path))
