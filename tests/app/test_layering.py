"""The layering rules of docs/architecture.md, enforced on every import, wherever it is written.

Each rule names the files it governs (globs under the repository root) and the modules they must
not import. Every ``import`` and ``from ... import`` counts: at module level, inside a function or
a class, under ``if TYPE_CHECKING:``, relative ones resolved against their package, and
``importlib.import_module("...")`` / ``__import__("...")`` with a literal name. A
``from a import b`` counts as importing ``a.b``, so ``from client import cli`` is seen as
``client.cli``. The one exception a rule grants is data (:data:`ALLOWED_LAZY`): a named
function-level import in a named file, with the reason; the same import at module level still
fails, and an exception nothing uses any more fails too.

The size rule keeps every module of client/ and ledger/ (outside the generated client/_pb) at
most :data:`MAX_LINES` lines (STYLE.md habit 12; issue 11's acceptance).
"""

from __future__ import annotations

import ast
import fnmatch
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 450  # hard limit; aim for about 400

# Standard-library modules that reach files, processes, threads or the network.
STDLIB_IO = ("os", "pathlib", "io", "socket", "ssl", "select", "selectors", "signal", "subprocess", "shutil",
             "tempfile", "mmap", "threading", "multiprocessing", "concurrent", "asyncio", "urllib", "http",
             "sqlite3")
GRPC = ("grpc*", "google.protobuf", "client._pb")  # the wire: only ledger/grpc and client/remote speak it


@dataclass(frozen=True)
class Rule:
    """``files`` (globs, minus ``skip``) never import a module matching ``forbidden`` unless it matches ``exempt``.

    A pattern matches a module and its submodules: ``client.cli`` matches ``client.cli.serve_cmds``,
    ``grpc*`` matches ``grpc``, ``grpc_health.v1`` and ``grpc_reflection``.
    """

    id: str
    why: str
    files: tuple[str, ...]
    forbidden: tuple[str, ...]
    exempt: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()


RULES = (
    Rule("pure-cores-do-no-io",
         "the pure cores (what an auditor or a court runs) take ints, bytes and arrays and return values: "
         "no network, storage, database, files, processes or threads",
         ("client/core/**/*.py", "client/errors.py", "client/exit_codes.py"),
         ("grpc*", "google.protobuf", "rocksdict", "psycopg*", *STDLIB_IO)),
    Rule("pure-cores-import-only-pure-cores",
         "client/core depends on nothing of the project but itself and client.errors: not client._pb, "
         "client.remote, client.cli, client.hashing, client.formats, client.api, nor ledger",
         ("client/core/**/*.py",),
         ("client", "ledger"),
         exempt=("client.core", "client.errors")),
    Rule("grpc-only-at-the-edge",
         "grpc, protobuf and the generated stubs stay in the gRPC edge (ledger/grpc, client/remote)",
         ("client/**/*.py", "ledger/**/*.py"),
         GRPC,
         skip=("ledger/grpc/**", "client/remote/**", "client/_pb/**", "client/_protogen.py")),
    Rule("server-cores-know-no-edge",
         "the log, registry and storage cores know neither the gRPC edge, the process set-up (ledger/app) "
         "nor the client's network and CLI layers",
         ("ledger/log/**/*.py", "ledger/registry/**/*.py", "ledger/storage/**/*.py", "ledger/cluster/**/*.py",
          "ledger/errors.py"),
         ("ledger.grpc", "ledger.app", "client.remote", "client.cli", "client.api", *GRPC)),
    Rule("log-core-knows-no-registry",
         "the log is a personality-free RFC 9162 log; the registry plugs in through ledger/log/hook.py",
         ("ledger/log/**/*.py", "ledger/cluster/**/*.py"),
         ("ledger.registry",)),
    Rule("storage-is-the-bottom-layer",
         "storage answers reads and commits batches; it imports no layer above it",
         ("ledger/storage/**/*.py",),
         ("ledger.log", "ledger.registry", "ledger.grpc", "ledger.app")),
    Rule("ledger-never-imports-the-cli",
         "the server does not depend on the client's command line",
         ("ledger/**/*.py",),
         ("client.cli",)),
    Rule("client-never-imports-the-server",
         "everything an auditor needs installs and runs without the server package",
         ("client/**/*.py",),
         ("ledger",)),
    Rule("only-the-cli-imports-the-cli",
         "the CLI is the outermost client layer: library modules never import it",
         ("client/**/*.py",),
         ("client.cli",),
         skip=("client/cli/**",)),
    Rule("witness-shares-nothing-with-the-log",
         "a witness watches logs from outside: ledger/witness never imports the log, the registry, storage, "
         "the gRPC edge or the log's process set-up",
         ("ledger/witness/**/*.py",),
         ("ledger.log", "ledger.registry", "ledger.storage", "ledger.grpc", "ledger.app", "client.remote", *GRPC)),
    Rule("report-model-is-pure",
         "the court report's model, layout and checks are built from a verified bundle without I/O; only "
         "client/report/html.py (templates) and pdf.py render, and the CLI writes the files",
         ("client/report/model.py", "client/report/build.py", "client/report/evidence.py",
          "client/report/layout.py", "client/report/recheck.py", "client/report/witnesses.py"),
         ("grpc*", "google.protobuf", "rocksdict", "psycopg*", "jinja2", "fpdf", *STDLIB_IO, "client.remote",
          "client.cli", "client.hashing", "client.formats", "client.api", "ledger")),
    Rule("witness-shares-nothing-with-the-log",
         "a witness watches logs from outside: ledger/witness never imports the log, the registry, storage, "
         "the gRPC edge or the log's process set-up",
         ("ledger/witness/**/*.py",),
         ("ledger.log", "ledger.registry", "ledger.storage", "ledger.grpc", "ledger.app", "client.remote", *GRPC)),
    Rule("formats-below-hashing",
         "tensor file formats are read by client/hashing (manifests) and the descent readers, never the reverse",
         ("client/formats/**/*.py",),
         ("client.hashing", "client.remote", "client.cli", "client.api", "ledger")),
)

#: The only imports a rule lets through, each a function-level import: (rule id, file, module) -> why.
ALLOWED_LAZY: dict[tuple[str, str, str], str] = {
    ("client-never-imports-the-server", "client/cli/serve_cmds.py", "ledger.app.serve"):
        "`provenance serve` starts the server, inside its handler",
    ("client-never-imports-the-server", "client/cli/serve_cmds.py", "ledger.app.backup"):
        "`provenance backup` copies a stopped server's data directory, inside its handler",
    ("client-never-imports-the-server", "client/cli/serve_cmds.py", "ledger.app.fsck"):
        "`provenance fsck` checks a stopped server's data directory, inside its handler",
    ("client-never-imports-the-server", "client/cli/db_cmds.py", "ledger.app.dbcopy"):
        "`provenance db migrate` and `db copy` work on a stopped server's store, inside their handlers",
    ("client-never-imports-the-server", "client/cli/witness_cmds.py", "ledger.witness.admin"):
        "`provenance witness init|add-log|status|evidence` work on a witness's key and state, inside their handlers",
    ("client-never-imports-the-server", "client/cli/witness_cmds.py", "ledger.witness.process"):
        "`provenance witness serve` runs the witness, inside its handler",
}


@dataclass(frozen=True)
class Import:
    """One imported module name, where it is written and how."""

    module: str
    line: int
    statement: str
    scope: str  # "module level", "in <function>" or "in class <name>"
    lazy: bool  # inside a function: runs when called, not when the module is imported


def _from_base(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from`` import reads from; a relative one resolved against ``path``'s package."""
    if node.level == 0:
        return node.module or ""
    package = list(path.relative_to(ROOT).parts[:-1])
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_in(path: Path, source: str | None = None) -> list[Import]:
    """Every module ``path`` (or ``source``, read as if it were ``path``) imports, in any scope."""
    text = path.read_text(encoding="utf-8") if source is None else source
    found: list[Import] = []

    def visit(node: ast.AST, scope: str, lazy: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, f"in {child.name}", True)
                continue
            if isinstance(child, ast.ClassDef):  # a class body runs when its module (or function) does
                visit(child, f"in class {child.name}", lazy)
                continue
            if isinstance(child, ast.Lambda):
                visit(child, "in a lambda", True)
                continue
            if isinstance(child, ast.Import):
                found.extend(Import(a.name, child.lineno, ast.unparse(child), scope, lazy) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = _from_base(path, child)
                for alias in child.names:
                    module = base if alias.name == "*" else f"{base}.{alias.name}" if base else alias.name
                    found.append(Import(module, child.lineno, ast.unparse(child), scope, lazy))
            elif isinstance(child, ast.Call) and (name := _dynamic_import(child)) is not None:
                found.append(Import(name, child.lineno, ast.unparse(child), scope, lazy))
            visit(child, scope, lazy)

    visit(ast.parse(text, filename=str(path)), "module level", False)
    return found


def _dynamic_import(call: ast.Call) -> str | None:
    """The literal module name of ``importlib.import_module("...")`` or ``__import__("...")``, if ``call`` is one."""
    func = call.func
    named = (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
        isinstance(func, ast.Attribute) and func.attr == "import_module")
    arg = call.args[0] if call.args else None
    return arg.value if named and isinstance(arg, ast.Constant) and isinstance(arg.value, str) else None


def _matches(module: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(module, p) or fnmatch.fnmatchcase(module, p + ".*") for p in patterns)


def _files(rule: Rule) -> list[Path]:
    paths: set[Path] = set()
    for pattern in rule.files:
        matched = [p for p in ROOT.glob(pattern) if ".venv" not in p.parts and "__pycache__" not in p.parts]
        assert matched, f"rule {rule.id}: {pattern} matches no file; update RULES in {Path(__file__).name}"
        paths.update(matched)
    return sorted(p for p in paths if not any(fnmatch.fnmatchcase(str(p.relative_to(ROOT)), s) for s in rule.skip))


def violations(rule: Rule, files: list[Path], sources: dict[Path, str] | None = None,
               ) -> tuple[list[str], set[tuple[str, str, str]]]:
    """The rule's broken imports as messages, and the :data:`ALLOWED_LAZY` keys that excused one.

    ``sources`` stands in for the text of some of ``files`` (the scanner's own tests).
    """
    broken: list[str] = []
    used: set[tuple[str, str, str]] = set()
    for path in files:
        rel = str(path.relative_to(ROOT))
        for imp in imports_in(path, (sources or {}).get(path)):
            if not _matches(imp.module, rule.forbidden) or _matches(imp.module, rule.exempt):
                continue
            keys = [k for k in ALLOWED_LAZY if k[:2] == (rule.id, rel) and _matches(imp.module, (k[2],))]
            if keys and imp.lazy:
                used.update(keys)
                continue
            note = " (allowed only inside a function)" if keys else ""
            broken.append(f"{rel}:{imp.line}: `{imp.statement}` ({imp.scope}) imports {imp.module}{note}")
    return broken, used


@pytest.mark.parametrize("rule", RULES, ids=[r.id for r in RULES])
def test_layering_rule(rule: Rule) -> None:
    broken, used = violations(rule, _files(rule))
    stale = [f"{k[1]} -> {k[2]}" for k in ALLOWED_LAZY if k[0] == rule.id and k not in used]
    assert not broken, f"rule {rule.id}: {rule.why}; see docs/architecture.md\n" + "\n".join(broken)
    assert not stale, f"rule {rule.id}: ALLOWED_LAZY entries nothing needs any more: {stale}"


def test_every_allowed_import_names_a_rule() -> None:
    ids = {r.id for r in RULES}
    assert {k[0] for k in ALLOWED_LAZY} <= ids


def test_no_module_over_the_size_limit() -> None:
    over: list[str] = []
    for top in ("client", "ledger"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel.parts[:2] == ("client", "_pb"):
                continue
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                over.append(f"{rel}: {lines} lines")
    assert not over, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(over)


# ------------------------------------------------------------------ the scanner itself

_PROBE = ROOT / "client" / "core" / "probe.py"  # never written: the source is given as text


def _probe(source: str) -> list[Import]:
    return imports_in(_PROBE, source)


def test_scanner_sees_function_level_and_class_level_imports() -> None:
    found = _probe("def f():\n    import grpc\nclass C:\n    import os\n    def g(self):\n"
                   "        from rocksdict import Rdict\n")
    assert [(i.module, i.line, i.scope, i.lazy) for i in found] == [
        ("grpc", 2, "in f", True), ("os", 4, "in class C", False), ("rocksdict.Rdict", 6, "in g", True)]


def test_scanner_sees_a_submodule_imported_by_from() -> None:
    found = _probe("from client import cli\nfrom grpc import aio as a\n")
    assert [i.module for i in found] == ["client.cli", "grpc.aio"]
    assert _matches(found[0].module, ("client.cli",)) and _matches(found[1].module, ("grpc*",))


def test_scanner_resolves_relative_imports() -> None:
    found = _probe("from . import merkle\nfrom ..remote import log\nfrom .. import cli\n")
    assert [i.module for i in found] == ["client.core.merkle", "client.remote.log", "client.cli"]


def test_scanner_sees_type_checking_and_literal_dynamic_imports() -> None:
    found = _probe("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import psycopg\n"
                   "import importlib\ndef f():\n    importlib.import_module('ledger.app')\n    __import__('grpc')\n")
    assert [(i.module, i.scope) for i in found] == [
        ("typing.TYPE_CHECKING", "module level"), ("psycopg", "module level"), ("importlib", "module level"),
        ("ledger.app", "in f"), ("grpc", "in f")]


def test_allowed_import_is_refused_at_module_level_and_elsewhere() -> None:
    rule = next(r for r in RULES if r.id == "client-never-imports-the-server")
    serve_cmds, other = ROOT / "client" / "cli" / "serve_cmds.py", ROOT / "client" / "cli" / "log_cmds.py"
    lazy = "def _serve(args):\n    from ledger.app import serve\n"
    assert violations(rule, [serve_cmds], {serve_cmds: lazy}) == ([], {k for k in ALLOWED_LAZY if "serve" in k[2]})
    broken, _ = violations(rule, [serve_cmds], {serve_cmds: "from ledger.app import serve\n"})
    assert broken == ["client/cli/serve_cmds.py:1: `from ledger.app import serve` (module level) imports "
                      "ledger.app.serve (allowed only inside a function)"]
    broken, _ = violations(rule, [other], {other: lazy})
    assert broken == ["client/cli/log_cmds.py:2: `from ledger.app import serve` (in _serve) imports ledger.app.serve"]


def test_patterns_match_a_module_and_its_submodules_only() -> None:
    assert _matches("client.cli", ("client.cli",)) and _matches("client.cli.serve_cmds", ("client.cli",))
    assert not _matches("client.clipboard", ("client.cli",))
    assert _matches("grpc_health.v1.health", ("grpc*",)) and not _matches("hashlib", ("grpc*",))
