"""The server's configuration: one frozen dataclass, validated when built.

Only the entry point (``ledger/serve.py``) reads flags, environment and files;
everything else takes a :class:`ServerConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from client.errors import InvalidInputError

DEFAULT_LISTEN = "127.0.0.1:50051"
DEFAULT_ORIGIN = "localhost/provenance-ledger"
DEFAULT_DATA_DIR = Path("provenance-data")
KEY_FILE = "log.key"
PUBLIC_KEY_FILE = "log.pub"  # the verifier key, for `provenance log-key --data`
ORIGIN_FILE = "origin"
STORE_DIR = "log.rocksdb"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``provenance serve`` needs. Sizes are bytes, times seconds."""

    data_dir: Path = DEFAULT_DATA_DIR
    listen: str = DEFAULT_LISTEN
    origin: str = DEFAULT_ORIGIN
    key_path: Path | None = None  # None: DATA/log.key, created 0600 on first start
    max_entry_bytes: int = 1 << 20  # one entry
    max_batch_entries: int = 4096  # entries per AddEntries call
    max_range: int = 1000  # entries per GetEntries response
    max_proofs_per_call: int = 10_000  # indices per GetInclusionProofs call
    max_receive_message_bytes: int = 64 << 20  # whole request, enforced by gRPC itself
    max_send_message_bytes: int = 64 << 20
    max_concurrent_streams: int = 1024  # HTTP/2 streams per connection
    drain_seconds: float = 30.0  # SIGTERM: how long in-flight calls may take to finish
    checkpoint_wait_seconds: float = 30.0  # AddEntries wait_for_checkpoint timeout
    allowlist: Path | None = None  # registry policy: None = open registration, else the allowlist file

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
            "max_concurrent_streams",
        ):
            if getattr(self, name) <= 0:
                raise InvalidInputError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_receive_message_bytes <= self.max_entry_bytes:
            raise InvalidInputError("max_receive_message_bytes must exceed max_entry_bytes")
        if self.drain_seconds < 0 or self.checkpoint_wait_seconds <= 0:
            raise InvalidInputError("drain_seconds must be >= 0 and checkpoint_wait_seconds > 0")

    @property
    def signer_key_path(self) -> Path:
        return self.key_path if self.key_path is not None else self.data_dir / KEY_FILE

    @property
    def origin_path(self) -> Path:
        return self.data_dir / ORIGIN_FILE

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_DIR
