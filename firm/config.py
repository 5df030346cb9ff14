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


class CIOConfig(_Model):
    name: str = Field("cio", min_length=1, description="Name of the singleton CIO actor.")
    barrier_timeout_s: float = Field(10.0, gt=0, description="ray.wait timeout for the agents' signals.")
    entry_threshold: float = Field(0.15, ge=0, lt=1, description="|blended score| needed to open a position.")
    exit_threshold: float = Field(
        0.05, ge=0, lt=1, description="An open position is kept while the score on its side stays above this."
    )
    max_position_weight: float = Field(0.20, gt=0, le=1, description="Target weight of equity at full conviction.")
    rebalance_band: float = Field(0.02, ge=0, lt=1, description="Skip trades smaller than this share of equity.")
    allow_short: bool = True

    @model_validator(mode="after")
    def _hysteresis(self) -> "CIOConfig":
        if self.exit_threshold > self.entry_threshold:
            raise ValueError(
                f"exit_threshold {self.exit_threshold} must not exceed entry_threshold {self.entry_threshold}"
            )
        return self


class RiskConfig(_Model):
    max_position_weight: float = Field(0.25, gt=0, le=10, description="|position value| / equity after the trade.")
    max_gross_exposure: float = Field(1.0, gt=0, le=10, description="sum |position value| / equity.")
    max_net_exposure: float = Field(0.6, ge=0, le=10, description="|sum position value| / equity.")
    max_drawdown: float = Field(0.25, gt=0, lt=1, description="From peak equity; past it only reducing orders pass.")


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


class BrokerConfig(_Model):
    kind: Literal["sim"] = "sim"
    initial_cash: float = Field(1_000_000.0, gt=0)
    slippage_bps: float = Field(2.0, ge=0, le=1000, description="Fixed adverse slippage on the next open.")
    slippage_noise_bps: float = Field(1.0, ge=0, le=1000, description="Seeded |N(0, x)| extra slippage per order.")
    commission_per_share: float = Field(0.005, ge=0)
    commission_min: float = Field(1.0, ge=0)
    commission_max_pct: float = Field(0.01, ge=0, le=1, description="Cap as a share of trade value (IB fixed).")


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

    @model_validator(mode="after")
    def _agents_exist(self) -> "Config":
        if not any(a.enabled for a in self.agents.values()):
            raise ValueError("at least one agent must be enabled under 'agents'")
        return self

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
