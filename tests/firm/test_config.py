"""Config errors name the full key path, the value and the rule; the CLI exits 2 with that message."""

from pathlib import Path

import pytest
import yaml

from firm.cli import main
from firm.config import ConfigError, load_config

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def _write(tmp_path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT.read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_is_valid():
    cfg = load_config(DEFAULT)
    assert cfg.data.symbols == ("AAPL", "MSFT", "IBM", "GOOG", "SPX", "COMP")
    from strategies import registry

    assert set(cfg.enabled_agents()) <= set(registry.available())
    assert {"momentum", "mean_reversion"} <= set(cfg.enabled_agents())
    assert cfg.agents["momentum"].params["fast"] < cfg.agents["momentum"].params["slow"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.update(extra_section={"a": 1}), ["extra_section", "unknown key"]),
        (lambda r: r["risk"].update(max_drawdwn=0.2), ["risk.max_drawdwn", "unknown key", "0.2"]),
        (lambda r: r["risk"].update(max_drawdown=1.5), ["risk.max_drawdown", "1.5", "less than 1"]),
        (lambda r: r["run"].update(batch="many"), ["run.batch", "'many'", "valid integer"]),
        (lambda r: r["run"].update(batch=0), ["run.batch", "0", "greater than or equal to 1"]),
        (lambda r: r["data"].update(source="yahoo"), ["data.source", "'yahoo'", "'sample' or 'file'"]),
        (lambda r: r["data"].update(start="2012-01-01", end="2010-01-01"), ["data", "after end"]),
        (lambda r: r["data"].update(symbols=["AAPL", "AAPL"]), ["data.symbols", "unique", "AAPL"]),
        (lambda r: r["agents"].update(astrology={"enabled": True}), ["agents.astrology", "unknown agent", "momentum"]),
        (lambda r: r["agents"]["momentum"].update(params={"fsat": 10}), ["agents.momentum.params.fsat", "unknown key"]),
        (
            lambda r: r["agents"]["momentum"].update(params={"fast": 60, "slow": 50}),
            ["agents.momentum.params", "fast"],
        ),
        (lambda r: r["cio"].update(barrier_timeout_s=-1), ["cio.barrier_timeout_s", "-1", "greater than 0"]),
        (lambda r: r["broker"].update(kind="ib"), ["broker.kind", "'ib'"]),
    ],
    ids=[
        "unknown-section", "unknown-nested-key", "out-of-range", "wrong-type", "below-minimum", "bad-literal",
        "start-after-end", "duplicate-symbol", "unknown-agent", "unknown-param", "param-rule", "negative-timeout",
        "unsupported-broker",
    ],
)
def test_bad_config_names_key_value_and_rule(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_all_agents_disabled_is_an_error(tmp_path):
    def off(raw):
        for agent in raw["agents"].values():
            agent["enabled"] = False

    with pytest.raises(ConfigError, match="at least one agent"):
        load_config(_write(tmp_path, off))


def test_cli_exits_2_with_the_message(tmp_path, capsys):
    path = _write(tmp_path, lambda r: r["risk"].update(max_gross_exposure="lots"))
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "risk.max_gross_exposure = 'lots'" in err


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("run: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_are_validated_too():
    with pytest.raises(ConfigError, match="run.seed"):
        load_config(DEFAULT, {"run.seed": -3})
    assert load_config(DEFAULT, {"run.batch": 1}).run.batch == 1
