"""The ``provenance`` command line. Thin: parse flags, call the layers, print.

Each command group lives in its own module with a ``register(subparsers)``
function that adds its subcommands; a subcommand sets ``func(args) -> int``.
Heavy imports happen inside the handlers so ``provenance --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence

from client.errors import ProvenanceError
from client.exit_codes import exit_code_for

# One module per command group; each has register(subparsers).
COMMAND_MODULES: tuple[str, ...] = (
    "client.cli.serve_cmds",
    "client.cli.db_cmds",
    "client.cli.log_cmds",
    "client.cli.hash_cmd",
    "client.cli.compare_cmd",
    "client.cli.registry_cmds",
    "client.cli.registry_query_cmds",
    "client.cli.match_cmd",
    "client.cli.witness_cmds",
    "client.cli.report_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="provenance", description="Provenance Ledger: verifiable AI provenance")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _escape_unencodable_output() -> None:
    """Text the terminal's encoding cannot hold (a name from a bundle or a file under LANG=C) prints
    backslash-escaped instead of raising UnicodeEncodeError halfway through a report."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _escape_unencodable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ProvenanceError as err:
        print(f"provenance {args.command}: {err}", file=sys.stderr)
        return exit_code_for(err)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
