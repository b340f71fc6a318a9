"""One frontend of a cluster: the same calls as :class:`ledger.log.Log`, on a database shared with others.

:meth:`ClusterLog.open` starts three threads beside the read side (:class:`LogReads` over the
database's :class:`~ledger.storage.postgres.PostgresStorage`, whose pool of autocommit
connections sees what every frontend committed; nothing here writes through it): the
:class:`~ledger.cluster.signer.SignerRole` (tries for the signer lock; signs while it holds it), the
:class:`~ledger.cluster.watch.CheckpointWatch` (serves the newest checkpoint row, checked) and
the :class:`~ledger.cluster.sequencing.ClusterSequencer` (writes). The gRPC services and the
registry use it exactly as they use a :class:`~ledger.log.Log`. The promises:

* an acknowledged entry is committed in PostgreSQL (the sequencing transaction returned);
* indices are assigned exactly once across all frontends (the coordinator row's lock);
* a writer's future resolves only once this frontend serves a checkpoint covering it;
* every frontend serves only checkpoints committed with the tree head they sign, checked
  against the one it served before, so all frontends hand out one consistent history.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import psycopg

from client.core.bundle.keystatus import KeyStatusNote
from client.core.checkpoint import SignedCheckpoint
from client.core.note import Signer
from client.errors import FormatError, InvalidInputError, UnavailableError, VerificationError
from ledger.cluster import sql
from ledger.cluster.config import ClusterConfig
from ledger.cluster.sequencing import ClusterSequencer
from ledger.cluster.signer import SignerRole
from ledger.cluster.watch import CheckpointWatch
from ledger.errors import KeyFileError, StorageError, WaitTimeoutError
from ledger.log.config import LogConfig
from ledger.log.hook import IntegrationHook, Result
from ledger.log.publisher import CheckpointPublisher
from ledger.log.reads import LogReads
from ledger.log.tree import TreeReader
from ledger.storage import Storage

log = logging.getLogger(__name__)

_DRAIN_SECONDS = 10.0  # at close, how long the signer may go on signing what this frontend sequenced


class ClusterLog(LogReads):
    """See the module docstring. Create with :meth:`open`; thread-safe."""

    def __init__(self, storage: Storage, config: ClusterConfig, log_config: LogConfig, signer: Signer) -> None:
        self._shared_tree = TreeReader(storage, log_config.cache_bytes)
        self._leader_tree: TreeReader | None = None
        super().__init__(storage, log_config.max_range, self._latest_signed,
                         lambda: self._leader_tree or self._shared_tree)
        self._reads = storage
        self._config = config
        self._log_config = log_config
        self._signer = signer
        self._wake = threading.Event()
        self._publisher: CheckpointPublisher | None = None
        self._watch: CheckpointWatch | None = None
        self._sequencer: ClusterSequencer | None = None
        self._role = SignerRole(config, log_config.origin, signer, storage, log_config.cache_bytes,
                                self._on_role, self._offer, self._wake)
        self._closed = False

    @classmethod
    def open(cls, storage: Storage, config: ClusterConfig, signer: Signer, log_config: LogConfig,
             hook: IntegrationHook | None = None) -> ClusterLog:
        """Join the cluster on ``config.dsn``: start the signer role, wait for a checkpoint, start serving.

        ``storage`` is the database's :class:`~ledger.storage.postgres.PostgresStorage` (opened by
        the caller: that open creates the schema of an empty database and refuses one of another
        version), perhaps wrapped (metrics); reads go through it, writes never, and once open
        returns :meth:`close` closes it. Raises :class:`StorageError` (no database),
        :class:`InvalidInputError` (the database holds another log), :class:`KeyFileError` (its
        checkpoints are not signed by ``signer``'s key) or :class:`UnavailableError` (no checkpoint
        within ``config.start_seconds``).
        """
        origin = log_config.origin
        if signer.name != origin:
            raise InvalidInputError(f"signing key is named {signer.name!r}, the log is {origin!r}")
        probe = sql.connect(config.dsn, autocommit=True, application="provenance-open")
        self = cls(storage, config, log_config, signer)
        try:
            self._role.start()
            signed = self._first_checkpoint(probe)
            self._publisher = CheckpointPublisher(storage, signer, origin, signed)
            self._watch = CheckpointWatch(config, signer.verifier(), origin, self._publisher, self._tree,
                                          self.report_damage, self._wake)
            self._watch.start()
            self._sequencer = ClusterSequencer(config.dsn, storage, log_config, hook, self._shared_tree,
                                               self._publisher, self._wake.set)
            self._sequencer.start()
        except BaseException:
            self._role.stop()
            if self._watch is not None:
                self._watch.stop()
            raise  # the caller still owns (and closes) ``storage``
        finally:
            probe.close()
        log.info("joined the cluster", extra={"origin": origin, "tree_size": signed.checkpoint.size})
        return self

    def _first_checkpoint(self, conn: sql.Conn) -> SignedCheckpoint:
        """The newest checkpoint row (waiting for some frontend to sign one), verified under our key and origin."""
        origin = self._log_config.origin
        deadline = time.monotonic() + self._config.start_seconds
        while (row := sql.latest_checkpoint(conn)) is None:
            if self._role.fatal is not None:
                raise self._role.fatal
            if time.monotonic() > deadline:
                raise UnavailableError(f"no signed checkpoint in the database after {self._config.start_seconds} s")
            time.sleep(0.05)
        stored = sql.ConnReads(conn).read_meta("origin")
        if stored != origin.encode():
            raise InvalidInputError(f"the database holds log {stored!r}, not {origin!r}")
        try:
            return SignedCheckpoint.open(row[2], self._signer.verifier(), origin)
        except (VerificationError, FormatError) as err:
            raise KeyFileError(f"the log's checkpoint of size {row[0]} is not signed by this frontend's key "
                               f"(every frontend mounts the log's one signing key): {err}") from None

    # ----------------------------------------------------------------- wiring of the threads

    def _latest_signed(self) -> SignedCheckpoint:
        if self._publisher is None:
            raise UnavailableError("the frontend is still starting")
        return self._publisher.latest()

    def _on_role(self, reader: TreeReader | None) -> None:
        self._leader_tree = reader
        log.info("signer role %s by %s", "taken" if reader is not None else "released", self._config.holder)

    def _offer(self, signed: SignedCheckpoint) -> None:
        if self._watch is not None:
            self._watch.offer(signed)

    def _parts(self) -> tuple[CheckpointPublisher, ClusterSequencer]:
        if self._publisher is None or self._sequencer is None:
            raise UnavailableError("the frontend is not open")
        return self._publisher, self._sequencer

    @property
    def is_signer(self) -> bool:
        """Whether this frontend holds the signer role right now."""
        return self._role.leading

    # ----------------------------------------------------------------- the calls of ledger.log.Log

    def submit(self, entries: Sequence[bytes]) -> Future[list[Result]]:
        """Queue ``entries`` (see :meth:`ledger.log.sequencer.Sequencer.submit` and the module docstring)."""
        return self._parts()[1].submit(entries)

    def add(self, entries: Sequence[bytes], timeout: float | None = None) -> list[Result]:
        """:meth:`submit` and wait. Raises :class:`WaitTimeoutError` after ``timeout`` seconds."""
        try:
            return self.submit(entries).result(timeout)
        except FutureTimeout:
            raise WaitTimeoutError(f"entries not integrated within {timeout} s (they may still be)") from None

    def wait_for_size(self, size: int, timeout: float | None = None) -> Future[SignedCheckpoint]:
        return self._parts()[0].wait_for_size(size, timeout)

    def add_listener(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]:
        """Call ``fn`` (on the watch or signer thread; keep it quick) with each new checkpoint served."""
        return self._parts()[0].add_listener(fn)

    def add_follower(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]:
        return self._parts()[0].add_follower(fn)

    def sign_key_status(self, note: KeyStatusNote) -> bytes:
        return self._parts()[0].sign_key_status(note)

    def health(self) -> bool:
        """False when a thread stopped, the database is unreachable, the signer role found the store unfit,
        or a read or a checkpoint check found damage."""
        seq, watch = self._sequencer, self._watch
        return (self._damage is None and self._role.fatal is None and self._role.alive()
                and seq is not None and seq.health() and watch is not None and watch.alive())

    def close(self, drain: bool = True) -> None:
        """Stop taking entries; sequence what is queued (``drain``) and give the signer a moment to sign it."""
        if self._closed:
            return
        self._closed = True
        publisher, seq = self._publisher, self._sequencer
        if publisher is not None:
            publisher.begin_close()
        if seq is not None:
            seq.stop(drain)
        if drain and publisher is not None:
            self._drain(publisher)
        self._role.stop()
        if self._watch is not None:
            self._watch.stop()
        if publisher is not None:
            publisher.close()
        self._reads.close()
        log.info("left the cluster", extra={"origin": self._log_config.origin})

    def _drain(self, publisher: CheckpointPublisher) -> None:
        try:
            conn = sql.connect(self._config.dsn, autocommit=True, application="provenance-close")
        except StorageError:
            return
        try:
            target = sql.next_index(conn)
        except psycopg.Error:
            return
        finally:
            conn.close()
        deadline = time.monotonic() + _DRAIN_SECONDS
        while publisher.latest().checkpoint.size < target and time.monotonic() < deadline:
            time.sleep(0.02)
