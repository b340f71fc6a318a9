"""Entry point of ``provenance serve``: the only place that reads the data dir, sets up logging and signals.

Startup: resolve the origin (the data dir remembers it; a different ``--origin``
is refused), load or create the signing key, open RocksDB and the log, then serve
until SIGTERM or SIGINT. Shutdown drains: health goes NOT_SERVING, new calls are
refused, in-flight calls finish, the sequencer commits what it accepted, RocksDB
closes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from client.errors import InvalidInputError, ProvenanceError
from ledger.config import DEFAULT_ORIGIN, ORIGIN_FILE, PUBLIC_KEY_FILE, ServerConfig
from ledger.server import LedgerServer, LogLike

_log = logging.getLogger(__name__)


def resolve_origin(data_dir: Path, requested: str | None) -> str:
    """The log's origin: the one stored in ``data_dir``, which ``requested`` (if given) must equal.

    On first start the origin (``requested`` or the default) is written to ``DATA/origin``.
    """
    path = data_dir / ORIGIN_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if requested is not None and requested != stored:
            raise InvalidInputError(
                f"data dir {data_dir} holds the log {stored!r}; refusing to serve it as {requested!r}"
            )
        return stored
    origin = requested or DEFAULT_ORIGIN
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(origin + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return origin


def _write_public_key(path: Path, verifier_key: str) -> None:
    """Keep ``DATA/log.pub`` (the verifier key, public) for ``provenance log-key --data``."""
    if path.exists() and path.read_text(encoding="utf-8").strip() == verifier_key:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(verifier_key + "\n", encoding="utf-8")
    os.replace(tmp, path)


def configure_logging(level: int = logging.INFO) -> None:
    """Log to stderr, one line per event; per-call events are at DEBUG (never on the hot path at INFO)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def build_config(
    data_dir: Path, listen: str, origin: str | None, key_path: Path | None, **limits: int | float
) -> ServerConfig:
    """Flags to a validated :class:`ServerConfig` (reads and, on first start, writes ``DATA/origin``)."""
    return ServerConfig(
        data_dir=data_dir,
        listen=listen,
        origin=resolve_origin(data_dir, origin),
        key_path=key_path,
        **limits,  # type: ignore[arg-type]
    )


def run(config: ServerConfig) -> int:
    """Open the log and serve until SIGTERM/SIGINT; returns the process exit code."""
    from ledger.keys import load_or_create_signer
    from ledger.log import Log, LogConfig
    from ledger.storage.rocks import RocksStorage

    signer = load_or_create_signer(config.signer_key_path, config.origin)
    verifier_key = signer.verifier().text()
    _write_public_key(config.data_dir / PUBLIC_KEY_FILE, verifier_key)
    log_config = LogConfig(
        origin=config.origin,
        max_entry_bytes=config.max_entry_bytes,
        max_batch_entries=config.max_batch_entries,
        max_range=config.max_range,
    )
    from ledger.registry.setup import registry_for, registry_service

    registry = registry_for(config.allowlist)
    storage = RocksStorage.open(config.store_path)
    try:
        log = Log.open(storage, signer, log_config, hook=registry.hook)
    except BaseException:
        storage.close()
        raise
    registry.attach(log)
    try:
        return asyncio.run(_serve(log, config, verifier_key, [registry_service(registry, log, verifier_key)]))
    finally:
        log.close(drain=True)
        registry.close()


async def _serve(log: LogLike, config: ServerConfig, verifier_key: str, extra: Sequence[Any] = ()) -> int:
    server = LedgerServer(log, config, verifier_key, extra)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    port = await server.start()
    host = config.listen.rpartition(":")[0]
    _log.info("serving origin=%s listen=%s:%d data=%s", config.origin, host, port, config.data_dir)
    await stop.wait()
    _log.info("draining: refusing new calls, finishing in-flight ones (up to %.0fs)", config.drain_seconds)
    await server.stop()
    _log.info("stopped serving; closing the log")
    return 0


def main(config: ServerConfig) -> int:
    configure_logging()
    try:
        return run(config)
    except ProvenanceError as err:
        from client.cli import exit_code_for

        _log.error("cannot serve: %s", err)
        return exit_code_for(err)
