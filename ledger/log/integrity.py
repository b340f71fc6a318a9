"""The checks that decide whether a store may be served: at open, and again after a failed commit.

A store is served only if its tree head folds to its root and matches the stored
hashes (:func:`ledger.log.edge.load_edge`), it holds this log's origin, and no tree
head that was ever signed -- the synced record of :meth:`Storage.record_signed`, the
saved checkpoint note, or (after a failure) the checkpoint in memory -- is larger than
the stored tree or has a root other than the stored tree's at its size. Any other
state raises :class:`CorruptStorageError`: the log never serves from it.

:func:`open_checked` runs at :meth:`ledger.log.Log.open`; :func:`reopen_checked` runs
after :meth:`Storage.recover` following a failed commit, with a fresh
:class:`TreeReader` (nothing cached before the failure is trusted). Both run the same
tree checks; the second adds "the store did not go back from what was signed".
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from hashlib import sha256

from client.core.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from client.core.merkle import EMPTY_ROOT
from client.core.note import Verifier
from client.errors import FormatError, InvalidInputError, VerificationError
from ledger.errors import CorruptStorageError
from ledger.log.edge import RightEdge, load_edge
from ledger.log.tree import TreeReader
from ledger.storage import Batch, Storage, TreeHead

log = logging.getLogger(__name__)


def confirm(storage: Storage, leaf_hashes: Sequence[bytes], limit: int | None) -> dict[bytes, int]:
    """The smallest logged index (below ``limit``, if given) of each leaf hash that is in the log.

    :meth:`Storage.leaf_candidates` may name prefix collisions; each candidate's entry is
    read back and hashed (RFC 9162 2.1.1 leaf hash) before it counts.
    """
    candidates = storage.leaf_candidates(leaf_hashes)
    pairs = [(h, i) for h, found in zip(leaf_hashes, candidates, strict=True) for i in found
             if limit is None or i < limit]
    if not pairs:
        return {}
    out: dict[bytes, int] = {}
    stored = storage.read_entries_at([i for _, i in pairs])
    for (h, i), entry in zip(pairs, stored, strict=True):
        if entry is not None and sha256(b"\x00" + entry).digest() == h and (h not in out or i < out[h]):
            out[h] = i
    return out


def stored_root(head: TreeHead, reader: TreeReader, size: int) -> bytes:
    """Root of the stored tree of ``size`` leaves. Requires ``0 <= size <= head.size``, ``head`` checked."""
    return head.root if size == head.size else (EMPTY_ROOT if size == 0 else reader.root_at(size))


LOST_SIGNED_HEAD = ("the store holds a tree head but no record of the last signed tree head (the signed-head "
                    "file is missing, empty or zeroed); without it a store rolled back behind a checkpoint it "
                    "signed cannot be told from an intact one. Restore the record from the newest checkpoint "
                    "this log handed out: provenance fsck --data DIR --restore-signed-head NOTE "
                    "(docs/operations.md, 'A lost signed-head record')")


def check_recorded_head(storage: Storage, head: TreeHead, reader: TreeReader) -> tuple[int, bytes]:
    """The recorded signed tree head (:meth:`Storage.record_signed`), checked against the stored tree.

    A store with a tree head has one (it is recorded before the first head is committed, see
    :func:`open_checked`): none (the record was lost or zeroed), one for a larger tree, or one
    for a different root at a size the store holds, means the store lost or changed signed
    data, or lost the means to tell: :class:`CorruptStorageError`.
    """
    recorded = storage.read_signed()
    if recorded is None:
        raise CorruptStorageError(LOST_SIGNED_HEAD)
    size, root = recorded
    if size > head.size:
        raise CorruptStorageError(f"the store holds {head.size} entries but a tree head of {size} was "
                                  "signed: signed entries are lost (damaged write-ahead log?)")
    if root != stored_root(head, reader, size):
        raise CorruptStorageError(f"the stored tree disagrees with the signed tree head of size {size}")
    return recorded


def open_checked(storage: Storage, origin: str, cache_bytes: int) -> tuple[TreeHead, TreeReader, RightEdge]:
    """Open-time checks: the stored head (initialising an empty store), its origin and its tree.

    Raises :class:`CorruptStorageError` for an inconsistent store and
    :class:`InvalidInputError` for a store of another origin. An empty store's first head
    (size 0) is recorded as signed *before* it is committed, so a store with a tree head
    always has a recorded signed head (a crash between the two leaves an empty store).
    """
    head = storage.read_head()
    if head is None:
        if storage.read_meta("origin") is not None or storage.read_entries_at([0])[0] is not None:
            raise CorruptStorageError("the store holds log data but no tree head")
        recorded = storage.read_signed()
        if recorded is not None and recorded[0] > 0:
            raise CorruptStorageError(f"the store holds no tree head but a tree head of {recorded[0]} was "
                                      "signed: the store's data is lost")
        head = TreeHead(0, EMPTY_ROOT, ())
        if recorded is None:
            storage.record_signed(0, EMPTY_ROOT)
        storage.commit(Batch(0, (), (), {}, head, meta={"origin": origin.encode()}))
    stored_origin = storage.read_meta("origin")
    if stored_origin != origin.encode():
        raise InvalidInputError(f"the store holds log {stored_origin!r}, not {origin!r}")
    reader = TreeReader(storage, cache_bytes)
    edge = load_edge(storage, head, reader)
    return head, reader, edge


def restore_checkpoint(storage: Storage, verifier: Verifier, origin: str, head: TreeHead,
                       reader: TreeReader) -> SignedCheckpoint | None:
    """The saved checkpoint note if it signs ``head`` (serve it again), else None (sign ``head`` afresh).

    First records ``head`` as the head about to be signed or re-served
    (:meth:`Storage.record_signed`) unless it is recorded already. A recorded signed tree
    head (see :func:`check_recorded_head`) or a saved note for a larger tree, or for a
    different root at a size the store holds, means the store lost or changed signed
    data: :class:`CorruptStorageError`. A note that does not verify is ignored (logged).
    """
    recorded = check_recorded_head(storage, head, reader)
    if recorded[0] != head.size:
        storage.record_signed(head.size, head.root)
    note = storage.read_meta("checkpoint")
    if note is None:
        return None
    try:
        cp = open_checkpoint(note, verifier, origin)
    except (VerificationError, FormatError):
        log.warning("saved checkpoint is unreadable or not signed by this key; re-signing",
                    extra={"origin": origin})
        return None
    if cp.size > head.size:
        raise CorruptStorageError(f"the store holds {head.size} entries but a checkpoint of {cp.size} "
                                  "was signed: signed entries are lost")
    if cp.root != stored_root(head, reader, cp.size):
        raise CorruptStorageError(f"the stored tree disagrees with the signed checkpoint of size {cp.size}")
    return SignedCheckpoint(cp, note) if cp.size == head.size else None


def reopen_checked(storage: Storage, origin: str, cache_bytes: int,
                   signed: Checkpoint) -> tuple[TreeHead, TreeReader, RightEdge]:
    """After :meth:`Storage.recover`: re-read the tree head and check the store as an open does.

    Against the stored tree (:func:`~ledger.log.edge.load_edge`), the recorded signed
    head, the origin and ``signed`` (the latest checkpoint handed out): the store may be
    ahead of it (the failed batch landed) but never behind it or different at its size.
    Raises :class:`CorruptStorageError` (or the storage's error while it still fails).
    """
    head = storage.read_head()
    if head is None:
        raise CorruptStorageError("the store lost its tree head")
    if storage.read_meta("origin") != origin.encode():
        raise CorruptStorageError("the store no longer holds this log's origin")
    if head.size < signed.size:
        raise CorruptStorageError(f"the store went back from signed size {signed.size} to {head.size}")
    reader = TreeReader(storage, cache_bytes)
    edge = load_edge(storage, head, reader)
    check_recorded_head(storage, head, reader)
    if stored_root(head, reader, signed.size) != signed.root:
        raise CorruptStorageError(f"the stored tree disagrees with the signed checkpoint of size {signed.size}")
    return head, reader, edge
