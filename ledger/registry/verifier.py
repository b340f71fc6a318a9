"""Checks record signatures in bulk, on worker processes when a batch is large enough to pay for it.

Ed25519 verification (about 100 µs each here) is most of the cost of registering a record.
OpenSSL releases the GIL while it verifies, but a thread must take the GIL back between
two signatures, and while the sequencer holds it (it admits a whole batch in Python) the
verifying threads stall for up to the interpreter's switch interval each time: two
threads reached well under two cores. Worker processes have no GIL to wait for.

Small batches (a CLI registration, a training loop's checkpoint) are checked in the
calling thread: no process is started until a batch of at least ``min_batch`` arrives,
and a server that never sees one never starts any. A pool that breaks (a worker killed)
is replaced, and the batch that saw it is checked in the calling thread, so a broken
worker never refuses or admits a record by itself. The answers are the same either way:
both paths run :func:`client.core.records.signing.signatures_valid`.

Workers are started with ``spawn`` (never ``fork``: the server's gRPC threads and locks
must not be copied). As with any ``multiprocessing`` use, a script that builds a
:class:`~ledger.registry.registry.Registry` with worker processes at import time must
guard its entry point with ``if __name__ == "__main__":``; ``provenance serve`` and
``python -m ...`` entry points need nothing.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from client.core.records.signing import signatures_valid

log = logging.getLogger(__name__)

Item = tuple[bytes, bytes, bytes]
"""``(public_key, body, signature)`` of one record."""

CHUNK = 64
"""Signatures per worker task: large enough that pickling and the round trip are noise (a few µs per
signature at most), small enough that a batch spreads over every worker."""


class SignatureChecker:
    """:func:`signatures_valid` for many records, on up to ``processes`` worker processes (0: never)."""

    def __init__(self, processes: int, min_batch: int = 2 * CHUNK) -> None:
        if processes < 0:
            raise ValueError(f"processes must be >= 0, got {processes}")
        self.processes = processes
        self.min_batch = max(1, min_batch)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False

    def check(self, items: Sequence[Item]) -> list[bool]:
        """Whether each signature verifies, in order."""
        if self.processes == 0 or len(items) < self.min_batch:
            return signatures_valid(items)
        pool = self._ensure_pool()
        if pool is None:
            return signatures_valid(items)
        try:
            futures: list[Future[list[bool]]] = [
                pool.submit(signatures_valid, items[i : i + CHUNK]) for i in range(0, len(items), CHUNK)
            ]
            return [ok for f in futures for ok in f.result()]
        except (BrokenProcessPool, RuntimeError, OSError) as err:
            # RuntimeError: submit after shutdown (closing) or a pool that broke between check and submit.
            log.warning("signature worker pool failed (%s); checking this batch in-process and replacing the pool",
                        err)
            self._drop(pool)
            return signatures_valid(items)

    def _ensure_pool(self) -> ProcessPoolExecutor | None:
        with self._lock:
            if self._closed:
                return None
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
                log.info("started signature worker processes", extra={"processes": self.processes})
            return self._pool

    def _drop(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the workers (waits for running tasks). Later checks run in the calling thread."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
