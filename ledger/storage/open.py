"""Opening a storage backend from configuration: a :class:`StoreSpec` names it, :func:`open_storage` opens it.

Only the entry points (``provenance serve``, ``provenance backup``) read flags; they
turn ``--data DIR`` into a spec (:meth:`StoreSpec.directory`) or parse a spec string
(:meth:`StoreSpec.parse`) and hand it here, so no caller names a backend class.
Accepted spec strings:

* ``DIR`` or ``rocksdb:DIR``: the RocksDB store in directory ``DIR``
  (:class:`~ledger.storage.rocks.RocksStorage`). A directory whose name looks like
  ``word:...`` is written ``./word:...`` (or as an absolute path).
* ``memory:``: an in-process :class:`~ledger.storage.memory.MemoryStorage` (tests, demos;
  nothing survives the process).
* ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?...]`` (or ``postgres://``): the
  PostgreSQL store in that database (:class:`~ledger.storage.postgres.PostgresStorage`);
  the text is a libpq connection URL, kept whole as :attr:`StoreSpec.dsn`. Its password
  never appears in :meth:`StoreSpec.describe` nor in the spec's ``repr``.

Any other ``scheme:`` is refused with :class:`InvalidInputError` naming these; a new
backend adds its scheme to :data:`SCHEMES` and a branch to :func:`open_storage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from client.errors import InvalidInputError
from ledger.storage import Storage

SCHEMES = ("rocksdb", "memory", "postgresql")
"""Backends :func:`open_storage` can open."""

DEFAULT_CACHE_BYTES = 32 << 20
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")  # two characters at least: "C:" is no scheme


@dataclass(frozen=True)
class StoreSpec:
    """Which backend holds the log, where, and with what cache. Validated when constructed."""

    scheme: str  # one of SCHEMES
    path: Path | None = None  # the RocksDB directory; None for memory and postgresql
    cache_bytes: int = DEFAULT_CACHE_BYTES  # RocksDB block cache, bytes
    dsn: str | None = field(default=None, repr=False)  # postgresql: the libpq URL (may hold a password)

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise InvalidInputError(f"unknown store scheme {self.scheme!r}; accepted: "
                                    + ", ".join(f"{s}:" for s in SCHEMES) + " or a directory")
        if (self.path is None) != (self.scheme != "rocksdb"):
            raise InvalidInputError(f"a {self.scheme} store {'needs a directory' if self.path is None else 'has none'}")
        if (self.dsn is None) != (self.scheme != "postgresql"):
            raise InvalidInputError(f"a {self.scheme} store {'needs a DSN' if self.dsn is None else 'has none'}")
        if self.cache_bytes < 0:
            raise InvalidInputError(f"store cache_bytes must be >= 0, got {self.cache_bytes}")

    @classmethod
    def directory(cls, path: Path | str, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> StoreSpec:
        """The store of a data directory (``--data DIR``): RocksDB at ``path``, taken literally."""
        return cls("rocksdb", Path(path), cache_bytes)

    @classmethod
    def parse(cls, text: str, *, cache_bytes: int = DEFAULT_CACHE_BYTES) -> StoreSpec:
        """A spec string (see the module docstring). Raises :class:`InvalidInputError` for anything else."""
        if not text or "\x00" in text:
            raise InvalidInputError("empty or malformed store spec")
        m = _SCHEME.match(text)
        if m is None:
            return cls.directory(text, cache_bytes=cache_bytes)
        scheme, rest = m.group(1).lower(), text[m.end() :]
        if scheme in ("postgresql", "postgres"):
            if not rest.startswith("//"):
                raise InvalidInputError("a PostgreSQL store is a URL: postgresql://USER@HOST:PORT/DB")
            return cls("postgresql", None, cache_bytes, dsn=text)
        if scheme == "rocksdb":
            if not rest:
                raise InvalidInputError("rocksdb: needs a directory, e.g. rocksdb:/var/lib/provenance/store")
            return cls.directory(rest, cache_bytes=cache_bytes)
        if scheme == "memory":
            if rest:
                raise InvalidInputError(f"memory: takes nothing after the colon, got {rest!r}")
            return cls("memory", None, cache_bytes)
        return cls(scheme, None, cache_bytes)  # refused by __post_init__, naming the accepted schemes

    @property
    def is_directory(self) -> bool:
        """Whether the store is a directory on this machine (RocksDB), whose presence a file check can tell."""
        return self.scheme == "rocksdb"

    def describe(self) -> str:
        """The spec as text for logs (``rocksdb:DIR``, ``memory:``, ``postgresql://USER@HOST:PORT/DB``): no secrets."""
        if self.dsn is not None:
            from ledger.storage.postgres_conn import redact

            return redact(self.dsn)
        return f"{self.scheme}:{self.path if self.path is not None else ''}"


def open_storage(spec: StoreSpec) -> Storage:
    """Open (creating if absent) the store ``spec`` names.

    Raises what the backend's open raises: :class:`StorageError` (cannot open; its
    :class:`StoreInUseError` when another process holds it) or
    :class:`CorruptStorageError` (not a log store of this format).
    """
    if spec.scheme == "memory":
        from ledger.storage.memory import MemoryStorage

        return MemoryStorage()
    if spec.scheme == "postgresql":
        from ledger.storage.postgres import PostgresStorage

        assert spec.dsn is not None  # __post_init__: postgresql specs have a DSN
        return PostgresStorage.open(spec.dsn)
    from ledger.storage.rocks import RocksStorage

    assert spec.path is not None  # __post_init__: rocksdb specs have a path
    return RocksStorage.open(spec.path, cache_bytes=spec.cache_bytes)
