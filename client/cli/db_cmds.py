"""Store commands: ``provenance db migrate`` (the PostgreSQL schema) and ``provenance db copy`` (move a log).

Thin: parse flags and hand over to ``ledger/app/dbcopy.py``, imported inside the handlers
(like ``serve``, these are server-side operations on a stopped log). A DSN's password is
never printed: reports name stores as ``postgresql://USER@HOST:PORT/DB``.
"""

from __future__ import annotations

import argparse
import json
import sys

from client.cli.log_cmds import _size_arg


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = subparsers.add_parser("db", help="the log's store: migrate a PostgreSQL schema, copy a log between stores")
    sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")

    p = sub.add_parser("migrate", help="bring a PostgreSQL store's schema to this release's version "
                       "(creates it in an empty database)")
    p.add_argument("--store", required=True, metavar="SPEC", help="postgresql://USER[:PASSWORD]@HOST:PORT/DB")
    p.set_defaults(func=_migrate)

    p = sub.add_parser("copy", help="copy a stopped log into a new store (RocksDB to PostgreSQL or back), "
                       "checking the copy's roots against the original's")
    p.add_argument("--from", dest="source", required=True, metavar="DIR|SPEC",
                   help="the source: a data directory, a RocksDB store directory or postgresql://...")
    p.add_argument("--to", dest="dest", required=True, metavar="DIR|SPEC",
                   help="the destination, which must be empty: a directory (created) or postgresql://...")
    p.add_argument("--batch-entries", type=_size_arg, default=1000, metavar="N", help="entries per batch (1000)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=_copy)


def _migrate(args: argparse.Namespace) -> int:
    from ledger.app import dbcopy  # server-side: the store's schema

    applied, version = dbcopy.migrate(args.store)
    for name in applied:
        print(f"applied {name}")
    print(f"schema version {version}" + ("" if applied else " (already current)"))
    return 0


def _copy(args: argparse.Namespace) -> int:
    from ledger.app import dbcopy  # server-side: reads and writes stores

    def progress(done: int, total: int) -> None:
        if not args.quiet:
            print(f"copied {done}/{total} entries", file=sys.stderr)

    report = dbcopy.copy(args.source, args.dest, batch_entries=args.batch_entries, progress=progress)
    sys.stdout.write(json.dumps(report.as_json()) + "\n")
    return 0
