"""LoopBridge (ledger/grpc/bridge.py): futures resolved on other threads, awaited on the loop, one wake-up a burst."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import pytest

from ledger.grpc.bridge import LoopBridge


def test_a_burst_of_resolutions_wakes_the_loop_once() -> None:
    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        bridge = LoopBridge(loop)
        wakes = 0
        real = loop.call_soon_threadsafe

        def counting(cb, *args):  # type: ignore[no-untyped-def]
            nonlocal wakes
            wakes += 1
            return real(cb, *args)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        futs: list[Future[int]] = [Future() for _ in range(50)]
        waits = [asyncio.ensure_future(bridge.wait(f)) for f in futs]
        await asyncio.sleep(0)  # every wait registered

        def resolve_all() -> None:
            for i, f in enumerate(futs):
                f.set_result(i)

        t = threading.Thread(target=resolve_all)
        t.start()
        t.join()  # all 50 resolved before the loop runs again
        return list(await asyncio.gather(*waits)), wakes

    results, wakes = asyncio.run(main())
    assert results == list(range(50))
    assert wakes == 1


def test_exceptions_and_already_done_futures() -> None:
    async def main() -> None:
        bridge = LoopBridge(asyncio.get_running_loop())
        done: Future[str] = Future()
        done.set_result("ready")
        assert await bridge.wait(done) == "ready"
        failing: Future[str] = Future()
        threading.Timer(0.01, lambda: failing.set_exception(KeyError("boom"))).start()
        with pytest.raises(KeyError):
            await bridge.wait(failing)

    asyncio.run(main())


def test_cancelling_the_wait_cancels_a_queued_future() -> None:
    async def main() -> None:
        bridge = LoopBridge(asyncio.get_running_loop())
        fut: Future[int] = Future()
        task = asyncio.ensure_future(bridge.wait(fut))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()

    asyncio.run(main())
