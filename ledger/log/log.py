"""The log: a sequencer, a checkpoint publisher and a read side over one store, opened and closed together.

:meth:`Log.open` runs the integrity checks (:mod:`ledger.log.integrity`), starts the
:class:`~ledger.log.sequencer.Sequencer` thread and builds the
:class:`~ledger.log.publisher.CheckpointPublisher`; reads come from
:class:`~ledger.log.reads.LogReads`. The promises, each kept by the part named:

* a failed commit is never signed (the sequencer publishes a head only after its commit
  returned, or after a recovery proved it durable);
* readers only see sizes up to the latest signed checkpoint (the read side);
* a writer's future resolves only after the checkpoint covering it is signed (the
  sequencer calls the publisher synchronously, then resolves);
* recovery after a failed commit re-checks the store as open does (the integrity checks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from client.core.bundle.keystatus import KeyStatusNote
from client.core.checkpoint import SignedCheckpoint
from client.core.note import Signer
from client.errors import InvalidInputError
from ledger.errors import WaitTimeoutError
from ledger.log.config import LogConfig
from ledger.log.hook import IntegrationHook, Result
from ledger.log.integrity import open_checked, restore_checkpoint
from ledger.log.publisher import CheckpointPublisher
from ledger.log.reads import LogReads
from ledger.log.sequencer import Sequencer
from ledger.storage import Storage

log = logging.getLogger(__name__)


class Log(LogReads):
    """See the module docstring. Create with :meth:`open`; thread-safe."""

    def __init__(self, storage: Storage, config: LogConfig, sequencer: Sequencer,
                 publisher: CheckpointPublisher) -> None:
        super().__init__(storage, config.max_range, publisher.latest, lambda: sequencer.reader)
        self._config = config
        self._sequencer = sequencer
        self._publisher = publisher
        self._closed = False

    @classmethod
    def open(cls, storage: Storage, signer: Signer, config: LogConfig, hook: IntegrationHook | None = None) -> Log:
        """Open the log kept in ``storage`` (initialising an empty one) and start the sequencer.

        Checks the stored tree head against the stored hashes and the last signed
        checkpoint; raises :class:`CorruptStorageError` for an inconsistent store and
        :class:`InvalidInputError` when the store or the key belongs to another origin.
        """
        if signer.name != config.origin:
            raise InvalidInputError(f"signing key is named {signer.name!r}, the log is {config.origin!r}")
        head, reader, edge = open_checked(storage, config.origin, config.cache_bytes)
        saved = restore_checkpoint(storage, signer.verifier(), config.origin, head, reader)
        publisher = CheckpointPublisher.at_open(storage, signer, config.origin, head, saved)
        sequencer = Sequencer(storage, config, hook, reader, edge, publisher)
        sequencer.start()
        log.info("log opened", extra={"origin": config.origin, "tree_size": head.size})
        return cls(storage, config, sequencer, publisher)

    # ----------------------------------------------------------------- writing

    def submit(self, entries: Sequence[bytes]) -> Future[list[Result]]:
        """Queue ``entries``; see :meth:`Sequencer.submit`."""
        return self._sequencer.submit(entries)

    def add(self, entries: Sequence[bytes], timeout: float | None = None) -> list[Result]:
        """:meth:`submit` and wait. Raises :class:`WaitTimeoutError` after ``timeout`` seconds."""
        fut = self._sequencer.submit(entries)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise WaitTimeoutError(f"entries not integrated within {timeout} s (they may still be)") from None

    # ----------------------------------------------------------------- checkpoints

    def wait_for_size(self, size: int, timeout: float | None = None) -> Future[SignedCheckpoint]:
        """A future of the first signed checkpoint of at least ``size`` leaves (see the publisher)."""
        return self._publisher.wait_for_size(size, timeout)

    def add_listener(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]:
        """Call ``fn`` (on the sequencer thread; keep it quick) with each new checkpoint."""
        return self._publisher.add_listener(fn)

    def add_follower(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]:
        """Call ``fn`` off the sequencer thread with the newest checkpoint (see the publisher)."""
        return self._publisher.add_follower(fn)

    def sign_key_status(self, note: KeyStatusNote) -> bytes:
        """The log key's signature on a key-status note (see the publisher)."""
        return self._publisher.sign_key_status(note)

    # ----------------------------------------------------------------- lifecycle

    def health(self) -> bool:
        """False when the sequencer has stopped, storage is failing, one step runs too long, or a read
        or the scrub found the store damaged (:attr:`damage`)."""
        return self._damage is None and self._sequencer.health()

    def close(self, drain: bool = True) -> None:
        """Stop taking entries; integrate what is queued (``drain``) or fail it; stop; close storage."""
        if self._closed:
            return
        self._closed = True
        self._publisher.begin_close()
        self._sequencer.stop(drain)
        self._publisher.close()
        if self._sequencer.broken:
            log.error("log closing while its storage is failing: entries refused meanwhile were never "
                      "acknowledged; every acknowledged entry is durable", extra={"tree_size": self.size})
        self._storage.close()
        log.info("log closed", extra={"origin": self._config.origin, "tree_size": self.size})
