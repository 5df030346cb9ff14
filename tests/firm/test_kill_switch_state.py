"""The kill switch's state file and commands, without Ray: atomic state, audit log, fail-closed reads."""

from __future__ import annotations

import json

import pytest
import yaml

from firm import kill_switch
from firm.cli import main
from firm.config import ConfigError, load_config
from firm.pipeline import run
from tests.conftest import DEFAULT_CONFIG


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "c.yaml"
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["run"]["output_dir"] = str(tmp_path / "runs")
    path.write_text(yaml.safe_dump(raw))
    return path


def test_engage_status_reset_from_the_command_line(config_file, tmp_path, capsys):
    state_file = tmp_path / "runs" / "state" / "kill_switch.json"
    assert main(["kill-switch", "status", "--config", str(config_file)]) == 0
    assert "disengaged" in capsys.readouterr().out and not state_file.exists()

    assert main(["kill-switch", "engage", "--config", str(config_file)]) == 2
    assert "--reason is required" in capsys.readouterr().err
    assert main(["kill-switch", "engage", "--config", str(config_file), "--reason", "broker outage"]) == 0
    state = json.loads(state_file.read_text())
    assert state["engaged"] and state["trigger"] == "manual" and state["reason"] == "broker outage"
    assert "@" in state["by"] and state["at"].endswith("Z")
    assert main(["kill-switch", "status", "--config", str(config_file)]) == 0
    assert "ENGAGED" in capsys.readouterr().out

    assert main(["kill-switch", "reset", "--config", str(config_file), "--reason", "broker back"]) == 0
    assert not kill_switch.load(state_file).engaged
    log = [json.loads(line) for line in kill_switch.audit_log(state_file).read_text().splitlines()]
    assert [(r["action"], r["reason"]) for r in log] == [("engage", "broker outage"), ("reset", "broker back")]
    assert not list(state_file.parent.glob(".kill_switch.*")), "temporary files left behind"


def test_state_file_location_is_configurable(tmp_path):
    cfg = load_config(DEFAULT_CONFIG, {"risk.kill_switch.state_file": str(tmp_path / "ks.json")})
    assert cfg.kill_switch_path() == tmp_path / "ks.json"
    default = load_config(DEFAULT_CONFIG, {"run.output_dir": str(tmp_path / "out")})
    assert default.kill_switch_path() == tmp_path / "out" / "state" / "kill_switch.json"


def test_an_unreadable_state_file_stops_the_run(tmp_path, config_file, capsys):
    """Fail closed: a corrupt state is never read as 'disengaged'; the run stops before Ray starts."""
    state_file = tmp_path / "runs" / "state" / "kill_switch.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text('{"engaged": tru')
    cfg = load_config(config_file)
    with pytest.raises(kill_switch.KillSwitchError, match="unreadable"):
        run(cfg, progress=False)
    assert main(["run", "--config", str(config_file), "--quiet"]) == 3
    assert "kill-switch reset" in capsys.readouterr().err
    assert main(["kill-switch", "reset", "--config", str(config_file), "--reason", "repaired"]) == 0
    assert not kill_switch.load(state_file).engaged


@pytest.mark.parametrize(
    "change, words",
    [
        ({"risk.drawdown_tiers": [{"at": 0.2, "action": "flatten"}, {"at": 0.1, "action": "stop_new_entries"}]},
         ["risk.drawdown_tiers", "increasing order"]),
        ({"risk.drawdown_tiers": [{"at": 0.1, "action": "stop_new_entries"}, {"at": 0.2, "action": "reduce_size", "scale": 0.5}]},
         ["risk.drawdown_tiers", "milder"]),
        ({"risk.drawdown_tiers": [{"at": 0.1, "action": "reduce_size"}]}, ["risk.drawdown_tiers.0", "needs a scale"]),
        ({"risk.drawdown_tiers": [{"at": 0.1, "action": "sell_everything"}]}, ["risk.drawdown_tiers.0.action", "sell_everything"]),
        ({"risk.sectors": {"AAPL": "tech", "XOM": "energy"}}, ["risk.sectors", "XOM", "not in data.symbols"]),
        ({"risk.daily_loss_action": "panic"}, ["risk.daily_loss_action", "panic"]),
        ({"risk.correlation.long_window": 30}, ["risk.correlation", "twice short_window"]),
        ({"risk.crash.sigmas": 0}, ["risk.crash.sigmas", "greater than 0"]),
    ],
)
def test_risk_config_errors_name_the_key_and_the_rule(change, words):
    with pytest.raises(ConfigError) as err:
        load_config(DEFAULT_CONFIG, change)
    for word in words:
        assert word in str(err.value), str(err.value)
