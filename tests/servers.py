"""Run ``provenance serve`` as a separate process for tests.

``start_server(data_dir)`` picks a free 127.0.0.1 port, starts the server on
``data_dir`` and returns once the standard health service says SERVING (or
raises with the server's log). Use ``running_server`` as a context manager, or
call ``stop()`` (SIGTERM, returns the exit code) / ``kill()`` (SIGKILL) and
``restart()`` on the same data dir and port::

    with running_server(tmp_path / "data") as srv:
        with srv.client() as c:
            c.add_entries([b"x"])
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.errors import ProvenanceError
from client.remote import LogClient, TlsOptions

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT = 15.0  # seconds; a healthy start takes well under 2


def free_port() -> int:
    """A port that was free a moment ago on 127.0.0.1 (start_server retries if it is taken meanwhile)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def health_status(address: str, timeout: float = 1.0, service: str = "") -> int | None:
    """The health service's status for ``service``, or None when the server does not answer."""
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            status: int = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout).status
            return status
        except grpc.RpcError:
            return None


class ServerProcess:
    """One ``provenance serve`` process on ``data_dir``; its stderr goes to ``log_path``."""

    def __init__(self, data_dir: Path, args: Sequence[str] = (), port: int | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.port = port or free_port()
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, timeout: float = 10.0) -> LogClient:
        return LogClient(self.address, timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = START_TIMEOUT, tls: TlsOptions | None = None) -> float:
        """Start and wait for SERVING; returns the seconds it took. Raises RuntimeError with the log on failure.

        With ``tls`` (a server started with ``--tls-cert``...), readiness is asked over TLS with it."""
        cmd = [sys.executable, "-m", "client.cli", "serve", "--data", str(self.data_dir),
               "--listen", self.address, *self.args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log, env=env)
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_text()}")
            if self._serving(tls):
                return time.monotonic() - began
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server not SERVING after {timeout}s:\n{self.log_text()}")

    def _serving(self, tls: TlsOptions | None) -> bool:
        if tls is None:
            return health_status(self.address, timeout=0.5) == health_pb2.HealthCheckResponse.SERVING
        try:
            with LogClient(self.address, timeout=0.5, tls=tls) as c:
                return c.serving()
        except ProvenanceError:
            return False

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` (SIGTERM: drain) and wait for exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no drain, no cleanup (a crash)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def restart(self, timeout: float = START_TIMEOUT) -> float:
        """Start again on the same data dir and port (after stop or kill)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server is still running")
        return self.start(timeout)


def start_server(data_dir: Path, args: Sequence[str] = (), attempts: int = 3) -> ServerProcess:
    """Start a server on a free port, retrying on a fresh port if the chosen one was taken meanwhile."""
    last: RuntimeError | None = None
    for _ in range(attempts):
        srv = ServerProcess(data_dir, args)
        try:
            srv.start()
            return srv
        except RuntimeError as err:
            last = err
            if "listen" not in str(err) and "bind" not in str(err).lower():
                raise
    assert last is not None
    raise last


@contextmanager
def running_server(data_dir: Path, args: Sequence[str] = ()) -> Iterator[ServerProcess]:
    """A started server, killed on exit if the test did not stop it."""
    srv = start_server(data_dir, args)
    try:
        yield srv
    finally:
        srv.kill()
