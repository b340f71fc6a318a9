"""Run benchmarks: ``python -m bench [--quick] [NAME ...]``.

Each benchmark is a module ``bench/<name>.py`` with ``run(quick: bool) -> None``
that prints its own figures. With no names, all of ``BENCHMARKS`` run in order.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from bench.machine import describe

BENCHMARKS: tuple[str, ...] = ("log", "hash", "registry", "compare", "tiles", "pg")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})")
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    print(f"machine: {describe()}", flush=True)
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(f"bench.{name}").run(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
