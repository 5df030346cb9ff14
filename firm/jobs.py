"""Stress tests as Ray jobs: ``firm stress`` submitted to a cluster's Jobs API, its logs and its report brought back.

A job runs on the head, in the checkout its ``ray start`` ran from and with that shell's PATH (the cluster
files start Ray from ``~/firm`` with its venv activated), so the config and book paths it is given are the
head's. Inside the job ``firm stress`` joins the cluster through ``RAY_ADDRESS``, which Ray sets for every
job, and spreads its scenarios over the nodes. It prints its JSON report between two marker lines
(``--report-stdout``), which is how the report comes back with the logs to a client on another machine.

The Jobs API is the Ray dashboard's port on the head's 127.0.0.1 (8265), reached from your machine through
``ray dashboard cluster.yaml``. With token authentication the client needs ``RAY_AUTH_MODE=token`` and the
cluster's token (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN_PATH`` or ``RAY_AUTH_TOKEN``); Ray reads it, firm
never touches it.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass
from typing import Callable, Sequence

DEFAULT_JOBS_ADDRESS = "http://127.0.0.1:8265"
REPORT_BEGIN = "--- firm stress report (json) ---"
REPORT_END = "--- end of firm stress report ---"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")


def jobs_address(address: str | None = None) -> str:
    """The Jobs API to talk to: ``address``, else ``RAY_API_SERVER_ADDRESS``, else the forwarded dashboard."""
    return address or os.environ.get("RAY_API_SERVER_ADDRESS") or DEFAULT_JOBS_ADDRESS


def stress_entrypoint(stress_args: Sequence[str], python: str | None = None) -> str:
    """The job's shell command: ``firm stress ARGS --report-stdout`` with the head's ``firm``, or, given
    ``python`` (an interpreter path on the head), ``PYTHON -m firm.cli stress ARGS --report-stdout``."""
    argv = [python, "-m", "firm.cli"] if python else ["firm"]
    argv += ["stress", *stress_args]
    if "--report-stdout" not in stress_args:
        argv.append("--report-stdout")
    return shlex.join(argv)


def report_block(report: dict) -> str:
    """The report as ``firm stress --report-stdout`` prints it: one JSON line between the markers."""
    return f"{REPORT_BEGIN}\n{json.dumps(report, sort_keys=True, default=str)}\n{REPORT_END}"


def report_from_logs(logs: str) -> dict | None:
    """The report a job printed (the last one, if several), or None if it printed none."""
    end = logs.rfind(REPORT_END)
    begin = logs.rfind(REPORT_BEGIN, 0, end if end >= 0 else None)
    if begin < 0 or end < 0:
        return None
    return json.loads(logs[begin + len(REPORT_BEGIN): end])


@dataclass(frozen=True)
class StressJob:
    """A finished job: its status (SUCCEEDED, FAILED, STOPPED), Ray's message (for a failure, the exit code
    and the last lines of the logs), the whole logs and the report, if the job printed one."""

    job_id: str
    status: str
    message: str
    logs: str
    report: dict | None

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(jobs_address(address))


def submit_stress(
    stress_args: Sequence[str],
    address: str | None = None,
    python: str | None = None,
    submission_id: str | None = None,
    env: dict[str, str] | None = None,
    client=None,
) -> str:
    """Submit ``firm stress STRESS_ARGS`` as a Ray job; returns its submission id.

    ``env`` adds environment variables to the job (a ``runtime_env``); paths in ``stress_args`` are the head's.
    """
    client = client or _client(address)
    return client.submit_job(
        entrypoint=stress_entrypoint(stress_args, python),
        submission_id=submission_id,
        runtime_env={"env_vars": dict(env)} if env else None,
        metadata={"firm": "stress"},
    )


def wait_for(job_id: str, address: str | None = None, timeout_s: float = 3600.0, client=None,
             poll_s: float = 0.5) -> StressJob:
    """Wait until the job ends; its status, message, logs and report. TimeoutError if it is still running
    after ``timeout_s`` (the job keeps running: stop it with ``ray job stop``)."""
    client = client or _client(address)
    deadline = time.monotonic() + timeout_s
    while (status := client.get_job_status(job_id).value) not in TERMINAL:
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray job {job_id} still {status} after {timeout_s:g} s")
        time.sleep(poll_s)
    info = client.get_job_info(job_id)
    logs = client.get_job_logs(job_id)
    return StressJob(job_id, status, info.message or "", logs, report_from_logs(logs))


def run_stress_job(
    stress_args: Sequence[str],
    address: str | None = None,
    python: str | None = None,
    timeout_s: float = 3600.0,
    on_log: Callable[[str], None] | None = None,
) -> StressJob:
    """Submit ``firm stress STRESS_ARGS``, pass its log lines to ``on_log`` as they come, and return the
    finished job."""
    client = _client(address)
    job_id = submit_stress(stress_args, python=python, client=client)
    if on_log is not None:
        import asyncio

        async def tail() -> None:
            async for chunk in client.tail_job_logs(job_id):
                for line in chunk.splitlines():
                    on_log(line)

        try:
            asyncio.run(asyncio.wait_for(tail(), timeout_s))
        except asyncio.TimeoutError:
            raise TimeoutError(f"Ray job {job_id} still running after {timeout_s:g} s") from None
    return wait_for(job_id, timeout_s=timeout_s, client=client)
