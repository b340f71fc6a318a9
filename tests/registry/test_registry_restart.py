"""The registry's indexes live in the log's store: a reopened ledger answers every query the same way."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from registry_kit import Lab

from client.core.note import Signer
from client.core.records import Kind
from ledger.log import Appended, Log, LogConfig
from ledger.registry.manifests import read_manifest
from ledger.registry.policy import Policy
from ledger.registry.registry import Registry
from ledger.storage import Storage
from ledger.storage.postgres import PostgresStorage
from ledger.storage.rocks import RocksStorage
from tests.pg import pg_cluster, pg_schema_dsn  # noqa: F401  (fixtures: a PostgreSQL store per test)

ORIGIN = "example.com/restart"


@pytest.fixture(params=["rocksdb", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Storage]:
    """Opens the same store again at each call (a restart)."""
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_schema_dsn")
        return lambda: PostgresStorage.open(dsn)
    return lambda: RocksStorage.open(tmp_path / "db")


def _open(where: Path | Callable[[], Storage], signer: Signer) -> tuple[Registry, Log, Storage]:
    storage = RocksStorage.open(where) if isinstance(where, Path) else where()
    registry = Registry(Policy(), read_manifest)
    log = Log.open(storage, signer, LogConfig(ORIGIN), hook=registry.hook)
    registry.attach(log)
    return registry, log, storage


def test_reopen_keeps_indexes(store: Callable[[], Storage]) -> None:
    signer = Signer.generate(ORIGIN)
    a = Lab("lab-a")
    registry, log, storage = _open(store, signer)
    ds_sub, ds = a.dataset("web")
    cp_sub, cp = a.checkpoint("m", 1, datasets=((ds.id, "pretraining"),))
    assert all(isinstance(r, Appended) for r in registry.register([a.register(), ds_sub, cp_sub]))
    before = registry.reader.ancestors(cp.id, 5)
    log.close()
    registry.close()
    storage.close()

    registry, log, storage = _open(store, signer)
    try:
        r = registry.reader
        assert r.by_name(Kind.CHECKPOINT, "m", "1").id == cp.id
        assert r.ancestors(cp.id, 5)[1] == before[1]
        assert [x.record.id for x in r.find(cp.record.statement.manifest)] == [cp.id]  # type: ignore[union-attr]
        # References, names and signers still check after the restart.
        child_sub, child = a.checkpoint("m2", 1, parents=((cp.id, "fine-tune"),))
        (ok,) = registry.register([child_sub])
        assert isinstance(ok, Appended) and ok.index == 3
        dup_sub, _ = a.checkpoint("m", 1, seed="other")
        (refused,) = registry.register([dup_sub])
        assert "already registered at index 2" in str(refused)
    finally:
        log.close()
        registry.close()
        storage.close()


def test_store_with_the_first_index_layout_is_refused(tmp_path: Path) -> None:
    """Posting-list heads of the first layout (``rm digest`` -> count, indices) are not read as postings."""
    import pytest

    from ledger.errors import CorruptStorageError
    from ledger.registry import keys as K
    from ledger.storage import Batch

    signer = Signer.generate(ORIGIN)
    registry, log, storage = _open(tmp_path / "db", signer)
    log.close()
    registry.close()
    storage.close()
    storage = RocksStorage.open(tmp_path / "db")
    head = storage.read_head()
    assert head is not None
    old_head = (1).to_bytes(8, "big") + (5).to_bytes(8, "big")
    storage.commit(Batch(head.size, (), (), {}, head, aux=[(K.MANIFEST_POSTS + b"\x01" * 32, old_head)]))
    storage.close()
    storage = RocksStorage.open(tmp_path / "db")
    registry = Registry(Policy(), read_manifest)
    log = Log.open(storage, signer, LogConfig(ORIGIN), hook=registry.hook)
    try:
        with pytest.raises(CorruptStorageError, match="first layout"):
            registry.attach(log)
    finally:
        log.close()
        registry.close()
