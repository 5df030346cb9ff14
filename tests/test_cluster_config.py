"""cluster.yaml (AWS) and configs/cluster-lab.yaml (local provider): valid for `ray up`, and closed to strangers.

Each file goes through what `ray up` does before it touches a machine: the autoscaler's own defaults and
node-type preparation (``prepare_config``) and its validation against the JSON schema shipped inside the
ray package (``validate_config``, ``ray/autoscaler/ray-schema.json``). The safety properties are then
checked on the prepared config, where `ray up` reads them.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start_command

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {"aws": ROOT / "cluster.yaml", "lab": ROOT / "configs" / "cluster-lab.yaml"}
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
CLOSED_PORTS = {6379, 8076, 8265, 8081, 10001, 52365}  # GCS, object manager, dashboard/Jobs API, firm, Ray Client, agent


def _raw(name: str) -> dict:
    return yaml.safe_load(CONFIGS[name].read_text())


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def cluster(request):
    raw = _raw(request.param)
    prepared = prepare_config(raw)
    return request.param, raw, prepared


def _ray_starts(commands: list[str]) -> list[list[str]]:
    """The argv of every `ray start` in ``commands`` (one shell command may chain several steps with &&)."""
    out = []
    for command in commands:
        for step in re.split(r"\s*&&\s*|\s*;\s*", command):
            argv = shlex.split(step)
            i = next((k for k, a in enumerate(argv) if a.endswith("ray") and argv[k + 1: k + 2] == ["start"]), None)
            if i is not None:
                out.append(argv)
    return out


def _option(argv: list[str], name: str) -> str | None:
    for k, a in enumerate(argv):
        if a == name:
            return argv[k + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _makefile_install() -> list[str]:
    """The README's install (`make run`): the Makefile's venv and pip lines, with its variables expanded."""
    text = (ROOT / "Makefile").read_text()
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.+)$", text, flags=re.M))
    variables = {k: v.strip() for k, v in variables.items()}

    def expand(s: str) -> str:
        for _ in range(3):
            s = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), m.group(0)), s)
        return s

    recipes = [expand(line.strip()) for line in re.findall(r"^\t(.+)$", text, flags=re.M)]
    venv = next(r for r in recipes if " -m venv " in r)
    pip = [r for r in recipes if "pip install" in r and "[test]" not in r]
    return [venv, *pip]


def test_schema_is_the_one_shipped_with_ray():
    schema = json.loads(SCHEMA.read_text())
    # the file validate_config uses, and a real schema: it rejects a key the autoscaler does not know
    with pytest.raises(jsonschema.ValidationError, match="firm_typo"):
        validate_config({**prepare_config(_raw("lab")), "firm_typo": 1})
    assert "available_node_types" in schema["properties"]


def test_valid_for_ray_up(cluster):
    name, raw, prepared = cluster
    validate_config(prepared)  # raises jsonschema.ValidationError with the path of a bad key
    jsonschema.validate(raw, json.loads(SCHEMA.read_text()))  # the file as written, before defaults
    assert raw["provider"]["type"] == {"aws": "aws", "lab": "local"}[name]
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_aws_node_types():
    raw = _raw("aws")
    provider = raw["provider"]
    assert provider["region"] and provider["availability_zone"].startswith(provider["region"])
    types = raw["available_node_types"]
    assert set(types) == {"firm.head", "firm.worker"} and raw["head_node_type"] == "firm.head"
    for node in types.values():
        assert node["node_config"]["InstanceType"]
        assert node["resources"]["CPU"] >= 1
    assert types["firm.worker"]["max_workers"] <= raw["max_workers"]
    # an image with Python >= 3.10 (firm's requires-python), not Ray's default Ubuntu 18.04 deep learning AMI
    for node in types.values():
        assert node["node_config"]["ImageId"].startswith("resolve:ssm:/aws/service/canonical/ubuntu/server/22.04/")
    assert any("install -y -qq python3-venv" in c for c in raw["initialization_commands"])


def test_lab_has_head_and_workers():
    provider = _raw("lab")["provider"]
    assert provider["head_ip"] and provider["worker_ips"]
    assert provider["head_ip"] not in provider["worker_ips"]


def test_ib_gateway_on_exactly_one_node(cluster):
    name, raw, prepared = cluster
    heads = _ray_starts(prepared["head_start_ray_commands"])
    workers = _ray_starts(prepared["worker_start_ray_commands"])
    from_flags = [json.loads(_option(a, "--resources") or "{}").get("ib_gateway", 0) for a in heads + workers]
    if name == "aws":
        # node types carry their resources; the autoscaler hands them to `ray start` on the node
        holders = {t: n["resources"].get("ib_gateway", 0) for t, n in prepared["available_node_types"].items()}
        assert {t: v for t, v in holders.items() if v} == {prepared["head_node_type"]: 1}
        assert prepared["available_node_types"][prepared["head_node_type"]]["max_workers"] == 0
        assert not any(from_flags)
    else:
        # one node type for every machine of a local cluster: the head's start command adds the resource
        assert [json.loads(_option(a, "--resources") or "{}") for a in heads] == [{"ib_gateway": 1}]
        assert not any(json.loads(_option(a, "--resources") or "{}").get("ib_gateway") for a in workers)


def test_every_node_starts_with_token_auth(cluster):
    _, _, prepared = cluster
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in prepared[key] if _ray_starts([c])]
        assert len(starts) == 1, key
        # the variable is set for the `ray start` step itself, and the token must exist before it runs
        steps = re.split(r"\s*&&\s*", starts[0])
        start_step = next(s for s in steps if " start" in s and "ray" in s)
        assert start_step.startswith("RAY_AUTH_MODE=token ray start "), start_step
        assert "test -s ~/.ray/auth_token" in steps[: steps.index(start_step)]


def test_token_is_mounted_not_written(cluster):
    name, raw, prepared = cluster
    # the secret comes from outside the repository, copied to the path Ray reads on the node
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    text = CONFIGS[name].read_text()
    assert not re.search(r"RAY_AUTH_TOKEN\s*=", text)
    # no token-like literal (ray's tokens are 32+ hex characters; so are most secrets)
    assert not re.search(r"\b[0-9a-fA-F]{32,}\b", text)
    assert not re.search(r"\b[A-Za-z0-9_\-]{40,}\b", text)
    # nor does any command print it
    commands = [c for k, v in prepared.items() if k.endswith("commands") for c in v]
    assert not any(re.search(r"\b(cat|echo|get-auth-token)\b[^&;|]*auth_token", c) for c in commands)


def test_dashboards_on_localhost(cluster):
    name, raw, prepared = cluster
    (head,) = _ray_starts(prepared["head_start_ray_commands"])
    assert _option(head, "--dashboard-host") == "127.0.0.1"
    for argv in _ray_starts(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]):
        assert _option(argv, "--dashboard-host") in (None, "127.0.0.1")
        assert _option(argv, "--ray-client-server-port") is None
    if name == "aws":
        # nothing but SSH from outside; the nodes reach each other through the group's own rule (added by ray up)
        rules = prepared["provider"]["security_group"]["IpPermissions"]
        assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]
        assert not any(r["FromPort"] <= p <= r["ToPort"] for r in rules for p in CLOSED_PORTS)


def test_start_options_exist_in_this_ray(cluster):
    _, _, prepared = cluster
    known = {opt for p in ray_start_command.params for opt in p.opts}
    for argv in _ray_starts(prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]):
        used = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
        assert used <= known, used - known
    heads = _ray_starts(prepared["head_start_ray_commands"])
    assert all("--head" in a for a in heads)
    assert all(_option(a, "--address") == "$RAY_HEAD_IP:6379" for a in _ray_starts(prepared["worker_start_ray_commands"]))


def test_setup_installs_like_the_readme(cluster):
    _, raw, prepared = cluster
    steps = [s for c in raw["setup_commands"] for s in re.split(r"\s*&&\s*", c)]
    expected = _makefile_install()
    venv_step = next(s for s in steps if " -m venv " in s)
    assert expected[0] in venv_step, (expected[0], venv_step)
    for pip in expected[1:]:
        assert pip in steps, (pip, steps)
    assert raw["file_mounts"]["~/firm"] == "."
    # every node runs the same install: head and workers
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert all(c in prepared[key] for c in raw["setup_commands"])
    # the start commands run the venv's ray, from the checkout (a job's entrypoint inherits both)
    for c in prepared["head_start_ray_commands"] + prepared["worker_start_ray_commands"]:
        assert c.startswith("cd ~/firm && ") and (".venv/bin/ray " in c or "source .venv/bin/activate" in c)


def test_local_token_files_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "auth_token" in ignored and "*.token" in ignored
