"""Golden manifests: a rebuilt tree must hash to the checked-in JSON and canonical bytes exactly.

Regenerate with ``.venv/bin/python tests/golden/manifests/regen.py`` (see that file).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from client.core.manifest import decode, encode, from_json, manifest_digest
from tests.golden.manifests import regen


@pytest.mark.parametrize("case", sorted(regen.CASES))
def test_golden_manifest_bytes_and_json(case: str, tmp_path: Path) -> None:
    text, raw = regen.manifest_json_text(case, tmp_path)
    assert raw == (regen.HERE / f"{case}.bin").read_bytes(), f"canonical bytes of {case} changed"
    assert text == (regen.HERE / f"{case}.json").read_text(encoding="utf-8"), f"JSON of {case} changed"


@pytest.mark.parametrize("case", sorted(regen.CASES))
def test_golden_files_parse_and_agree(case: str) -> None:
    raw = (regen.HERE / f"{case}.bin").read_bytes()
    m = decode(raw)
    assert encode(m) == raw
    doc = json.loads((regen.HERE / f"{case}.json").read_text(encoding="utf-8"))
    assert from_json(doc) == m
    assert doc["digest"] == manifest_digest(m).hex()
