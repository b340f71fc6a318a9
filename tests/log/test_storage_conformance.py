"""One conformance suite for every :class:`ledger.storage.Storage`: memory, RocksDB and PostgreSQL.

Each test gets a ``Store`` fixture that can ``open()`` the store and ``reopen()`` it
(a clean restart: for RocksDB a real close and open of the directory).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rocksdict import Options, Rdict

from client.core.merkle import EMPTY_ROOT, leaf_hash
from ledger.errors import CorruptStorageError, StorageError, StoreInUseError
from ledger.storage import DEDUP_PREFIX, Batch, Storage, TreeHead
from ledger.storage.memory import MemoryStorage
from ledger.storage.postgres import PostgresStorage
from ledger.storage.rocks import RocksStorage
from ledger.storage.rocks_codec import decode_varints, encode_varints
from tests.pg import pg_cluster, pg_schema_dsn  # noqa: F401  (fixtures: a PostgreSQL store per test)


@dataclass
class Store:
    storage: Storage
    reopen_fn: Callable[[Storage], Storage]

    def reopen(self) -> Storage:
        self.storage = self.reopen_fn(self.storage)
        return self.storage


def _reopen_memory(s: Storage) -> Storage:
    assert isinstance(s, MemoryStorage)
    s.close()
    return s.reopen()


@pytest.fixture(params=["memory", "rocks", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        st = Store(MemoryStorage(), _reopen_memory)
    elif request.param == "postgresql":
        dsn = request.getfixturevalue("pg_schema_dsn")

        def reopen_pg(s: Storage) -> Storage:
            s.close()
            return PostgresStorage.open(dsn)

        st = Store(PostgresStorage.open(dsn), reopen_pg)
    else:
        path = tmp_path / "db"

        def reopen(s: Storage) -> Storage:
            s.close()
            return RocksStorage.open(path)

        st = Store(RocksStorage.open(path), reopen)
    yield st
    st.storage.close()


def _head(size: int) -> TreeHead:
    return TreeHead(size, bytes([size % 256]) * 32, tuple(bytes([i]) * 32 for i in range(size.bit_count())))


def _batch(start: int, entries: list[bytes], **kw: object) -> Batch:
    return Batch(start, entries, [leaf_hash(e) for e in entries], kw.pop("groups", {}),  # type: ignore[arg-type]
                 _head(start + len(entries)), **kw)  # type: ignore[arg-type]


def test_fresh_store_is_empty(store: Store) -> None:
    s = store.storage
    assert s.read_head() is None
    assert s.read_meta("origin") is None
    assert s.read_entries(0, 0) == []
    assert s.read_entries_at([0, 5]) == [None, None]
    assert s.read_hash_groups([(1, 0)]) == [None]
    assert s.leaf_candidates([leaf_hash(b"x")]) == [[]]
    assert s.read_aux([b"k"]) == [None]


def test_commit_then_read_everything(store: Store) -> None:
    s = store.storage
    s.commit(Batch(0, (), (), {}, TreeHead(0, EMPTY_ROOT), meta={"origin": b"example.com/log"}))
    entries = [b"a", b"b", b"c"]
    s.commit(_batch(0, entries, groups={(1, 0): b"\x01" * 32}, aux=[(b"k1", b"v1"), (b"k2", b"v2")]))
    for reopen in (False, True):
        st = store.reopen() if reopen else s
        assert st.read_head() == _head(3)
        assert st.read_meta("origin") == b"example.com/log"
        assert st.read_entries(0, 3) == entries
        assert st.read_entries(1, 2) == [b"b"]
        assert st.read_entries_at([2, 0, 3]) == [b"c", b"a", None]
        assert st.read_hash_groups([(1, 0), (2, 0)]) == [b"\x01" * 32, None]
        assert st.leaf_candidates([leaf_hash(b"b"), leaf_hash(b"zz")])[0] == [1]
        assert st.leaf_candidates([leaf_hash(b"zz")]) == [[]]
        assert st.read_aux([b"k2", b"k1", b"k3"]) == [b"v2", b"v1", None]


def test_groups_are_replaced_and_batches_accumulate(store: Store) -> None:
    s = store.storage
    s.commit(_batch(0, [b"a", b"b"], groups={(1, 0): b"\x01" * 32}))
    s.commit(_batch(2, [b"c", b"d"], groups={(1, 0): b"\x01" * 32 + b"\x02" * 32, (2, 0): b"\x03" * 32}))
    s = store.reopen()
    assert s.read_hash_groups([(1, 0), (2, 0)]) == [b"\x01" * 32 + b"\x02" * 32, b"\x03" * 32]
    assert s.read_entries(0, 4) == [b"a", b"b", b"c", b"d"]
    assert s.read_head() == _head(4)


def test_empty_commit_rewrites_the_head(store: Store) -> None:
    s = store.storage
    s.commit(_batch(0, [b"a"]))
    s.commit(Batch(1, (), (), {}, _head(1)))
    assert store.reopen().read_head() == _head(1)


def test_same_leaf_hash_prefix_returns_every_candidate(store: Store) -> None:
    """Two leaf hashes sharing the dedup prefix: each lookup must include its own index."""
    s = store.storage
    h1 = b"\xaa" * DEDUP_PREFIX + b"\x01" * (32 - DEDUP_PREFIX)
    h2 = b"\xaa" * DEDUP_PREFIX + b"\x02" * (32 - DEDUP_PREFIX)
    s.commit(Batch(0, [b"x"], [h1], {}, _head(1)))
    s.commit(Batch(1, [b"y", b"z"], [h2, h1], {}, _head(3)))
    s = store.reopen()
    c1, c2 = s.leaf_candidates([h1, h2])
    assert {0, 2} <= set(c1)
    assert 1 in c2


def test_a_batch_that_does_not_extend_the_head_is_refused_whole(store: Store) -> None:
    s = store.storage
    s.commit(_batch(0, [b"a"]))
    with pytest.raises(StorageError):
        s.commit(_batch(5, [b"b"], aux=[(b"k", b"v")]))
    with pytest.raises(StorageError):
        s.commit(Batch(1, [b"b"], [leaf_hash(b"b")], {}, _head(3)))
    with pytest.raises(StorageError):
        s.commit(Batch(1, [b"b", b"c"], [leaf_hash(b"b")], {}, _head(3)))  # one leaf hash short
    s = store.reopen()
    assert s.read_head() == _head(1)
    assert s.read_entries_at([1]) == [None]
    assert s.read_aux([b"k"]) == [None]
    assert s.leaf_candidates([leaf_hash(b"b")]) == [[]]


def test_meta_outside_batches(store: Store) -> None:
    s = store.storage
    s.write_meta("checkpoint", b"note 1")
    s.write_meta("checkpoint", b"note 2")
    assert s.read_meta("checkpoint") == b"note 2"
    assert store.reopen().read_meta("checkpoint") == b"note 2"


def test_closed_store_raises_storage_error(store: Store) -> None:
    s = store.storage
    s.close()
    with pytest.raises(StorageError):
        s.read_head()
    with pytest.raises(StorageError):
        s.commit(_batch(0, [b"a"]))
    with pytest.raises(StorageError):
        s.scan_aux(b"k")


def test_recover_of_a_working_store_changes_nothing(store: Store) -> None:
    s = store.storage
    s.commit(_batch(0, [b"a", b"b"], aux=[(b"k", b"v")]))
    s.recover()
    assert s.read_head() == _head(2)
    assert s.read_entries(0, 2) == [b"a", b"b"] and s.read_aux([b"k"]) == [b"v"]
    s.commit(_batch(2, [b"c"]))
    assert store.reopen().read_entries(0, 3) == [b"a", b"b", b"c"]
    store.storage.close()
    with pytest.raises(StorageError):
        store.storage.recover()


def test_large_values_and_many_entries(store: Store) -> None:
    s = store.storage
    entries = [os.urandom(300) for _ in range(1000)]
    s.commit(_batch(0, entries, groups={(1, 0): os.urandom(8192)}))
    s = store.reopen()
    assert s.read_entries(0, 1000) == entries
    assert s.read_entries_at(list(range(999, -1, -7))) == entries[999::-7]


def test_scan_aux_lists_a_prefix_in_key_order(store: Store) -> None:
    s = store.storage
    assert s.scan_aux(b"p") == []
    first = [(b"p\x01" + i.to_bytes(8, "big"), b"") for i in (5, 1, 300)]
    other = [(b"p\x02" + (7).to_bytes(8, "big"), b"v"), (b"p", b"exact"), (b"o\xff", b"before"), (b"q", b"after")]
    s.commit(_batch(0, [b"a"], aux=first + other))
    s.commit(_batch(1, [b"b"], aux=[(b"p\x01" + (2).to_bytes(8, "big"), b"two"), (b"p", b"replaced")]))
    for reopen in (False, True):
        st = store.reopen() if reopen else s
        want = [(b"p\x01" + i.to_bytes(8, "big"), b"two" if i == 2 else b"") for i in (1, 2, 5, 300)]
        assert st.scan_aux(b"p\x01") == want
        assert st.scan_aux(b"p\x01", limit=2) == want[:2]
        assert st.scan_aux(b"p\x01", limit=0) == []
        assert st.scan_aux(b"p\x01", limit=10) == want
        assert [k for k, _ in st.scan_aux(b"p")] == [b"p", *(k for k, _ in want), b"p\x02" + (7).to_bytes(8, "big")]
        assert st.scan_aux(b"p")[0] == (b"p", b"replaced")
        assert st.scan_aux(b"p\x03") == []
        assert st.scan_aux(b"r") == []
        assert len(st.scan_aux(b"")) == 8


def test_entry_ranges_outside_the_store_raise_storage_error(store: Store) -> None:
    """A range that is reversed, negative or beyond the stored entries raises StorageError (not ValueError)."""
    s = store.storage
    s.commit(_batch(0, [b"a", b"b"]))
    for start, end in ((1, 0), (-1, 1), (0, 3), (2, 5)):
        with pytest.raises(StorageError):
            s.read_entries(start, end)
    assert s.read_entries(2, 2) == []


def test_scan_aux_at_the_top_of_the_key_space(store: Store) -> None:
    """A prefix of 0xff bytes has no successor key: the scan still stops at the prefix's end."""
    s = store.storage
    aux = [(b"\xff\xff", b"1"), (b"\xff\xff\x00", b"2"), (b"\xff\xfe", b"0"), (b"\xff", b"x")]
    s.commit(_batch(0, [b"a"], aux=aux))
    assert s.scan_aux(b"\xff\xff") == [(b"\xff\xff", b"1"), (b"\xff\xff\x00", b"2")]
    assert [k for k, _ in s.scan_aux(b"\xff")] == [b"\xff", b"\xff\xfe", b"\xff\xff", b"\xff\xff\x00"]


def test_scan_aux_never_sees_a_refused_batch(store: Store) -> None:
    s = store.storage
    s.commit(_batch(0, [b"a"], aux=[(b"k1", b"")]))
    with pytest.raises(StorageError):
        s.commit(_batch(5, [b"b"], aux=[(b"k2", b"")]))
    assert s.scan_aux(b"k") == [(b"k1", b"")]


# ------------------------------------------------------------------ RocksDB only


def test_varints_round_trip_and_reject_truncation() -> None:
    values = [0, 1, 127, 128, 300, 2**32, 2**63 - 1]
    assert decode_varints(encode_varints(values)) == values
    with pytest.raises(CorruptStorageError):
        decode_varints(b"\x80")
    with pytest.raises(CorruptStorageError):
        decode_varints(b"\xff" * 10 + b"\x01")


def test_rocks_refuses_a_directory_that_is_not_a_log_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("hello")
    with pytest.raises(CorruptStorageError, match="not a RocksDB"):
        RocksStorage.open(junk)
    other = tmp_path / "other"
    db = Rdict(str(other), Options(raw_mode=True))
    db[b"k"] = b"v"
    db.close()
    with pytest.raises(CorruptStorageError, match="column families"):
        RocksStorage.open(other)


def test_rocks_refuses_another_format_version(tmp_path: Path) -> None:
    s = RocksStorage.open(tmp_path / "db")
    s._cf["meta"][b"format"] = b"999"
    s.close()
    with pytest.raises(CorruptStorageError, match="format"):
        RocksStorage.open(tmp_path / "db")


def test_rocks_detects_a_mangled_tree_head(tmp_path: Path) -> None:
    s = RocksStorage.open(tmp_path / "db")
    s.commit(_batch(0, [b"a", b"b", b"c"]))
    raw = s._cf["meta"][b"head"]
    assert isinstance(raw, bytes)
    for bad in (raw[:-1], b"\x02" + raw[1:], raw + b"\x00" * 32):
        s._cf["meta"][b"head"] = bad
        with pytest.raises(CorruptStorageError):
            s.read_head()
    s.close()


def test_rocks_scan_aux_from_files_with_prefix_blooms(tmp_path: Path) -> None:
    """Scans of prefixes longer and shorter than the bloom prefix, after the keys left the memtable."""
    from ledger.storage.rocks_codec import AUX_SCAN_PREFIX

    s = RocksStorage.open(tmp_path / "db")
    lists = [bytes([i]) * AUX_SCAN_PREFIX for i in (1, 2, 0xFF)]
    aux = [(k + n.to_bytes(8, "big"), bytes([n])) for k in lists for n in range(3)] + [(lists[0][:5], b"short")]
    s.commit(_batch(0, [b"a"], aux=aux))
    s.compact()
    s.commit(_batch(1, [b"b"], aux=[(lists[1] + (9).to_bytes(8, "big"), b"new")]))  # one in the memtable too
    try:
        for k in lists:
            want = [(k + n.to_bytes(8, "big"), bytes([n])) for n in range(3)]
            if k == lists[1]:
                want.append((k + (9).to_bytes(8, "big"), b"new"))
            assert s.scan_aux(k) == want
            assert s.scan_aux(k + b"\x00" * 7) == want  # longer than the bloom prefix
            assert s.scan_aux(k[:-1] + bytes([k[-1] ^ 1])) == []
        assert len(s.scan_aux(b"")) == 11
        assert [v for _, v in s.scan_aux(lists[0][:5])] == [b"short", b"\x00", b"\x01", b"\x02"]
        assert len(s.scan_aux(b"\xff")) == 3
    finally:
        s.close()


def test_rocks_is_locked_against_a_second_opener(tmp_path: Path) -> None:
    s = RocksStorage.open(tmp_path / "db")
    try:
        with pytest.raises(StoreInUseError):
            RocksStorage.open(tmp_path / "db")
    finally:
        s.close()


def test_signed_head_record_survives_reopen_newest_wins(store: Store) -> None:
    s = store.storage
    assert s.read_signed() is None
    for size in (0, 1, 5):
        s.record_signed(size, bytes([size]) * 32)
    assert s.read_signed() == (5, b"\x05" * 32)
    assert store.reopen().read_signed() == (5, b"\x05" * 32)


def test_rocks_torn_signed_head_slot_falls_back_to_the_previous_record(tmp_path: Path) -> None:
    from ledger.storage.rocks import SIGNED_HEAD_FILE
    from ledger.storage.signed_head import SLOT

    s = RocksStorage.open(tmp_path / "db")
    s.record_signed(7, b"\x07" * 32)
    s.record_signed(8, b"\x08" * 32)  # written to the other slot
    s.close()
    path = tmp_path / "db" / SIGNED_HEAD_FILE
    raw = bytearray(path.read_bytes())
    newest = 0 if raw[: SLOT].find(b"\x08" * 32) >= 0 else SLOT
    raw[newest + 20] ^= 0x01  # a torn write of the newest record
    path.write_bytes(bytes(raw))
    s = RocksStorage.open(tmp_path / "db")
    try:
        assert s.read_signed() == (7, b"\x07" * 32)
    finally:
        s.close()
    raw[(SLOT - newest) + 20] ^= 0x01  # both records damaged: refuse, never guess
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptStorageError, match="neither record"):
        RocksStorage.open(tmp_path / "db")
