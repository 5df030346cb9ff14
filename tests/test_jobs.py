"""Batch stress tests as Ray jobs, against a real local head with token authentication.

The head is started the way the cluster files start one (from the checkout, the venv first on PATH,
``RAY_AUTH_MODE=token``, the dashboard and Jobs API on 127.0.0.1), on free ports and its own temp dir, with
its own token in a file outside the repository; it is stopped by signalling its own ``ray start --block``
(``ray stop`` would stop every Ray on the machine). Clients run in subprocesses, as a user's shell would,
with the token given only through ``RAY_AUTH_TOKEN_PATH``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from firm.cli import main
from firm.jobs import REPORT_BEGIN, report_from_logs

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SCENARIOS = "lehman_2008_2009,equity_down_20"


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _ours(tmp: str) -> list[int]:
    """Pids of processes whose command line names our temp dir (only this head's processes do)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if tmp.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def head():
    tmp = tempfile.mkdtemp(prefix="firmjob-", dir="/tmp")  # short: Ray's socket paths live under it
    token = Path(tmp) / "cluster.token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    gcs, dash, nm, om, agent_grpc, agent_http, metrics, rt_env, client = _free_ports(9)
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    client_env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    head_env = {**client_env, "PATH": f"{BIN}{os.pathsep}{base.get('PATH', '')}",
                "NUMBA_CACHE_DIR": str(ROOT / ".numba_cache")}
    log = open(Path(tmp) / "head.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", "--head", "--block", f"--temp-dir={tmp}/ray", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--node-manager-port={nm}",
         f"--object-manager-port={om}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--dashboard-agent-listen-port={agent_http}", f"--metrics-export-port={metrics}",
         f"--runtime-env-agent-port={rt_env}", f"--ray-client-server-port={client}", "--num-cpus=2",
         "--include-dashboard=true", "--disable-usage-stats"],
        cwd=ROOT, env=head_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (Path(tmp) / "head.log").read_text()[-3000:]
            req = urllib.request.Request(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token.read_text()}"})
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the head's Jobs API did not come up in 90 s"
            time.sleep(1)
        yield {"url": url, "gcs": gcs, "env": client_env, "token": token, "tmp": Path(tmp)}
    finally:
        proc.send_signal(signal.SIGTERM)  # `ray start --block` stops its own processes, and only those
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _ours(tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def files(head):
    """A config writing under the temp dir, a book, and a config with two bad keys; all paths the head can read."""
    d = head["tmp"]
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["run"]["output_dir"] = str(d / "runs")
    (d / "stress.yaml").write_text(yaml.safe_dump(raw))
    raw["risk"]["max_drawdown"] = 1.5
    raw["risk"]["max_drawdwn"] = 0.2
    (d / "bad.yaml").write_text(yaml.safe_dump(raw))
    (d / "book.csv").write_text("symbol,quantity,value\nAAPL,1000,\nGOOG,,200000\nCASH,,50000\n")
    return {"config": str(d / "stress.yaml"), "bad": str(d / "bad.yaml"), "book": str(d / "book.csv")}


@pytest.fixture(scope="module")
def local_report(files, tmp_path_factory):
    """The same stress test evaluated here without Ray: what every job must reproduce."""
    out = tmp_path_factory.mktemp("local")
    assert main(["stress", "--config", files["config"], "--portfolio", files["book"], "--scenarios", SCENARIOS,
                 "--local", "--out", str(out)]) == 0
    return json.loads((out / "stress.json").read_text())


def _same_results(report: dict, local: dict) -> None:
    assert [s["name"] for s in report["scenarios"]] == SCENARIOS.split(",")
    for got, want in zip(report["scenarios"], local["scenarios"]):
        assert got["pnl"] == pytest.approx(want["pnl"], rel=1e-12, abs=1e-6)
        assert got["by_instrument"] == pytest.approx(want["by_instrument"], rel=1e-12, abs=1e-6)
    assert report["portfolio"]["equity"] == pytest.approx(local["portfolio"]["equity"], rel=1e-12)


def _joined_the_head(report: dict, head) -> None:
    # no --address was given: `firm stress` joined the cluster through the job's RAY_ADDRESS
    cluster = report["execution"]["cluster"]
    assert cluster["address"].endswith(f":{head['gcs']}") and cluster["nodes"] == 1 and cluster["cpus"] == 2


def test_ray_job_submit_runs_firm_stress(head, files, local_report):
    out = head["tmp"] / "report-cli"
    job_id = f"firm-stress-cli-{secrets.token_hex(4)}"
    proc = subprocess.run(
        [str(BIN / "ray"), "job", "submit", "--address", head["url"], "--submission-id", job_id, "--",
         "firm", "stress", "--config", files["config"], "--portfolio", files["book"], "--scenarios", SCENARIOS,
         "--out", str(out), "--report-stdout"],
        env=head["env"], capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert f"Job '{job_id}' succeeded" in logs
    assert "lehman_2008_2009" in logs and f"report: {out / 'stress.json'}" in logs  # the job's table and path
    report = report_from_logs(proc.stdout)
    assert report == json.loads((out / "stress.json").read_text())  # the report in the logs is the file's
    _same_results(report, local_report)
    _joined_the_head(report, head)


CLIENT = """
import json, sys
from firm.jobs import submit_stress, wait_for
url, python, config, bad, book, scenarios = sys.argv[1:]
good = submit_stress(["--config", config, "--portfolio", book, "--scenarios", scenarios], url, python=python)
failed = submit_stress(["--config", bad, "--portfolio", book], url, python=python)
print(json.dumps({name: wait_for(job, url, timeout_s=240).__dict__ for name, job in (("good", good), ("bad", failed))}))
"""


def test_client_api_brings_back_logs_report_and_failures(head, files, local_report):
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, head["url"], sys.executable, files["config"], files["bad"], files["book"],
         SCENARIOS],
        env=head["env"], capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = json.loads(proc.stdout.splitlines()[-1])
    good, bad = jobs["good"], jobs["bad"]
    assert good["status"] == "SUCCEEDED", good["message"]
    assert "equity_down_20" in good["logs"] and REPORT_BEGIN in good["logs"]
    _same_results(good["report"], local_report)
    _joined_the_head(good["report"], head)

    # the failed job says why: exit code 2 and the config's bad keys, in Ray's message and in the logs
    assert bad["status"] == "FAILED" and bad["report"] is None
    assert "exit code 2" in bad["message"]
    for text in (bad["message"], bad["logs"]):
        assert "invalid config" in text
        assert "risk.max_drawdown = 1.5: Input should be less than 1" in text
        assert "risk.max_drawdwn: unknown key" in text


def test_firm_stress_submit(head, files, local_report):
    out = head["tmp"] / "report-submit"
    firm = [str(BIN / "firm"), "stress", "--submit", head["url"]]
    both = {  # the good job and a bad one at once
        "good": subprocess.Popen(firm + ["--python", sys.executable, "--config", files["config"], "--portfolio",
                                         files["book"], "--scenarios", SCENARIOS, "--out", str(out)],
                                 env=head["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "bad": subprocess.Popen(firm + ["--config", files["bad"], "--portfolio", files["book"]],
                                env=head["env"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
    }
    (good_out, good_err), (bad_out, bad_err) = (p.communicate(timeout=300) for p in both.values())
    assert both["good"].returncode == 0, good_out[-3000:] + good_err[-3000:]
    assert "lehman_2008_2009" in good_out and REPORT_BEGIN not in good_out  # logs shown, report filed
    report = json.loads((out / "stress.json").read_text())
    _same_results(report, local_report)
    _joined_the_head(report, head)
    assert "| lehman_2008_2009 | historical | 2008-09-12..2009-03-09 |" in (out / "stress.md").read_text()

    assert both["bad"].returncode == 1, bad_out[-3000:] + bad_err[-3000:]
    assert "risk.max_drawdown = 1.5" in bad_out  # the job's own error, streamed
    assert "FAILED: Job entrypoint command failed with exit code 2" in bad_err


def test_strangers_are_refused(head, files):
    # no token: the Jobs API answers 401 before anything runs
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{head['url']}/api/jobs/", timeout=10)
    assert err.value.code == 401
    # a wrong token: firm says so (exit 2) and prints neither token
    wrong = head["tmp"] / "wrong.token"
    wrong.write_text(secrets.token_hex(32))
    proc = subprocess.run(
        [str(BIN / "firm"), "stress", "--submit", head["url"], "--config", files["config"]],
        env={**head["env"], "RAY_AUTH_TOKEN_PATH": str(wrong)}, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "firm: stress --submit: Ray Jobs API at" in proc.stderr and "invalid" in proc.stderr
    for secret in (wrong.read_text(), head["token"].read_text()):
        assert secret not in proc.stdout + proc.stderr
