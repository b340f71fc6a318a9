"""``provenance witness``: run a C2SP tlog-witness of our own (docs/witness.md).

- ``witness init --key K --name NAME``: a new Ed25519 key file (0600); prints the vkey;
- ``witness add-log --data DIR --vkey V [--origin O]``: trust a log's note key for its origin;
- ``witness serve --key K --data DIR --listen HOST:PORT``: serve the tlog-witness HTTP API;
- ``witness status --data DIR`` and ``witness evidence --data DIR --out DIR``.

Thin: the work is in ``ledger/witness``, imported inside the handlers (the server package is
never imported when the CLI loads).
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_WITNESS_DATA = Path("witness-data")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    w = subparsers.add_parser("witness", help="run a C2SP tlog-witness (cosigns checkpoints of configured logs)")
    sub = w.add_subparsers(dest="witness_command", required=True, metavar="WITNESS_COMMAND")

    p = sub.add_parser("init", help="create a witness key file (mode 0600) and print its vkey")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="key file to create (never overwritten)")
    p.add_argument("--name", required=True, help="the witness's key name, e.g. witness.example.org/w1")
    p.set_defaults(func=_init)

    p = sub.add_parser("add-log", help="trust a log's note verifier key for its origin")
    p.add_argument("--data", type=Path, default=DEFAULT_WITNESS_DATA, metavar="DIR", help="witness data directory")
    p.add_argument("--vkey", required=True, help="the log's verifier key <name>+<key ID>+<key>")
    p.add_argument("--origin", default=None, help="the log's origin line (default: the vkey's name)")
    p.set_defaults(func=_add_log)

    p = sub.add_parser("serve", help="serve POST /add-checkpoint until SIGTERM/SIGINT")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="witness key file")
    p.add_argument("--data", type=Path, default=DEFAULT_WITNESS_DATA, metavar="DIR", help="witness data directory")
    p.add_argument("--listen", default="127.0.0.1:8090", metavar="HOST:PORT", help="HTTP address (port 0: any)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("status", help="the configured logs, what was last cosigned, the evidence kept")
    p.add_argument("--data", type=Path, default=DEFAULT_WITNESS_DATA, metavar="DIR", help="witness data directory")
    p.set_defaults(func=_status)

    p = sub.add_parser("evidence", help="write the refused conflicting checkpoints kept as evidence, one file each")
    p.add_argument("--data", type=Path, default=DEFAULT_WITNESS_DATA, metavar="DIR", help="witness data directory")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="directory to write into")
    p.set_defaults(func=_evidence)


def _init(args: argparse.Namespace) -> int:
    from ledger.witness import admin

    print(admin.init_key(args.key, args.name))
    return 0


def _add_log(args: argparse.Namespace) -> int:
    from ledger.witness import admin

    print(admin.add_log(args.data, args.vkey, args.origin))
    return 0


def _serve(args: argparse.Namespace) -> int:
    import logging

    from ledger.witness import process

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return process.run(args.key, args.data, args.listen)


def _status(args: argparse.Namespace) -> int:
    from ledger.witness import admin

    print(admin.status(args.data))
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from ledger.witness import admin

    print(admin.export_evidence(args.data, args.out))
    return 0
