"""The limits of one log, as a frozen dataclass validated once when constructed."""

from __future__ import annotations

from dataclasses import dataclass

from client.errors import InvalidInputError


@dataclass(frozen=True)
class LogConfig:
    """Limits of one log. Validated when constructed (:class:`InvalidInputError`)."""

    origin: str  # the C2SP checkpoint origin line: non-empty, one line
    max_entry_bytes: int = 1 << 20  # bytes per entry
    max_batch_entries: int = 4096  # entries per submit() call
    max_pending_entries: int = 200_000  # queued entries before submit() pushes back
    max_integrate_entries: int = 16384  # entries per sequencer batch (one commit, one checkpoint)
    max_range: int = 1000  # entries per entries() call
    cache_bytes: int = 64 << 20  # full hash groups kept in memory

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise InvalidInputError("log origin must be a non-empty single line")
        for name in ("max_entry_bytes", "max_batch_entries", "max_pending_entries", "max_integrate_entries",
                     "max_range"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"LogConfig.{name} must be positive")
        if self.cache_bytes < 0:
            raise InvalidInputError("LogConfig.cache_bytes must not be negative")
        if self.max_batch_entries > self.max_integrate_entries:
            raise InvalidInputError("max_batch_entries must not exceed max_integrate_entries")
