"""Golden manifests: a rebuilt tree must hash to the checked-in JSON and canonical bytes exactly, in
every manifest version (version 1 files are the ones written before version 2 and stay unchanged).

Regenerate with ``.venv/bin/python tests/golden/manifests/regen.py`` (see that file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.core.manifest import decode, encode, from_json, manifest_digest
from client.core.manifest.diff import compare
from tests.golden.manifests import regen

GOLDENS = [(v, case) for v, cases in regen.VERSION_CASES.items() for case in cases]


@pytest.mark.parametrize(("version", "case"), GOLDENS)
def test_golden_manifest_bytes_and_json(version: int, case: str, tmp_path: Path) -> None:
    text, raw = regen.manifest_json_text(case, tmp_path, version)
    assert raw == regen.golden(case, version, "bin").read_bytes(), f"canonical bytes of v{version} {case} changed"
    assert text == regen.golden(case, version, "json").read_text(encoding="utf-8"), f"JSON of v{version} {case} changed"


@pytest.mark.parametrize(("version", "case"), GOLDENS)
def test_golden_files_parse_and_agree(version: int, case: str) -> None:
    raw = regen.golden(case, version, "bin").read_bytes()
    m = decode(raw)
    assert m.version == version
    assert encode(m) == raw
    doc = json.loads(regen.golden(case, version, "json").read_text(encoding="utf-8"))
    assert from_json(doc) == m
    assert doc["digest"] == manifest_digest(m).hex()


@pytest.mark.parametrize("case", regen.VERSION_CASES[1])
def test_version_1_and_2_goldens_describe_the_same_bytes(case: str) -> None:
    """Same files, same file and tensor digests; only the pieces (and so the manifest digest) differ."""
    v1 = decode(regen.golden(case, 1, "bin").read_bytes())
    v2 = decode(regen.golden(case, 2, "bin").read_bytes())
    assert compare(v1, v2) == []
    assert [(f.path, f.blake3, f.tensors) for f in v1.files] == [(f.path, f.blake3, f.tensors) for f in v2.files]
    assert all(f.header is None for f in v1.files)
    tiled = [f for f in v2.files if f.header is not None]
    assert manifest_digest(v1) != manifest_digest(v2)
    assert bool(tiled) == any(f.path.endswith(".safetensors") for f in v2.files)
