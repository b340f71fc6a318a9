"""The sequencer: one thread that gives queued entries durable indices, one atomic batch at a time.

Group commit: the thread takes everything queued (up to ``max_integrate_entries``),
hashes it (RFC 9162 2.1.1 leaf hashes) and deduplicates it, lets the optional
:class:`~ledger.log.hook.IntegrationHook` admit each new entry, appends the leaves to
the tree (:meth:`~ledger.log.edge.RightEdge.extend`), commits ONE atomic storage batch
(entries, tree hashes, dedup index, hook writes, tree head), and only then hands the
new, durable tree head to the :class:`~ledger.log.publisher.CheckpointPublisher`,
which signs it; the writers' futures resolve after that. A failed commit is never
signed: the affected futures fail with :class:`UnavailableError`, storage is asked to
recover (RocksDB latches a failed write until it is reopened: it reopens in place, no
restart), the tree head is re-read and checked as at open
(:func:`~ledger.log.integrity.reopen_checked`; the write may or may not have landed)
and, if it did land, made durable by a synced barrier commit before it is signed.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from hashlib import sha256

from client.errors import InvalidInputError, ProvenanceError, ResourceExhaustedError, UnavailableError
from ledger.log.config import LogConfig
from ledger.log.edge import RightEdge
from ledger.log.hook import Appended, AuxView, IntegrationHook, Result
from ledger.log.integrity import confirm, reopen_checked
from ledger.log.publisher import CheckpointPublisher, settle
from ledger.log.tree import TreeReader
from ledger.storage import Batch, Storage

log = logging.getLogger(__name__)

_STUCK_SECONDS = 30.0  # a sequencer step running longer than this makes health() false
_RETRY_SECONDS = 0.2  # pause between recovery attempts while storage is failing


@dataclass(slots=True)
class _Request:
    entries: Sequence[bytes]
    future: Future[list[Result]]


class Sequencer:
    """The write side of one log: a queue and the thread that integrates it. See the module docstring."""

    def __init__(self, storage: Storage, config: LogConfig, hook: IntegrationHook | None, reader: TreeReader,
                 edge: RightEdge, publisher: CheckpointPublisher) -> None:
        self._storage = storage
        self._config = config
        self._hook = hook
        self.reader = reader  # the current tree reader: replaced (not mutated) by a recovery
        self.edge = edge  # the durable right edge; replaced after each commit
        self._publisher = publisher
        self._cond = threading.Condition()
        self._queue: collections.deque[_Request] = collections.deque()
        self._pending = 0
        self._closing = False
        self._broken = False
        self._busy_since: float | None = None
        self._thread = threading.Thread(target=self._run, name=f"sequencer[{config.origin}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, entries: Sequence[bytes]) -> Future[list[Result]]:
        """Queue ``entries``; the future resolves once the batch holding them is durable and signed.

        Each result is an :class:`Appended` or, for an entry the hook refused, its error.
        Raises :class:`InvalidInputError` (empty or oversized batch, oversized entry; an
        entry of zero bytes is accepted), :class:`ResourceExhaustedError` (queue full) or :class:`UnavailableError`
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
            if len(e) > cfg.max_entry_bytes:  # an empty entry is a valid leaf (RFC 9162 2.1.1: MTH({d(0)}))
                raise InvalidInputError(f"entry {i} is {len(e)} bytes; entries are 0 to {cfg.max_entry_bytes} bytes")
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

    def health(self) -> bool:
        """False when the thread has stopped, storage is failing, one step runs too long, or closing."""
        busy = self._busy_since
        stuck = busy is not None and time.monotonic() - busy > _STUCK_SECONDS
        return self._thread.is_alive() and not self._broken and not stuck and not self._closing

    @property
    def broken(self) -> bool:
        """True while storage is failing (since a failed commit, until a recovery succeeds)."""
        return self._broken

    def stop(self, drain: bool) -> None:
        """Stop taking entries; integrate what is queued (``drain``) or fail it; wait for the thread."""
        with self._cond:
            if not self._closing:
                self._closing = True
                if not drain:
                    self._fail_queued(UnavailableError("the log closed before integrating these entries"))
                self._cond.notify_all()
        self._thread.join()

    # ----------------------------------------------------------------- the thread

    def _fail_queued(self, err: ProvenanceError) -> None:
        """Requires ``self._cond`` held."""
        while self._queue:
            req = self._queue.popleft()
            self._pending -= len(req.entries)
            settle(req.future, err)

    def _take(self) -> list[_Request] | None:
        """Block for queued requests; None when it is time to stop."""
        limit = self._config.max_integrate_entries
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait(_RETRY_SECONDS if self._broken else None)
                if self._broken and not self._queue:
                    return []  # let the loop retry recovery while idle
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
                    settle(req.future, err)
            if self._broken or not reqs:
                continue
            self._busy_since = time.monotonic()
            try:
                self._integrate(reqs)
            except Exception as e:
                log.error("integration failed; recovering the tree head from storage",
                          extra={"tree_size": self.edge.size, "batch_requests": len(reqs)}, exc_info=True)
                err = UnavailableError("the log could not make these entries durable; retry")
                err.__cause__ = e
                for req in reqs:
                    settle(req.future, err)
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
        existing = confirm(storage, unique, limit=None)
        start = self.edge.size
        view: AuxView | None = None
        if self._hook is None and not existing and len(unique) == len(entries):
            new_entries, new_hashes = entries, hashes
            results: list[Result] = [Appended(i, h, False) for i, h in enumerate(hashes, start)]
        else:
            view = AuxView(storage)
            new_entries, new_hashes, results = self._admit(entries, hashes, existing, start, view)
        if new_entries:
            ext = self.edge.extend(new_hashes)
            head = ext.edge.head()
            storage.commit(Batch(start, new_entries, new_hashes, ext.writes, head,
                                 aux=[*view.pending.items(), *view.blind] if view else ()))
            self.edge = ext.edge
            self.reader.publish(ext.edge.partial_groups(), ext.full)
            self._publisher.publish(head)  # durable now: sign it before any writer hears back
        log.debug("integrated batch", extra={"tree_size": self.edge.size, "batch_entries": len(entries),
                                             "new_entries": len(new_entries)})
        pos = 0
        for req in reqs:
            n = len(req.entries)
            settle(req.future, results[pos : pos + n])
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

    def _recover(self) -> None:
        """After a failure: let storage recover, re-check it as an open does, resume.

        :meth:`Storage.recover` clears a latched write failure (RocksDB reopens in place), so
        no restart is needed once the cause (a full disk) is gone. The tree head is then read
        back and checked by :func:`~ledger.log.integrity.reopen_checked` with a fresh
        :class:`TreeReader`. If the failed batch landed, it is made durable and only then signed.
        """
        storage = self._storage
        signed = self._publisher.latest().checkpoint
        try:
            storage.recover()
            head, reader, edge = reopen_checked(storage, self._config.origin, self._config.cache_bytes, signed)
            # A synced (empty) commit of the head read back: it proves storage takes writes
            # again, and if the failed batch did land ("failed but saved", visible but maybe
            # not synced), it makes that batch durable before anything signs it.
            storage.commit(Batch(head.size, (), (), {}, head))
            self.reader = reader
            self.edge = edge
            if head.size > signed.size:
                self._publisher.publish(head)
            self._broken = False
            log.warning("recovered after a storage failure", extra={"tree_size": head.size})
        except Exception:
            self._broken = True
            log.error("log storage still failing", extra={"tree_size": signed.size}, exc_info=True)
