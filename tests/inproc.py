"""An in-process :class:`~ledger.grpc.server.LedgerServer` around any log, on a background event loop.

Like ``tests/fake_log.in_process_server`` but for any log (the real ``ledger.log.Log``
over a test storage, or a fake) and any :class:`~ledger.app.config.ServerConfig` fields::

    with serving(log, verifier_key, origin="x/y", tls_cert=..., tls_key=...) as (address, server):
        ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ledger.app.config import ServerConfig
from ledger.grpc.server import LedgerServer


@contextmanager
def serving(
    log: Any, verifier_key: str, extra: Sequence[Any] = (), **config: Any
) -> Iterator[tuple[str, LedgerServer]]:
    """Serve ``log`` (and ``extra`` services) on a free 127.0.0.1 port; yields ``(address, server)``."""
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
    assert ready.wait(10), "in-process server did not start"
    if "error" in holder:
        thread.join(5)
        loop.close()
        raise holder["error"]
    try:
        yield f"127.0.0.1:{holder['port']}", holder["server"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(10)
        loop.close()
