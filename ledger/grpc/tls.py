"""TLS and mutual TLS for ``provenance serve``: read the PEM files once and build gRPC credentials.

The private key file must not be readable by others (the same rule as the log's
signing key, relaxed only for group read, so that a key shared with a ``tls`` group
or mounted from a Kubernetes secret with ``defaultMode: 0440`` works). Errors name
the file and never quote its content.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import grpc

from client.errors import InvalidInputError

MAX_PEM_BYTES = 1 << 20


class TlsFileError(InvalidInputError):
    """A TLS file is missing, unreadable, too large, not PEM, or (the key) readable by others."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    """PEM bytes for the server: its chain, its key, and (for mTLS) the CAs that sign client certificates."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    def __repr__(self) -> str:  # never show key bytes, e.g. in a traceback's locals
        return f"TlsMaterial(cert_chain=<{len(self.cert_chain)} bytes>, private_key=<hidden>, " \
               f"client_ca={'<set>' if self.client_ca else None})"

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


def _read(path: Path, what: str, *, secret: bool) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise TlsFileError(f"cannot open {what} {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TlsFileError(f"{what} {path} is not a regular file")
        if secret and st.st_mode & 0o007:
            raise TlsFileError(f"{what} {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be "
                               "readable or writable by others (chmod 600, or 640 for a group)")
        raw = os.read(fd, MAX_PEM_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_PEM_BYTES:
        raise TlsFileError(f"{what} {path} is larger than {MAX_PEM_BYTES} bytes")
    if b"-----BEGIN " not in raw:
        raise TlsFileError(f"{what} {path} is not PEM")
    return raw


def load_tls(cert: Path, key: Path, client_ca: Path | None = None) -> TlsMaterial:
    """Read and check the server's TLS files (see the module docstring)."""
    return TlsMaterial(
        cert_chain=_read(cert, "TLS certificate", secret=False),
        private_key=_read(key, "TLS private key", secret=True),
        client_ca=None if client_ca is None else _read(client_ca, "client CA bundle", secret=False),
    )
