"""Fault injection: failed commits in both flavours, a full disk, and corrupted stores.

The invariant under test: the log never signs a tree head that was not durable,
never signs two inconsistent checkpoints, fails the writers whose batch failed,
and recovers (or reports itself unhealthy) without a restart.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import EMPTY_ROOT, leaf_hash, verify_consistency, verify_inclusion
from client.core.note import Signer
from client.errors import UnavailableError
from ledger.errors import CorruptStorageError, StorageError
from ledger.log import Appended, Log, LogConfig
from ledger.storage import Batch, HashGroupKey, Storage, TreeHead
from ledger.storage.memory import MemoryStorage
from ledger.storage.postgres import PostgresStorage
from ledger.storage.rocks import RocksStorage
from tests import naive_merkle as naive
from tests.pg import pg_cluster, pg_schema_dsn  # noqa: F401  (fixtures: a PostgreSQL store per test)

ORIGIN = "example.com/fault-log"
SIGNER = Signer.from_seed(ORIGIN, b"\x09" * 32)
CONFIG = LogConfig(ORIGIN)


class FaultyStorage:
    """Wraps a store; injects commit failures. ``plan`` holds one fault per coming commit.

    ``"before"``: raise without saving ("failed and not saved"). ``"after"``: save,
    then raise ("failed but was saved"). ``disk_full``: every commit fails unsaved.
    ``durable`` records the size of every head whose commit *returned*. A failed commit
    latches a RocksDB store as a real write failure does, so its :meth:`recover` reopens
    the instance in place (``reopens`` counts them).
    """

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.plan: list[str | None] = []
        self.disk_full = False
        self.fail_reads = False
        self.fail_record = False
        self.durable: set[int] = set()
        self.reopens = 0

    def _latch(self) -> None:
        if isinstance(self.inner, RocksStorage):
            self.inner._live.write_error = "injected: a write failed"  # what RocksStorage._write records

    def commit(self, batch: Batch) -> None:
        mode = self.plan.pop(0) if self.plan else None
        if self.disk_full or mode == "before":
            self._latch()
            raise StorageError("injected: no space left on device")
        self.inner.commit(batch)
        if mode == "after":
            self._latch()
            raise StorageError("injected: fsync failed after the write")
        self.durable.add(batch.head.size)

    def recover(self) -> None:
        if isinstance(self.inner, RocksStorage) and self.inner._live.write_error is not None:
            self.reopens += 1
        self.inner.recover()

    def _reads(self) -> None:
        if self.fail_reads:
            raise StorageError("injected: read failed")

    def read_head(self) -> TreeHead | None:
        self._reads()
        return self.inner.read_head()

    def read_meta(self, name: str) -> bytes | None:
        return self.inner.read_meta(name)

    def write_meta(self, name: str, value: bytes) -> None:
        if self.disk_full:
            raise StorageError("injected: no space left on device")
        self.inner.write_meta(name, value)

    def record_signed(self, size: int, root: bytes) -> None:
        if self.disk_full or self.fail_record:
            raise StorageError("injected: cannot sync the signed-head record")
        self.inner.record_signed(size, root)

    def read_signed(self) -> tuple[int, bytes] | None:
        return self.inner.read_signed()

    def read_entries(self, start: int, end: int) -> list[bytes]:
        return self.inner.read_entries(start, end)

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        return self.inner.read_entries_at(indices)

    def read_hash_groups(self, keys: Sequence[HashGroupKey]) -> list[bytes | None]:
        return self.inner.read_hash_groups(keys)

    def leaf_candidates(self, leaf_hashes: Sequence[bytes]) -> list[list[int]]:
        self._reads()
        return self.inner.leaf_candidates(leaf_hashes)

    def read_aux(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return self.inner.read_aux(keys)

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        return self.inner.scan_aux(prefix, limit)

    def close(self) -> None:
        self.inner.close()


Opener = Callable[[], Storage]


@pytest.fixture(params=["memory", "rocks", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same store again after each close (a restart)."""
    if request.param == "rocks":
        return lambda: RocksStorage.open(tmp_path / "db")
    if request.param == "postgresql":
        dsn = request.getfixturevalue("pg_schema_dsn")
        return lambda: PostgresStorage.open(dsn)
    holder: list[MemoryStorage] = []

    def open_memory() -> Storage:
        holder.append(holder[-1].reopen() if holder else MemoryStorage())
        return holder[-1]

    return open_memory


class Watched:
    """A log over a faulty store whose every signed checkpoint is checked to be durable when signed."""

    def __init__(self, opener: Opener) -> None:
        self.faulty = FaultyStorage(opener())
        self.log = Log.open(self.faulty, SIGNER, CONFIG)
        self.signed: list[SignedCheckpoint] = [self.log.latest()]
        self.log.add_listener(self._on_checkpoint)

    def _on_checkpoint(self, signed: SignedCheckpoint) -> None:
        assert signed.checkpoint.size in self.faulty.durable, "signed a tree head that was not durable"
        self.signed.append(signed)


@pytest.fixture
def watched(opener: Opener) -> Iterator[Watched]:
    w = Watched(opener)
    yield w
    w.log.close()


def _verify_whole_log(lg: Log, signed: list[SignedCheckpoint]) -> None:
    """Every entry is proved in the final tree, which matches the naive root and extends every checkpoint."""
    size = lg.size
    entries = lg.entries(0, size)
    leaves = [naive.leaf(e) for e in entries]
    root = lg.root_at(size)
    assert root == naive.mth(leaves)
    for i, proof in enumerate(lg.inclusion_proofs(range(size), size)):
        verify_inclusion(i, size, leaves[i], proof, root)
    for s in signed:
        cp = s.checkpoint
        if cp.size > 0:
            verify_consistency(cp.size, size, lg.consistency_proof(cp.size, size), cp.root, root)
    sizes = [s.checkpoint.size for s in signed]
    assert sizes == sorted(sizes)


def _reopen_and_verify(w: Watched, opener: Opener) -> None:
    final = w.log.latest()
    w.log.close()
    lg = Log.open(opener(), SIGNER, CONFIG)
    try:
        assert lg.latest().note == final.note
        _verify_whole_log(lg, w.signed)
    finally:
        lg.close()
    w.log = Log.open(opener(), SIGNER, CONFIG)  # for the fixture to close


def test_commit_failed_and_not_saved(watched: Watched, opener: Opener) -> None:
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a", b"b", b"c"])
    before = lg.latest()
    faulty.plan = ["before"]
    with pytest.raises(UnavailableError):
        lg.add([b"lost 1", b"lost 2"])
    assert lg.latest() is before
    assert lg.size == 3
    assert faulty.inner.read_head() is not None and faulty.inner.read_head().size == 3  # type: ignore[union-attr]
    got = lg.add([b"d", b"lost 1"])
    assert got == [Appended(3, leaf_hash(b"d"), False), Appended(4, leaf_hash(b"lost 1"), False)]
    assert lg.health()
    _verify_whole_log(lg, watched.signed)
    _reopen_and_verify(watched, opener)


def test_commit_failed_but_was_saved(watched: Watched, opener: Opener) -> None:
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a", b"b", b"c"])
    faulty.plan = ["after"]
    with pytest.raises(UnavailableError):
        lg.add([b"landed 1", b"landed 2"])
    # The batch landed: the sequencer made it durable with a barrier commit, then signed it.
    assert lg.wait_for_size(5, timeout=5).result(5).checkpoint.size == 5
    assert lg.health()
    retry = lg.add([b"landed 1", b"landed 2", b"e"])
    assert [(r.index, r.duplicate) for r in retry if isinstance(r, Appended)] == [(3, True), (4, True), (5, False)]
    _verify_whole_log(lg, watched.signed)
    _reopen_and_verify(watched, opener)


def test_saved_batch_whose_barrier_also_fails_is_not_signed_until_storage_recovers(watched: Watched) -> None:
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a"])
    faulty.plan = ["after", "before"]  # the batch lands; the barrier that would make it durable fails
    with pytest.raises(UnavailableError):
        lg.add([b"b"])
    assert lg.size == 1
    assert not lg.health()
    time.sleep(0.25)  # past the recovery back-off
    got = lg.add([b"c"])
    assert got == [Appended(2, leaf_hash(b"c"), False)]
    assert [s.checkpoint.size for s in watched.signed] == [0, 1, 2, 3]
    _verify_whole_log(lg, watched.signed)


def test_full_disk_fails_writers_signs_nothing_and_recovers(watched: Watched) -> None:
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a", b"b"])
    before = lg.latest()
    faulty.disk_full = True
    for k in range(3):
        with pytest.raises(UnavailableError):
            lg.add([f"x{k}".encode()], timeout=5)
    assert not lg.health()
    assert lg.latest() is before
    assert watched.signed[-1] is before
    # Readers keep serving the signed tree meanwhile.
    verify_inclusion(1, 2, leaf_hash(b"b"), lg.inclusion_proof(1, 2), before.checkpoint.root)
    faulty.disk_full = False
    time.sleep(0.25)
    assert lg.add([b"x0"]) == [Appended(2, leaf_hash(b"x0"), False)]
    assert lg.health()
    _verify_whole_log(lg, watched.signed)


def test_recovery_checks_the_store_as_open_does(watched: Watched) -> None:
    """After a failure the store is checked like at open: one that disagrees with a signed head stays refused."""
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a", b"b"])
    faulty.inner.record_signed(2, b"\x01" * 32)  # as if the store changed under a signed tree head
    faulty.plan = ["before"]
    with pytest.raises(UnavailableError):
        lg.add([b"c"], timeout=5)
    time.sleep(0.25)
    with pytest.raises(UnavailableError):
        lg.add([b"c"], timeout=5)
    assert not lg.health()
    assert watched.signed[-1].checkpoint.size == 2


def test_read_failure_during_integration_fails_the_batch_only(watched: Watched) -> None:
    lg, faulty = watched.log, watched.faulty
    faulty.fail_reads = True
    with pytest.raises(UnavailableError):
        lg.add([b"a"])
    faulty.fail_reads = False
    time.sleep(0.25)
    assert lg.add([b"a"]) == [Appended(0, leaf_hash(b"a"), False)]
    _verify_whole_log(lg, watched.signed)


# ------------------------------------------------------------------ corrupted stores are refused at open


def _filled_memory(n: int) -> MemoryStorage:
    storage = MemoryStorage()
    lg = Log.open(storage, SIGNER, CONFIG)
    lg.add([f"c {i}".encode() for i in range(n)])
    lg.close()
    return storage.reopen()


def test_tampered_partial_group_is_detected_at_open() -> None:
    storage = _filled_memory(601)
    key = (1, 1)  # level 1 holds 300 nodes: group 1 is partial (44 hashes)
    value = storage._c.groups[key]
    storage._c.groups[key] = value[:-1] + bytes([value[-1] ^ 1])
    with pytest.raises(CorruptStorageError, match="children"):
        Log.open(storage, SIGNER, CONFIG)
    storage._c.groups[key] = value[:-32]
    with pytest.raises(CorruptStorageError, match="needs"):
        Log.open(storage, SIGNER, CONFIG)


def test_tampered_edge_node_or_entry_is_detected_at_open() -> None:
    storage = _filled_memory(601)
    storage._c.entries[600] = b"forged"  # the odd last leaf is an edge node
    with pytest.raises(CorruptStorageError, match="disagrees"):
        Log.open(storage, SIGNER, CONFIG)
    storage = _filled_memory(601)
    head = storage._c.head
    assert head is not None
    storage._c.head = TreeHead(head.size, bytes(32), head.edge)
    with pytest.raises(CorruptStorageError, match="root"):
        Log.open(storage, SIGNER, CONFIG)


def test_store_with_data_but_no_tree_head_is_refused() -> None:
    storage = _filled_memory(3)
    storage._c.head = None
    with pytest.raises(CorruptStorageError, match="no tree head"):
        Log.open(storage, SIGNER, CONFIG)


def test_entry_beyond_the_tree_head_is_detected_at_open() -> None:
    storage = _filled_memory(10)
    storage._c.entries.append(b"stray")
    with pytest.raises(CorruptStorageError, match="beyond"):
        Log.open(storage, SIGNER, CONFIG)


def test_store_behind_its_signed_checkpoint_is_refused() -> None:
    """A rollback: the saved note signs more entries (or another root) than the store holds."""
    big = _filled_memory(10)
    note = big.read_meta("checkpoint")
    assert note is not None
    small = _filled_memory(6)
    small.write_meta("checkpoint", note)
    with pytest.raises(CorruptStorageError, match="lost"):
        Log.open(small, SIGNER, CONFIG)
    other = MemoryStorage()
    lg = Log.open(other, SIGNER, CONFIG)
    lg.add([f"other {i}".encode() for i in range(10)])
    lg.close()
    other = other.reopen()
    other.write_meta("checkpoint", note)
    with pytest.raises(CorruptStorageError, match="disagrees"):
        Log.open(other, SIGNER, CONFIG)


def _group_key(level: int, group: int) -> bytes:
    return bytes((level,)) + group.to_bytes(8, "big")


def test_rocks_missing_or_forged_hashes_are_detected(tmp_path: Path) -> None:
    path = tmp_path / "db"
    lg = Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    lg.add([f"r {i}".encode() for i in range(1100)])  # level 1: groups 0, 1 full, group 2 partial
    lg.close()
    storage = RocksStorage.open(path)
    partial = storage._cf["hashes"][_group_key(1, 2)]
    assert isinstance(partial, bytes)
    del storage._cf["hashes"][_group_key(1, 2)]
    storage.close()
    with pytest.raises(CorruptStorageError, match="missing"):
        Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    storage = RocksStorage.open(path)
    storage._cf["hashes"][_group_key(1, 2)] = b"\x00" * len(partial)
    storage.close()
    with pytest.raises(CorruptStorageError, match="children"):
        Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    # A full group is only read when a proof needs it: the reader refuses rather than guess.
    storage = RocksStorage.open(path)
    storage._cf["hashes"][_group_key(1, 2)] = partial
    del storage._cf["hashes"][_group_key(1, 0)]
    storage.close()
    lg = Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    try:
        verify_inclusion(1099, 1100, leaf_hash(b"r 1099"), lg.inclusion_proof(1099, 1100), lg.root_at(1100))
        with pytest.raises(CorruptStorageError):
            lg.inclusion_proof(0, 1100)
    finally:
        lg.close()


# ------------------------------------------------------------------ crashes and random fault schedules


def test_saved_but_refused_batch_survives_a_crash_consistently(opener: Opener) -> None:
    """The writer was told "failed" but the batch landed; after a crash it is logged, signed, consistent.

    What a crash can add: entries whose writer saw an error. They sit at the next indices and
    a resubmission finds them (duplicate, same index). Nothing signed before is contradicted.
    """
    w = Watched(opener)
    lg, faulty = w.log, w.faulty
    lg.add([b"a"])
    faulty.plan = ["after", "before"]  # the batch lands; the barrier that would make it durable fails
    with pytest.raises(UnavailableError):
        lg.add([b"b"])
    faulty.disk_full = True  # keep the sequencer from recovering before the "crash"
    before = lg.latest()
    assert before.checkpoint.size == 1
    lg.close(drain=False)
    after = Log.open(opener(), SIGNER, CONFIG)
    try:
        assert after.size == 2 and after.entries(1, 2) == [b"b"]
        cp = after.latest().checkpoint
        verify_consistency(1, 2, after.consistency_proof(1, 2), before.checkpoint.root, cp.root)
        assert after.add([b"b"]) == [Appended(1, leaf_hash(b"b"), True)]
        _verify_whole_log(after, [before, after.latest()])
    finally:
        after.close()


def _healthy_within(lg: Log, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not lg.health():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_failed_writes_recover_in_place_while_readers_read(opener: Opener) -> None:
    """Each failed commit latches the store (RocksDB: reopened in place by the log's recovery, no restart).

    Readers proving and fetching entries of the signed tree the whole time never see an
    error or a wrong answer, and the log ends whole and consistent with every checkpoint.
    """
    w = Watched(opener)
    lg, faulty = w.log, w.faulty
    known: dict[int, bytes] = {}
    for r in lg.add([f"r{i}".encode() for i in range(300)]):
        assert isinstance(r, Appended)
        known[r.index] = f"r{r.index}".encode()
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0, 0, 0]

    def reader(k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            try:
                cp = lg.latest().checkpoint
                i = rng.randrange(cp.size)
                entry = lg.entries(i, i + 1)[0]
                assert known.get(i, entry) == entry, f"entry {i} read wrong"
                verify_inclusion(i, cp.size, leaf_hash(entry), lg.inclusion_proof(i, cp.size), cp.root)
                if cp.size > 1:
                    old = rng.randrange(1, cp.size)
                    verify_consistency(old, cp.size, lg.consistency_proof(old, cp.size), lg.root_at(old), cp.root)
            except BaseException as e:
                errors.append(e)
                return
            reads[k] += 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for step in range(8):
            faulty.plan = ["after" if step % 2 else "before"]
            with pytest.raises(UnavailableError):
                lg.add([f"failed {step}".encode()], timeout=10)
            assert _healthy_within(lg, 5.0), "the log did not recover in place"
            batch = [f"s{step}.{j}".encode() for j in range(50)]
            for entry, r in zip(batch, lg.add(batch, timeout=10), strict=True):
                assert isinstance(r, Appended) and not r.duplicate
                known[r.index] = entry
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert min(reads) > 0
    if isinstance(faulty.inner, RocksStorage):
        assert faulty.reopens >= 8
    assert lg.size == 300 + 4 + 8 * 50  # the four "after" batches landed and were signed
    _verify_whole_log(lg, w.signed)
    _reopen_and_verify(w, opener)


def test_rocks_reopen_does_not_disturb_concurrent_reads(tmp_path: Path) -> None:
    """RocksStorage.recover closes and reopens its instance under threads reading every kind of value.

    Each read either uses the old instance or, if the reopen closed it under the read,
    waits for the new one and reads again: never an error, never a wrong value.
    """
    s = RocksStorage.open(tmp_path / "db")
    entries = [f"entry {i}".encode() * 3 for i in range(500)]
    hashes = [leaf_hash(e) for e in entries]
    groups = {(1, 0): b"\x01" * 32 * 256, (1, 1): b"\x02" * 32 * 6}
    aux = [(b"p" + i.to_bytes(4, "big"), f"v{i}".encode()) for i in range(300)]
    head = TreeHead(500, b"\x07" * 32, tuple(bytes([i]) * 32 for i in range((500).bit_count())))
    s.commit(Batch(0, entries, hashes, groups, head, aux=aux))
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0] * 4

    def reader(k: int) -> None:
        rng = random.Random(k)
        while not stop.is_set():
            try:
                i = rng.randrange(500)
                assert s.read_entries_at([i, 10_000]) == [entries[i], None]
                assert s.read_entries(i, min(i + 3, 500)) == entries[i : i + 3]
                assert s.read_hash_groups([(1, 1), (1, 9)]) == [groups[(1, 1)], None]
                assert i in s.leaf_candidates([hashes[i]])[0]
                assert s.read_aux([aux[i % 300][0]]) == [aux[i % 300][1]]
                assert s.scan_aux(b"p", limit=50) == aux[:50]
                assert s.scan_aux(b"") == aux
                got = s.read_head()
                assert got is not None and got.size >= 500
            except BaseException as e:
                errors.append(e)
                return
            reads[k] += 1

    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(10):
            before = s._live.h
            s._live.write_error = "injected: a write failed"  # as RocksStorage._write records a real one
            s.recover()
            assert s._live.h is not before and s._live.write_error is None
            size = 500 + n
            edge = tuple(bytes([i]) * 32 for i in range((size + 1).bit_count()))
            s.commit(Batch(size, [f"more {n}".encode()], [leaf_hash(f"more {n}".encode())], {},
                           TreeHead(size + 1, b"\x08" * 32, edge)))
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join()
        s.close()
    assert not errors, errors
    assert min(reads) > 0


def test_rocks_reopen_waits_for_a_scan_holding_the_old_instance(tmp_path: Path) -> None:
    """An iterator keeps its RocksDB instance (and its LOCK) alive after close: the reopen waits for it."""
    s = RocksStorage.open(tmp_path / "db")
    try:
        s.commit(Batch(0, (), (), {}, TreeHead(0, EMPTY_ROOT), aux=[(b"a", b"1"), (b"b", b"2")]))
        holder = [s._cf["aux"].items()]
        next(holder[0])
        s._live.write_error = "injected: a write failed"
        threading.Timer(0.2, holder.clear).start()
        s.recover()
        assert s._live.write_error is None
        assert s.scan_aux(b"") == [(b"a", b"1"), (b"b", b"2")]
    finally:
        s.close()


def test_rocks_store_that_cannot_reopen_for_writes_serves_reads_and_retries(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reopen that cannot open for writes (the disk still full) falls back to read-only, then backs off."""
    from ledger.storage import rocks_reopen

    s = RocksStorage.open(tmp_path / "db")
    try:
        s.commit(Batch(0, [b"a"], [leaf_hash(b"a")], {}, TreeHead(1, leaf_hash(b"a"), (leaf_hash(b"a"),))))
        real_open = rocks_reopen.open_db

        def full_disk_open(path: Path, cache: object, *, read_only: bool = False) -> object:
            if not read_only:
                raise OSError("IO error: No space left on device")
            return real_open(path, cache, read_only=True)  # type: ignore[arg-type]

        monkeypatch.setattr(rocks_reopen, "open_db", full_disk_open)
        s._live.write_error = "injected: a write failed"
        with pytest.raises(StorageError, match="read-only instance"):
            s.recover()
        assert s.read_entries(0, 1) == [b"a"] and s.read_head() is not None  # reads go on
        with pytest.raises(StorageError, match="read-only"):
            s.commit(Batch(1, [b"b"], [leaf_hash(b"b")], {}, TreeHead(2, bytes(32), (bytes(32),))))
        with pytest.raises(StorageError, match="reopened again in"):
            s.recover()  # too soon: an open replays the whole write-ahead log
        monkeypatch.setattr(rocks_reopen, "open_db", real_open)
        time.sleep(0.3)
        s.recover()
        s.commit(Batch(1, [b"b"], [leaf_hash(b"b")], {}, TreeHead(2, bytes(32), (bytes(32),))))
        assert s.read_entries(0, 2) == [b"a", b"b"]
    finally:
        s.close()


@pytest.mark.parametrize("seed", [1])
def test_random_fault_schedule_keeps_every_promise(opener: Opener, seed: int) -> None:
    """Commits fail at random (unsaved, saved, full disk) under a stream of adds and resubmissions.

    Every checkpoint is durable when signed (``Watched``), every acknowledged entry keeps its
    index (also when resubmitted, and after a reopen), and the final log verifies end to end.
    """
    rng = random.Random(seed)
    w = Watched(opener)
    index_of: dict[bytes, int] = {}
    failures = 0
    try:
        for step in range(30):
            w.faulty.plan = [rng.choice([None, None, "before", "after"]) for _ in range(rng.randint(0, 2))]
            w.faulty.disk_full = rng.random() < 0.1
            batch = [f"s{seed}.{step}.{j}".encode() for j in range(rng.randint(1, 6))]
            if index_of and rng.random() < 0.3:
                batch.append(rng.choice(list(index_of)))
            try:
                results = w.log.add(batch, timeout=10)
            except UnavailableError:
                failures += 1
                results = None
            w.faulty.disk_full = False
            w.faulty.plan = []
            if results is not None:
                for entry, r in zip(batch, results, strict=True):
                    assert isinstance(r, Appended)
                    assert index_of.setdefault(entry, r.index) == r.index, f"{entry!r} moved"
            assert _healthy_within(w.log, 3.0), "the log did not recover once storage worked again"
        assert failures >= 3, "the schedule injected too few faults to mean anything"
        entries = w.log.entries(0, w.log.size)
        for entry, index in index_of.items():
            assert entries[index] == entry
        _verify_whole_log(w.log, w.signed)
        _reopen_and_verify(w, opener)
    finally:
        w.log.close()


def test_unrecordable_signed_head_is_never_signed_then_recovers(watched: Watched) -> None:
    """If the signed-head record cannot be synced, nothing is signed; writers are told; it recovers."""
    lg, faulty = watched.log, watched.faulty
    lg.add([b"a"])
    before = lg.latest()
    faulty.fail_record = True
    with pytest.raises(UnavailableError):
        lg.add([b"b"], timeout=5)
    assert lg.latest() is before and watched.signed[-1] is before
    faulty.fail_record = False
    time.sleep(0.25)
    assert lg.add([b"b"]) == [Appended(1, leaf_hash(b"b"), True)]  # it landed: same index, a duplicate
    assert lg.latest().checkpoint.size == 2
    _verify_whole_log(lg, watched.signed)


def test_store_behind_its_recorded_signed_head_is_refused() -> None:
    """Damage inside the write-ahead log can roll the batches back; the separate record catches it."""
    small = _filled_memory(6)
    small.record_signed(9, b"\x01" * 32)
    with pytest.raises(CorruptStorageError, match="signed entries are lost"):
        Log.open(small, SIGNER, CONFIG)
    other = _filled_memory(6)
    other.record_signed(4, b"\x02" * 32)
    with pytest.raises(CorruptStorageError, match="disagrees with the signed tree head of size 4"):
        Log.open(other, SIGNER, CONFIG)
