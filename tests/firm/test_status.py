"""``firm status`` against a real Ray head (dashboard on, token auth on): a driver process (this file run as a
script) creates a run's actors with ``firm.pipeline.Pipeline``; the command lists them ALIVE; an agent killed
with ``ray.kill(no_restart=False)`` comes back ALIVE with one restart (or is RESTARTING on the way); killed
again with ``no_restart=True`` it is DEAD. Also: exit code 2 with the reason when no cluster answers, and when
the cluster wants a token the client does not send.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_head import ROOT, RayHead, free_ports  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
FIRM = str(Path(sys.executable).with_name("firm"))
AGENTS = ("momentum", "mean_reversion")
DEADLINE_S = 60


def drive(address: str, out: str) -> None:
    """The driver: a run's actors, then ``kill NAME restart|norestart`` commands from stdin until it closes."""
    import ray

    from firm.config import load_config
    from firm.pipeline import Pipeline, start_ray

    base = load_config(DEFAULT_CONFIG, {"run.output_dir": out})
    cfg = base.model_copy(update={"agents": {a: base.agents[a] for a in AGENTS}})
    start_ray(cfg, address)
    run_dir = Path(out) / "status-run"
    run_dir.mkdir(parents=True)
    pipeline = Pipeline(cfg, tuple(cfg.data.symbols), run_dir)
    ray.get(pipeline.cio.disabled_agents.remote())  # the CIO is up too
    print(f"READY {cfg.cio.name}", flush=True)
    for line in sys.stdin:
        _, name, how = line.split()
        ray.kill(ray.get_actor(name), no_restart=how == "norestart")
        print("KILLED", flush=True)
    pipeline.shutdown()


def status(head: RayHead, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [FIRM, "status", "--config", str(DEFAULT_CONFIG), *args],
        cwd=ROOT, env=env or head.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def actors(head: RayHead) -> dict[str, dict]:
    done = status(head, "--address", head.address, "--json")
    assert done.returncode == 0, done.stderr
    return {a["name"]: a for a in json.loads(done.stdout)["actors"]}


def wait_for(head: RayHead, name: str, ok) -> dict:
    """Poll ``firm status --json`` until ``ok(row)`` holds for actor ``name`` (or the deadline: the last row)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        row = actors(head).get(name, {})
        if ok(row) or time.monotonic() > deadline:
            return row
        time.sleep(0.5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("status")
    head = RayHead(tmp).start()
    driver = None
    try:
        driver = subprocess.Popen(
            [sys.executable, __file__, head.address, str(tmp / "runs")],
            cwd=ROOT, env=head.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        ready = driver.stdout.readline()
        assert ready.startswith("READY "), f"driver exited with {driver.poll()}:\n{driver.stderr.read()[-4000:]}"
        yield head, driver, ready.split()[1]
    finally:
        if driver is not None:
            driver.stdin.close()
            try:
                driver.wait(timeout=60)
            except subprocess.TimeoutExpired:
                driver.kill()
        head.stop()


def test_status_lists_every_firm_actor_alive(cluster):
    head, _, cio = cluster
    env = {**head.env, "RAY_ADDRESS": head.address}  # no --address: RAY_ADDRESS is honoured
    done = status(head, env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    names = [f"agent:{a}" for a in AGENTS] + [cio, "risk", "compliance", "execution", "(BarsArchive)"]
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith("  ") and line.split()}
    for name in names:
        assert name in rows, out
        assert rows[name][1] == "ALIVE", rows[name]
    assert f"Ray cluster " in out and " head " in out and "CPU 2" in out, out
    listed = actors(head)
    for name in names:
        a = listed[name]
        assert a["state"] == "ALIVE" and a["restarts"] == 0 and a["pid"] > 0 and a["node_ip"], a


def test_killed_agent_restarts_then_dies_for_good(cluster):
    head, driver, _ = cluster
    name = f"agent:{AGENTS[0]}"
    before = actors(head)[name]

    driver.stdin.write(f"kill {name} restart\n")
    driver.stdin.flush()
    assert driver.stdout.readline().startswith("KILLED")
    row = wait_for(head, name, lambda r: r.get("restarts") == 1 and r.get("state") in ("RESTARTING", "ALIVE"))
    assert row["restarts"] == 1 and row["state"] in ("RESTARTING", "ALIVE"), row
    row = wait_for(head, name, lambda r: r.get("state") == "ALIVE")
    assert row["state"] == "ALIVE" and row["restarts"] == 1 and row["pid"] != before["pid"], (before, row)

    driver.stdin.write(f"kill {name} norestart\n")
    driver.stdin.flush()
    assert driver.stdout.readline().startswith("KILLED")
    row = wait_for(head, name, lambda r: r.get("state") == "DEAD")
    assert row["state"] == "DEAD" and row["restarts"] == 1 and row["death"], row
    others = actors(head)
    assert others[f"agent:{AGENTS[1]}"]["state"] == "ALIVE"  # the others are untouched


def test_no_cluster_is_exit_code_2_with_the_reason(cluster):
    head, _, _ = cluster
    (port,) = free_ports(1)
    done = status(head, "--address", f"127.0.0.1:{port}")
    assert done.returncode == 2
    assert f"no Ray cluster reachable at 127.0.0.1:{port}" in done.stderr, done.stderr


def test_a_client_without_the_token_is_told_so(cluster):
    head, _, _ = cluster
    env = {k: v for k, v in head.env.items() if k not in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH")}
    done = status(head, "--address", head.address, env=env)
    assert done.returncode == 2
    assert "requires token authentication" in done.stderr and "RAY_AUTH_MODE=token" in done.stderr, done.stderr


if __name__ == "__main__":
    drive(sys.argv[1], sys.argv[2])
