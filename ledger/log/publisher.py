"""The checkpoint publisher: signs each durable tree head and hands the signed checkpoint out.

As Tessera keeps integration (the sequencer) apart from publishing, this object owns
everything that happens to a tree head once it is durable: recording it
(:meth:`Storage.record_signed`, synced, before anyone sees it), signing the C2SP
checkpoint (``client.core.checkpoint``, RFC 9162 4.10 tree head), keeping the latest
signed checkpoint, saving its note, resolving :meth:`wait_for_size` futures and
expiring them, and calling listeners. The sequencer calls :meth:`publish` with a head
only after the commit holding it returned, so a failed commit is never signed.

Which thread signs: the sequencer calls :meth:`publish` *synchronously*, right after
each durable commit and before it resolves the writers' futures. A writer's future
therefore resolves only after the checkpoint covering it is signed, and the waited
add (one add waiting for its signed checkpoint) pays no thread hop: handing each head
to a publisher thread and waiting for it would put a GIL hand-off (up to the 5 ms
switch interval under load) on that path for an Ed25519 signature of ~50 us.

The publisher's own thread (started only when first needed) does what must never run
on the sequencer thread: it expires :meth:`wait_for_size` futures at their deadlines
and calls *followers* (:meth:`add_follower`) with the newest signed checkpoint. A
follower may be slow (witness cosigning, issue 13, plugs in there); listeners
(:meth:`add_listener`) stay on the sequencer thread and must be quick (wake a stream,
count progress).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import TypeVar

from client.core.bundle.keystatus import KeyStatusNote, sign_key_status
from client.core.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from client.core.note import Signer
from client.errors import ProvenanceError, UnavailableError
from ledger.errors import WaitTimeoutError
from ledger.storage import Storage, TreeHead

log = logging.getLogger(__name__)

T = TypeVar("T")
Listener = Callable[[SignedCheckpoint], None]


def settle(fut: Future[T], value: T | BaseException) -> None:
    """Complete ``fut`` unless its owner cancelled it (or it is already done)."""
    if fut.done():
        return
    try:
        if isinstance(value, BaseException):
            fut.set_exception(value)
        else:
            fut.set_result(value)
    except InvalidStateError:  # cancelled by its owner meanwhile
        pass


def sign_head(signer: Signer, origin: str, head: TreeHead) -> SignedCheckpoint:
    """The C2SP signed note of the checkpoint ``(origin, head.size, head.root)``."""
    cp = Checkpoint(origin, head.size, head.root)
    return SignedCheckpoint(cp, sign_checkpoint(cp, signer))


class CheckpointPublisher:
    """Latest signed checkpoint, waiters and listeners of one log. Thread-safe; see the module docstring."""

    def __init__(self, storage: Storage, signer: Signer, origin: str, latest: SignedCheckpoint) -> None:
        self._storage = storage
        self._signer = signer
        self._origin = origin
        self._latest = latest
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, float, Future[SignedCheckpoint]]] = []
        self._listeners: dict[int, Listener] = {}
        self._followers: dict[int, Listener] = {}
        self._next_key = 0
        self._followed = latest.checkpoint.size  # size the followers were last called with
        self._closing = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    @classmethod
    def at_open(cls, storage: Storage, signer: Signer, origin: str, head: TreeHead,
                saved: SignedCheckpoint | None) -> CheckpointPublisher:
        """The publisher of a just-opened log: serving ``saved``, else a fresh signature of ``head``.

        ``head`` must be checked and recorded (:func:`ledger.log.integrity.restore_checkpoint`).
        A fresh note is saved; failing to save it raises (the log does not open).
        """
        if saved is None:
            saved = sign_head(signer, origin, head)
            storage.write_meta("checkpoint", saved.note)
        return cls(storage, signer, origin, saved)

    def latest(self) -> SignedCheckpoint:
        """The latest signed checkpoint (signed only after its tree head was durable)."""
        return self._latest

    # ------------------------------------------------------------------ publishing

    def publish(self, head: TreeHead) -> SignedCheckpoint:
        """Sign the durable ``head``, make it the latest, wake its waiters and call the listeners.

        Requires ``head`` durable (its commit returned) and larger than the latest. Called by
        the committing (sequencer) thread only. Raises :class:`StorageError` if the head
        cannot be recorded; then nothing is signed.
        """
        # Recorded (synced, outside the batches' write-ahead log) before anyone sees it, so an
        # open can tell if signed entries were later lost to damage in that log.
        self._storage.record_signed(head.size, head.root)
        signed = sign_head(self._signer, self._origin, head)
        self._latest = signed
        try:
            self._storage.write_meta("checkpoint", signed.note)
        except ProvenanceError:
            log.warning("could not save the signed checkpoint (it is re-signed at restart)",
                        extra={"tree_size": head.size})
        self.announce(signed)
        return signed

    def announce(self, signed: SignedCheckpoint) -> None:
        """Make ``signed`` the latest if it is larger, wake its waiters and call the listeners.

        :meth:`publish` ends here; a cluster frontend (``ledger/cluster``) calls it directly with a
        checkpoint another process signed and recorded. Requires ``signed`` durable and recorded.
        """
        size = signed.checkpoint.size
        with self._cond:
            if size < self._latest.checkpoint.size:
                return
            self._latest = signed
            ready = [w for w in self._waiters if w[0] <= size]
            if ready:
                self._waiters = [w for w in self._waiters if w[0] > size]
            listeners = list(self._listeners.values())
            if self._followers:
                self._cond.notify_all()
        for _, _, fut in ready:
            settle(fut, signed)
        for fn in listeners:
            try:
                fn(signed)
            except Exception:
                log.exception("checkpoint listener failed", extra={"tree_size": size})

    def sign_key_status(self, note: KeyStatusNote) -> bytes:
        """The log key's signed note of ``note`` (docs/bundle.md, "Key status"); its text cannot be read as
        a checkpoint. Requires ``note`` to speak of a checkpoint this log signed (the caller's duty)."""
        return sign_key_status(note, self._signer)

    # ------------------------------------------------------------------ waiting and following

    def wait_for_size(self, size: int, timeout: float | None = None) -> Future[SignedCheckpoint]:
        """A future of the first signed checkpoint of at least ``size`` leaves.

        Fails with :class:`WaitTimeoutError` after ``timeout`` seconds (None: no limit), and with
        :class:`UnavailableError` if the log closes first.
        """
        fut: Future[SignedCheckpoint] = Future()
        latest = self._latest
        if latest.checkpoint.size >= size:
            fut.set_result(latest)
            return fut
        with self._cond:
            latest = self._latest  # may have moved on meanwhile
            if latest.checkpoint.size >= size:
                fut.set_result(latest)
            elif self._closing:
                fut.set_exception(UnavailableError("the log is closing"))
            else:
                deadline = float("inf") if timeout is None else time.monotonic() + timeout
                self._waiters.append((size, deadline, fut))
                if timeout is not None:
                    self._start_thread()
                    self._cond.notify_all()
        return fut

    def add_listener(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn`` (on the sequencer thread; keep it quick) with each new checkpoint."""
        return self._subscribe(self._listeners, fn)

    def add_follower(self, fn: Listener) -> Callable[[], None]:
        """Call ``fn`` on the publisher's thread, never the sequencer's, with the newest checkpoint.

        One call at a time, sizes increasing; a follower slower than the log sees only the
        newest checkpoint (each covers the ones before it). For slow work: witness cosigning.
        """
        with self._cond:
            self._start_thread()
        return self._subscribe(self._followers, fn)

    def _subscribe(self, into: dict[int, Listener], fn: Listener) -> Callable[[], None]:
        with self._cond:
            key = self._next_key
            self._next_key += 1
            into[key] = fn

        def unsubscribe() -> None:
            with self._cond:
                into.pop(key, None)

        return unsubscribe

    # ------------------------------------------------------------------ lifecycle

    def begin_close(self) -> None:
        """Refuse new waits (the log is closing); waits already registered may still be met."""
        with self._cond:
            self._closing = True

    def close(self) -> None:
        """After the last :meth:`publish`: fail every waiter left and stop the publisher's thread."""
        with self._cond:
            self._closing = self._stopped = True
            waiters, self._waiters = self._waiters, []
            thread = self._thread
            self._cond.notify_all()
        for _, _, fut in waiters:
            settle(fut, UnavailableError("the log closed"))
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _start_thread(self) -> None:
        """Requires ``self._cond`` held."""
        if self._thread is None and not self._stopped:
            self._thread = threading.Thread(target=self._run, name=f"publisher[{self._origin}]", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                expired = self._take_expired()
                signed = self._latest
                followers = list(self._followers.values()) if signed.checkpoint.size > self._followed else []
                if not expired and not followers:
                    if self._stopped:
                        return
                    deadline = min((w[1] for w in self._waiters), default=float("inf"))
                    self._cond.wait(None if deadline == float("inf") else max(0.0, deadline - time.monotonic()))
                    continue
                if followers:
                    self._followed = signed.checkpoint.size
            for size, fut in expired:
                settle(fut, WaitTimeoutError(f"no checkpoint of size >= {size} in time"))
            for fn in followers:
                try:
                    fn(signed)
                except Exception:
                    log.exception("checkpoint follower failed", extra={"tree_size": signed.checkpoint.size})

    def _take_expired(self) -> list[tuple[int, Future[SignedCheckpoint]]]:
        """Waiters past their deadline, removed (with any their owners gave up). Requires ``self._cond``."""
        if not self._waiters:
            return []
        now = time.monotonic()
        keep, expired = [], []
        for w in self._waiters:
            if w[1] <= now:
                expired.append((w[0], w[2]))
            elif not w[2].done():
                keep.append(w)
        self._waiters = keep
        return expired
