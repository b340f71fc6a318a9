"""The server's configuration: one frozen dataclass, validated when built.

Only the entry point (``ledger/app/serve.py``) reads flags, environment and files;
everything else takes a :class:`ServerConfig`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from client.errors import InvalidInputError
from ledger.storage.open import StoreSpec

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_ORIGIN = "localhost/provenance-ledger"
DEFAULT_DATA_DIR = Path("provenance-data")
KEY_FILE = "log.key"
PUBLIC_KEY_FILE = "log.pub"  # the verifier key, for `provenance log-key --data`
KEY_HISTORY_FILE = "log-keys"  # every verifier key the log has signed with, oldest first
ORIGIN_FILE = "origin"
STORE_DIR = "log.rocksdb"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``provenance serve`` needs. Sizes are bytes, times seconds."""

    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    origin: str = DEFAULT_ORIGIN
    key_path: Path | None = None  # None: DATA/log.key, created 0600 on first start
    rotate_key: bool = False  # allow a key other than the one DATA/log.pub records (a key handover)
    new_log: bool = False  # start a new log with a new key in a data dir whose old log's store is gone
    max_entry_bytes: int = 1 << 20  # one entry
    max_batch_entries: int = 4096  # entries per AddEntries call
    max_range: int = 1000  # entries per GetEntries response
    max_proofs_per_call: int = 10_000  # indices per GetInclusionProofs call
    max_receive_message_bytes: int = 64 << 20  # whole request, enforced by gRPC itself
    max_send_message_bytes: int = 64 << 20
    max_manifest_bytes: int = 2 << 30  # one manifest sent by UploadManifest (spooled to TMPDIR, up to 2x this)
    max_concurrent_streams: int = 1024  # HTTP/2 streams per connection
    drain_seconds: float = 30.0  # SIGTERM: how long in-flight calls may take to finish
    checkpoint_wait_seconds: float = 30.0  # AddEntries wait_for_checkpoint timeout
    allowlist: Path | None = None  # registry policy: None = open registration, else the allowlist file
    allow_raw_entries: bool = False  # with an allowlist, accept opaque (non-record) AddEntries too
    hash_cache_bytes: int = 64 << 20  # tree hash groups kept in memory (proof speed on large logs)
    store_cache_bytes: int = 32 << 20  # RocksDB block cache
    store: str | None = field(default=None, repr=False)  # --store SPEC (postgresql://...); None: DATA/log.rocksdb
    verify_processes: int | None = None  # registry: processes checking large batches' signatures; None = one per core
    # -- deadlines and transport limits (ledger/grpc/limits.py; docs/operations.md) --
    max_stream_seconds: float = 3600.0  # a WatchCheckpoints stream ends (OK) after this; clients reopen it
    rate_limit_per_second: float = 0.0  # per-peer requests/s on the log and registry services; 0 = off
    rate_limit_burst: float = 0.0  # bucket size; 0 = max(1, 2 * rate)
    keepalive_time_seconds: float = 120.0  # server pings a connection with open calls this often
    keepalive_timeout_seconds: float = 20.0  # ... and closes it if the ping is not answered in time
    min_client_ping_interval_seconds: float = 10.0  # faster client pings earn a strike
    max_ping_strikes: int = 2  # strikes before GOAWAY "too_many_pings"; 0 = unlimited (gRPC's meaning)
    max_connection_idle_seconds: float = 900.0  # close connections without calls after this; 0 = never
    max_connection_age_seconds: float = 0.0  # GOAWAY every connection after this (load balancing); 0 = never
    max_connection_age_grace_seconds: float = 30.0  # in-flight calls may finish this long after that GOAWAY
    # -- the store's background scrub (ledger/storage/scrub.py) --
    scrub_interval_seconds: float = 86400.0  # one pass at start, then one per interval; 0 = no scrub
    scrub_bytes_per_second: int = 8 << 20  # the scrub's read rate; 0 = unthrottled
    # -- health --
    stuck_seconds: float = 20.0  # writes waiting this long with no integration progress: NOT_SERVING
    health_poll_seconds: float = 0.5
    # -- access (ledger/grpc/tls.py) --
    tls_cert: Path | None = None  # PEM certificate chain; with tls_key the server speaks only TLS
    tls_key: Path | None = None  # PEM private key, not readable by group/others
    client_ca: Path | None = None  # PEM CA bundle: clients must present a certificate it signed (mTLS)
    backup_dir: Path | None = None  # SIGUSR1 writes an online backup under it (ledger/app/backup.py)
    # -- observability (ledger/grpc/metrics.py, ledger/app/logjson.py) --
    metrics_listen: str | None = None  # HOST:PORT of /metrics (Prometheus); None = no endpoint
    http_listen: str | None = None  # HOST:PORT of the HTTP read edge (tiles, explorer; ledger/http/); None = none
    tiles_dir: Path | None = None  # the tlog-tiles files are written here as the log grows (ledger/http/tiles_dir.py)
    witness_policy: Path | None = None  # C2SP/Sigsum policy: the witnesses to push checkpoints to (None: none)
    log_format: str = "text"  # "text" or "json" (one object per line)
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InvalidInputError(f"listen address {self.listen!r} is not HOST:PORT")
        if not self.origin or any(c.isspace() for c in self.origin) or "+" in self.origin:
            raise InvalidInputError(f"origin {self.origin!r} must be non-empty, without spaces or '+'")
        for name in (
            "max_entry_bytes",
            "max_batch_entries",
            "max_range",
            "max_proofs_per_call",
            "max_receive_message_bytes",
            "max_send_message_bytes",
            "max_manifest_bytes",
            "max_concurrent_streams",
            "store_cache_bytes",
        ):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_receive_message_bytes <= self.max_entry_bytes:
            raise InvalidInputError("max_receive_message_bytes must exceed max_entry_bytes")
        if self.drain_seconds < 0 or self.checkpoint_wait_seconds <= 0:
            raise InvalidInputError("drain_seconds must be >= 0 and checkpoint_wait_seconds > 0")
        for name in ("max_stream_seconds", "keepalive_time_seconds", "keepalive_timeout_seconds",
                     "stuck_seconds", "health_poll_seconds"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("rate_limit_per_second", "rate_limit_burst", "min_client_ping_interval_seconds",
                     "max_connection_idle_seconds", "max_connection_age_seconds",
                     "max_connection_age_grace_seconds"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.scrub_interval_seconds < 0 or self.scrub_bytes_per_second < 0:
            raise InvalidInputError("scrub_interval_seconds and scrub_bytes_per_second must be >= 0")
        if self.new_log and self.rotate_key:
            raise InvalidInputError("--new-log starts a log with a new key; --rotate-key hands an existing log over")
        if self.hash_cache_bytes < 0:
            raise InvalidInputError(f"hash_cache_bytes must be >= 0, got {self.hash_cache_bytes}")
        if self.verify_processes is not None and not 0 <= self.verify_processes <= 64:
            raise InvalidInputError(f"verify_processes must be 0..64, got {self.verify_processes}")
        if self.max_ping_strikes < 0:
            raise InvalidInputError(f"max_ping_strikes must be >= 0, got {self.max_ping_strikes}")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise InvalidInputError("give both --tls-cert and --tls-key, or neither")
        if self.client_ca is not None and self.tls_cert is None:
            raise InvalidInputError("--client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.metrics_listen is not None:
            host, sep, port = self.metrics_listen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise InvalidInputError(f"metrics address {self.metrics_listen!r} is not HOST:PORT")
        if self.http_listen is not None:
            host, sep, port = self.http_listen.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise InvalidInputError(f"HTTP address {self.http_listen!r} is not HOST:PORT")
        if self.store is not None and not StoreSpec.parse(self.store).is_directory and self.backup_dir is not None:
            raise InvalidInputError("--backup-dir writes RocksDB checkpoints; back a PostgreSQL store up with "
                                    "pg_dump (docs/operations.md)")
        if self.log_format not in LOG_FORMATS:
            raise InvalidInputError(f"log format {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise InvalidInputError(f"log level {self.log_level!r} is not one of {', '.join(LOG_LEVELS)}")

    @property
    def rate_burst(self) -> float:
        """The per-peer bucket size in effect."""
        return self.rate_limit_burst or max(1.0, 2 * self.rate_limit_per_second)

    @property
    def signature_processes(self) -> int:
        """Worker processes for the registry's signature checks (:attr:`verify_processes` resolved)."""
        if self.verify_processes is not None:
            return self.verify_processes
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def signer_key_path(self) -> Path:
        return self.key_path if self.key_path is not None else self.data_dir / KEY_FILE

    @property
    def store_spec(self) -> StoreSpec:
        """The store to open: ``--store`` parsed, else the RocksDB directory ``DATA/log.rocksdb``."""
        if self.store is None:
            return StoreSpec.directory(self.data_dir / STORE_DIR, cache_bytes=self.store_cache_bytes)
        return StoreSpec.parse(self.store, cache_bytes=self.store_cache_bytes)

    @property
    def store_path(self) -> Path:
        """The RocksDB directory of a directory store (``DATA/log.rocksdb`` unless ``--store`` names another)."""
        spec = self.store_spec
        return spec.path if spec.path is not None else self.data_dir / STORE_DIR
