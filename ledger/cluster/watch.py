"""Each frontend's view of the cluster's checkpoints: LISTEN, read the newest row, check it, announce it.

One thread per frontend, on its own autocommit connection, LISTENs on both NOTIFY channels
(:data:`~ledger.cluster.sql.SIGNED`, :data:`~ledger.cluster.sql.SEQUENCED`) and reads the
largest row of ``checkpoints`` on each notification, and every ``poll_seconds`` without one.
A new checkpoint is announced to the frontend's
:class:`~ledger.log.publisher.CheckpointPublisher` (its waiters, listeners and followers)
only after it passed the checks a client would make: the note verifies under the log's key
for the log's origin, its size is larger than the one served, and the stored tree proves
it consistent with the one served (RFC 9162 2.1.4.2). A checkpoint failing them is never
served; the frontend reports damage (unhealthy) instead. ``SEQUENCED`` wakes the signer of
this process (if it is the signer) without waiting for its idle poll.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import psycopg

from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import verify_consistency
from client.core.note import Verifier
from client.errors import FormatError, ProvenanceError, VerificationError
from ledger.cluster import sql
from ledger.cluster.config import ClusterConfig
from ledger.errors import CorruptStorageError
from ledger.log.publisher import CheckpointPublisher
from ledger.log.tree import TreeReader

log = logging.getLogger(__name__)

_RETRY_SECONDS = 0.5  # pause before reconnecting after the database went away


class CheckpointWatch:
    """See the module docstring. ``tree`` gives the frontend's current tree reader; ``damage`` latches a fault."""

    def __init__(self, config: ClusterConfig, verifier: Verifier, origin: str, publisher: CheckpointPublisher,
                 tree: Callable[[], TreeReader], damage: Callable[[str], None], sequenced: threading.Event) -> None:
        self._config = config
        self._verifier = verifier
        self._origin = origin
        self._publisher = publisher
        self._tree = tree
        self._damage = damage
        self.sequenced = sequenced
        self._stop = threading.Event()
        self._conn: sql.Conn | None = None
        self.connected = False
        self._schema = ""  # the store's schema: NOTIFYs with another payload are another store's
        self.refused: str | None = None  # why the newest stored checkpoint was not served, if it was not
        self._thread = threading.Thread(target=self._run, name="cluster-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._conn is not None:
            self._conn.close()

    def alive(self) -> bool:
        return self._thread.is_alive() and self.connected

    def offer(self, signed: SignedCheckpoint) -> None:
        """Announce a checkpoint this process just committed and signed (no re-check: it made it)."""
        if signed.checkpoint.size > self._publisher.latest().checkpoint.size:
            self._publisher.announce(signed)

    def poll_once(self, conn: sql.Conn) -> None:
        """Read the newest checkpoint row on ``conn`` and announce it if it is new and passes the checks."""
        row = sql.latest_checkpoint(conn)
        if row is None:
            return
        size, root, note = row
        served = self._publisher.latest()
        if size <= served.checkpoint.size:
            return
        try:
            signed = SignedCheckpoint.open(note, self._verifier, self._origin)
            if signed.checkpoint.size != size or signed.checkpoint.root != root:
                raise VerificationError(f"the note of checkpoint row {size} signs another tree head")
            old = served.checkpoint
            if old.size > 0:
                verify_consistency(old.size, size, self._tree().consistency_proof(old.size, size), old.root, root)
        except (VerificationError, FormatError, CorruptStorageError) as err:
            reason = f"checkpoint of size {size} in the database fails its checks: {err}"
            if self.refused != reason:
                self.refused = reason
                self._damage(reason)
            return
        self.refused = None
        self._publisher.announce(signed)

    def _wait_signed(self, conn: sql.Conn) -> None:
        """Until a checkpoint NOTIFY or ``poll_seconds``; each sequencing NOTIFY meanwhile wakes the signer."""
        deadline = time.monotonic() + self._config.poll_seconds
        while (left := deadline - time.monotonic()) > 0 and not self._stop.is_set():
            got = list(conn.notifies(timeout=left, stop_after=1))
            if not got:
                return
            if got[0].payload != self._schema:
                continue  # another log store of the same database
            if got[0].channel == sql.SIGNED:
                return
            self.sequenced.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = self._conn = sql.connect(self._config.dsn, autocommit=True, application="provenance-watch")
                self._schema = sql.schema(conn)
                conn.execute(f"LISTEN {sql.SIGNED}")
                conn.execute(f"LISTEN {sql.SEQUENCED}")
                self.connected = True
                while not self._stop.is_set():
                    self.poll_once(conn)
                    self._wait_signed(conn)
            except (psycopg.Error, ProvenanceError) as err:
                if not self._stop.is_set():
                    log.warning("checkpoint watch lost the database; reconnecting: %s", type(err).__name__)
            finally:
                self.connected = False
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            self._stop.wait(_RETRY_SECONDS)
        log.debug("checkpoint watch stopped")

