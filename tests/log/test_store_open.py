"""Opening a storage backend from configuration: spec parsing, refusals, and both backends opened."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from client.errors import InvalidInputError
from ledger.storage.memory import MemoryStorage
from ledger.storage.open import SCHEMES, StoreSpec, open_storage
from ledger.storage.rocks import RocksStorage


def test_a_plain_directory_and_rocksdb_scheme_name_the_rocksdb_store(tmp_path: Path) -> None:
    assert StoreSpec.parse(str(tmp_path)) == StoreSpec("rocksdb", tmp_path)
    assert StoreSpec.parse(f"rocksdb:{tmp_path}", cache_bytes=1 << 20) == StoreSpec("rocksdb", tmp_path, 1 << 20)
    assert StoreSpec.parse("relative/store").path == Path("relative/store")
    assert StoreSpec.parse("./odd:name").path == Path("./odd:name")  # the way to name such a directory
    assert StoreSpec.directory("a:b").path == Path("a:b")  # --data is taken literally
    assert StoreSpec.parse("memory:") == StoreSpec("memory")


@pytest.mark.parametrize("text", ["mysql://ledger@db/provenance", "s3:bucket/log", "MySQL:x"])
def test_unknown_scheme_is_refused_naming_the_accepted_ones(text: str) -> None:
    with pytest.raises(InvalidInputError, match="unknown store scheme") as err:
        StoreSpec.parse(text)
    for scheme in SCHEMES:
        assert f"{scheme}:" in str(err.value)


@pytest.mark.parametrize("text", ["", "rocksdb:", "memory:extra", "dir\x00x", "postgresql:db"])
def test_malformed_specs_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        StoreSpec.parse(text)


def test_postgresql_spec_keeps_the_dsn_and_never_shows_its_password() -> None:
    dsn = "postgresql://ledger:hunter2-secret@db.example:5433/provenance?sslmode=require"
    spec = StoreSpec.parse(dsn)
    assert (spec.scheme, spec.dsn, spec.path, spec.is_directory) == ("postgresql", dsn, None, False)
    assert StoreSpec.parse("postgres://ledger@db/provenance").scheme == "postgresql"
    assert spec.describe() == "postgresql://ledger@db.example:5433/provenance"
    assert "hunter2" not in repr(spec) and "hunter2" not in str(spec)
    in_query = StoreSpec.parse("postgresql://ledger@db/provenance?password=hunter2&sslmode=require")
    assert in_query.describe() == "postgresql://ledger@db/provenance"
    assert StoreSpec.parse("postgresql:///provenance?host=/run/postgresql").describe() == (
        "postgresql://%2Frun%2Fpostgresql/provenance")


def test_spec_is_validated_and_frozen(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError):
        StoreSpec("rocksdb", None)
    with pytest.raises(InvalidInputError):
        StoreSpec("memory", tmp_path)
    with pytest.raises(InvalidInputError):
        StoreSpec.directory(tmp_path, cache_bytes=-1)
    spec = StoreSpec.directory(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.cache_bytes = 5  # type: ignore[misc]
    assert spec.describe() == f"rocksdb:{tmp_path}" and StoreSpec("memory").describe() == "memory:"


def test_open_storage_opens_each_backend(tmp_path: Path) -> None:
    mem = open_storage(StoreSpec.parse("memory:"))
    assert isinstance(mem, MemoryStorage) and mem.read_head() is None
    mem.close()
    rocks = open_storage(StoreSpec.parse(f"rocksdb:{tmp_path / 'db'}", cache_bytes=1 << 20))
    try:
        assert isinstance(rocks, RocksStorage) and rocks.read_head() is None
    finally:
        rocks.close()
