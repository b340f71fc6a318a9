"""Golden manifests: the trees they describe and how to regenerate them.

Regenerate (only when the format deliberately changes; bump FORMAT_VERSION then
and keep the old files so old manifests keep verifying)::

    .venv/bin/python tests/golden/manifests/regen.py

Each case builds a deterministic tree, hashes it and writes ``<case>.json``
(``provenance hash --json``) and ``<case>.bin`` (canonical bytes) next to this file.
tests/core/test_manifest_golden.py rebuilds the trees and checks both byte for byte.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from client.core.manifest import encode, to_json  # noqa: E402
from client.hashing import HashConfig, hash_path  # noqa: E402
from tests import test_manifest_support as kit  # noqa: E402

CHUNK = 1024


def _model(root: Path) -> None:
    kit.model_folder(root, seed=7)


def _dataset(root: Path) -> None:
    kit.dataset_folder(root, files=25, seed=3)
    kit.write(root / "a-b", b"sorts before a/ by code point")
    kit.write(root / "a" / "x", b"")
    kit.write(root / "\u00e9t\u00e9" / "\U0001f600.txt", b"non-ASCII names are UTF-8")


def _single(root: Path) -> None:
    kit.write(root / "weights.safetensors", kit.safetensors_bytes(kit.model_tensors(11), metadata={"k": "v"}))


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # name: (builder, path hashed relative to the built root)
    "model": (_model, "."),
    "dataset": (_dataset, "."),
    "single-file": (_single, "weights.safetensors"),
}


def build(case: str, root: Path) -> Path:
    builder, rel = CASES[case]
    builder(root)
    return root / rel


def manifest_json_text(case: str, root: Path) -> tuple[str, bytes]:
    m = hash_path(str(build(case, root)), HashConfig(chunk_size=CHUNK, threads=2))
    return json.dumps(to_json(m), indent=1, sort_keys=True) + "\n", encode(m)


def main() -> None:
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            text, raw = manifest_json_text(case, Path(tmp))
        (HERE / f"{case}.json").write_text(text, encoding="utf-8")
        (HERE / f"{case}.bin").write_bytes(raw)
        print(f"wrote {case}.json and {case}.bin")


if __name__ == "__main__":
    main()
