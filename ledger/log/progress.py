"""Is the sequencer making progress? Write-side bookkeeping for the health service.

``Log.health()`` already turns false when the sequencer thread dies, storage keeps
failing, or one step runs longer than its fixed limit. :class:`ProgressWatch` adds
the operator's bound: writes have been waiting for ``stuck_seconds`` and nothing was
integrated meanwhile (no submitted batch resolved, no checkpoint signed). It counts
every write that goes through :class:`WatchedLog`, which the entry point hands to
both the log service and the registry.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any


class ProgressWatch:
    """Outstanding writes and the time of the last progress. Thread-safe; the clock is injectable."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._outstanding = 0
        self._last_progress = clock()

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def started(self) -> None:
        with self._lock:
            if self._outstanding == 0:
                self._last_progress = self._clock()  # an idle log was not stuck while idle
            self._outstanding += 1

    def finished(self, _: object = None) -> None:
        with self._lock:
            self._outstanding -= 1
            self._last_progress = self._clock()

    def progressed(self, _: object = None) -> None:
        """Note progress without a write finishing (a checkpoint was signed)."""
        with self._lock:
            self._last_progress = self._clock()

    def stalled_for(self) -> float:
        """Seconds writes have waited with no progress; 0.0 when nothing is waiting."""
        with self._lock:
            if self._outstanding <= 0:
                return 0.0
            return self._clock() - self._last_progress


def track(watch: ProgressWatch, submit: Callable[[Sequence[bytes]], Future[Any]],
          entries: Sequence[bytes]) -> Future[Any]:
    """``submit(entries)``, counted by ``watch`` until its future resolves."""
    watch.started()
    try:
        fut = submit(entries)
    except BaseException:
        watch.finished()
        raise
    fut.add_done_callback(watch.finished)
    return fut


class WatchedLog:
    """A log whose ``submit`` futures are counted by a :class:`ProgressWatch`; everything else passes through.

    The entry point hands one to the registry (whose writes are then watched too) and
    to :class:`~ledger.grpc.server.LedgerServer`, which unwraps it for its own handlers.
    """

    def __init__(self, log: Any, watch: ProgressWatch | None = None) -> None:
        self.inner = log
        self.watch = watch if watch is not None else ProgressWatch()
        log.add_listener(self.watch.progressed)

    def submit(self, entries: Sequence[bytes]) -> Future[Any]:
        return track(self.watch, self.inner.submit, entries)

    @property
    def size(self) -> int:
        size: int = self.inner.size
        return size

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
