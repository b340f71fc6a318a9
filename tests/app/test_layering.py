"""The layering rules of docs/architecture.md, enforced.

Pure cores (Merkle math, notes, checkpoints, records, manifests' model, statistics)
never import grpc or rocksdict; the client never imports the server.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IO_MODULES = ("grpc", "grpc_health", "grpc_reflection", "rocksdict")

# Pure cores: ints, bytes and arrays in, values out. Globs; each must match at least one file.
PURE = [
    "client/core/merkle.py",
    "client/core/note.py",
    "client/core/checkpoint.py",
    "client/errors.py",
    "client/core/audit.py",
    "client/core/trust.py",
    "client/core/records/*.py",
    "client/core/bundle/*.py",
    "client/core/manifest/model.py",
    "client/core/manifest/codec.py",
    "client/core/manifest/jsonform.py",
    "client/core/manifest/diff.py",
    "client/core/descent/*.py",
    "client/core/descent/ledger_evidence.py",
]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("pattern", PURE)
def test_pure_core_does_no_network_or_storage_io(pattern: str) -> None:
    paths = sorted(ROOT.glob(pattern))
    assert paths, f"{pattern} matches no file: update PURE in {__file__}"
    for path in paths:
        bad = sorted(n for n in _imports(path) if n.split(".")[0] in IO_MODULES)
        assert not bad, f"{path.relative_to(ROOT)} is a pure core but imports {bad}"


def test_client_never_imports_the_server() -> None:
    offenders: list[str] = []
    for path in sorted((ROOT / "client").rglob("*.py")):
        if "_pb" in path.parts:
            continue
        # The CLI's `serve` command is allowed to start the server, lazily, inside its handler.
        top_level = {
            n
            for n in _imports_top_level(path)
            if n == "ledger" or n.startswith("ledger.")
        }
        if top_level:
            offenders.append(f"{path.relative_to(ROOT)}: {sorted(top_level)}")
    assert not offenders, "client modules import ledger at module level:\n" + "\n".join(offenders)


def _imports_top_level(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names
