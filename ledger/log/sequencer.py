"""The log: a sequencer that gives entries durable indices and signs checkpoints, and a proof reader.

One sequencer thread does all writing (group commit): it takes everything queued
(up to ``max_integrate_entries``), hashes and deduplicates it, lets the optional
:class:`IntegrationHook` admit each new entry, appends the leaves to the tree,
commits ONE atomic storage batch (entries, tree hashes, dedup index, hook writes,
tree head), and only then signs one checkpoint over the new, durable tree head and
resolves the writers' futures. A failed commit is never signed: the affected
futures fail with :class:`UnavailableError`, storage is asked to recover (RocksDB
latches a failed write until it is reopened: it reopens in place, no restart), the
tree head is re-read and checked as at open (the write may or may not have landed)
and, if it did land, made durable by a synced barrier commit before it is signed.

Readers (``entries``, proofs, ``root_at``) only see tree sizes up to the latest
signed checkpoint.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from hashlib import sha256
from typing import Protocol, TypeVar

from client.core.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint, sign_checkpoint
from client.core.merkle import EMPTY_ROOT, HASH_SIZE
from client.core.note import Signer
from client.errors import (
    FormatError,
    InvalidInputError,
    NotFoundError,
    OutOfRangeError,
    ProvenanceError,
    ResourceExhaustedError,
    UnavailableError,
    VerificationError,
)
from ledger.errors import CorruptStorageError, WaitTimeoutError
from ledger.log.edge import RightEdge, load_edge
from ledger.log.tree import TreeReader
from ledger.storage import Batch, Storage, TreeHead

log = logging.getLogger(__name__)

_STUCK_SECONDS = 30.0  # a sequencer step running longer than this makes health() false
_RETRY_SECONDS = 0.2  # pause between recovery attempts while storage is failing


@dataclass(frozen=True)
class LogConfig:
    """Limits of one log. Validated when constructed."""

    origin: str
    max_entry_bytes: int = 1 << 20  # bytes per entry
    max_batch_entries: int = 4096  # entries per submit() call
    max_pending_entries: int = 200_000  # queued entries before submit() pushes back
    max_integrate_entries: int = 16384  # entries per sequencer batch (one commit, one checkpoint)
    max_range: int = 1000  # entries per entries() call
    cache_bytes: int = 64 << 20  # full hash groups kept in memory

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise InvalidInputError("log origin must be a non-empty single line")
        for name in ("max_entry_bytes", "max_batch_entries", "max_pending_entries", "max_integrate_entries",
                     "max_range"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"LogConfig.{name} must be positive")
        if self.cache_bytes < 0:
            raise InvalidInputError("LogConfig.cache_bytes must not be negative")
        if self.max_batch_entries > self.max_integrate_entries:
            raise InvalidInputError("max_batch_entries must not exceed max_integrate_entries")


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an entry is in the log; ``duplicate`` when it was logged before (same leaf hash)."""

    index: int
    leaf_hash: bytes
    duplicate: bool


class AuxView:
    """Aux keys as the batch being integrated sees them: its own earlier writes, then storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.pending: dict[bytes, bytes] = {}
        self.index = 0  # the index the entry being admitted will get, if admitted
        # Writes no admission reads back (e.g. posting keys unique to the entry): committed with the
        # batch after ``pending`` but never visible to get; the log drops those of a refused entry.
        self.blind: list[tuple[bytes, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key)
        if value is not None:
            return value
        return self._storage.read_aux([key])[0]

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get` for many keys, with one storage read for those not written by this batch."""
        pending = self.pending
        missing = [k for k in keys if k not in pending]
        stored = dict(zip(missing, self._storage.read_aux(missing), strict=True)) if missing else {}
        return [pending[k] if k in pending else stored[k] for k in keys]


class IntegrationHook(Protocol):
    """Lets a personality (the registry) admit entries and index them in the same atomic batch."""

    def admit(self, entry: bytes, view: AuxView) -> list[tuple[bytes, bytes]]:
        """Accept ``entry`` (return its aux writes) or raise a :class:`ProvenanceError` to refuse it alone.

        Called on the sequencer thread, only for entries not already logged, in index order;
        ``view.index`` is the index the entry gets if admitted.
        """
        ...


Result = Appended | ProvenanceError
T = TypeVar("T")


@dataclass(slots=True)
class _Request:
    entries: Sequence[bytes]
    future: Future[list[Result]]


def _settle(fut: Future[T], value: T | BaseException) -> None:
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


class Log:
    """See the module docstring. Create with :meth:`open`; thread-safe."""

    def __init__(self, storage: Storage, signer: Signer, config: LogConfig, hook: IntegrationHook | None,
                 reader: TreeReader, edge: RightEdge, latest: SignedCheckpoint) -> None:
        self._storage = storage
        self._signer = signer
        self._config = config
        self._hook = hook
        self._reader = reader
        self._edge = edge
        self._latest = latest
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._pending = 0
        self._closing = False
        self._drain = True
        self._broken = False
        self._busy_since: float | None = None
        self._waiters: list[tuple[int, float, Future[SignedCheckpoint]]] = []
        self._listeners: dict[int, Callable[[SignedCheckpoint], None]] = {}
        self._next_listener = 0
        self._thread = threading.Thread(target=self._run, name=f"sequencer[{config.origin}]", daemon=True)

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(cls, storage: Storage, signer: Signer, config: LogConfig, hook: IntegrationHook | None = None) -> Log:
        """Open the log kept in ``storage`` (initialising an empty one) and start the sequencer.

        Checks the stored tree head against the stored hashes and the last signed
        checkpoint; raises :class:`CorruptStorageError` for an inconsistent store and
        :class:`InvalidInputError` when the store or the key belongs to another origin.
        """
        if signer.name != config.origin:
            raise InvalidInputError(f"signing key is named {signer.name!r}, the log is {config.origin!r}")
        head = storage.read_head()
        if head is None:
            if storage.read_meta("origin") is not None or storage.read_entries_at([0])[0] is not None:
                raise CorruptStorageError("the store holds log data but no tree head")
            head = TreeHead(0, EMPTY_ROOT, ())
            storage.commit(Batch(0, (), (), {}, head, meta={"origin": config.origin.encode()}))
        stored_origin = storage.read_meta("origin")
        if stored_origin != config.origin.encode():
            raise InvalidInputError(f"the store holds log {stored_origin!r}, not {config.origin!r}")
        reader = TreeReader(storage, config.cache_bytes)
        edge = load_edge(storage, head, reader)
        latest = _restore_checkpoint(storage, signer, config.origin, head, reader)
        self = cls(storage, signer, config, hook, reader, edge, latest)
        self._thread.start()
        log.info("log opened", extra={"origin": config.origin, "tree_size": head.size})
        return self

    # ----------------------------------------------------------------- writing

    def submit(self, entries: Sequence[bytes]) -> Future[list[Result]]:
        """Queue ``entries``; the future resolves once the batch holding them is durable and signed.

        Each result is an :class:`Appended` or, for an entry the hook refused, its error.
        Raises :class:`InvalidInputError` (empty or oversized batch, empty or oversized
        entry), :class:`ResourceExhaustedError` (queue full) or :class:`UnavailableError`
        (closing, or the sequencer is down).
        """
        cfg = self._config
        if not entries:
            raise InvalidInputError("no entries to add")
        if len(entries) > cfg.max_batch_entries:
            raise InvalidInputError(f"{len(entries)} entries in one request, at most {cfg.max_batch_entries}")
        for i, e in enumerate(entries):
            if not isinstance(e, bytes):
                raise InvalidInputError(f"entry {i} is {type(e).__name__}, not bytes")
            if not 0 < len(e) <= cfg.max_entry_bytes:
                raise InvalidInputError(f"entry {i} is {len(e)} bytes; entries are 1 to {cfg.max_entry_bytes} bytes")
        fut: Future[list[Result]] = Future()
        with self._cond:
            if self._closing or not self._thread.is_alive():
                raise UnavailableError("the log is not accepting entries (closing or stopped)")
            if self._pending + len(entries) > cfg.max_pending_entries:
                raise ResourceExhaustedError(f"{self._pending} entries already queued; retry later")
            self._queue.append(_Request(list(entries), fut))
            self._pending += len(entries)
            self._cond.notify()
        return fut

    def add(self, entries: Sequence[bytes], timeout: float | None = None) -> list[Result]:
        """:meth:`submit` and wait. Raises :class:`WaitTimeoutError` after ``timeout`` seconds."""
        fut = self.submit(entries)
        try:
            return fut.result(timeout)
        except FutureTimeout:
            raise WaitTimeoutError(f"entries not integrated within {timeout} s (they may still be)") from None

    # ----------------------------------------------------------------- checkpoints

    def latest(self) -> SignedCheckpoint:
        """The latest signed checkpoint (signed only after its tree head was durable)."""
        return self._latest

    @property
    def size(self) -> int:
        """Size of the latest signed checkpoint: the largest tree readers can ask about."""
        return self._latest.checkpoint.size

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
                self._cond.notify()
        return fut

    def add_listener(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]:
        """Call ``fn`` (on the sequencer thread; keep it quick) with each new checkpoint."""
        with self._cond:
            key = self._next_listener
            self._next_listener += 1
            self._listeners[key] = fn

        def unsubscribe() -> None:
            with self._cond:
                self._listeners.pop(key, None)

        return unsubscribe

    # ----------------------------------------------------------------- reading

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)`` of the signed tree."""
        if start < 0 or start >= end or end - start > self._config.max_range:
            raise InvalidInputError(f"bad range [{start}, {end}): need 0 <= start < end, at most "
                                    f"{self._config.max_range} entries")
        if end > self.size:
            raise OutOfRangeError(f"range end {end} is beyond the tree size {self.size}")
        return self._storage.read_entries(start, end)

    def index_of(self, leaf_hash: bytes) -> int:
        """The index of the entry with this leaf hash (the first, should there be several)."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise InvalidInputError(f"a leaf hash is {HASH_SIZE} bytes")
        size = self.size
        found = _confirm(self._storage, [leaf_hash], limit=size)
        if leaf_hash not in found:
            raise NotFoundError(f"no entry with leaf hash {leaf_hash.hex()} in the tree of size {size}")
        return found[leaf_hash]

    def leaf_hash(self, index: int) -> bytes:
        """The leaf hash of entry ``index`` of the signed tree (hashes its stored entry)."""
        if index < 0:
            raise InvalidInputError(f"index {index} is negative")
        if index >= self.size:
            raise OutOfRangeError(f"index {index} is beyond the tree size {self.size}")
        return sha256(b"\x00" + self._storage.read_entries(index, index + 1)[0]).digest()

    def _check_tree_size(self, tree_size: int) -> None:
        if tree_size <= 0:
            raise InvalidInputError(f"tree size {tree_size} must be positive")
        if tree_size > self.size:
            raise OutOfRangeError(f"tree size {tree_size} is beyond the signed size {self.size}")

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 2.1.3 inclusion proof of leaf ``index`` in the tree of ``tree_size``."""
        return self.inclusion_proofs([index], tree_size)[0]

    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """Inclusion proofs of many leaves in one tree (one pass over the hash groups they share)."""
        self._check_tree_size(tree_size)
        for index in indices:
            if index < 0:
                raise InvalidInputError(f"index {index} is negative")
            if index >= tree_size:
                raise OutOfRangeError(f"index {index} is not in the tree of size {tree_size}")
        return self._reader.inclusion_proofs(indices, tree_size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 2.1.4 proof that the tree of ``size2`` extends the tree of ``size1``."""
        if not 0 < size1 <= size2:
            raise InvalidInputError(f"no consistency proof from size {size1} to {size2}: need 0 < size1 <= size2")
        self._check_tree_size(size2)
        return self._reader.consistency_proof(size1, size2)

    def root_at(self, size: int) -> bytes:
        """Root of the tree of ``size`` leaves, ``0 <= size <= self.size``."""
        if size < 0:
            raise InvalidInputError(f"tree size {size} is negative")
        latest = self._latest.checkpoint
        if size > latest.size:
            raise OutOfRangeError(f"tree size {size} is beyond the signed size {latest.size}")
        if size == latest.size:
            return latest.root
        return EMPTY_ROOT if size == 0 else self._reader.root_at(size)

    def get_aux(self, key: bytes) -> bytes | None:
        """The hook's value for ``key`` (may include the batch being signed right now)."""
        return self._storage.read_aux([key])[0]

    def get_aux_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get_aux` of each key, in one storage read."""
        return self._storage.read_aux(keys)

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        """The hook's ``(key, value)`` pairs under ``prefix`` in key order (see :meth:`Storage.scan_aux`)."""
        return self._storage.scan_aux(prefix, limit)

    # ----------------------------------------------------------------- lifecycle

    def health(self) -> bool:
        """False when the sequencer has stopped, storage is failing, or one step runs too long."""
        busy = self._busy_since
        stuck = busy is not None and time.monotonic() - busy > _STUCK_SECONDS
        return self._thread.is_alive() and not self._broken and not stuck and not self._closing

    def close(self, drain: bool = True) -> None:
        """Stop taking entries; integrate what is queued (``drain``) or fail it; stop; close storage."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._drain = drain
            if not drain:
                self._fail_queued(UnavailableError("the log closed before integrating these entries"))
            self._cond.notify_all()
        self._thread.join()
        with self._cond:
            waiters, self._waiters = self._waiters, []
        for _, _, fut in waiters:
            _settle(fut, UnavailableError("the log closed"))
        if self._broken:
            log.error("log closing while its storage is failing: entries refused meanwhile were never "
                      "acknowledged; every acknowledged entry is durable", extra={"tree_size": self.size})
        self._storage.close()
        log.info("log closed", extra={"origin": self._config.origin, "tree_size": self.size})

    # ----------------------------------------------------------------- sequencer

    def _fail_queued(self, err: ProvenanceError) -> None:
        """Requires ``self._cond`` held."""
        while self._queue:
            req = self._queue.popleft()
            self._pending -= len(req.entries)
            _settle(req.future, err)

    def _take(self) -> list[_Request] | None:
        """Block for queued requests; None when it is time to stop."""
        limit = self._config.max_integrate_entries
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._expire_waiters()
                timeout = _RETRY_SECONDS if self._broken else 0.5
                if self._waiters:
                    timeout = max(0.0, min(timeout, min(w[1] for w in self._waiters) - time.monotonic()))
                self._cond.wait(timeout)
                if self._broken and not self._queue:
                    return []  # let the loop retry recovery while idle
            self._expire_waiters()
            taken: list[_Request] = []
            count = 0
            while self._queue and (not taken or count + len(self._queue[0].entries) <= limit):
                req = self._queue.popleft()
                self._pending -= len(req.entries)
                # A request whose future was cancelled while queued is dropped, never logged;
                # once running, its owner can no longer cancel it.
                if req.future.set_running_or_notify_cancel():
                    taken.append(req)
                    count += len(req.entries)
            return taken

    def _expire_waiters(self) -> None:
        """Requires ``self._cond`` held."""
        if not self._waiters:
            return
        now = time.monotonic()
        keep = []
        for w in self._waiters:
            if w[1] <= now:
                _settle(w[2], WaitTimeoutError(f"no checkpoint of size >= {w[0]} in time"))
            elif not w[2].done():
                keep.append(w)
        self._waiters = keep

    def _run(self) -> None:
        last_attempt = 0.0
        while True:
            reqs = self._take()
            if reqs is None:
                return
            if self._broken and time.monotonic() - last_attempt >= _RETRY_SECONDS:
                last_attempt = time.monotonic()
                self._recover()
            if self._broken and reqs:
                err = UnavailableError("log storage is failing; retry later")
                for req in reqs:
                    _settle(req.future, err)
            if self._broken or not reqs:
                continue
            self._busy_since = time.monotonic()
            try:
                self._integrate(reqs)
            except Exception as e:
                log.error("integration failed; recovering the tree head from storage",
                          extra={"tree_size": self._edge.size, "batch_requests": len(reqs)}, exc_info=True)
                err = UnavailableError("the log could not make these entries durable; retry")
                err.__cause__ = e
                for req in reqs:
                    _settle(req.future, err)
                self._broken = True
                last_attempt = time.monotonic()
                self._recover()
            finally:
                self._busy_since = None

    def _integrate(self, reqs: list[_Request]) -> None:
        storage = self._storage
        entries = [e for req in reqs for e in req.entries]
        hashes = [sha256(b"\x00" + e).digest() for e in entries]
        unique = list(dict.fromkeys(hashes))
        existing = _confirm(storage, unique, limit=None)
        start = self._edge.size
        view: AuxView | None = None
        if self._hook is None and not existing and len(unique) == len(entries):
            new_entries, new_hashes = entries, hashes
            results: list[Result] = [Appended(i, h, False) for i, h in enumerate(hashes, start)]
        else:
            view = AuxView(storage)
            new_entries, new_hashes, results = self._admit(entries, hashes, existing, start, view)
        if new_entries:
            ext = self._edge.extend(new_hashes)
            head = ext.edge.head()
            storage.commit(Batch(start, new_entries, new_hashes, ext.writes, head,
                                 aux=[*view.pending.items(), *view.blind] if view else ()))
            self._edge = ext.edge
            self._reader.publish(ext.edge.partial_groups(), ext.full)
            self._sign(head)
        log.debug("integrated batch", extra={"tree_size": self._edge.size, "batch_entries": len(entries),
                                             "new_entries": len(new_entries)})
        pos = 0
        for req in reqs:
            n = len(req.entries)
            _settle(req.future, results[pos : pos + n])
            pos += n

    def _admit(self, entries: list[bytes], hashes: list[bytes], existing: dict[bytes, int], start: int,
               view: AuxView) -> tuple[list[bytes], list[bytes], list[Result]]:
        """Dedup within the batch and against the log; ask the hook about each new entry."""
        new_entries: list[bytes] = []
        new_hashes: list[bytes] = []
        results: list[Result] = []
        assigned = dict(existing)
        hook = self._hook
        for entry, h in zip(entries, hashes, strict=True):
            index = assigned.get(h)
            if index is not None:
                results.append(Appended(index, h, True))
                continue
            if hook is not None:
                view.index = start + len(new_entries)
                mark = len(view.blind)
                try:
                    writes = hook.admit(entry, view)
                except ProvenanceError as refusal:
                    del view.blind[mark:]
                    results.append(refusal)
                    continue
                except Exception:
                    del view.blind[mark:]
                    # A hook bug must not turn one entry into a poison pill for its whole batch.
                    log.exception("integration hook failed; refusing the entry", extra={"leaf_hash": h.hex()})
                    results.append(UnavailableError("the log could not admit this entry"))
                    continue
                view.pending.update(writes)
            index = start + len(new_entries)
            assigned[h] = index
            new_entries.append(entry)
            new_hashes.append(h)
            results.append(Appended(index, h, False))
        return new_entries, new_hashes, results

    def _sign(self, head: TreeHead) -> None:
        """Sign a durable tree head, publish it, wake waiters and listeners. Sequencer thread only."""
        # Recorded (synced, outside the batches' write-ahead log) before anyone sees it, so an
        # open can tell if signed entries were later lost to damage in that log.
        self._storage.record_signed(head.size, head.root)
        signed = _sign_head(self._signer, self._config.origin, head)
        self._latest = signed
        try:
            self._storage.write_meta("checkpoint", signed.note)
        except ProvenanceError:
            log.warning("could not save the signed checkpoint (it is re-signed at restart)",
                        extra={"tree_size": head.size})
        with self._cond:
            ready = [w for w in self._waiters if w[0] <= head.size]
            if ready:
                self._waiters = [w for w in self._waiters if w[0] > head.size]
            listeners = list(self._listeners.values())
        for _, _, fut in ready:
            _settle(fut, signed)
        for fn in listeners:
            try:
                fn(signed)
            except Exception:
                log.exception("checkpoint listener failed", extra={"tree_size": head.size})

    def _recover(self) -> None:
        """After a failure: let storage recover, re-read and check its state as :meth:`open` does, resume.

        :meth:`Storage.recover` clears a latched write failure (RocksDB reopens in place), so
        no restart is needed once the cause (a full disk) is gone. The tree head is then read
        back and checked with a fresh :class:`TreeReader` (nothing cached before the failure
        is trusted) against the stored tree, the recorded signed head and the latest signed
        checkpoint. If the failed batch landed, it is made durable and only then signed.
        """
        storage = self._storage
        try:
            storage.recover()
            head = storage.read_head()
            if head is None:
                raise CorruptStorageError("the store lost its tree head")
            if storage.read_meta("origin") != self._config.origin.encode():
                raise CorruptStorageError("the store no longer holds this log's origin")
            signed = self._latest.checkpoint
            if head.size < signed.size:
                raise CorruptStorageError(f"the store went back from signed size {signed.size} to {head.size}")
            reader = TreeReader(storage, self._config.cache_bytes)
            edge = load_edge(storage, head, reader)
            _check_recorded_head(storage, head, reader)
            if _stored_root(head, reader, signed.size) != signed.root:
                raise CorruptStorageError(f"the stored tree disagrees with the signed checkpoint of size {signed.size}")
            # A synced (empty) commit of the head read back: it proves storage takes writes
            # again, and if the failed batch did land ("failed but saved", visible but maybe
            # not synced), it makes that batch durable before anything signs it.
            storage.commit(Batch(head.size, (), (), {}, head))
            self._reader = reader
            self._edge = edge
            if head.size > signed.size:
                self._sign(head)
            self._broken = False
            log.warning("recovered after a storage failure", extra={"tree_size": head.size})
        except Exception:
            self._broken = True
            log.error("log storage still failing", extra={"tree_size": self._latest.checkpoint.size},
                      exc_info=True)


def _confirm(storage: Storage, leaf_hashes: Sequence[bytes], limit: int | None) -> dict[bytes, int]:
    """The smallest logged index (below ``limit``, if given) of each leaf hash that is in the log."""
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


def _sign_head(signer: Signer, origin: str, head: TreeHead) -> SignedCheckpoint:
    cp = Checkpoint(origin, head.size, head.root)
    return SignedCheckpoint(cp, sign_checkpoint(cp, signer))


def _stored_root(head: TreeHead, reader: TreeReader, size: int) -> bytes:
    """Root of the stored tree of ``size`` leaves. Requires ``0 <= size <= head.size``, ``head`` checked."""
    return head.root if size == head.size else (EMPTY_ROOT if size == 0 else reader.root_at(size))


def _check_recorded_head(storage: Storage, head: TreeHead, reader: TreeReader) -> tuple[int, bytes] | None:
    """The recorded signed tree head (:meth:`Storage.record_signed`), checked against the stored tree.

    One for a larger tree, or for a different root at a size the store holds, means the
    store lost or changed signed data: :class:`CorruptStorageError`.
    """
    recorded = storage.read_signed()
    if recorded is not None:
        size, root = recorded
        if size > head.size:
            raise CorruptStorageError(f"the store holds {head.size} entries but a tree head of {size} was "
                                      "signed: signed entries are lost (damaged write-ahead log?)")
        if root != _stored_root(head, reader, size):
            raise CorruptStorageError(f"the stored tree disagrees with the signed tree head of size {size}")
    return recorded


def _restore_checkpoint(storage: Storage, signer: Signer, origin: str, head: TreeHead,
                        reader: TreeReader) -> SignedCheckpoint:
    """The checkpoint to serve at open: the saved note if it signs ``head``, else a fresh signature.

    A recorded signed tree head (see :func:`_check_recorded_head`) or a saved note for a
    larger tree, or for a different root at a size the store holds, means the store
    lost or changed signed data: :class:`CorruptStorageError`.
    """
    recorded = _check_recorded_head(storage, head, reader)
    if recorded is None or recorded[0] != head.size:
        storage.record_signed(head.size, head.root)  # the head about to be signed (or re-served) below
    note = storage.read_meta("checkpoint")
    if note is not None:
        try:
            cp = open_checkpoint(note, signer.verifier(), origin)
        except (VerificationError, FormatError):
            log.warning("saved checkpoint is unreadable or not signed by this key; re-signing",
                        extra={"origin": origin})
            cp = None
        if cp is not None:
            if cp.size > head.size:
                raise CorruptStorageError(f"the store holds {head.size} entries but a checkpoint of {cp.size} "
                                          "was signed: signed entries are lost")
            if cp.root != _stored_root(head, reader, cp.size):
                raise CorruptStorageError(f"the stored tree disagrees with the signed checkpoint of size {cp.size}")
            if cp.size == head.size:
                return SignedCheckpoint(cp, note)
    signed = _sign_head(signer, origin, head)
    storage.write_meta("checkpoint", signed.note)
    return signed
