"""Two real ``provenance serve`` frontends on one PostgreSQL database, and a SIGKILL of the signing one.

Issue 14's acceptance test: writes go through both frontends under load; the one holding the
signer role is killed with SIGKILL; the other must sign within 10 s; afterwards every
acknowledged entry is at its index, and every checkpoint either frontend handed out is
consistent with every other -- checked by Go's ``golang.org/x/mod/sumdb`` (``note.Open`` for the
signatures, ``tlog.CheckTree`` for the consistency proofs, ``tlog.CheckRecord`` for inclusion),
through the checker of ``tests/interop/gocheck``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from references import require_go_sumdb
from servers import ServerProcess

from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.merkle import leaf_hash
from client.errors import ProvenanceError
from client.remote import LogClient
from ledger.app.keys import load_or_create_signer

ORIGIN = "example.test/frontends"
GOCHECK_SRC = Path(__file__).resolve().parents[1] / "interop" / "gocheck"
WRITERS_PER_FRONTEND = 3


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def gocheck(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go, gopath = require_go_sumdb()
    out = tmp_path_factory.mktemp("gocheck")
    env = {**os.environ, "GOPATH": str(gopath), "GO111MODULE": "off", "GOFLAGS": "", "CGO_ENABLED": "0",
           "GOCACHE": str(out / "cache")}
    built = subprocess.run([go, "build", "-o", str(out / "gocheck"), "."], cwd=GOCHECK_SRC, env=env,
                           capture_output=True, check=False, timeout=600)
    assert built.returncode == 0, built.stderr.decode()
    return out / "gocheck"


def _go(binary: Path, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    done = subprocess.run([str(binary)], input=json.dumps(requests).encode(), capture_output=True, check=False,
                          timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    assert len(answers) == len(requests)
    return answers


class Load:
    """Writers adding small batches through one frontend each, recording what was acknowledged and signed."""

    def __init__(self, fronts: list[ServerProcess]) -> None:
        self.fronts = fronts
        self.acked: dict[bytes, int] = {}
        self.notes: set[bytes] = set()
        self.failures: dict[int, int] = {f.port: 0 for f in fronts}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._write, args=(f, w), daemon=True)
                         for f in fronts for w in range(WRITERS_PER_FRONTEND)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def _write(self, front: ServerProcess, writer: int) -> None:
        n = 0
        with LogClient(front.address, timeout=20) as client:
            while not self._stop.is_set():
                batch = [f"{front.port}/{writer}/{n}/{i}".encode() for i in range(20)]
                n += 1
                try:
                    res = client.add_entries(batch, wait_for_checkpoint=n % 3 == 0)
                except ProvenanceError:
                    with self._lock:
                        self.failures[front.port] += 1
                    time.sleep(0.05)
                    continue
                with self._lock:
                    for entry, added in zip(batch, res.entries, strict=True):
                        self.acked[entry] = added.index
                    if res.checkpoint is not None:
                        self.notes.add(res.checkpoint)

    def size(self) -> int:
        with self._lock:
            return len(self.acked)


def _lease(dsn: str) -> tuple[str, int]:
    """Who holds the signer role (``host listen-address``) and at which epoch."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT holder, epoch FROM signer_lease").fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def _signed_since(dsn: str, epoch: int) -> int | None:
    """The largest checkpoint a signer of a later epoch than ``epoch`` committed, if any."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT max(size) FROM checkpoints WHERE epoch > %s", (epoch,)).fetchone()
    return None if row is None or row[0] is None else int(row[0])


@pytest.fixture
def frontends(tmp_path: Path, pg_dsn: str) -> Iterator[list[ServerProcess]]:
    """Two frontends on one fresh database, each with its own data dir and the same signing key."""
    key = tmp_path / "log.key"  # the one signing key every frontend mounts
    load_or_create_signer(key, ORIGIN)
    fronts = [ServerProcess(tmp_path / f"front{i}", ["--store", pg_dsn, "--key", str(key), "--origin", ORIGIN])
              for i in range(2)]
    try:
        for f in fronts:
            f.start()
        yield fronts
    finally:
        for f in fronts:
            f.kill()


@pytest.mark.interop
def test_sigkill_of_the_signer_under_load(frontends: list[ServerProcess], pg_dsn: str, gocheck: Path) -> None:
    verifier = load_or_create_signer(frontends[0].data_dir.parent / "log.key", ORIGIN).verifier()
    with Load(frontends) as load:
        deadline = time.monotonic() + 20
        while load.size() < 2000 and time.monotonic() < deadline:
            time.sleep(0.05)
        holder, epoch = _lease(pg_dsn)
        victim = next(f for f in frontends if holder.endswith(" " + f.address))
        survivor = next(f for f in frontends if f is not victim)
        with LogClient(survivor.address, timeout=5) as c:
            load.notes.add(c.checkpoint())
        victim.kill()  # SIGKILL, under load
        killed_at = time.monotonic()
        # Taken over: the survivor holds the lease at a later epoch and serves a checkpoint it signed.
        with LogClient(survivor.address, timeout=5) as c:
            while True:
                signed = _signed_since(pg_dsn, epoch)
                note = c.checkpoint()
                load.notes.add(note)
                if signed is not None and open_checkpoint(note, verifier, ORIGIN).size >= signed:
                    break
                assert time.monotonic() - killed_at < 10, f"no new signer within 10 s of the kill:\n" \
                                                          f"{survivor.log_text()[-3000:]}"
                time.sleep(0.05)
        took_over = time.monotonic() - killed_at
        assert _lease(pg_dsn)[0].endswith(" " + survivor.address)
        time.sleep(1.0)  # more writes through the survivor alone
    assert took_over < 10
    assert load.size() > 2000
    assert load.failures[survivor.port] == 0, "the survivor's writers waited out the takeover without an error"

    with LogClient(survivor.address, timeout=10) as c:
        final_note = c.checkpoint()
        load.notes.add(final_note)
        final = open_checkpoint(final_note, verifier, ORIGIN)
        # Every acknowledged entry is at its index (each index assigned once: the map is injective).
        assert len(set(load.acked.values())) == len(load.acked)
        assert max(load.acked.values()) < final.size
        logged = list(c.iter_entries(0, final.size))
        for entry, index in load.acked.items():
            assert logged[index] == entry, f"acknowledged entry {entry!r} is not at its index {index}"
        cps: list[Checkpoint] = sorted({open_checkpoint(n, verifier, ORIGIN) for n in load.notes},
                                       key=lambda cp: cp.size)
        assert len({cp.size for cp in cps}) == len(cps), "two different checkpoints of one size"
        tree_proofs = [c.consistency_proof(cp.size, final.size) for cp in cps if 0 < cp.size < final.size]
        sample = sorted(load.acked.items(), key=lambda kv: kv[1])[:: max(1, len(load.acked) // 50)]
        incl = c.inclusion_proofs([i for _, i in sample], final.size)

    # Go's sumdb checks every handed-out checkpoint's signature and its consistency with the final one.
    requests: list[dict[str, Any]] = [{"cmd": "open", "note": _b64(n), "verifiers": [verifier.text()]}
                                      for n in sorted(load.notes)]
    old = [cp for cp in cps if 0 < cp.size < final.size]
    requests += [{"cmd": "check_tree", "proof": [_b64(h) for h in p.hashes], "size1": cp.size,
                  "root1": _b64(cp.root), "size2": final.size, "root2": _b64(final.root)}
                 for cp, p in zip(old, tree_proofs, strict=True)]
    requests += [{"cmd": "check_record", "proof": [_b64(h) for h in p.hashes], "size": final.size,
                  "root": _b64(final.root), "index": i, "leaf": _b64(leaf_hash(e))}
                 for (e, i), p in zip(sample, incl, strict=True)]
    for req, answer in zip(requests, _go(gocheck, requests), strict=True):
        assert answer["ok"], f"Go refused {req['cmd']}: {answer.get('err')}"
    assert len(old) >= 2
