"""`make serve` (the README's first command) starts a ledger that answers a gRPC health check."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from tests.servers import REPO, free_port, health_status


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_serve_answers_health(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "serve", f"DATA={tmp_path / 'data'}", f"LISTEN={address}"],
            cwd=REPO, stdout=out, stderr=out, start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            status = health_status(address, timeout=0.5)
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.1)
        assert status == health_pb2.HealthCheckResponse.SERVING, log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert (tmp_path / "data").is_dir()
