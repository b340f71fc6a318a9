"""The log over PostgresStorage while PostgreSQL restarts or crashes: UNAVAILABLE meanwhile, then it resumes.

The Storage.recover contract on a real server: no restart of ours, nothing acknowledged lost
(also across a SIGKILL of the postmaster, whose restart replays the WAL), and the log's
tree and checkpoints stay consistent.
"""

from __future__ import annotations

import time

import pytest

from client.core.merkle import leaf_hash, verify_consistency
from client.core.note import Signer
from client.errors import UnavailableError
from ledger.log import Appended, Log, LogConfig
from ledger.storage.postgres import PostgresStorage
from tests.pg import PgCluster

ORIGIN = "example.com/pg-restart"
SIGNER = Signer.from_seed(ORIGIN, b"\x0b" * 32)


def _add_when_back(lg: Log, entry: bytes, seconds: float = 20.0) -> Appended:
    """Retry ``entry`` until the log takes it again (the sequencer recovers every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            (got,) = lg.add([entry])
            assert isinstance(got, Appended)
            return got
        except UnavailableError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("outage", ["restart", "crash"])
def test_log_waits_out_postgresql_going_away(pg_cluster: PgCluster, pg_dsn: str, outage: str) -> None:
    lg = Log.open(PostgresStorage.open(pg_dsn), SIGNER, LogConfig(ORIGIN))
    try:
        acked = {e: r.index for e, r in zip([b"a", b"b", b"c"], lg.add([b"a", b"b", b"c"]), strict=True)}
        before = lg.latest().checkpoint
        if outage == "crash":
            pg_cluster.kill()  # SIGKILL of the postmaster: no shutdown, the start replays the WAL
        else:
            pg_cluster.stop()
        with pytest.raises(UnavailableError):
            lg.add([b"while down"])
        assert not lg.health()
        with pytest.raises(UnavailableError):
            lg.entries(0, 3)
        pg_cluster.start()
        got = _add_when_back(lg, b"d")
        acked[b"d"] = got.index
        acked[b"while down"] = _add_when_back(lg, b"while down").index  # refused before: a new entry now
        assert lg.entries(0, lg.size)[:3] == [b"a", b"b", b"c"]
        deadline = time.monotonic() + 10
        while not lg.health() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lg.health()
        after = lg.latest().checkpoint
        verify_consistency(before.size, after.size, lg.consistency_proof(before.size, after.size),
                           before.root, after.root)
    finally:
        lg.close()
    lg = Log.open(PostgresStorage.open(pg_dsn), SIGNER, LogConfig(ORIGIN))  # a restart of ours, to read it back
    try:
        entries = lg.entries(0, lg.size)
        assert all(entries[i] == e for e, i in acked.items())
        assert lg.latest().checkpoint == after
        assert lg.add([b"d"]) == [Appended(acked[b"d"], leaf_hash(b"d"), True)]
    finally:
        lg.close()
