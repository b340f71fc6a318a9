"""How every command that talks to a server connects: ``--server`` and the TLS flags, and the clients
built from them. One place, so every command takes the same flags and reaches a server started with
``--tls-cert/--tls-key`` (and ``--client-ca``, for mutual TLS) the same way.

Imports of the client classes happen inside the functions so ``provenance --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from client.remote import LogClient, TlsOptions
    from client.remote.registry import RegistryClient

DEFAULT_SERVER = "127.0.0.1:50051"  # client.remote.base.DEFAULT_SERVER, without importing grpc for --help


def add_tls_args(p: argparse.ArgumentParser) -> None:
    """``--tls/--tls-ca/--tls-cert/--tls-key``: connect over TLS (mutual TLS with a client certificate)."""
    g = p.add_argument_group("TLS (default: plaintext)")
    g.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CA roots")
    g.add_argument("--tls-ca", type=Path, default=None, metavar="PEM", help="use TLS, trusting these CAs")
    g.add_argument("--tls-cert", type=Path, default=None, metavar="PEM", help="client certificate (mutual TLS)")
    g.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="client certificate's key")


def add_server_args(p: argparse.ArgumentParser) -> None:
    """``--server HOST:PORT`` and the TLS flags."""
    p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT", help=f"default {DEFAULT_SERVER}")
    add_tls_args(p)


def tls_from_args(args: argparse.Namespace) -> TlsOptions | None:
    """The client's :class:`~client.remote.base.TlsOptions` from :func:`add_tls_args` flags, or None (plaintext)."""
    from client.remote import TlsOptions

    ca, cert, key = (getattr(args, n, None) for n in ("tls_ca", "tls_cert", "tls_key"))
    if not (getattr(args, "tls", False) or ca or cert or key):
        return None
    return TlsOptions.from_files(ca, cert, key)


def ledger_client(args: argparse.Namespace) -> LogClient:
    """A :class:`~client.remote.log.LogClient` to ``args.server`` with the TLS flags."""
    from client.remote import LogClient

    return LogClient(args.server, tls=tls_from_args(args))


def registry_client(args: argparse.Namespace) -> RegistryClient:
    """A :class:`~client.remote.registry.RegistryClient` to ``args.server`` with the TLS flags."""
    from client.remote.registry import RegistryClient

    return RegistryClient(args.server, tls=tls_from_args(args))
