"""`provenance db copy`: a registry log moved from RocksDB to PostgreSQL and back, its roots equal at every size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from registry_kit import open_env, story

from client.cli import main
from client.core.merkle import leaf_hash
from client.core.records import Kind
from client.errors import InvalidInputError
from ledger.app import dbcopy
from ledger.errors import CorruptStorageError
from ledger.log import Log, LogConfig
from ledger.log.tree import TreeReader
from ledger.registry.manifests import read_manifest
from ledger.registry.policy import Policy
from ledger.registry.registry import Registry
from ledger.storage import Storage
from ledger.storage.postgres import PostgresStorage
from ledger.storage.rocks import RocksStorage
from tests.pg import PASSWORD

EXTRA = 700  # raw entries after the registry's story: level-1 groups 0 and 1 full, group 2 partial


def _registry_log(data: Path) -> tuple[object, dict[str, object]]:
    """A data dir whose RocksDB store holds the registry story and EXTRA raw entries; (log signer, records)."""
    env = open_env(storage=RocksStorage.open(data / "log.rocksdb"))
    records = story(env)
    env.log.add([f"raw entry {i}".encode() * 3 for i in range(EXTRA)])
    env.close()
    (data / "origin").write_text("example.com/registry-test\n")
    return env.log_signer, records  # type: ignore[return-value]


def _same_log(a: Storage, b: Storage) -> int:
    """Everything a log keeps is equal in both stores, and so is the root at every size; returns the size."""
    head = a.read_head()
    assert head is not None and b.read_head() == head
    assert b.read_entries(0, head.size) == a.read_entries(0, head.size)
    assert b.scan_aux(b"") == a.scan_aux(b"") != []
    for name in ("origin", "checkpoint"):
        assert b.read_meta(name) == a.read_meta(name) is not None
    assert b.read_signed() == a.read_signed() is not None
    ra, rb = TreeReader(a, 1 << 20), TreeReader(b, 1 << 20)
    for n in range(1, head.size + 1):
        assert rb.root_at(n) == ra.root_at(n), n
    assert ra.root_at(head.size) == head.root
    leaves = [leaf_hash(e) for e in a.read_entries(0, head.size)]
    assert b.leaf_candidates(leaves[::97]) == [[i] for i in range(0, head.size, 97)]
    return head.size


def test_copy_rocksdb_to_postgresql_and_back(tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    signer, records = _registry_log(tmp_path / "data")
    assert main(["db", "copy", "--from", str(tmp_path / "data"), "--to", pg_dsn, "--batch-entries", "256"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report["batches"] == -(-report["tree_size"] // 256) and report["aux_pairs"] > 0
    assert "copied" in err and PASSWORD not in out + err
    src, pg = RocksStorage.open(tmp_path / "data" / "log.rocksdb", read_only=True), PostgresStorage.open(pg_dsn)
    try:
        size = _same_log(src, pg)
    finally:
        src.close()
        pg.close()
    assert size == report["tree_size"] > EXTRA

    # The registry serves from the copy: its indexes (names, lineage) moved with it.
    registry = Registry(Policy(), read_manifest, verify_processes=0)
    lg = Log.open(PostgresStorage.open(pg_dsn), signer, LogConfig("example.com/registry-test"),  # type: ignore[arg-type]
                  hook=registry.hook)
    registry.attach(lg)
    try:
        r = registry.reader
        assert r.by_name(Kind.CHECKPOINT, "chat", "10").id == records["child"].id  # type: ignore[attr-defined]
        assert {n.id for n in r.ancestors(records["grandchild"].id, 10)[0]} == {  # type: ignore[attr-defined]
            records[k].id for k in ("grandchild", "child", "base", "dataset")}  # type: ignore[attr-defined]
        assert lg.size == size and lg.latest().checkpoint.size == size
    finally:
        lg.close()
        registry.close()

    # ... and back to a new RocksDB directory, in batches of another size.
    back_dir = str(tmp_path / "back")
    assert main(["db", "copy", "--from", pg_dsn, "--to", back_dir, "--quiet", "--batch-entries", "300"]) == 0
    assert json.loads(capsys.readouterr().out)["tree_size"] == size
    src = RocksStorage.open(tmp_path / "data" / "log.rocksdb", read_only=True)
    back = RocksStorage.open(tmp_path / "back")
    try:
        _same_log(src, back)
    finally:
        src.close()
        back.close()


def test_copy_refuses_a_non_empty_destination_and_an_empty_source(tmp_path: Path, pg_dsn: str) -> None:
    _registry_log(tmp_path / "data")
    dbcopy.copy(str(tmp_path / "data"), pg_dsn)
    with pytest.raises(InvalidInputError, match="not empty"):
        dbcopy.copy(str(tmp_path / "data"), pg_dsn)
    with pytest.raises(InvalidInputError, match="same store"):
        dbcopy.copy(str(tmp_path / "data"), str(tmp_path / "data" / "log.rocksdb"))
    RocksStorage.open(tmp_path / "empty").close()
    with pytest.raises(InvalidInputError, match="holds no log"):
        dbcopy.copy(str(tmp_path / "empty"), str(tmp_path / "out"))


def test_copy_detects_a_source_whose_stored_tree_disagrees_with_its_entries(tmp_path: Path, pg_dsn: str) -> None:
    _registry_log(tmp_path / "data")
    store = RocksStorage.open(tmp_path / "data" / "log.rocksdb")
    key = bytes((1,)) + (1).to_bytes(8, "big")  # level 1, group 1: a full group
    forged = bytearray(store._cf["hashes"][key])
    forged[100] ^= 1
    store._cf["hashes"][key] = bytes(forged)
    store.close()
    with pytest.raises(CorruptStorageError, match="disagrees"):
        dbcopy.copy(str(tmp_path / "data"), pg_dsn, batch_entries=128)
