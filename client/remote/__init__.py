"""The gRPC clients of a ledger server: :class:`LogClient` (the log) and :class:`RegistryClient` (the registry).

Both sit on one base (``client/remote/base.py``: channel, TLS, context manager, statuses mapped back
to :mod:`client.errors`). Nothing they return is trusted: verify with :mod:`client.core`.
"""

from client.remote.base import (
    DEFAULT_SERVER,
    DEFAULT_TIMEOUT,
    MAX_MESSAGE_BYTES,
    GrpcClient,
    RemoteError,
    TlsOptions,
    error_for_status,
    error_from_rpc,
    open_channel,
)
from client.remote.log import AddedEntry, AddResult, ConsistencyProof, InclusionProof, LogClient, LogInfo
from client.remote.registry import (
    PartlyRefusedError,
    Registered,
    RegisterResult,
    RegistryClient,
    RemoteRecord,
)

__all__ = [
    "DEFAULT_SERVER",
    "DEFAULT_TIMEOUT",
    "MAX_MESSAGE_BYTES",
    "AddResult",
    "AddedEntry",
    "ConsistencyProof",
    "GrpcClient",
    "InclusionProof",
    "LogClient",
    "LogInfo",
    "PartlyRefusedError",
    "RegisterResult",
    "Registered",
    "RegistryClient",
    "RemoteError",
    "RemoteRecord",
    "TlsOptions",
    "error_for_status",
    "error_from_rpc",
    "open_channel",
]
