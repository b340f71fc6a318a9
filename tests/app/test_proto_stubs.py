"""The committed stubs in client/_pb are exactly what ``make proto`` generates from proto/."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from client import _protogen

COMMITTED = _protogen.DEFAULT_OUT


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_committed_stubs_match_generator(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools")
    out = tmp_path / "_pb"
    _protogen.generate(out)
    fresh, committed = _files(out), _files(COMMITTED)
    assert fresh == committed, f"missing {fresh - committed}, stale {committed - fresh}; run make proto"
    stale = [name for name in sorted(fresh) if not filecmp.cmp(out / name, COMMITTED / name, shallow=False)]
    assert not stale, f"committed stubs are stale: {stale}; run make proto"


def test_every_proto_has_stubs() -> None:
    for proto in _protogen.proto_files():
        rel = proto.relative_to(_protogen.PROTO_ROOT).with_suffix("")
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
            assert (COMMITTED / rel.parent / (rel.name + suffix)).is_file(), f"{rel}{suffix} missing; run make proto"


def test_stubs_import_as_package() -> None:
    from client._pb.provenance.ledger.v1 import ledger_pb2, ledger_pb2_grpc

    assert ledger_pb2.DESCRIPTOR.package == "provenance.ledger.v1"
    assert "LogService" in ledger_pb2.DESCRIPTOR.services_by_name
    assert hasattr(ledger_pb2_grpc, "LogServiceStub")


def test_generated_imports_are_rooted_in_client_pb() -> None:
    for path in [*COMMITTED.rglob("*.py"), *COMMITTED.rglob("*.pyi")]:
        text = path.read_text(encoding="utf-8")
        assert "\nfrom provenance." not in text and "\nimport provenance." not in text, path
