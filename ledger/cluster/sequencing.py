"""A frontend's write side: queued entries get their indices in ONE transaction on the coordinator row.

:class:`ClusterSequencer` is the log's :class:`~ledger.log.sequencer.Sequencer` (the same queue,
pushback, cancellation, group commit and health) with another integration step. Per group of
queued requests, one transaction on this frontend's own connection:

1. ``SELECT ... FROM coordinator FOR UPDATE`` (:func:`~ledger.cluster.sql.lock_coordinator`):
   from here until COMMIT no other frontend sequences, so admissions are serialised across
   the cluster;
2. the dedup check (:func:`~ledger.log.integrity.confirm`) and the integration hook's admission
   read the database *inside* that transaction (:class:`~ledger.cluster.sql.ConnReads`): every
   entry and aux value committed before, by any frontend, and nothing half-done;
3. entries, dedup keys and the hook's aux writes at ``[next_index, next_index + n)``, the
   coordinator moved on, NOTIFY for the signer; COMMIT.

When COMMIT returns the entries are durable in PostgreSQL: nothing acknowledged can be lost by
killing any frontend. The writers' futures then resolve once this frontend serves a signed
checkpoint covering them (whichever process signs it), so a writer hears back, as from
:class:`~ledger.log.Log`, only with entries it can get proofs for. A failed transaction answers
UNAVAILABLE (whether or not a lost COMMIT landed, a retry is safe: duplicates keep their index)
and the base class's loop retries the connection while the database is down, no restart needed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from hashlib import sha256

import psycopg

from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import CompactRange
from client.errors import UnavailableError
from ledger.cluster import sql
from ledger.log.config import LogConfig
from ledger.log.edge import RightEdge
from ledger.log.hook import Appended, AuxView, IntegrationHook, Result
from ledger.log.integrity import confirm
from ledger.log.publisher import CheckpointPublisher, settle
from ledger.log.sequencer import Sequencer, _Request
from ledger.log.tree import TreeReader
from ledger.storage import Storage

log = logging.getLogger(__name__)

_PING_AFTER_SECONDS = 1.0  # an idle sequencing connection is checked before its next transaction


class ClusterSequencer(Sequencer):
    """See the module docstring. ``wake`` is called after each commit (pokes this process's signer, if it is)."""

    def __init__(self, dsn: str, storage: Storage, config: LogConfig, hook: IntegrationHook | None,
                 reader: TreeReader, publisher: CheckpointPublisher, wake: Callable[[], None]) -> None:
        # The base class's edge is unused here: the tree is the signer's business.
        super().__init__(storage, config, hook, reader, RightEdge(CompactRange(0, []), {}), publisher)
        self._dsn = dsn
        self._wake = wake
        self._conn: sql.Conn | None = None
        self._used = 0.0  # when the connection last ran a transaction (time.monotonic)

    def _connection(self) -> sql.Conn:
        """The sequencing connection; one idle for a while is pinged first (the server may have restarted)."""
        conn = self._conn
        if conn is not None and not conn.closed and time.monotonic() - self._used > _PING_AFTER_SECONDS:
            try:
                conn.execute("SELECT 1")
                conn.rollback()
            except psycopg.Error:
                conn.close()
        if self._conn is None or self._conn.closed:
            self._conn = sql.connect(self._dsn, application="provenance-sequencer")
        self._used = time.monotonic()
        return self._conn

    def _integrate(self, reqs: list[_Request]) -> None:
        entries = [e for req in reqs for e in req.entries]
        hashes = [sha256(b"\x00" + e).digest() for e in entries]
        unique = list(dict.fromkeys(hashes))
        conn = self._connection()
        with conn.transaction():
            start = sql.lock_coordinator(conn)
            reads = sql.ConnReads(conn)  # the reads confirm and AuxView make, in this transaction
            existing = confirm(reads, unique, limit=None)
            view: AuxView | None = None
            if self._hook is None and not existing and len(unique) == len(entries):
                new_entries, new_hashes = entries, hashes
                results: list[Result] = [Appended(i, h, False) for i, h in enumerate(hashes, start)]
            else:
                view = AuxView(reads)
                new_entries, new_hashes, results = self._admit(entries, hashes, existing, start, view)
            if new_entries:
                sql.append_sequenced(conn, start, new_entries, new_hashes,
                                     [*view.pending.items(), *view.blind] if view else ())
        # Committed: durable in PostgreSQL, whoever signs it.
        if new_entries:
            self._wake()
        log.debug("sequenced batch", extra={"index": start, "batch_entries": len(entries),
                                            "new_entries": len(new_entries)})
        pos = 0
        for req in reqs:
            n = len(req.entries)
            mine = results[pos : pos + n]
            pos += n
            req_need = max((r.index for r in mine if isinstance(r, Appended)), default=-1) + 1
            if req_need == 0 or self._publisher.latest().checkpoint.size >= req_need:
                settle(req.future, mine)
            else:
                self._publisher.wait_for_size(req_need).add_done_callback(_resolver(req.future, mine))

    def _recover(self) -> None:
        """After a failed transaction: a fresh connection that answers, or stay broken (retried by the loop)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            conn = self._connection()
            conn.execute("SELECT 1")
            conn.rollback()
            self._broken = False
            log.warning("sequencer reconnected to PostgreSQL")
        except Exception:
            self._broken = True
            log.warning("PostgreSQL still unavailable to the sequencer")

    def stop(self, drain: bool) -> None:
        super().stop(drain)
        if self._conn is not None:
            self._conn.close()


def _resolver(fut: Future[list[Result]], results: list[Result]) -> Callable[[Future[SignedCheckpoint]], None]:
    """A callback that resolves ``fut`` with ``results`` once the checkpoint covering them is served."""

    def done(signed: Future[SignedCheckpoint]) -> None:
        exc = signed.exception()
        if exc is None:
            settle(fut, results)
        else:
            err = UnavailableError("the entries are committed (at their indices) but this frontend closed "
                                   "before serving a checkpoint covering them; resubmit to learn their indices")
            err.__cause__ = exc
            settle(fut, err)

    return done
