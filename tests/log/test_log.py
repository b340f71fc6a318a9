"""The log: indices, dedup, proofs at every size against the naive tree, checkpoints, restart, hooks, keys."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.checkpoint import SignedCheckpoint, open_checkpoint
from client.core.merkle import (
    EMPTY_ROOT,
    assemble,
    inclusion_plan,
    leaf_hash,
    plan_nodes,
    verify_consistency,
    verify_inclusion,
)
from client.core.note import Signer
from client.errors import (
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProvenanceError,
    ResourceExhaustedError,
    UnavailableError,
)
from ledger.app.keys import load_or_create_signer
from ledger.errors import KeyFileError, WaitTimeoutError
from ledger.log import Appended, AuxView, Log, LogConfig
from ledger.log.tree import GROUP_WIDTH, GroupCache, TreeReader
from ledger.storage import Storage
from ledger.storage.memory import MemoryStorage
from ledger.storage.rocks import RocksStorage
from tests import naive_merkle as naive

ORIGIN = "example.com/test-log"
SIGNER = Signer.from_seed(ORIGIN, b"\x07" * 32)
CONFIG = LogConfig(ORIGIN)


def _entries(n: int, tag: str = "e") -> list[bytes]:
    return [f"{tag} {i}".encode() for i in range(n)]


@pytest.fixture
def mem_log() -> Iterator[Log]:
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG)
    yield lg
    lg.close()


def _add_all(lg: Log, entries: list[bytes], chunk: int) -> list[Appended]:
    out: list[Appended] = []
    for i in range(0, len(entries), chunk):
        for r in lg.add(entries[i : i + chunk], timeout=10):
            assert isinstance(r, Appended)
            out.append(r)
    return out


def test_fresh_log_signs_the_empty_tree(mem_log: Log) -> None:
    latest = mem_log.latest()
    assert mem_log.size == 0
    assert open_checkpoint(latest.note, SIGNER.verifier()) == latest.checkpoint
    assert latest.checkpoint.root == EMPTY_ROOT
    assert mem_log.root_at(0) == EMPTY_ROOT


def test_indices_are_sequential_and_checkpoint_verifies(mem_log: Log) -> None:
    entries = _entries(10)
    got = _add_all(mem_log, entries, 3)
    assert [a.index for a in got] == list(range(10))
    assert [a.leaf_hash for a in got] == [leaf_hash(e) for e in entries]
    assert not any(a.duplicate for a in got)
    cp = open_checkpoint(mem_log.latest().note, SIGNER.verifier(), ORIGIN)
    assert (cp.size, cp.root) == (10, naive.mth([naive.leaf(e) for e in entries]))
    assert mem_log.entries(0, 10) == entries
    assert mem_log.index_of(leaf_hash(b"e 7")) == 7
    assert mem_log.leaf_hash(7) == leaf_hash(b"e 7")


def test_dedup_within_a_batch_and_across_batches(mem_log: Log) -> None:
    first = mem_log.add([b"a", b"b", b"a", b"c", b"b"])
    assert [(r.index, r.duplicate) for r in first if isinstance(r, Appended)] == [
        (0, False), (1, False), (0, True), (2, False), (1, True)]
    second = mem_log.add([b"c", b"d", b"a"])
    assert [(r.index, r.duplicate) for r in second if isinstance(r, Appended)] == [(2, True), (3, False), (0, True)]
    assert mem_log.size == 4
    assert mem_log.entries(0, 4) == [b"a", b"b", b"c", b"d"]


def test_only_duplicates_sign_nothing_new(mem_log: Log) -> None:
    mem_log.add([b"a"])
    before = mem_log.latest()
    assert mem_log.add([b"a", b"a"]) == [Appended(0, leaf_hash(b"a"), True)] * 2
    assert mem_log.latest() is before


def _check_every_proof(lg: Log, entries: list[bytes]) -> None:
    leaves = [naive.leaf(e) for e in entries]
    for n in range(1, len(entries) + 1):
        root = lg.root_at(n)
        assert root == naive.mth(leaves[:n])
        proofs = lg.inclusion_proofs(range(n), n)
        for i in range(n):
            assert proofs[i] == naive.path(i, leaves[:n])
            verify_inclusion(i, n, leaves[i], proofs[i], root)
        for m in range(1, n + 1):
            proof = lg.consistency_proof(m, n)
            assert proof == naive.proof(m, leaves[:n])
            verify_consistency(m, n, proof, lg.root_at(m), root)


def test_proofs_at_every_size_match_the_naive_tree(mem_log: Log) -> None:
    entries = _entries(37)
    _add_all(mem_log, entries, 5)
    _check_every_proof(mem_log, entries)


def test_proofs_across_full_and_partial_hash_groups(tmp_path: Path) -> None:
    """Past 2 * GROUP_WIDTH**1 leaves level-1 groups fill up; proofs must read full, cached and partial ones."""
    lg = Log.open(RocksStorage.open(tmp_path / "db"), SIGNER, LogConfig(ORIGIN, cache_bytes=3 * 8192))
    n = 4 * GROUP_WIDTH + 77
    entries = _entries(n)
    _add_all(lg, entries, 250)
    leaves = [naive.leaf(e) for e in entries]
    for size in (1, 511, 512, 513, 1024, 1025, n - 1, n):
        root = lg.root_at(size)
        assert root == naive.mth(leaves[:size])
        indices = sorted({0, 1, 255, 256, 511, size // 2, size - 2, size - 1} & set(range(size)))
        for i, proof in zip(indices, lg.inclusion_proofs(indices, size), strict=True):
            assert proof == naive.path(i, leaves[:size])
        for m in (1, 3, 256, 600, size):
            if m <= size:
                verify_consistency(m, size, lg.consistency_proof(m, size), lg.root_at(m), root)
    lg.close()


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=12))
def test_any_batching_gives_the_naive_root(sizes: list[int]) -> None:
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG)
    try:
        entries: list[bytes] = []
        for k, size in enumerate(sizes):
            batch = _entries(size, f"b{k}")
            lg.add(batch)
            entries += batch
            assert lg.latest().checkpoint.root == naive.mth([naive.leaf(e) for e in entries])
    finally:
        lg.close()


@given(st.data())
def test_fast_inclusion_reads_the_nodes_inclusion_plan_names(data: st.DataObject) -> None:
    """The reader's plan-free inclusion path gives exactly client.core.merkle's plan, assembled."""
    storage = MemoryStorage()
    lg = Log.open(storage, SIGNER, CONFIG)
    try:
        n = data.draw(st.integers(min_value=1, max_value=700))
        _add_all(lg, _entries(n), 4096)
        size = data.draw(st.integers(min_value=1, max_value=n))
        indices = data.draw(st.lists(st.integers(min_value=0, max_value=size - 1), min_size=1, max_size=20))
        reader = TreeReader(storage, 1 << 20)
        reader.publish(lg._sequencer.edge.partial_groups(), {})
        for i, proof in zip(indices, lg.inclusion_proofs(indices, size), strict=True):
            plan = inclusion_plan(i, size)
            assert proof == assemble(plan, reader.node_hashes(plan_nodes(plan)))
    finally:
        lg.close()


def test_restart_continues_the_same_log(tmp_path: Path) -> None:
    path = tmp_path / "db"
    lg = Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    _add_all(lg, _entries(300), 64)
    note = lg.latest().note
    lg.close()
    lg = Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    assert lg.latest().note == note  # the saved (and deterministic) signature
    assert lg.add([b"e 5"]) == [Appended(5, leaf_hash(b"e 5"), True)]
    more = _add_all(lg, _entries(20, "more"), 7)
    assert [a.index for a in more] == list(range(300, 320))
    entries = _entries(300) + _entries(20, "more")
    assert lg.latest().checkpoint.root == naive.mth([naive.leaf(e) for e in entries])
    lg.close()


def test_restart_of_memory_store_without_saved_note_resigns_identically() -> None:
    storage = MemoryStorage()
    lg = Log.open(storage, SIGNER, CONFIG)
    _add_all(lg, _entries(9), 4)
    note = lg.latest().note
    lg.close()
    again = storage.reopen()
    again.write_meta("checkpoint", b"")  # as if the unsynced note write was lost
    lg = Log.open(again, SIGNER, CONFIG)
    assert lg.latest().note == note
    lg.close()


def test_open_refuses_another_origin() -> None:
    storage = MemoryStorage()
    Log.open(storage, SIGNER, CONFIG).close()
    other = Signer.from_seed("example.com/other", b"\x01" * 32)
    with pytest.raises(InvalidInputError, match="holds log"):
        Log.open(storage.reopen(), other, LogConfig("example.com/other"))
    with pytest.raises(InvalidInputError, match="named"):
        Log.open(storage.reopen(), other, CONFIG)


@pytest.mark.parametrize("entries", [[], [b"x" * 101], [b"ok", "text"], [b"x"] * 11])
def test_submit_validates_at_once(entries: list[bytes]) -> None:
    lg = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN, max_entry_bytes=100, max_batch_entries=10))
    try:
        with pytest.raises(InvalidInputError):
            lg.submit(entries)
    finally:
        lg.close()


class Gate:
    """A hook that holds the sequencer until released (to fill the queue)."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def admit(self, entry: bytes, view: AuxView) -> list[tuple[bytes, bytes]]:
        self.entered.set()
        assert self.release.wait(10)
        return []


def test_full_queue_pushes_back() -> None:
    gate = Gate()
    lg = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN, max_pending_entries=5, max_batch_entries=5), gate)
    try:
        busy = lg.submit([b"first"])
        assert gate.entered.wait(5)
        queued = lg.submit([b"a", b"b", b"c", b"d", b"e"])
        with pytest.raises(ResourceExhaustedError):
            lg.submit([b"f"])
        gate.release.set()
        assert [r.index for r in busy.result(5) if isinstance(r, Appended)] == [0]
        assert [r.index for r in queued.result(5) if isinstance(r, Appended)] == [1, 2, 3, 4, 5]
    finally:
        gate.release.set()
        lg.close()


class Registry:
    """A toy personality: refuses entries starting with b"bad"; indexes names; refuses a name taken."""

    def __init__(self) -> None:
        self.offered: dict[bytes, int] = {}

    def admit(self, entry: bytes, view: AuxView) -> list[tuple[bytes, bytes]]:
        self.offered[entry] = view.index
        if entry.startswith(b"bad"):
            raise InvalidInputError("bad entry")
        name = b"name:" + entry.split(b"=")[0]
        if view.get(name) is not None:
            raise InvalidInputError("name taken")
        return [(name, entry)]


def test_hook_refuses_entries_alone_and_indexes_in_the_same_batch() -> None:
    registry = Registry()
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG, registry)
    try:
        got = lg.add([b"x=1", b"bad", b"y=1", b"x=2", b"y=1"])
        assert isinstance(got[0], Appended) and got[0].index == 0
        assert isinstance(got[1], InvalidInputError)
        assert isinstance(got[2], Appended) and got[2].index == 1
        assert isinstance(got[3], InvalidInputError)  # saw x=1's write within the batch
        assert got[4] == Appended(1, leaf_hash(b"y=1"), True)
        assert lg.get_aux(b"name:x") == b"x=1"
        assert lg.get_aux(b"name:bad") is None
        later = lg.add([b"x=3", b"z=1"])
        assert isinstance(later[0], InvalidInputError)
        assert later[1] == Appended(2, leaf_hash(b"z=1"), False)
        assert lg.entries(0, 3) == [b"x=1", b"y=1", b"z=1"]
        assert registry.offered == {b"x=1": 0, b"bad": 1, b"y=1": 1, b"x=2": 2, b"x=3": 2, b"z=1": 2}
    finally:
        lg.close()


def test_reader_argument_checks(mem_log: Log) -> None:
    _add_all(mem_log, _entries(5), 5)
    cases: list[tuple[Callable[[], object], type[ProvenanceError]]] = [
        (lambda: mem_log.entries(3, 3), InvalidInputError),
        (lambda: mem_log.entries(-1, 2), InvalidInputError),
        (lambda: mem_log.entries(0, 6), OutOfRangeError),
        (lambda: mem_log.inclusion_proof(0, 0), InvalidInputError),
        (lambda: mem_log.inclusion_proof(-1, 3), InvalidInputError),
        (lambda: mem_log.inclusion_proof(3, 3), OutOfRangeError),
        (lambda: mem_log.inclusion_proof(0, 6), OutOfRangeError),
        (lambda: mem_log.consistency_proof(0, 3), InvalidInputError),
        (lambda: mem_log.consistency_proof(4, 3), InvalidInputError),
        (lambda: mem_log.consistency_proof(2, 6), OutOfRangeError),
        (lambda: mem_log.root_at(6), OutOfRangeError),
        (lambda: mem_log.root_at(-1), InvalidInputError),
        (lambda: mem_log.index_of(b"short"), InvalidInputError),
        (lambda: mem_log.index_of(leaf_hash(b"absent")), NotFoundError),
        (lambda: mem_log.leaf_hash(5), OutOfRangeError),
    ]
    for call, err in cases:
        with pytest.raises(err):
            call()
    small = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN, max_range=2))
    with pytest.raises(InvalidInputError):
        small.entries(0, 3)
    small.close()


def test_wait_for_size_and_listeners(mem_log: Log) -> None:
    seen: list[SignedCheckpoint] = []
    unsubscribe = mem_log.add_listener(seen.append)
    fut = mem_log.wait_for_size(3, timeout=10)
    unbounded = mem_log.wait_for_size(4)
    mem_log.add([b"a", b"b"])
    assert not fut.done()
    mem_log.add([b"c"])
    assert fut.result(5).checkpoint.size == 3
    assert mem_log.wait_for_size(2, timeout=0).result(0).checkpoint.size == 3
    with pytest.raises(WaitTimeoutError):
        mem_log.wait_for_size(10, timeout=0.05).result(5)
    unsubscribe()
    mem_log.add([b"d"])
    assert unbounded.result(5).checkpoint.size == 4
    assert [s.checkpoint.size for s in seen] == [2, 3]


def test_concurrent_writers_share_commits(mem_log: Log) -> None:
    checkpoints: list[int] = []
    mem_log.add_listener(lambda s: checkpoints.append(s.checkpoint.size))
    results: list[int] = []

    def writer(k: int) -> None:
        for j in range(20):
            r = mem_log.add([f"w{k} {j}".encode()])[0]
            assert isinstance(r, Appended)
            results.append(r.index)
            assert mem_log.wait_for_size(r.index + 1, 10).result(10).checkpoint.size > r.index

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == list(range(200))
    assert checkpoints == sorted(checkpoints) and checkpoints[-1] == 200


def test_close_without_drain_fails_queued_and_later_submits() -> None:
    gate = Gate()
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG, gate)
    busy = lg.submit([b"first"])
    assert gate.entered.wait(5)
    queued = lg.submit([b"second"])
    waiting = lg.wait_for_size(5, timeout=30)
    closer = threading.Thread(target=lg.close, kwargs={"drain": False})
    closer.start()
    with pytest.raises(UnavailableError):
        queued.result(5)
    gate.release.set()
    closer.join(5)
    assert [r.index for r in busy.result(5) if isinstance(r, Appended)] == [0]
    with pytest.raises(UnavailableError):
        waiting.result(5)
    with pytest.raises(UnavailableError):
        lg.submit([b"third"])
    assert not lg.health()


def test_close_drains_queued_writes(tmp_path: Path) -> None:
    lg = Log.open(RocksStorage.open(tmp_path / "db"), SIGNER, CONFIG)
    futures = [lg.submit([f"d {i}".encode()]) for i in range(50)]
    assert lg.health()
    lg.close()
    assert all(isinstance(f.result(0)[0], Appended) for f in futures)
    lg = Log.open(RocksStorage.open(tmp_path / "db"), SIGNER, CONFIG)
    assert lg.size == 50
    lg.close()


# ------------------------------------------------------------------ the signing-key file


def test_key_is_created_private_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    signer = load_or_create_signer(path, ORIGIN)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith(f"PRIVATE+KEY+{ORIGIN}+")
    again = load_or_create_signer(path, ORIGIN)
    assert again.verifier() == signer.verifier()
    assert [p.name for p in tmp_path.iterdir()] == ["log.key"]


def test_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_signer(path, ORIGIN)
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        load_or_create_signer(path, ORIGIN)
    assert "PRIVATE" not in str(info.value)


def test_key_for_another_origin_or_garbage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.key"
    load_or_create_signer(path, ORIGIN)
    with pytest.raises(KeyFileError, match="named"):
        load_or_create_signer(path, "example.com/other")
    fd = os.open(tmp_path / "junk.key", os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"PRIVATE+KEY+x+00000000+AAAA\n")
    os.close(fd)
    with pytest.raises(KeyFileError, match="not a signer key"):
        load_or_create_signer(tmp_path / "junk.key", ORIGIN)


def test_log_with_key_file_end_to_end(tmp_path: Path) -> None:
    signer = load_or_create_signer(tmp_path / "log.key", ORIGIN)
    storage: Storage = RocksStorage.open(tmp_path / "db")
    lg = Log.open(storage, signer, CONFIG)
    lg.add([b"hello"])
    lg.close()
    signer = load_or_create_signer(tmp_path / "log.key", ORIGIN)
    lg = Log.open(RocksStorage.open(tmp_path / "db"), signer, CONFIG)
    assert open_checkpoint(lg.latest().note, signer.verifier()).size == 1
    lg.close()


def test_refusals_are_provenance_errors(mem_log: Log) -> None:
    assert issubclass(KeyFileError, ProvenanceError)
    assert issubclass(WaitTimeoutError, UnavailableError)


def test_group_cache_is_bounded_by_bytes_and_least_recently_used() -> None:
    cache = GroupCache(3 * 100)
    for g in range(3):
        cache.put((1, g), bytes(100))
    assert cache.get((1, 0)) is not None  # refresh: (1, 1) is now the least recently used
    cache.put((1, 3), bytes(100))
    assert cache.get((1, 1)) is None
    assert all(cache.get((1, g)) is not None for g in (0, 2, 3))
    assert cache.size_bytes == 300
    cache.put((1, 4), bytes(1000))  # larger than the whole budget: not kept
    assert cache.get((1, 4)) is None and cache.size_bytes == 300


def test_key_creation_never_logs_key_material(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    signer = load_or_create_signer(tmp_path / "log.key", ORIGIN)
    lg = Log.open(MemoryStorage(), signer, CONFIG)
    lg.add([b"x"])
    lg.close()
    secret = signer.private_text().rsplit("+", 1)[1]
    assert caplog.records
    for record in caplog.records:
        assert secret not in record.getMessage() and "PRIVATE" not in str(record.__dict__)


def test_a_request_cancelled_while_queued_is_never_logged() -> None:
    gate = Gate()
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG, gate)
    try:
        busy = lg.submit([b"first"])
        assert gate.entered.wait(5)
        dropped = lg.submit([b"dropped"])
        kept = lg.submit([b"kept"])
        assert dropped.cancel()
        gate.release.set()
        assert busy.result(5)[0] == Appended(0, leaf_hash(b"first"), False)
        assert kept.result(5)[0] == Appended(1, leaf_hash(b"kept"), False)
        assert not busy.cancel()  # running or done futures cannot be cancelled
        assert lg.entries(0, 2) == [b"first", b"kept"]
        assert lg.health()
    finally:
        gate.release.set()
        lg.close()


class Buggy:
    def admit(self, entry: bytes, view: AuxView) -> list[tuple[bytes, bytes]]:
        if entry == b"boom":
            raise RuntimeError("hook bug")
        return []


def test_a_hook_bug_refuses_that_entry_alone() -> None:
    lg = Log.open(MemoryStorage(), SIGNER, CONFIG, Buggy())
    try:
        got = lg.add([b"a", b"boom", b"b"])
        assert got[0] == Appended(0, leaf_hash(b"a"), False)
        assert isinstance(got[1], UnavailableError)
        assert got[2] == Appended(1, leaf_hash(b"b"), False)
        assert lg.health()
    finally:
        lg.close()


@pytest.mark.slow
def test_disk_overhead_per_300_byte_entry_stays_under_100_bytes(tmp_path: Path) -> None:
    """The storage budget: after compaction, a 300-byte entry costs under 100 bytes beyond itself."""
    path = tmp_path / "db"
    lg = Log.open(RocksStorage.open(path), SIGNER, CONFIG)
    n, chunk = 60_000, 4000
    for start in range(0, n, chunk):
        lg.add([i.to_bytes(8, "big") + os.urandom(292) for i in range(start, start + chunk)])
    lg.close()
    storage = RocksStorage.open(path)
    storage.compact()
    storage.close()
    data = sum(f.stat().st_size for f in path.iterdir() if not f.name.startswith(("LOG", "OPTIONS")))
    overhead = data / n - 300
    print(f"disk overhead: {overhead:.1f} bytes per 300-byte entry")
    assert overhead < 100, f"{overhead:.1f} bytes of overhead per entry"
