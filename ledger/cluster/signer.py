"""The signer role: at most one process integrates sequenced entries into the tree and signs, at a time.

Every frontend runs a :class:`SignerRole` thread. On its own autocommit connection it tries
``pg_try_advisory_lock`` every ``takeover_seconds``; the lock is session-level, so it frees
the moment the holder's database session ends (its process died, or the network to it did,
once the keepalives give up). The process that gets it:

1. takes the lease: in one transaction increments ``signer_lease.epoch`` (its fencing token)
   and reads the stored tree head, which it checks as :class:`~ledger.log.Log` does at open
   (:func:`~ledger.log.edge.load_edge`) and against the newest signed checkpoint row (never
   behind it, same root at its size). It resumes from the *stored* head, so it can only sign
   heads that extend every checkpoint handed out before;
2. then, per step: reads the entries sequenced beyond its head (committed rows), extends the
   right edge (:meth:`~ledger.log.edge.RightEdge.extend`), signs the new head (C2SP
   checkpoint) and commits, in ONE transaction that first checks the lease still holds its
   epoch (``SELECT ... FOR UPDATE``): the hash groups, the head (which must still be at the
   size it extended), the signed-head record and the checkpoint row. Only after COMMIT is the
   checkpoint handed to this frontend's readers; other frontends read it from the row.

A signer that lost the lock cannot commit: its session is gone, and a new signer's epoch
fails its lease check anyway (e.g. behind a proxy that kept the old session). A signed note
whose transaction did not commit is never handed out. Any failure ends the role (the
connection closes, the lock frees) and the thread goes back to trying for it; the next
holder, perhaps this one, starts again from what is stored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from hashlib import sha256

import psycopg

from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import EMPTY_ROOT
from client.core.note import Signer
from client.errors import FormatError, InvalidInputError, ProvenanceError, VerificationError
from ledger.cluster import sql
from ledger.cluster.config import ClusterConfig
from ledger.errors import CorruptStorageError, KeyFileError
from ledger.log.edge import RightEdge, load_edge
from ledger.log.integrity import stored_root
from ledger.log.publisher import sign_head
from ledger.log.tree import TreeReader
from ledger.storage import Storage, TreeHead

log = logging.getLogger(__name__)

_PRUNE_EVERY = 100  # signed steps between prunes of old checkpoint rows


class _UpTo(sql.ConnReads):
    """Reads with entries at or beyond ``size`` hidden (sequenced, not yet in the tree): for :func:`load_edge`."""

    def __init__(self, conn: sql.Conn, size: int) -> None:
        super().__init__(conn)
        self._size = size

    def read_entries_at(self, indices: Sequence[int]) -> list[bytes | None]:
        got = iter(super().read_entries_at([i for i in indices if i < self._size]))
        return [next(got) if i < self._size else None for i in indices]


class SignerRole:
    """See the module docstring.

    ``storage`` serves the readers (another connection); ``on_role`` is called with this
    process's tree reader when it becomes the signer and with None when it stops being it;
    ``offer`` hands each committed checkpoint to this frontend; ``wake`` is set when entries
    were sequenced (by this process or, through the watch, another).
    """

    def __init__(self, config: ClusterConfig, origin: str, signer: Signer, storage: Storage, cache_bytes: int,
                 on_role: Callable[[TreeReader | None], None], offer: Callable[[SignedCheckpoint], None],
                 wake: threading.Event) -> None:
        self._config = config
        self._origin = origin
        self._signer = signer
        self._storage = storage
        self._cache_bytes = cache_bytes
        self._on_role = on_role
        self._offer = offer
        self.wake = wake
        self._stop = threading.Event()
        self._conn: sql.Conn | None = None
        self.leading = False
        self.epoch = 0
        self.fatal: ProvenanceError | None = None  # a store this process must not sign (wrong origin, damage)
        self._thread = threading.Thread(target=self._run, name="cluster-signer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(30)

    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._conn = sql.connect(self._config.dsn, autocommit=True, application="provenance-signer",
                                                idle_ends_session=True)
                while not self._stop.is_set() and not sql.try_signer_lock(conn):
                    self._stop.wait(self._config.takeover_seconds)
                if not self._stop.is_set():
                    self._lead(conn)
            except (InvalidInputError, CorruptStorageError) as err:
                self.fatal = err
                log.error("this frontend will not sign: %s", err)
                return
            except (psycopg.Error, ProvenanceError) as err:
                if not self._stop.is_set():
                    log.warning("signer role ended: %s: %s", type(err).__name__, err)
            finally:
                if self.leading:
                    self.leading = False
                    self._on_role(None)
                if self._conn is not None:
                    self._conn.close()  # ends the session: the lock frees
                    self._conn = None
            self._stop.wait(self._config.takeover_seconds)

    def _take_over(self, conn: sql.Conn) -> tuple[RightEdge, TreeReader]:
        """Step 1 of the module docstring: the lease, the stored head checked; the first checkpoint of a fresh log."""
        reads = sql.ConnReads(conn)
        with conn.transaction():
            self.epoch = sql.take_lease(conn, self._config.holder)
            head = reads.read_head()
            if head is None:
                if reads.read_meta("origin") is not None or reads.read_entries_at([0])[0] is not None:
                    raise CorruptStorageError("the database holds log data but no tree head")
                head = TreeHead(0, EMPTY_ROOT, ())
                sql.init_log(conn, self._origin, head)
            elif reads.read_meta("origin") != self._origin.encode():
                raise InvalidInputError(f"the database holds log {reads.read_meta('origin')!r}, not {self._origin!r}")
            reader = TreeReader(self._storage, self._cache_bytes)
            edge = load_edge(_UpTo(conn, head.size), head, reader)
            row = sql.latest_checkpoint(conn)
            if row is not None:
                size, root, note = row
                try:  # never sign with a key other than the one the log's checkpoints are signed by
                    SignedCheckpoint.open(note, self._signer.verifier(), self._origin)
                except (VerificationError, FormatError) as err:
                    raise KeyFileError(f"the log's checkpoint of size {size} is not signed by this frontend's "
                                       f"key: {err}") from None
                if size > head.size:
                    raise CorruptStorageError(f"a checkpoint of size {size} was signed but the stored tree head "
                                              f"is at {head.size}: signed entries are lost")
                if stored_root(head, reader, size) != root:
                    raise CorruptStorageError(f"the stored tree disagrees with the signed checkpoint of size {size}")
            if row is None or row[0] < head.size:  # a log copied in, or a fresh one: sign what is stored
                signed = sign_head(self._signer, self._origin, head)
                sql.check_lease(conn, self.epoch)
                sql.commit_signed(conn, self.epoch, head.size, head, {}, signed.note)
        log.warning("took over as the signer", extra={"tree_size": head.size, "epoch": self.epoch})
        return edge, reader

    def _lead(self, conn: sql.Conn) -> None:
        edge, reader = self._take_over(conn)
        self.leading = True
        self._on_role(reader)
        reads = sql.ConnReads(conn)
        steps = 0
        while not self._stop.is_set():
            self.wake.clear()
            end = min(sql.next_index(conn), edge.size + self._config.max_integrate_entries)
            if end <= edge.size:
                self.wake.wait(self._config.integrate_idle_seconds)
                continue
            entries = reads.read_entries(edge.size, end)
            ext = edge.extend([sha256(b"\x00" + e).digest() for e in entries])
            head = ext.edge.head()
            signed = sign_head(self._signer, self._origin, head)
            steps += 1
            # Published before the commit: the row is visible to this process's watch as soon as it commits,
            # and the watch proves it with this reader. The hashes are those of committed entries, the same
            # whoever computes them; readers only ask about sizes up to a checkpoint already served.
            reader.publish(ext.edge.partial_groups(), ext.full)
            with conn.transaction():
                sql.check_lease(conn, self.epoch)
                sql.commit_signed(conn, self.epoch, edge.size, head, ext.writes, signed.note,
                                  self._config.checkpoint_history if steps % _PRUNE_EVERY == 0 else None)
            edge = ext.edge
            self._offer(signed)
            log.debug("signed", extra={"tree_size": head.size, "epoch": self.epoch})
