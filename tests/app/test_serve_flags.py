"""`provenance serve` sizing flags reach the server, and bad values are refused naming the flag's setting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.core import merkle
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from client.remote import LogClient
from ledger.app.config import ServerConfig
from tests.servers import running_server


def test_a_server_with_small_caches_and_no_workers_serves_and_proves(tmp_path: Path) -> None:
    flags = ["--hash-cache-bytes", "4096", "--store-cache-bytes", str(1 << 20), "--verify-processes", "0"]
    with running_server(tmp_path / "data", flags) as srv, LogClient(srv.address, timeout=10) as c:
        entries = [b"entry %d" % i for i in range(600)]
        c.add_entries(entries, wait_for_checkpoint=True)
        cp = open_checkpoint(c.checkpoint(), Verifier.from_text(c.log_info().verifier_key))
        assert cp.size == 600
        for i in (0, 299, 599):
            proof = c.inclusion_proof(index=i, tree_size=cp.size)
            merkle.verify_inclusion(i, cp.size, merkle.leaf_hash(entries[i]), proof.hashes, cp.root)


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--verify-processes", "65", "verify_processes must be 0..64"),
    ("--store-cache-bytes", "0", "store_cache_bytes must be positive"),
])
def test_bad_sizes_are_refused_before_anything_starts(tmp_path: Path, flag: str, value: str, message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "client.cli", "serve", "--data", str(tmp_path / "data"), flag, value],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert message in out.stderr
    assert not (tmp_path / "data" / "log.rocksdb").exists()


def test_config_defaults() -> None:
    c = ServerConfig()
    assert c.hash_cache_bytes == 64 << 20 and c.store_cache_bytes == 32 << 20
    assert ServerConfig(verify_processes=0).signature_processes == 0
    assert ServerConfig().signature_processes >= 1
