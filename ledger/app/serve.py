"""Entry point of ``provenance serve``: the only place that reads the data dir, sets up logging and signals.

Startup: configure logging (text or JSON), resolve the origin (the data dir
remembers it; a different ``--origin`` is refused), refuse a data dir whose log has
signed before but whose store is missing (``--new-log`` starts over with a new key;
``ledger/app/continuity.py``), load or create the signing key (a different key for a
log that already has one is refused unless ``--rotate-key``), open RocksDB and the log,
record the origin and key files, start the store's background scrub and the metrics
endpoint if asked, then serve until SIGTERM or SIGINT. Shutdown drains: health goes NOT_SERVING, new calls are
refused, in-flight calls finish, the sequencer commits what it accepted, RocksDB
closes, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import platform
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client.errors import InvalidInputError, ProvenanceError
from ledger.app.config import KEY_FILE, KEY_HISTORY_FILE, ORIGIN_FILE, PUBLIC_KEY_FILE, STORE_DIR, ServerConfig
from ledger.app.logjson import capture_native_stderr
from ledger.app.logjson import configure_logging as _configure
from ledger.errors import KeyFileError
from ledger.grpc.metrics import ServerMetrics, TimedStorage
from ledger.grpc.server import LedgerServer
from ledger.grpc.tls import TlsMaterial, load_tls
from ledger.log.progress import WatchedLog

_log = logging.getLogger(__name__)


def resolve_origin(data_dir: Path, requested: str | None, new_log: bool = False,
                   key_path: Path | None = None) -> str:
    """The log's origin: the one stored in ``data_dir``, which ``requested`` (if given) must equal.

    On first start (or with ``new_log``) it is ``requested``, else the name of an existing signing key
    (``key_path`` or ``DATA/log.key``), else a unique ``<host>/provenance-ledger/<hex>``
    (``ledger/app/origins.py``); :func:`run` writes it to ``DATA/origin`` once the log has opened
    (see ``ledger/app/continuity.py``).
    """
    path = data_dir / ORIGIN_FILE
    if path.exists() and not (new_log and requested is not None):
        stored = path.read_text(encoding="utf-8").strip()
        if requested is not None and requested != stored:
            raise InvalidInputError(
                f"data dir {data_dir} holds the log {stored!r}; refusing to serve it as {requested!r}"
            )
        return stored
    if requested:
        origin = requested
    elif path.exists():
        origin = path.read_text(encoding="utf-8").strip()
    else:
        from ledger.app.origins import default_origin

        origin = default_origin(data_dir, key_path or data_dir / KEY_FILE, data_dir / STORE_DIR)
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return origin


def _stored_public_key(data_dir: Path) -> str | None:
    path = data_dir / PUBLIC_KEY_FILE
    return path.read_text(encoding="utf-8").strip() if path.exists() else None


def check_key_continuity(config: ServerConfig) -> None:
    """Refuse to silently start a log that already has a key under a new one.

    A missing key file for a data dir whose ``log.pub`` exists would otherwise be
    replaced by a fresh key, and every client pinned to the old one would see a
    different log. Rotation is explicit: ``--rotate-key``.
    """
    stored = _stored_public_key(config.data_dir)
    path = config.signer_key_path
    if stored is not None and not path.exists() and not config.rotate_key:
        raise KeyFileError(f"the log in {config.data_dir} has a verifier key but its signing key {path} is "
                           "missing; restore it from a backup, or pass --rotate-key to start a new key")


def check_public_key(data_dir: Path, verifier_key: str, rotate: bool) -> None:
    """Refuse (:class:`KeyFileError`) a key other than ``DATA/log.pub``'s unless ``rotate``; reads only."""
    stored = _stored_public_key(data_dir)
    if stored is not None and stored != verifier_key and not rotate:
        raise KeyFileError(f"the signing key's verifier key differs from {data_dir / PUBLIC_KEY_FILE} (the key "
                           "this log has signed with); pass --rotate-key to hand the log over to the new key")


def record_public_key(data_dir: Path, verifier_key: str, rotate: bool) -> None:
    """Keep ``DATA/log.pub`` (the current verifier key) and ``DATA/log-keys`` (every key the log used).

    A key different from the stored one is refused unless ``rotate``; then the old
    key stays in ``log-keys`` so checkpoints it signed remain verifiable.
    """
    path = data_dir / PUBLIC_KEY_FILE
    history = data_dir / KEY_HISTORY_FILE
    stored = _stored_public_key(data_dir)
    if stored is not None and stored != verifier_key:
        if not rotate:
            raise KeyFileError(f"the signing key's verifier key differs from {path} (the key this log has "
                               "signed with); pass --rotate-key to hand the log over to the new key")
        _log.warning("log key rotated", extra={"old_key_id": stored.rsplit("+", 2)[-2],
                                               "new_key_id": verifier_key.rsplit("+", 2)[-2]})
    known = history.read_text(encoding="utf-8").split() if history.exists() else []
    added = [k for k in (stored, verifier_key) if k is not None and k not in known]
    if added:
        with open(history, "a", encoding="utf-8") as f:
            f.write("".join(k + "\n" for k in added))
    if stored == verifier_key:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(verifier_key + "\n", encoding="utf-8")
    os.replace(tmp, path)


def configure_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Log to stderr in ``fmt`` ("text" or "json", one object per line); per-call events are at DEBUG.

    With JSON, what C libraries write to stderr (gRPC core) is wrapped into JSON records as well.
    """
    _configure(fmt, level, capture_native_stderr() if fmt == "json" else sys.stderr)


def build_config(
    data_dir: Path, listen: str, origin: str | None, key_path: Path | None, **options: Any
) -> ServerConfig:
    """Flags to a validated :class:`ServerConfig` (reads ``DATA/origin``; creates ``DATA`` if absent).

    ``options`` are further :class:`ServerConfig` fields (limits, TLS files, metrics, logging).
    """
    fields = ServerConfig.__dataclass_fields__
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise InvalidInputError(f"unknown server options {unknown}")
    return ServerConfig(
        data_dir=data_dir,
        listen=listen,
        origin=resolve_origin(data_dir, origin, bool(options.get("new_log")), key_path),
        key_path=key_path,
        **options,
    )


def run(config: ServerConfig) -> int:
    """Open the log and serve until SIGTERM/SIGINT; returns the process exit code."""
    from ledger.app import continuity
    from ledger.app.keys import load_or_create_signer
    from ledger.log import LogConfig
    from ledger.storage.open import open_storage

    # Every file check that can fail does so before anything is created or opened.
    tls = load_tls(config.tls_cert, config.tls_key, config.client_ca) if config.tls_cert and config.tls_key else None
    from ledger.app import witnesses

    policy = witnesses.load_policy(config.witness_policy, config.origin) if config.witness_policy else None
    continuity.check_store_present(config)
    if config.new_log:
        continuity.retire_old_log(config.data_dir)
    else:
        check_key_continuity(config)
    signer = load_or_create_signer(config.signer_key_path, config.origin)
    verifier_key = signer.verifier().text()
    check_public_key(config.data_dir, verifier_key, config.rotate_key)
    log_config = LogConfig(
        origin=config.origin,
        max_entry_bytes=config.max_entry_bytes,
        max_batch_entries=config.max_batch_entries,
        max_range=config.max_range,
        cache_bytes=config.hash_cache_bytes,
    )
    from ledger.grpc.manifest_staging import ManifestLimits
    from ledger.grpc.registry_service import RegistryService
    from ledger.registry.setup import registry_for

    registry = registry_for(config.allowlist, config.signature_processes, config.allow_raw_entries)
    metrics = ServerMetrics()
    storage = open_storage(config.store_spec)  # --store SPEC (PostgreSQL), else RocksDB in DATA
    try:
        continuity.check_store_holds_log(config, storage.read_head() is not None)
        log = _open_log(config, TimedStorage(storage, metrics), signer, log_config, registry.hook)
    except BaseException:
        storage.close()
        registry.close()
        raise
    scrubber = None
    try:
        # Only now, with a tree head and a signed head on disk: these files say the log has signed.
        continuity.record_origin(config.data_dir, config.origin)
        record_public_key(config.data_dir, verifier_key, config.rotate_key)
        scrubber = _start_scrub(config, storage, log.report_damage)
        watched = WatchedLog(log)  # the registry's writes count for the stuck-sequencer health check too
        registry.attach(watched)
        cosigning = witnesses.start_witnessing(policy, config.data_dir, log, signer.verifier()) if policy else None
        service = RegistryService(registry, log, verifier_key, ManifestLimits.from_config(config),
                                  witnessing=cosigning)
        http = _start_http(config, log, registry, verifier_key, cosigning)
        tiles = _start_tiles_dir(config, log, signer.verifier())
        try:
            with asyncio.Runner(loop_factory=_loop_factory()) as runner:
                return runner.run(_serve(watched, config, verifier_key, [service], metrics, storage, tls, cosigning))
        finally:
            if cosigning is not None:
                cosigning.close()
            if http is not None:
                http.stop()
            if tiles is not None:
                tiles.stop()
    finally:
        if scrubber is not None:
            scrubber.stop()
        log.close(drain=True)
        registry.close()


def _open_log(config: ServerConfig, storage: Any, signer: Any, log_config: Any, hook: Any) -> Any:
    """The log over ``storage``: on PostgreSQL a cluster frontend (``ledger/cluster``: any number of
    ``serve`` processes may share the database; one signs at a time), else :class:`ledger.log.Log`."""
    spec = config.store_spec
    if spec.dsn is not None:
        from ledger.cluster.config import ClusterConfig
        from ledger.cluster.log import ClusterLog

        holder = f"{platform.node()} {config.listen}"  # who holds the signer role, in signer_lease
        return ClusterLog.open(storage, ClusterConfig(spec.dsn, holder=holder), signer, log_config, hook)
    from ledger.log import Log

    return Log.open(storage, signer, log_config, hook=hook)


def _start_http(config: ServerConfig, log: Any, registry: Any, verifier_key: str, witnessing: Any = None) -> Any:
    """The HTTP read edge (``ledger/http/``) on ``config.http_listen``, started; None when not asked for."""
    if config.http_listen is None:
        return None
    from ledger.http.server import HttpServer
    from ledger.http.site import Site, build_router

    site = Site(log=log, registry=registry.reader, verifier_key=verifier_key, origin=config.origin,
                witnessing=witnessing)
    server = HttpServer(config.http_listen, build_router(site))
    port = server.start()
    _log.info("serving HTTP on %s", f"{config.http_listen.rpartition(':')[0]}:{port}",
              extra={"http_port": port})
    return server


def _start_tiles_dir(config: ServerConfig, log: Any, verifier: Any) -> Any:
    """The ``--tiles-dir`` writer (``ledger/http/tiles_dir.py``), started; None when not asked for."""
    if config.tiles_dir is None:
        return None
    from ledger.http.tiles_dir import TilesDirWriter

    writer = TilesDirWriter(log, config.tiles_dir, verifier)
    writer.start()
    _log.info("writing tiles into %s", config.tiles_dir, extra={"tiles_dir": str(config.tiles_dir)})
    return writer


def _start_scrub(config: ServerConfig, storage: Any, on_damage: Callable[[str], None]) -> Any:
    """The store's background scrub (``ledger/storage/scrub.py``), started; None when off or not RocksDB."""
    from ledger.storage.rocks import RocksStorage
    from ledger.storage.scrub import Scrubber, ScrubPace

    if config.scrub_interval_seconds <= 0 or not isinstance(storage, RocksStorage):
        return None
    pace = ScrubPace(bytes_per_second=config.scrub_bytes_per_second)
    scrubber = Scrubber(lambda stop: storage.scrub(pace, stop), config.scrub_interval_seconds, on_damage)
    scrubber.start()
    return scrubber


async def _serve(log: Any, config: ServerConfig, verifier_key: str, extra: Sequence[Any] = (),
                 metrics: ServerMetrics | None = None, storage: Any = None, tls: TlsMaterial | None = None,
                 witnessing: Any = None) -> int:
    server = LedgerServer(log, config, verifier_key, extra, metrics=metrics, tls=tls, witnessing=witnessing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backups: set[asyncio.Task[None]] = set()
    if config.backup_dir is not None and storage is not None:
        backup_dir, store = config.backup_dir, storage

        def on_usr1() -> None:
            if backups:
                _log.warning("online backup already running; SIGUSR1 ignored")
                return
            task = loop.create_task(_online_backup(store, config.data_dir, backup_dir))
            backups.add(task)
            task.add_done_callback(backups.discard)

        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
    port = await server.start()
    host = config.listen.rpartition(":")[0]
    _log.info("serving origin=%s listen=%s:%d data=%s store=%s", config.origin, host, port, config.data_dir,
              config.store_spec.describe(),
              extra={"origin": config.origin, "port": port, "tree_size": log.size,
                     "transport": "mtls" if config.client_ca else "tls" if config.tls else "plaintext",
                     "metrics_port": server.metrics_port,
                     "rate_limit_per_second": config.rate_limit_per_second or None})
    await stop.wait()
    _log.info("draining: refusing new calls, finishing in-flight ones (up to %.0fs)", config.drain_seconds)
    await server.stop()
    for task in list(backups):
        await task  # the store must stay open until the checkpoint is written
    _log.info("stopped serving; closing the log")
    return 0


async def _online_backup(storage: Any, data_dir: Path, root: Path) -> None:
    from ledger.app.backup import online_backup

    _log.info("online backup started", extra={"backup_dir": str(root)})
    try:
        report = await asyncio.to_thread(online_backup, storage, data_dir, root)
    except Exception as err:
        _log.error("online backup failed: %s", err, extra={"backup_dir": str(root)})
        return
    _log.info("online backup written", extra={"out": report["out"], "tree_size": report["tree_size"],
                                               "signed_size": report["signed_size"]})


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (every platform but Windows): gRPC's asyncio server spends
    most of a waited add's CPU in loop callbacks, and libuv's loop runs them about 10 % cheaper."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(config: ServerConfig) -> int:
    configure_logging(config.log_format, config.log_level)
    try:
        return run(config)
    except ProvenanceError as err:
        from client.exit_codes import exit_code_for

        _log.error("cannot serve: %s", err)
        return exit_code_for(err)
