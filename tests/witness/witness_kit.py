"""Test kit for the witness: a small signed log (naive Merkle tree), request bodies, a witness process."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import naive_merkle

from client.core.checkpoint import Checkpoint, sign_checkpoint
from client.core.note import Signer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ToyLog:
    """A log of ``n`` leaves whose checkpoints its key signs; ``fork`` gives a different leaf from an index on."""

    origin: str = "example.com/toy-log"
    seed: bytes = bytes(range(1, 33))
    leaves: list[bytes] = field(default_factory=list)

    @property
    def signer(self) -> Signer:
        return Signer.from_seed(self.origin, self.seed)

    def grow(self, n: int, tag: bytes = b"") -> ToyLog:
        while len(self.leaves) < n:
            self.leaves.append(naive_merkle.leaf(b"entry %d" % len(self.leaves) + tag))
        return self

    def forked(self, at: int) -> ToyLog:
        """A copy sharing leaves before ``at`` and differing from there, signed by the same key."""
        other = ToyLog(self.origin, self.seed, list(self.leaves[:at]))
        return other.grow(len(self.leaves), b"fork")

    def root(self, n: int) -> bytes:
        return naive_merkle.mth(self.leaves[:n])

    def note(self, n: int, signer: Signer | None = None) -> bytes:
        return sign_checkpoint(Checkpoint(self.origin, n, self.root(n)), signer or self.signer)

    def proof(self, m: int, n: int) -> list[bytes]:
        return [] if m == 0 or m == n else naive_merkle.proof(m, self.leaves[:n])

    def request(self, old: int, n: int, *, proof: list[bytes] | None = None, note: bytes | None = None) -> bytes:
        hashes = self.proof(old, n) if proof is None else proof
        lines = "".join(base64.b64encode(h).decode() + "\n" for h in hashes)
        return f"old {old}\n{lines}\n".encode() + (self.note(n) if note is None else note)


def post(url: str, body: bytes, timeout: float = 10) -> tuple[int, bytes, str]:
    """POST ``body``; return (status, body, content type) whatever the status."""
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")


def get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def provenance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


class WitnessProcess:
    """``provenance witness serve`` on a loopback port, as a child process (stop or kill it)."""

    def __init__(self, key: Path, data: Path) -> None:
        self.key, self.data = key, data
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.vkey = ""

    def start(self) -> WitnessProcess:
        log_fd = self._log_file()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "client.cli", "witness", "serve", "--key", str(self.key), "--data",
                 str(self.data), "--listen", "127.0.0.1:0"], cwd=REPO, stdout=subprocess.PIPE, stderr=log_fd,
                text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        finally:
            os.close(log_fd)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        line = self.proc.stdout.readline()
        m = re.fullmatch(r"witness (\S+) listening on (\S+)\n", line)
        if m is None or time.monotonic() > deadline:
            self.proc.kill()
            raise AssertionError(f"witness did not start: {line!r} {self.log_path.read_text(errors='replace')}")
        self.vkey, self.url = m.group(1), f"http://{m.group(2)}"
        return self

    @property
    def log_path(self) -> Path:
        return self.data.parent / "witness.log"

    def _log_file(self) -> int:
        return os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def add(self, body: bytes) -> tuple[int, bytes, str]:
        return post(self.url + "/add-checkpoint", body)

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        code = self.proc.wait(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=20)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
