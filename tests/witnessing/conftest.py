"""Witnesses for the witnessing tests: aics-witness (independent, PyPI) and ours (``provenance witness serve``).

Each witness runs as a throwaway process on a loopback port in a tmp dir and is stopped after the
test; :meth:`stop` / :meth:`start` restart it on the same port and state.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from client.core.cosignature import CosignerKey
from client.core.note import Signer
from client.core.witness_policy import WitnessPolicy
from client.remote import LogClient
from tests.references import REPO, require_aics_witness
from tests.servers import ServerProcess, free_port

START_TIMEOUT = 15.0


class WitnessProcess:
    """A witness server process. ``vkey``: its cosigner key text; ``url``: its submission prefix."""

    def __init__(self, name: str, directory: Path, argv: list[str], env: dict[str, str], port: int,
                 vkey: str) -> None:
        self.name = name
        self.dir = directory
        self._argv = argv
        self._env = env
        self.port = port
        self.vkey = vkey
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = directory / "witness.log"

    @property
    def key(self) -> CosignerKey:
        return CosignerKey.from_text(self.vkey)

    def start(self) -> WitnessProcess:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(self._argv, stdout=out, stderr=subprocess.STDOUT, env=self._env,
                                         cwd=self.dir)
        deadline = time.monotonic() + START_TIMEOUT
        import socket

        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"witness {self.name} exited: {self.log_path.read_text(errors='replace')}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"witness {self.name} did not listen: {self.log_path.read_text(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_aics_witness(directory: Path, name: str, logs: list[tuple[str, str]]) -> WitnessProcess:
    """aics-witness named ``name`` trusting ``logs`` ((origin, log vkey) pairs), started."""
    exe = require_aics_witness()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "witness.json"
    env = {**os.environ, "AICS_WITNESS_CONFIG": str(config)}
    port = free_port()
    out = subprocess.run([exe, "init", "--config", str(config), "--name", name, "--listen", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, env=env, check=True, cwd=directory)
    vkey = out.stdout.strip().splitlines()[0]
    assert re.fullmatch(r"\S+\+[0-9a-f]{8}\+\S+", vkey), out.stdout
    if len(logs) == 1:  # its own command, once
        subprocess.run([exe, "add-log", "--config", str(config), "--origin", logs[0][0], "--vkey", logs[0][1]],
                       capture_output=True, text=True, env=env, check=True, cwd=directory)
    elif logs:  # many: the documented config file's "logs" list, written in one go
        doc = json.loads(config.read_text())
        doc["logs"] = [{"origin": origin, "vkeys": [vkey]} for origin, vkey in logs]
        config.write_text(json.dumps(doc, indent=2))
    argv = [exe, "serve", "--config", str(config), "--log-level", "DEBUG"]
    return WitnessProcess(name, directory, argv, env, port, vkey).start()


def ours_available() -> bool:
    return (REPO / "ledger" / "witness").is_dir() and (REPO / "client" / "cli" / "witness_cmds.py").exists()


def start_our_witness(directory: Path, name: str, logs: list[tuple[str, str]]) -> WitnessProcess:
    """``provenance witness serve`` named ``name`` trusting ``logs``, started (skips if it is not there yet)."""
    if not ours_available():
        pytest.skip("our witness (ledger/witness) is not on this tree")
    directory.mkdir(parents=True, exist_ok=True)
    cli = [sys.executable, "-m", "client.cli"]
    key = directory / "witness.key"
    data = directory / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([*cli, "witness", "init", "--key", str(key), "--name", name], capture_output=True,
                         text=True, env=env, check=True, cwd=REPO)
    vkey = next(w for w in out.stdout.split() if w.startswith(name + "+"))
    if len(logs) == 1:  # its own command, once
        subprocess.run([*cli, "witness", "add-log", "--data", str(data), "--origin", logs[0][0], "--vkey", logs[0][1]],
                       capture_output=True, text=True, env=env, check=True, cwd=REPO)
    else:  # many: what that command runs, in this process (a process start each costs ~0.5 s)
        from ledger.witness import admin

        for origin, log_vkey in logs:
            admin.add_log(data, log_vkey, origin)
    port = free_port()
    argv = [*cli, "witness", "serve", "--key", str(key), "--data", str(data), "--listen", f"127.0.0.1:{port}"]
    return WitnessProcess(name, directory, argv, env, port, vkey).start()


WitnessFactory = Callable[[str, str, list[tuple[str, str]]], WitnessProcess]


@pytest.fixture
def witnesses(tmp_path: Path) -> Iterator[WitnessFactory]:
    """``witnesses(kind, name, logs)`` with kind ``"aics"`` or ``"ours"``: a started witness, stopped after the test."""
    started: list[WitnessProcess] = []

    def make(kind: str, name: str, logs: list[tuple[str, str]]) -> WitnessProcess:
        start = start_aics_witness if kind == "aics" else start_our_witness
        w = start(tmp_path / f"witness-{len(started)}", name, logs)
        started.append(w)
        return w

    yield make
    for w in started:
        w.stop(signal.SIGKILL)


class WitnessPool:
    """Two witnesses (aics-witness, and ours when on the tree, else a second aics-witness) trusting
    :data:`POOL_SIZE` logs; each test takes a fresh log key and origin with :meth:`signer`."""

    def __init__(self, directory: Path) -> None:
        self._signers = [Signer.generate(f"test.example/witnessed-{i}") for i in range(POOL_SIZE)]
        logs = [(s.name, s.verifier().text()) for s in self._signers]
        second = "ours" if ours_available() else "aics"
        start2 = start_our_witness if second == "ours" else start_aics_witness
        self.pair = [start_aics_witness(directory / "w1", "aics.test/w1", logs),
                     start2(directory / "w2", f"{second}.test/w2", logs)]
        self._next = 0

    def signer(self) -> Signer:
        if self._next == len(self._signers):
            raise AssertionError(f"the witness pool has only {POOL_SIZE} logs: raise POOL_SIZE")
        self._next += 1
        return self._signers[self._next - 1]

    def close(self) -> None:
        for w in self.pair:
            w.stop(signal.SIGKILL)


POOL_SIZE = 24


@pytest.fixture(scope="session")
def witness_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WitnessPool]:
    pool = WitnessPool(tmp_path_factory.mktemp("witness-pool"))
    yield pool
    pool.close()


def policy_text(log_vkey: str, ws: list[WitnessProcess], quorum: str = "all") -> str:
    """A policy naming the log and ``ws`` (with their URLs) and a group of them with ``quorum`` (all|any|k)."""
    lines = [f"log {log_vkey}"]
    lines += [f"witness w{i} {w.vkey} {w.url}" for i, w in enumerate(ws)]
    lines += [f"group g {quorum} " + " ".join(f"w{i}" for i in range(len(ws))), "quorum g"]
    return "\n".join(lines) + "\n"


class Witnessed:
    """A serve process with a witness policy naming the pool's two witnesses at quorum 2."""

    def __init__(self, root: Path, pool: WitnessPool) -> None:
        self.signer: Signer = pool.signer()
        key = root / "log.key"
        key.write_text(self.signer.private_text() + "\n")
        key.chmod(0o600)
        self.policy_path = root / "policy.txt"
        self.policy_path.write_text(policy_text(self.signer.verifier().text(), pool.pair))
        self.policy = WitnessPolicy.parse(self.policy_path.read_text())
        self.server = ServerProcess(root / "data", ["--key", str(key), "--origin", self.signer.name,
                                                    "--witness-policy", str(self.policy_path)])
        self.server.start()

    def client(self) -> LogClient:
        return self.server.client()


@pytest.fixture(scope="session")
def witnessed(witness_pool: WitnessPool, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Witnessed]:
    """A ``provenance serve --witness-policy`` process (quorum: both witnesses of the pool), for the session."""
    w = Witnessed(tmp_path_factory.mktemp("witnessed-serve"), witness_pool)
    yield w
    w.server.kill()
