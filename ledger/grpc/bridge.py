"""Waiting on the event loop for futures that other threads resolve, with one wake-up per burst.

``asyncio.wrap_future`` wakes the loop once per future: each resolution calls
``call_soon_threadsafe``, which writes to the loop's self-pipe. The sequencer resolves
every future of a batch in a row, so with many writers waiting that is one system call
per writer on the sequencer's thread, each one a chance for the GIL to pass to the
event loop and come back only at the next switch interval (a convoy of up to 5 ms per
hand-off). :class:`LoopBridge` queues resolved futures and wakes the loop once for all
that complete before it runs; the loop then copies their outcomes to asyncio futures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
from concurrent.futures import Future
from typing import TypeVar

T = TypeVar("T")


class LoopBridge:
    """Turns ``concurrent.futures.Future`` objects into awaitables of one event loop (:meth:`wait`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._loop = loop
        self._done: collections.deque[tuple[Future[object], asyncio.Future[object]]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    async def wait(self, fut: Future[T]) -> T:
        """The result of ``fut`` (or its exception); cancelling the wait cancels ``fut`` if it has not started."""
        if fut.done():
            return fut.result()
        waiter: asyncio.Future[object] = self._loop.create_future()
        fut.add_done_callback(lambda f: self._resolved(f, waiter))  # type: ignore[arg-type]
        try:
            return await waiter  # type: ignore[return-value]
        except asyncio.CancelledError:
            fut.cancel()
            raise

    def _resolved(self, fut: Future[object], waiter: asyncio.Future[object]) -> None:
        """On the resolving thread: queue the pair; only the first of a burst wakes the loop."""
        with self._lock:
            self._done.append((fut, waiter))
            if self._scheduled:
                return
            self._scheduled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """On the loop: copy every queued outcome into its waiter."""
        with self._lock:
            self._scheduled = False
            done, self._done = self._done, collections.deque()
        for fut, waiter in done:
            if waiter.done():
                continue
            if fut.cancelled():
                waiter.cancel()
                continue
            err = fut.exception()
            if err is not None:
                waiter.set_exception(err)
            else:
                waiter.set_result(fut.result())
