"""A Ray head of a test's own (``ray start --head --block`` in its own session), for tests that need Ray
started with options the session's ``ray_local`` does not have: a metrics export port, the dashboard (the
state API). Every port is explicit and the temp dir is the test's, so it neither collides with nor is
found by any other Ray on the machine. Token authentication stays on, as Ray 2.60 does it for local
clusters; the token is generated for the test, never printed, and handed to clients in ``env``.
"""

from __future__ import annotations

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

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 120


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class RayHead:
    """One head node on loopback; ``address`` is its GCS, ``env`` what a client process needs to join it."""

    def __init__(self, tmp: Path, num_cpus: int = 2):
        self.tmp = tmp
        (self.gcs_port, self.metrics_port, self.dashboard_port, self.client_port, self.agent_http_port,
         self.agent_grpc_port, self.runtime_env_port) = free_ports(7)  # fmt: skip
        self.address = f"127.0.0.1:{self.gcs_port}"
        token = tmp / "auth_token"
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        self.env.update(
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN_PATH=str(token),
            NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache")),
            RAY_USAGE_STATS_ENABLED="0",
            RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",  # stop() tears down at once, no 30 s drain of idle actors
        )
        self.log = tmp / "ray_start.log"
        self.temp_dir = Path(tempfile.mkdtemp(prefix="firm-ray-"))  # short: Ray's socket paths must fit 107 bytes
        self.proc: subprocess.Popen | None = None
        self.num_cpus = num_cpus

    def start(self) -> "RayHead":
        cmd = [
            RAY, "start", "--head", "--block", "--disable-usage-stats",
            "--node-ip-address=127.0.0.1", f"--port={self.gcs_port}", f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}", f"--metrics-export-port={self.metrics_port}",
            f"--ray-client-server-port={self.client_port}", f"--dashboard-agent-listen-port={self.agent_http_port}",
            f"--dashboard-agent-grpc-port={self.agent_grpc_port}", f"--runtime-env-agent-port={self.runtime_env_port}",
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self._dashboard_up():
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Ray head did not come up in {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def _dashboard_up(self) -> bool:
        """The dashboard answers HTTP (its API wants the token: 401 is an answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.dashboard_port}/api/version", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self) -> None:
        """SIGTERM to ``ray start --block`` (it stops the processes it started), then the rest of its group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)
