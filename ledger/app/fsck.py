"""``provenance fsck --data DIR``: check a stopped server's data directory offline, and restore a lost signed head.

:func:`fsck` opens the store read-only (it creates and writes nothing) and reports, as
findings, everything that would make the log unservable or wrong:

* the store missing while the data dir shows its log has signed (``ledger/app/continuity.py``);
* RocksDB checksums: every key and value of every column family read back verified
  (``ledger/storage/scrub.py``, unthrottled);
* every entry's RFC 9162 leaf hash folded into the tree: each stored node hash of level
  >= 1 must equal the one computed from the entries, the root and right edge the stored
  tree head's, and the dedup index must list each entry's index;
* the stored tree against the recorded signed head (``SIGNED-HEAD``: present, not larger,
  same root at its size) and against the saved checkpoint note (it verifies with one of
  the log's keys, ``DATA/log-keys``, and matches the stored tree at its size).

:func:`restore_signed_head` is the operator's way back from a lost signed-head record
(docs/operations.md): from a checkpoint this log handed out, kept outside the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.merkle import HASH_SIZE, CompactRange, leaf_hash
from client.core.note import Verifier
from client.errors import InvalidInputError, ProvenanceError, VerificationError
from ledger.app import continuity
from ledger.app.config import KEY_HISTORY_FILE, ORIGIN_FILE, PUBLIC_KEY_FILE, STORE_DIR
from ledger.errors import CorruptStorageError
from ledger.log.integrity import check_recorded_head, stored_root
from ledger.log.tree import GROUP_BITS, GROUP_WIDTH, TreeReader
from ledger.storage import TreeHead
from ledger.storage.rocks import RocksStorage
from ledger.storage.scrub import ScrubPace

CHUNK = 4096  # entries read at a time
MAX_TREE_FINDINGS = 20  # node mismatches reported before the tree walk stops


@dataclass
class FsckReport:
    """What :func:`fsck` found: ``findings`` empty means clean."""

    findings: list[str] = field(default_factory=list)
    tree_size: int | None = None
    signed_size: int | None = None
    entries_checked: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings


def log_verifiers(data_dir: Path) -> list[Verifier]:
    """Every verifier key the data dir's log has signed with (``log-keys``, else ``log.pub``)."""
    texts: list[str] = []
    for name in (KEY_HISTORY_FILE, PUBLIC_KEY_FILE):
        path = data_dir / name
        if path.exists():
            texts += [t for t in path.read_text(encoding="utf-8").split() if t not in texts]
    return [Verifier.from_text(t) for t in texts]


def _open_note(note: bytes, verifiers: list[Verifier], origin: str) -> Checkpoint:
    """``note`` opened as a checkpoint of ``origin`` signed by one of ``verifiers``; raises VerificationError."""
    last: ProvenanceError = VerificationError("the data dir names no verifier key (log.pub, log-keys)")
    for verifier in verifiers:
        try:
            return open_checkpoint(note, verifier, origin)
        except ProvenanceError as e:
            last = e
    raise last


def _stored_hash(storage: RocksStorage, cache: dict[int, tuple[int, bytes | None]], level: int, index: int) -> bytes:
    """The stored hash of node ``(level, index)`` (``level >= 1``); the current group of each level is cached."""
    group = index >> GROUP_BITS
    got = cache.get(level)
    if got is None or got[0] != group:
        got = (group, storage.read_hash_groups([(level, group)])[0])
        cache[level] = got
    raw = got[1] or b""
    offset = (index & (GROUP_WIDTH - 1)) * HASH_SIZE
    return raw[offset : offset + HASH_SIZE]


def _tree_findings(storage: RocksStorage, head: TreeHead, report: FsckReport) -> Iterator[str]:
    """Fold every entry into the tree and compare each stored node, the dedup index, the root and the edge."""
    compact = CompactRange()
    groups: dict[int, tuple[int, bytes | None]] = {}
    bad = 0
    for start in range(0, head.size, CHUNK):
        entries = storage.read_entries(start, min(start + CHUNK, head.size))
        leaves = [leaf_hash(e) for e in entries]
        for i, (leaf, found) in enumerate(zip(leaves, storage.leaf_candidates(leaves), strict=True), start):
            if i not in found:
                yield f"the dedup index does not list entry {i}"
                bad += 1
            for node, h in compact.append(leaf):
                if node.level and _stored_hash(storage, groups, node.level, node.index) != h:
                    yield f"stored hash of node ({node.level}, {node.index}) disagrees with the entries below it"
                    bad += 1
            if bad >= MAX_TREE_FINDINGS:
                yield f"(tree walk stopped after {bad} findings, at entry {i})"
                return
        report.entries_checked = start + len(entries)
    if compact.root() != head.root:
        yield f"the entries fold to a root other than the stored tree head's (size {head.size})"
    elif tuple(compact.hashes) != head.edge:
        yield f"the stored tree head's right edge disagrees with the entries (size {head.size})"


def _check_store(storage: RocksStorage, data_dir: Path, report: FsckReport) -> None:
    report.findings += [f"RocksDB checksum failed in {f}" for f in storage.scrub(ScrubPace(bytes_per_second=0))]
    head = storage.read_head()
    if head is None:
        report.findings.append("the store holds no tree head")
        return
    report.tree_size = head.size
    origin_path = data_dir / ORIGIN_FILE
    origin = origin_path.read_text(encoding="utf-8").strip() if origin_path.exists() else None
    stored_origin = storage.read_meta("origin")
    if origin is not None and stored_origin != origin.encode():
        report.findings.append(f"the store holds log {stored_origin!r}, the data dir names {origin!r}")
    try:
        report.findings += list(_tree_findings(storage, head, report))
    except CorruptStorageError as e:
        report.findings.append(f"reading the tree failed: {e}")
        return
    reader = TreeReader(storage, 0)
    try:
        report.signed_size = check_recorded_head(storage, head, reader)[0]
    except CorruptStorageError as e:
        report.findings.append(str(e))
    note = storage.read_meta("checkpoint")
    if note is not None and origin is not None:
        try:
            cp = _open_note(note, log_verifiers(data_dir), origin)
        except ProvenanceError as e:
            report.findings.append(f"the saved checkpoint note does not verify with the log's keys: {e}")
            return
        if cp.size > head.size or cp.root != stored_root(head, reader, cp.size):
            report.findings.append(f"the stored tree disagrees with the saved checkpoint of size {cp.size}")


def fsck(data_dir: Path) -> FsckReport:
    """Check ``data_dir`` offline (see the module docstring); never writes. Requires the server stopped."""
    report = FsckReport()
    store = data_dir / STORE_DIR
    evidence = continuity.signed_before(data_dir)
    if not store.exists() or (store.is_dir() and not any(store.iterdir())):
        if evidence:
            report.findings.append(f"the store {store} is missing or empty, but the log has signed before "
                                   f"({', '.join(evidence)} present)")
        else:
            raise InvalidInputError(f"{data_dir} holds no log (no store, no key files)")
        return report
    try:
        storage = RocksStorage.open(store, read_only=True)
    except CorruptStorageError as e:
        report.findings.append(f"the store cannot be opened: {e}")
        return report
    try:
        _check_store(storage, data_dir, report)
    finally:
        storage.close()
    return report


def restore_signed_head(data_dir: Path, note: bytes) -> tuple[int, int]:
    """Re-create a lost signed-head record from ``note``, a checkpoint this log handed out; returns (size, tree size).

    ``note`` must verify with one of the log's keys (``DATA/log-keys``) for its origin, and
    the stored tree must hold it (at least its size, the same root at its size). The record
    written is the larger of ``note`` and the store's own saved note, so the server then
    signs nothing smaller than either; it cannot know of a larger checkpoint handed out
    that neither names: the operator must pass the newest one known (from a witness, a
    monitor, an auditor's state). Refuses (:class:`InvalidInputError`) while a record is
    intact. Takes the store's lock: the server must be stopped.
    """
    origin_path = data_dir / ORIGIN_FILE
    if not origin_path.exists():
        raise InvalidInputError(f"{data_dir} has no {ORIGIN_FILE} file: not a log's data dir")
    origin = origin_path.read_text(encoding="utf-8").strip()
    verifiers = log_verifiers(data_dir)
    cp = _open_note(note, verifiers, origin)
    storage = RocksStorage.open(data_dir / STORE_DIR)
    try:
        head = storage.read_head()
        if head is None:
            raise CorruptStorageError("the store holds no tree head: restore the store from a backup first")
        if storage.read_signed() is not None:
            raise InvalidInputError("the signed-head record is intact; nothing to restore")
        saved = storage.read_meta("checkpoint")
        if saved is not None:
            try:
                own = _open_note(saved, verifiers, origin)
            except ProvenanceError:
                own = cp
            cp = own if own.size > cp.size else cp
        reader = TreeReader(storage, 0)
        if cp.size > head.size:
            raise CorruptStorageError(f"the store holds {head.size} entries but a checkpoint of {cp.size} was "
                                      "signed: signed entries are lost; restore the store from a backup")
        if cp.root != stored_root(head, reader, cp.size):
            raise CorruptStorageError(f"the stored tree disagrees with the checkpoint of size {cp.size}")
        storage.record_signed(cp.size, cp.root)
        return cp.size, head.size
    finally:
        storage.close()
