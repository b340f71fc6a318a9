"""The settings of one cluster frontend, as a frozen dataclass validated once when constructed."""

from __future__ import annotations

from dataclasses import dataclass

from client.errors import InvalidInputError


@dataclass(frozen=True)
class ClusterConfig:
    """How one frontend takes part in the cluster on ``dsn``. Validated when constructed (:class:`InvalidInputError`).

    Failover: a standby tries the signer lock every ``takeover_seconds``; the holder's lock frees
    when its database session ends (process death: at once; a lost network or a stalled process:
    once the server ends the session, idle for 15 s, see :func:`ledger.cluster.sql.connect`).
    """

    dsn: str  # postgresql://USER[:PASSWORD]@HOST:PORT/DB; never logged
    holder: str = ""  # this frontend's name in signer_lease (host:port); informative only
    takeover_seconds: float = 1.0  # seconds between a standby's attempts at the signer lock
    poll_seconds: float = 1.0  # seconds between reads of the latest checkpoint without a NOTIFY
    integrate_idle_seconds: float = 0.2  # the signer looks for sequenced entries at least this often
    max_integrate_entries: int = 65536  # entries per signed step (one transaction, one checkpoint)
    checkpoint_history: int = 100_000  # checkpoint rows kept in the database (older ones are pruned)
    start_seconds: float = 30.0  # how long open waits for the first checkpoint (some frontend must sign it)

    def __post_init__(self) -> None:
        if not self.dsn.startswith(("postgresql://", "postgres://")):
            raise InvalidInputError("a cluster DSN is a postgresql:// URL")
        for name in ("takeover_seconds", "poll_seconds", "integrate_idle_seconds", "start_seconds"):
            if not getattr(self, name) > 0:
                raise InvalidInputError(f"ClusterConfig.{name} must be positive")
        if max(self.takeover_seconds, self.integrate_idle_seconds) >= 10:
            # The signer's session ends after 15 s idle (ledger.cluster.sql.SESSION_TIMEOUT): stay well below.
            raise InvalidInputError("ClusterConfig.takeover_seconds and integrate_idle_seconds must be below 10")
        if self.max_integrate_entries < 1 or self.checkpoint_history < 1:
            raise InvalidInputError("ClusterConfig.max_integrate_entries and checkpoint_history must be positive")
