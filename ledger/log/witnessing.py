"""Witness cosigning (c2sp.org/tlog-witness): push each new checkpoint to the policy's witnesses, keep the cosigned one.

:class:`Witnessing` follows the log (:meth:`CheckpointPublisher.add_follower`: called on the
publisher's thread, never the sequencer's, and only hands the checkpoint over). Each witness of
the policy that has a URL gets its own worker thread with its own keep-alive connection
(:mod:`ledger.log.witness_wire`), so a slow or dead witness delays nothing but its own
cosignature. A worker sends ``old <the witness's size>``, the consistency proof from there and the
note; a 409 tells it the witness's size and it retries from there; a timeout or 5xx backs off
(doubling, up to ``backoff_max_seconds``); a 400/403/404/422 is logged and that witness gets no
more checkpoints of this tree until the log restarts (a 422 means the witness holds a view of
this origin our tree does not extend: evidence of a fork, kept by the witness).

Which checkpoint a free worker sends: the one another worker took last (the *target*) if it has
not sent it yet, else the newest checkpoint, which becomes the target. A slow witness therefore
cosigns what the fast one cosigned before, and the quorum forms on the same checkpoint.

Every answer line is verified under the witness's policy key before it is kept. The cosigned
checkpoint served is the newest one whose lines satisfy the policy's quorum; until one has, the
newest with any cosignature (so a client can name who is missing). It is saved through
``persist`` (the entry point writes ``DATA/cosigned-checkpoint``) and reloaded at start after its
log signature and its consistency with the current tree are checked.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

from client.core.checkpoint import SignedCheckpoint
from client.core.cosignature import verify_cosignature
from client.core.merkle import verify_consistency
from client.core.note import Verifier
from client.core.witness_policy import PolicyWitness, QuorumResult, WitnessPolicy
from client.errors import InvalidInputError, ProvenanceError, UnavailableError
from ledger.log.publisher import settle
from ledger.log.witness_wire import Outcome, WitnessConnection, format_request

log = logging.getLogger(__name__)

MAX_KEPT = 64  # checkpoints whose cosignatures are still being gathered


class _Followed(Protocol):
    """What witnessing needs of the log (``ledger.log.Log`` or a cluster member)."""

    def latest(self) -> SignedCheckpoint: ...
    def consistency_proof(self, size1: int, size2: int) -> Sequence[bytes]: ...
    def add_follower(self, fn: Callable[[SignedCheckpoint], None]) -> Callable[[], None]: ...


@dataclass(frozen=True, slots=True)
class WitnessingConfig:
    """Timing of the pushes. Seconds."""

    timeout_seconds: float = 5.0  # one add-checkpoint call (connect + answer)
    backoff_min_seconds: float = 0.2  # first wait after a failure; doubles per failure
    backoff_max_seconds: float = 30.0
    max_conflicts: int = 3  # 409s in a row on one checkpoint before backing off
    # after a cosignature, a witness gets its next checkpoint no sooner than this: under a stream of
    # checkpoints (one per sequencer batch, hundreds a second) each push costs the log's process a proof,
    # an HTTP exchange and a signature check, which would otherwise take the CPU the writers need
    min_interval_seconds: float = 0.025

    def __post_init__(self) -> None:
        if not (self.timeout_seconds > 0 and 0 < self.backoff_min_seconds <= self.backoff_max_seconds):
            raise InvalidInputError("witnessing timeouts must be positive, backoff_min <= backoff_max")
        if not self.min_interval_seconds >= 0:
            raise InvalidInputError("witnessing min_interval_seconds must be >= 0")


@dataclass(frozen=True, slots=True)
class WitnessStatus:
    """One witness as the log sees it (for tests, health and logs)."""

    name: str
    url: str
    size: int  # the size the witness last cosigned for us (0: none yet)
    timestamp: int | None  # its latest cosignature's time
    failures: int  # consecutive failed calls
    stopped: str | None  # why it gets no more checkpoints, or None


class _Gathered:
    """The cosignature lines gathered for one checkpoint, by policy witness name."""

    __slots__ = ("signed", "lines")

    def __init__(self, signed: SignedCheckpoint) -> None:
        self.signed = signed
        self.lines: dict[str, str] = {}


class Witnessing:
    """See the module docstring. Create, then :meth:`start` with the log; :meth:`close` before the log closes."""

    def __init__(self, policy: WitnessPolicy, log_verifier: Verifier, *, saved: bytes | None = None,
                 persist: Callable[[bytes], None] | None = None, config: WitnessingConfig | None = None) -> None:
        self._policy = policy
        self._verifier = log_verifier
        self._saved = saved
        self._persist = persist
        self._config = config or WitnessingConfig()
        self._lock = threading.Condition()
        self._newest: SignedCheckpoint | None = None
        self._target: SignedCheckpoint | None = None
        self._gathered: dict[int, _Gathered] = {}
        self._best: SignedCheckpoint | None = None  # newest meeting the quorum
        self._partial: SignedCheckpoint | None = None  # newest with any cosignature, while none met it
        self._waiters: list[tuple[int, Future[SignedCheckpoint]]] = []
        self._workers = [_Worker(self, w) for w in policy.witnesses if w.url]
        self._closing = False
        self._source: _Followed | None = None
        self._unfollow: Callable[[], None] | None = None

    @property
    def policy(self) -> WitnessPolicy:
        return self._policy

    # ------------------------------------------------------------------ lifecycle

    def start(self, source: _Followed) -> None:
        """Reload the saved cosigned checkpoint (checked against ``source``), start the workers, follow the log."""
        self._source = source
        latest = source.latest()
        if self._saved is not None:
            self._restore(self._saved, latest)
        with self._lock:
            self._newest = latest
        for w in self._workers:
            w.start()
        self._unfollow = source.add_follower(self.offer)
        log.info("witnessing started", extra={"witnesses": [w.witness.name for w in self._workers],
                                              "quorum": self._policy.quorum, "tree_size": latest.checkpoint.size})

    def close(self) -> None:
        """Stop the workers (each within about one call timeout) and fail every cosigned-checkpoint wait."""
        if self._unfollow is not None:
            self._unfollow()
        with self._lock:
            self._closing = True
            waiters, self._waiters = self._waiters, []
            self._lock.notify_all()
        for _, fut in waiters:
            settle(fut, UnavailableError("the log closed before a cosigned checkpoint covered the entries"))
        for w in self._workers:
            w.abort()
        deadline = time.monotonic() + self._config.timeout_seconds + 1.0
        for w in self._workers:
            w.join(max(0.0, deadline - time.monotonic()))

    def _restore(self, note: bytes, latest: SignedCheckpoint) -> None:
        try:
            signed = SignedCheckpoint.open(note, self._verifier)
            size = signed.checkpoint.size
            if size > latest.checkpoint.size:
                raise InvalidInputError(f"it is of size {size}, beyond the log's {latest.checkpoint.size}")
            if 0 < size < latest.checkpoint.size:
                assert self._source is not None
                proof = list(self._source.consistency_proof(size, latest.checkpoint.size))
                verify_consistency(size, latest.checkpoint.size, proof, signed.checkpoint.root,
                                   latest.checkpoint.root)
            elif size == latest.checkpoint.size and signed.checkpoint.root != latest.checkpoint.root:
                raise InvalidInputError("its root differs from the log's at that size")
        except ProvenanceError as err:
            log.error("saved cosigned checkpoint ignored: %s", err)
            return
        result = self._policy.evaluate(note)
        with self._lock:
            if result.satisfied:
                self._best = signed
            else:
                self._partial = signed
        for w in self._workers:
            if w.witness.name in result.verified:
                w.seed(size)

    # ------------------------------------------------------------------ following and serving

    def offer(self, signed: SignedCheckpoint) -> None:
        """A new checkpoint of the log (the follower; quick: wakes the workers)."""
        with self._lock:
            if self._newest is None or signed.checkpoint.size > self._newest.checkpoint.size:
                self._newest = signed
                self._lock.notify_all()

    def cosigned(self) -> SignedCheckpoint | None:
        """The newest checkpoint meeting the quorum, else the newest with any cosignature, else None.

        Its note is the log's signed note followed by the witnesses' verified cosignature lines.
        """
        with self._lock:
            return self._best if self._best is not None else self._partial

    def wait_for_cosigned(self, size: int) -> Future[SignedCheckpoint]:
        """A future of the first checkpoint of at least ``size`` leaves that meets the quorum.

        No deadline of its own: the caller cancels it (or stops waiting); it fails with
        :class:`UnavailableError` if witnessing closes first.
        """
        fut: Future[SignedCheckpoint] = Future()
        with self._lock:
            if self._best is not None and self._best.checkpoint.size >= size:
                fut.set_result(self._best)
            elif self._closing:
                fut.set_exception(UnavailableError("the log is closing"))
            else:
                self._waiters = [w for w in self._waiters if not w[1].done()]
                self._waiters.append((size, fut))
        return fut

    def status(self) -> list[WitnessStatus]:
        return [w.status() for w in self._workers]

    # ------------------------------------------------------------------ for the workers

    def _next_for(self, worker: _Worker) -> SignedCheckpoint | None:
        """The checkpoint ``worker`` should send now, or None. Requires ``self._lock``."""
        t = self._target
        if t is not None and worker.wants(t):
            return t
        n = self._newest
        if n is not None and worker.wants(n):
            self._target = n
            return n
        return None

    def _cosigned_by(self, witness: PolicyWitness, signed: SignedCheckpoint, lines: Sequence[str]) -> int | None:
        """Keep ``witness``'s verified line for ``signed``; return its timestamp (None: no line of its key)."""
        timestamp: int | None = None
        kept = ""
        for line in lines:
            try:
                ts = verify_cosignature(witness.key, signed.note + line.encode("utf-8"))
            except ProvenanceError as err:
                log.warning("witness %s sent a cosignature that does not verify: %s", witness.name, err,
                            extra={"witness": witness.name, "tree_size": signed.checkpoint.size})
                return None
            if ts is not None and (timestamp is None or ts >= timestamp):
                timestamp, kept = ts, line
        if timestamp is None:
            log.warning("witness %s answered with no line of its policy key %s", witness.name, witness.key.text(),
                        extra={"witness": witness.name, "tree_size": signed.checkpoint.size})
            return None
        size = signed.checkpoint.size
        with self._lock:
            entry = self._gathered.get(size)
            if entry is None or entry.signed.note != signed.note:
                entry = self._gathered[size] = _Gathered(signed)
            entry.lines[witness.name] = kept
            note = signed.note + "".join(entry.lines[w.name] for w in self._policy.witnesses
                                         if w.name in entry.lines).encode("utf-8")
            combined = SignedCheckpoint(signed.checkpoint, note)
            result: QuorumResult = self._policy.evaluate(note)
            ready: list[Future[SignedCheckpoint]] = []
            improved = result.satisfied and (self._best is None or size >= self._best.checkpoint.size)
            if improved:
                self._best, self._partial = combined, None
                ready = [f for s, f in self._waiters if s <= size]
                self._waiters = [(s, f) for s, f in self._waiters if s > size]
                for old in [s for s in self._gathered if s < size]:
                    del self._gathered[old]
            elif self._best is None and (self._partial is None or size >= self._partial.checkpoint.size):
                self._partial = combined
            while len(self._gathered) > MAX_KEPT:
                del self._gathered[min(self._gathered)]
            persist = self._persist if improved else None
        for fut in ready:
            settle(fut, combined)
        if persist is not None:
            try:
                persist(note)
            except (OSError, ProvenanceError) as err:
                log.warning("could not save the cosigned checkpoint: %s", err, extra={"tree_size": size})
        return timestamp

    def _proof(self, old: int, new: int) -> list[bytes]:
        assert self._source is not None
        return [] if old == 0 or old == new else list(self._source.consistency_proof(old, new))


class _Worker:
    """One witness's thread: sends it checkpoints, one call at a time."""

    def __init__(self, owner: Witnessing, witness: PolicyWitness) -> None:
        assert witness.url is not None
        self.witness = witness
        self._owner = owner
        self._conn = WitnessConnection(witness.url, owner._config.timeout_seconds)
        self._old = 0  # the size we believe the witness holds
        self._done = -1  # the largest size this worker is finished with (cosigned, or skipped)
        self._timestamp: int | None = None
        self._failures = 0
        self._conflicts = 0
        self._retry_at = 0.0
        self._stopped: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"witness[{witness.name}]", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def abort(self) -> None:
        """Cut a call in progress short (closing: its answer no longer matters)."""
        self._conn.abort()

    def seed(self, size: int) -> None:
        """The witness cosigned ``size`` before the restart (from the saved cosigned checkpoint)."""
        self._old = self._done = size

    def wants(self, signed: SignedCheckpoint) -> bool:
        size = signed.checkpoint.size
        return self._stopped is None and size > self._done and size >= self._old

    def status(self) -> WitnessStatus:
        return WitnessStatus(self.witness.name, self._conn.endpoint, max(self._done, 0), self._timestamp,
                             self._failures, self._stopped)

    def _run(self) -> None:
        owner = self._owner
        try:
            while True:
                with owner._lock:
                    while True:
                        if owner._closing:
                            return
                        wait = self._retry_at - time.monotonic()
                        signed = owner._next_for(self) if wait <= 0 else None
                        if signed is not None:
                            break
                        owner._lock.wait(wait if wait > 0 else None)
                self._send(signed)
        finally:
            self._conn.close()

    def _send(self, signed: SignedCheckpoint) -> None:
        size = signed.checkpoint.size
        try:
            body = format_request(self._old, self._owner._proof(self._old, size), signed.note)
        except ProvenanceError as err:  # the tree cannot prove from the witness's size (e.g. it is ahead)
            self._backoff(Outcome("retry", detail=f"no consistency proof from {self._old} to {size}: {err}"))
            return
        out = self._conn.add_checkpoint(body)
        name = self.witness.name
        if out.kind == "cosigned":
            ts = self._owner._cosigned_by(self.witness, signed, out.lines)
            if ts is None:
                self._backoff(Outcome("retry", detail="no valid cosignature line of its key"))
                return
            self._old, self._done, self._timestamp = size, size, ts
            self._failures = self._conflicts = 0
            self._retry_at = time.monotonic() + self._owner._config.min_interval_seconds
        elif out.kind == "conflict":
            assert out.size is not None
            self._conflicts += 1
            log.info("witness %s holds size %d (we sent old %d); retrying from there", name, out.size, self._old,
                     extra={"witness": name, "tree_size": size, "witness_size": out.size})
            self._old = out.size
            if out.size > size:
                log.error("witness %s holds size %d, larger than this log's checkpoint %d: it saw another "
                          "checkpoint of this origin (a fork, or this log lost entries); waiting for the log "
                          "to reach that size", name, out.size, size,
                          extra={"witness": name, "tree_size": size, "witness_size": out.size})
                self._done = size
            elif self._conflicts >= self._owner._config.max_conflicts:
                self._backoff(Outcome("retry", detail=f"{self._conflicts} conflicts in a row"))
        elif out.kind == "refused":
            self._stopped = f"HTTP {out.status}: {out.detail}"
            log.error("witness %s refused the checkpoint of size %d (%s); it gets no more checkpoints of this "
                      "log until the log restarts", name, size, self._stopped,
                      extra={"witness": name, "tree_size": size, "status": out.status})
        else:
            self._backoff(out)

    def _backoff(self, out: Outcome) -> None:
        cfg = self._owner._config
        self._failures += 1
        self._conflicts = 0
        delay = min(cfg.backoff_max_seconds, cfg.backoff_min_seconds * (2 ** min(self._failures - 1, 20)))
        if out.retry_after is not None:
            delay = min(cfg.backoff_max_seconds, max(delay, out.retry_after))
        self._retry_at = time.monotonic() + delay
        log.warning("witness %s: %s; retrying in %.1f s", self.witness.name, out.detail, delay,
                    extra={"witness": self.witness.name, "failures": self._failures})
