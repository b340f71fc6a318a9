"""``provenance db copy`` and ``provenance db migrate``: moving a log between stores, and the PostgreSQL schema.

A copy reads the source store (a stopped server's: RocksDB opened read-only, or a
PostgreSQL database) and writes an empty destination through the same
:class:`~ledger.storage.Storage` protocol the log uses, in batches:

1. the entries, ``batch_entries`` at a time. The tree is rebuilt from them as the log
   builds it (a :class:`~client.core.merkle.CompactRange`; level >= 1 node hashes grouped
   as :mod:`ledger.log.tree` stores them), and each batch commits those groups with the
   tree head of its size, so an interrupted copy leaves a valid shorter log. Every group
   rebuilt is compared with the source's stored group (a prefix of it while the group is
   still filling, equal once it is full or the copy is at the source's size), and at each
   batch's size the rebuilt root is compared with the source's root from its stored hashes;
2. the aux index (the registry's names, identities, lineage edges, postings), in key
   order, in pages of ``aux_page`` pairs, each an entry-less batch;
3. the meta values (origin, latest checkpoint note) and the signed-head record.

"The copy's root equals the original's at every size" holds in this sense: the root at
size n is the fold of the hashes of ``range_nodes(0, n)``, each of which is a leaf hash
(of an entry, compared as bytes) or a node in a stored group; every stored group of the
destination is byte-equal to the source's and consistent with the entries. Afterwards,
both stores' roots are computed from their own stored hashes at a sample of sizes
(1, 2, 3, every power of two and the one after it, 16 random sizes, every batch boundary,
the full size) and compared, and the destination's tree head must equal the source's.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from client.core.merkle import CompactRange, leaf_hash
from client.errors import InvalidInputError
from ledger.app.config import ORIGIN_FILE, STORE_DIR
from ledger.errors import CorruptStorageError
from ledger.log.tree import GROUP_BITS, GROUP_WIDTH, TreeReader
from ledger.storage import Batch, HashGroupKey, Storage, TreeHead
from ledger.storage.open import StoreSpec, open_storage

log = logging.getLogger(__name__)

META_NAMES = ("origin", "checkpoint")
"""The named values a log keeps (``ledger/log/integrity.py``, ``ledger/log/publisher.py``)."""
HASH = 32


@dataclass(frozen=True)
class CopyReport:
    """What a copy did and checked."""

    size: int  # entries copied (the source's tree size)
    root: bytes  # the tree root at that size, equal in both stores
    batches: int  # entry batches committed
    groups: int  # hash groups rebuilt, compared with the source's and written
    aux: int  # aux pairs copied
    sizes_checked: tuple[int, ...]  # tree sizes whose roots were compared between the stores
    signed_size: int | None  # the signed-head record copied (None: the source had none)

    def as_json(self) -> dict[str, object]:
        return {"tree_size": self.size, "root": self.root.hex(), "batches": self.batches, "hash_groups": self.groups,
                "aux_pairs": self.aux, "sizes_checked": len(self.sizes_checked), "signed_size": self.signed_size}


def store_spec(text: str) -> StoreSpec:
    """A ``--from``/``--to`` argument as a spec: a data directory means its ``log.rocksdb``.

    A directory holding ``log.rocksdb/`` or the data directory's ``origin`` file is a data
    directory; any other directory (or a ``rocksdb:`` spec) is the RocksDB store itself.
    """
    spec = StoreSpec.parse(text)
    if spec.path is not None and ((spec.path / STORE_DIR).is_dir() or (spec.path / ORIGIN_FILE).is_file()):
        return StoreSpec.directory(spec.path / STORE_DIR)
    return spec


def _open(spec: StoreSpec, *, source: bool) -> Storage:
    if spec.scheme == "memory":
        raise InvalidInputError("memory: holds nothing to copy from or to; name a directory or postgresql://...")
    if source and spec.path is not None:
        from ledger.storage.rocks import RocksStorage

        if not spec.path.is_dir():
            raise InvalidInputError(f"{spec.path} holds no store")
        return RocksStorage.open(spec.path, read_only=True)
    return open_storage(spec)


def copy(from_text: str, to_text: str, *, batch_entries: int = 1000, aux_page: int = 10_000,
         progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy the log of store ``from_text`` into the empty store ``to_text`` (see the module docstring)."""
    src_spec, dst_spec = store_spec(from_text), store_spec(to_text)
    if src_spec == dst_spec:
        raise InvalidInputError("--from and --to name the same store")
    src = _open(src_spec, source=True)
    try:
        dst = _open(dst_spec, source=False)
        try:
            report = copy_log(src, dst, batch_entries=batch_entries, aux_page=aux_page, progress=progress)
        finally:
            dst.close()
    finally:
        src.close()
    log.info("log copied", extra={"source": src_spec.describe(), "destination": dst_spec.describe(),
                                  "tree_size": report.size})
    return report


def copy_log(src: Storage, dst: Storage, *, batch_entries: int = 1000, aux_page: int = 10_000,
             progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy everything of ``src`` into ``dst``, which must be empty; checks as the module docstring says.

    Raises :class:`InvalidInputError` (source without a log, destination not empty, bad
    sizes) and :class:`CorruptStorageError` when the source's stored tree disagrees with
    its entries or the copy disagrees with the source.
    """
    if batch_entries < 1 or aux_page < 1:
        raise InvalidInputError("batch_entries and aux_page must be >= 1")
    head = src.read_head()
    if head is None or src.read_meta("origin") is None:
        raise InvalidInputError("the source store holds no log")
    if src.read_entries_at([head.size])[0] is not None:  # their index rows are in aux: copied, they would dangle
        raise InvalidInputError(f"the source holds entries beyond its tree head of {head.size}: sequenced by a "
                                "cluster frontend, acknowledged, not yet signed. Start one frontend until it "
                                "serves a checkpoint covering them, stop it, then copy")
    if dst.read_head() is not None or dst.read_meta("origin") is not None or dst.read_entries_at([0]) != [None]:
        raise InvalidInputError("the destination store is not empty: copy only into a new store")
    src_tree = TreeReader(src, 8 << 20)
    tree = _Rebuild()
    boundaries: list[int] = []
    if head.size == 0:
        dst.commit(Batch(0, (), (), {}, TreeHead(0, head.root)))
    for start in range(0, head.size, batch_entries):
        end = min(start + batch_entries, head.size)
        entries = src.read_entries(start, end)
        leaves = [leaf_hash(e) for e in entries]
        groups = tree.extend(leaves)
        _check_groups(src, groups, complete=end == head.size)
        root = tree.range.root()
        if root != src_tree.root_at(end):
            raise CorruptStorageError(f"the source's stored tree disagrees with its entries at size {end}")
        dst.commit(Batch(start, entries, leaves, groups, TreeHead(end, root, tuple(tree.range.hashes))))
        boundaries.append(end)
        if progress is not None:
            progress(end, head.size)
    final = dst.read_head()
    if final != head:
        raise CorruptStorageError(f"the copy's tree head {final} differs from the source's {head}")
    aux = 0
    page: list[tuple[bytes, bytes]] = []
    for pair in _scan_all(src, b"", aux_page):
        page.append(pair)
        if len(page) == aux_page:
            dst.commit(Batch(head.size, (), (), {}, head, aux=page))
            aux, page = aux + len(page), []
    meta = {name: value for name in META_NAMES if (value := src.read_meta(name)) is not None}
    dst.commit(Batch(head.size, (), (), {}, head, aux=page, meta=meta))
    aux += len(page)
    signed = src.read_signed()
    if signed is not None:
        dst.record_signed(*signed)
    sizes = _sample_sizes(head.size, boundaries)
    dst_tree = TreeReader(dst, 8 << 20)
    for n in sizes:
        if src_tree.root_at(n) != dst_tree.root_at(n):
            raise CorruptStorageError(f"the copy's root at size {n} differs from the source's")
    return CopyReport(head.size, head.root, len(boundaries), tree.groups_built, aux, sizes,
                      None if signed is None else signed[0])


class _Rebuild:
    """The tree rebuilt from leaf hashes: the compact range and the partial group of each level >= 1."""

    def __init__(self) -> None:
        self.range = CompactRange()
        self._open: dict[int, tuple[int, bytearray]] = {}  # level -> (group, its hashes so far)
        self.groups_built = 0

    def extend(self, leaves: list[bytes]) -> dict[HashGroupKey, bytes]:
        """Append ``leaves``; the groups they changed, as the log would store them."""
        out: dict[HashGroupKey, bytearray] = {}
        for leaf in leaves:
            for node, h in self.range.append(leaf)[1:]:  # [0] is the leaf itself: level 0 is not stored
                group = node.index >> GROUP_BITS
                cur = self._open.get(node.level)
                if cur is None or cur[0] != group:  # nodes come in index order: a new group starts empty
                    cur = (group, bytearray())
                    self._open[node.level] = cur
                    self.groups_built += 1
                cur[1].extend(h)
                out[(node.level, group)] = cur[1]
        return {key: bytes(value) for key, value in out.items()}


def _check_groups(src: Storage, groups: dict[HashGroupKey, bytes], *, complete: bool) -> None:
    """Each rebuilt group against the source's: a prefix of it while filling, equal when full or at the end."""
    keys = list(groups)
    for key, stored in zip(keys, src.read_hash_groups(keys), strict=True):
        mine = groups[key]
        full = len(mine) == GROUP_WIDTH * HASH
        if stored is None or not (stored == mine if full or complete else stored.startswith(mine)):
            raise CorruptStorageError(f"the source's stored hash group {key} disagrees with its entries")


def _scan_all(src: Storage, prefix: bytes, page: int) -> Iterator[tuple[bytes, bytes]]:
    """Every aux pair under ``prefix`` in key order, never holding more than about ``page`` pairs in memory.

    A prefix whose scan fills a page is split: its own key (if stored), then each one-byte longer prefix.
    """
    got = src.scan_aux(prefix, page)
    if len(got) < page:
        yield from got
        return
    if prefix:
        exact = src.read_aux([prefix])[0]
        if exact is not None:
            yield prefix, exact
    for b in range(256):
        yield from _scan_all(src, prefix + bytes((b,)), page)


def _sample_sizes(size: int, boundaries: list[int]) -> tuple[int, ...]:
    if size == 0:
        return ()
    sizes = {1, 2, 3, size, *boundaries}
    power = 1
    while power <= size:
        sizes.update((power, power + 1))
        power <<= 1
    rng = random.Random(size)
    sizes.update(rng.randint(1, size) for _ in range(16))
    return tuple(sorted(n for n in sizes if 1 <= n <= size))


def migrate(store_text: str) -> tuple[list[str], int]:
    """Bring the PostgreSQL store ``store_text`` to the current schema; (migrations applied, version now)."""
    spec = StoreSpec.parse(store_text)
    if spec.dsn is None:
        raise InvalidInputError(f"{spec.describe()} has no schema to migrate: only postgresql:// stores do")
    from ledger.storage import postgres_schema as schema
    from ledger.storage.postgres_conn import check_dsn, connect, redact

    check_dsn(spec.dsn)
    conn = connect(spec.dsn, redact(spec.dsn))
    try:
        applied = schema.migrate(conn)
    finally:
        conn.close()
    for step in applied:
        log.info("schema migrated", extra={"store": redact(spec.dsn), "version": step.version, "migration": step.name})
    return [f"{step.version:04d}_{step.name}" for step in applied], schema.CURRENT_VERSION
