"""The one in-process server of the tests: a :class:`~ledger.grpc.server.LedgerServer` on a background loop.

Serves any log (the real ``ledger.log.Log`` over a test storage, or ``tests/fake_log.FakeLog``)
and any further services, with any :class:`~ledger.app.config.ServerConfig` fields::

    with serving(log, verifier_key, origin="x/y", tls_cert=..., tls_key=...) as (address, server):
        ...
    with serving(fake_log, max_range=4) as (address, server):  # a FakeLog: its own key and origin
        ...

Tests that need a real ``provenance serve`` process use ``tests/servers.py`` instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ledger.app.config import ServerConfig
from ledger.grpc.handlers import Service
from ledger.grpc.server import LedgerServer

START_SECONDS = 10.0
STOP_SECONDS = 10.0


@contextmanager
def serving(
    log: Any, verifier_key: str | None = None, extra: Sequence[Service] = (), **config: Any
) -> Iterator[tuple[str, LedgerServer]]:
    """Serve ``log`` (and ``extra`` services) on a free 127.0.0.1 port; yields ``(address, server)``.

    ``verifier_key`` None: the log is a FakeLog, and its signer's key is served (and its origin,
    unless ``origin`` is given). A server that fails to start raises its error here.
    """
    if verifier_key is None:
        verifier_key = log.signer.verifier().text()
        config.setdefault("origin", log.origin)
    config.setdefault("listen", "127.0.0.1:0")
    cfg = ServerConfig(**config)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        try:
            server = LedgerServer(log, cfg, verifier_key, extra)
            holder["server"] = server
            holder["port"] = await server.start()
        except BaseException as err:
            holder["error"] = err
            ready.set()
            return
        holder["stop"] = asyncio.Event()
        ready.set()
        await holder["stop"].wait()
        await server.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), daemon=True)
    thread.start()
    assert ready.wait(START_SECONDS), "in-process server did not start"
    if "error" in holder:
        thread.join(5)
        loop.close()
        raise holder["error"]
    try:
        yield f"127.0.0.1:{holder['port']}", holder["server"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(STOP_SECONDS)
        loop.close()
