"""Attaching to a firm on a real Ray head (token auth on), read-only, from another process.

A driver process (this file run as ``drive``) replays 2008 through a short pipeline and pauses after its
last batch is committed, with the run still live. A second process (this file run as ``read``) attaches
with ``firm.attach``: the read methods work; ``run_batch``, ``set_agent_enabled``, execution's ``execute``
and ``close`` without the run's capability (or with a wrong one) are refused, and so is an IB connection
(orders, or market data) from the attached process and one from a Ray task, against a real fake gateway
that then has seen no client; the order log is byte for byte what it was. ``firm stop`` refuses the
running CIO. After the driver ends, the finished CIO still answers, with exactly what the run's summary and
equity.csv say; ``firm stop`` removes it. A driver killed in the middle of a run leaves a CIO that reads ``abandoned``, and is removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ray_head import ROOT, RayHead  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
FIRM = str(Path(sys.executable).with_name("firm"))
AGENTS = ("mean_reversion", "momentum")  # sorted, as the CIO lists them
SPAN = {"data.start": "2008-01-02", "data.end": "2008-12-31", "run.batch": 128, "run.progress_every_s": 3600}


def _config(out: str):
    from firm.config import load_config

    base = load_config(DEFAULT_CONFIG, {"run.output_dir": out, **SPAN})
    return base.model_copy(update={"agents": {a: base.agents[a] for a in AGENTS}})


def drive(address: str, out: str, pause: str) -> None:
    """A run that, with ``pause`` = "pause", stops after its last batch is committed until stdin has a line;
    with "hang", prints READY once the pipeline is up and waits to be killed."""
    import ray

    from firm.pipeline import Pipeline, run, start_ray

    cfg = _config(out)
    if pause == "hang":
        start_ray(cfg, address)
        run_dir = Path(out) / "hung"
        run_dir.mkdir(parents=True)
        Pipeline(cfg, tuple(cfg.data.symbols), run_dir, config_name="hung")
        print("READY", flush=True)
        time.sleep(600)
        return

    def on_batch(bars, result):
        if bars.offset == 0:  # both batches were submitted: wait until the CIO has committed the second
            cio = ray.get_actor(cfg.cio.name)
            while ray.get(cio.status.remote())["batches"] < 2:
                time.sleep(0.05)
            print("PAUSED", flush=True)
            sys.stdin.readline()

    result = run(cfg, config_name="attach", address=address, progress=False, on_batch=on_batch)
    print(f"DONE {result.run_dir}", flush=True)


def read(mode: str) -> None:
    """Attach (RAY_ADDRESS), read everything, try what a read-only view must not do; one JSON line out."""
    import ray

    from firm.attach import attach

    view = attach()
    deadline = time.monotonic() + 60
    while mode == "settled" and view.status()["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.5)  # Ray ends a dead driver's actors (execution among them) within seconds
    out = {
        "status": json.loads(view.status().to_json(date_format="iso")),
        "positions": json.loads(view.positions().to_json(orient="index")),
        "account": view.account().to_dict(),
        "equity": [[str(t), v] for t, v in view.equity().items()],
        "counts": view.counts().to_dict(),
        "rejections": view.rejections().to_dict(),
        "signals": {a: list(view.signals(a).shape) for a in AGENTS},
        "signals_all": list(view.signals(field="confidence").columns.get_level_values(0).unique()),
    }
    if mode == "read":
        out["refused"] = refusals(view)
    print("JSON " + json.dumps(out), flush=True)
    ray.shutdown()


def refusals(view) -> dict:
    import ray

    from firm.broker.endpoint import endpoint
    from firm.broker.ib import IBBroker
    from firm.broker.ibreplay import BackgroundGateway
    from firm.broker.ibsim import IBSim, IBSimConfig, load_replay
    from firm.capability import CapabilityError
    from firm.config import IBConfig
    from firm.portfolio import Costs

    cio = ray.get_actor(view.name, namespace=view.namespace)
    execution = ray.get_actor("execution", namespace=view.namespace)
    calls = {
        "run_batch": lambda: cio.run_batch.remote(None, [], []),
        "run_batch_wrong_token": lambda: cio.run_batch.remote(None, [], [], capability="0" * 64),
        "set_agent_enabled": lambda: cio.set_agent_enabled.remote("momentum", False, "notebook"),
        "finish": lambda: cio.finish.remote(),
        "execute": lambda: execution.execute.remote(None, None),
        "close": lambda: execution.close.remote(),
    }
    refused = {}
    for name, call in calls.items():
        try:
            ray.get(call(), timeout=60)
            refused[name] = "ACCEPTED"
        except ray.exceptions.RayTaskError as err:
            refused[name] = f"{type(err.cause).__name__}: {err.cause}"

    gw = BackgroundGateway(IBSim(load_replay(("AAPL",)), "2008-01-02", IBSimConfig()), control=False)
    cfg = IBConfig(port=gw.sim.port, connect_timeout_s=5)
    try:
        try:
            IBBroker(("AAPL",), 1e6, Costs(), cfg, endpoint(cfg, "ib-paper", env={}))
            refused["ib_here"] = "CONNECTED"
        except CapabilityError as err:
            refused["ib_here"] = f"CapabilityError: {err}"
        from firm.data.ib_source import IBBarSource

        try:
            IBBarSource(("AAPL",), cfg, endpoint(cfg, "ib-paper", env={})).close()
            refused["ib_data_here"] = "CONNECTED"
        except CapabilityError as err:
            refused["ib_data_here"] = f"CapabilityError: {err}"

        @ray.remote(num_cpus=0)
        def connect_in_a_task(cfg):
            from firm.broker.endpoint import endpoint
            from firm.broker.ib import IBBroker
            from firm.capability import CapabilityError
            from firm.portfolio import Costs

            try:
                IBBroker(("AAPL",), 1e6, Costs(), cfg, endpoint(cfg, "ib-paper", env={}))
            except CapabilityError as err:
                return f"CapabilityError: {err}"
            return "CONNECTED"

        refused["ib_task"] = ray.get(connect_in_a_task.remote(cfg), timeout=120)
        refused["ib_clients_seen"] = gw.call(lambda: len(gw.sim._all_sessions))
    finally:
        gw.stop()
    return refused


# the tests ------------------------------------------------------------------------------------------------


def _script(head: RayHead, *args: str, **kw) -> subprocess.Popen:
    env = {**head.env, "RAY_ADDRESS": head.address}
    return subprocess.Popen([sys.executable, __file__, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)  # fmt: skip


def _json(head: RayHead, mode: str) -> dict:
    p = _script(head, mode)
    out, err = p.communicate(timeout=300)
    lines = [line for line in out.splitlines() if line.startswith("JSON ")]
    assert p.returncode == 0 and lines, f"{mode} exited with {p.returncode}:\n{err[-4000:]}"
    return json.loads(lines[-1][5:])


def _stop(head: RayHead) -> subprocess.CompletedProcess:
    return subprocess.run([FIRM, "stop", "--address", head.address], cwd=ROOT, env=head.env, text=True,
                          capture_output=True, timeout=300)  # fmt: skip


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    h = RayHead(tmp_path_factory.mktemp("attach")).start()
    try:
        yield h
    finally:
        h.stop()


def test_the_capability_is_checked_in_constant_time_and_never_optional():
    from firm import capability

    key = capability.run_key("ns-test", "cio-test")
    token = capability.issue(key)
    assert capability.held(key) == token and len(token) == 64 and token != capability.issue("other/cio")
    capability.check(token, token, "call")
    for presented, expected in ((None, token), ("0" * 64, token), (token[:-1], token), (token, None), (7, token)):
        with pytest.raises(capability.CapabilityError, match="call refused"):
            capability.check(presented, expected, "call")
    capability.release(key)
    assert capability.held(key) is None
    capability.check_broker_owner("IB")  # this test process is a driver of its own: allowed
    assert not capability.is_read_only()


def test_stop_and_attach_say_so_when_no_cluster_answers(capsys):
    from firm.attach import attach
    from firm.cli import main
    from firm.status import ClusterUnreachable
    from ray_head import free_ports

    (port,) = free_ports(1)
    assert main(["stop", "--address", f"127.0.0.1:{port}"]) == 2
    assert f"no Ray cluster reachable at 127.0.0.1:{port}" in capsys.readouterr().err
    import ray

    if not ray.is_initialized():  # attach joins only when this process is not in a Ray already
        with pytest.raises(ClusterUnreachable, match=f"127.0.0.1:{port}"):
            attach(f"127.0.0.1:{port}")
    from firm import capability

    assert not capability.is_read_only()  # a failed attach leaves this process as it was


def test_attached_view_reads_and_cannot_trade(head, tmp_path):
    driver = _script(head, "drive", head.address, str(tmp_path / "runs"), "pause", stdin=subprocess.PIPE)
    try:
        line = driver.stdout.readline()
        assert line.startswith("PAUSED"), f"driver exited with {driver.poll()}:\n{driver.stderr.read()[-4000:]}"
        (run_dir,) = (tmp_path / "runs").iterdir()
        wal_before = (run_dir / "orders.wal.jsonl").read_bytes()

        live = _json(head, "read")
        assert (run_dir / "orders.wal.jsonl").read_bytes() == wal_before  # nothing was sent
        refused = live["refused"]
        for call in ("run_batch", "run_batch_wrong_token", "set_agent_enabled", "finish", "execute", "close"):
            assert refused[call].startswith("CapabilityError: "), (call, refused[call])
            assert "did not present the run's order capability" in refused[call]
        assert "attached read-only" in refused["ib_here"], refused["ib_here"]
        assert "IB bar source connection" in refused["ib_data_here"], refused["ib_data_here"]
        assert "refused in a Ray task" in refused["ib_task"], refused["ib_task"]
        assert refused["ib_clients_seen"] == 0  # the fake gateway never saw a client

        st = live["status"]
        assert st["state"] == "running" and st["config"] == "attach" and st["run_dir"] == str(run_dir)
        assert st["agents"] == list(AGENTS) and st["batches"] == 2 and st["sessions"] == 253
        assert live["signals"] == {a: [253, 6] for a in AGENTS}  # every session (bounded at 256)
        assert live["signals_all"] == list(AGENTS)
        orders = sum(1 for r in map(json.loads, wal_before.decode().splitlines()) if r["kind"] == "order")
        assert live["counts"]["orders"] == orders > 0

        stop = _stop(head)  # a running run is not stopped from outside
        assert stop.returncode == 2 and "still running a run" in stop.stderr, stop.stderr

        driver.stdin.write("\n")
        driver.stdin.flush()
        out, err = driver.communicate(timeout=300)
        assert driver.returncode == 0 and out.startswith("DONE"), err[-4000:]
    finally:
        if driver.poll() is None:
            driver.kill()

    final = _json(head, "final")  # the driver is gone; its CIO still answers, finished
    summary = json.loads((run_dir / "summary.json").read_text())
    assert final["status"]["state"] == "finished"
    assert final["counts"] == {k: summary[k] for k in ("decisions", "orders", "fills")}
    assert final["rejections"] == summary["rejections"]
    curve = pd.read_csv(run_dir / "equity.csv")
    assert [v for _, v in final["equity"]] == curve["equity"].tolist()
    assert [pd.Timestamp(t) for t, _ in final["equity"]] == pd.to_datetime(curve["ts"], utc=True).tolist()
    assert final["account"]["equity"] == pytest.approx(summary["final_equity"], abs=0.005)
    for p in summary["positions"]:
        row = final["positions"][p["symbol"]]
        assert row["position"] == p["position"]
        assert row["realized_pnl"] == pytest.approx(p["realized_pnl"], abs=0.005)
        assert row["unrealized_pnl"] == pytest.approx(p["unrealized_pnl"], abs=0.005)

    stop = _stop(head)
    assert stop.returncode == 0 and "removed the finished CIO 'cio'" in stop.stdout, stop.stderr
    stop = _stop(head)
    assert stop.returncode == 0 and "nothing to stop" in stop.stdout, stop.stderr


def test_a_killed_driver_leaves_an_abandoned_cio_that_is_removed(head, tmp_path):
    driver = _script(head, "drive", head.address, str(tmp_path / "runs"), "hang", start_new_session=True)
    try:
        assert driver.stdout.readline().startswith("READY"), driver.stderr.read()[-4000:]
        stop = _stop(head)
        assert stop.returncode == 2 and "still running a run" in stop.stderr, stop.stderr
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert _json(head, "settled")["status"]["state"] == "abandoned"
    stop = _stop(head)
    assert stop.returncode == 0 and "removed the abandoned CIO 'cio'" in stop.stdout, stop.stderr


if __name__ == "__main__":
    if sys.argv[1] == "drive":
        drive(*sys.argv[2:5])
    else:
        read(sys.argv[1])
