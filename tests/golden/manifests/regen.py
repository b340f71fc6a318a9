"""Golden manifests: the trees they describe and how to regenerate them.

Regenerate (only when the format deliberately changes; bump FORMAT_VERSION then
and keep the old files so old manifests keep verifying)::

    .venv/bin/python tests/golden/manifests/regen.py

Each case builds a deterministic tree, hashes it in one manifest version and writes
``<case>.json`` (``provenance hash --json``) and ``<case>.bin`` (canonical bytes):
version 1 next to this file (the files of before version 2, unchanged), version 2 in
``v2/``. tests/core/test_manifest_golden.py rebuilds the trees and checks both byte for byte.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Where the golden files of each manifest version live.
FOLDERS = {1: HERE, 2: HERE / "v2"}
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


def _formats(root: Path) -> None:
    """One small model in every tensor format (docs/manifest.md, "Tensor digests")."""
    import numpy as np

    from tests import descent_fixtures as fx

    r = np.random.default_rng(17)
    t = {"w": r.standard_normal((4, 32)).astype(np.float32), "h": r.standard_normal(6).astype(np.float16),
         "ids": np.arange(5, dtype=np.int64)}
    # the same int64 tensor as packed varints in TensorProto.int64_data (field 7)
    int64_data = (fx._f_varint(1, 5) + fx._f_varint(2, 7) + fx._f_bytes(8, b"ids_varint")
                  + fx._f_bytes(7, b"".join(fx._varint(int(v)) for v in t["ids"])))
    root.mkdir(parents=True, exist_ok=True)
    fx.write_safetensors(root / "m.safetensors", t)
    fx.write_gguf(root / "m.gguf", {"w": t["w"], "q": t["w"], "h": t["h"]}, {"q": "Q8_0"})
    fx.write_onnx(root / "m.onnx", [fx.onnx_tensor("w", t["w"]), fx.onnx_tensor("typed", t["w"], typed=True),
                                    fx.onnx_tensor("ids", t["ids"]), int64_data], [])
    fx.write_torch_zip(root / "z.pt", t)
    fx.write_torch_legacy(root / "l.pt", t)
    np.save(root / "w.npy", t["w"])
    fx.write_npz(root / "m.npz", t)


def _tiling(root: Path) -> None:
    """Which files are tiled in version 2 (docs/manifest.md, "Tiled files"), and which keep chunks."""
    import numpy as np

    t = kit.model_tensors(5)
    t["empty"] = ("F32", [0, 3], b"")  # an empty tensor inside the data section still tiles
    kit.write(root / "tiled.safetensors", kit.safetensors_bytes(t, metadata={"format": "pt"}, align=8))
    kit.write(root / "one.safetensors", kit.safetensors_bytes({"w": kit.tensor("U8", [3000], 6)}))
    kit.write(root / "no-data.safetensors", kit.safetensors_bytes({"e": ("F32", [0], b"")}))  # empty data: chunks
    kit.write(root / "no-tensors.safetensors", kit.safetensors_bytes({}))  # chunks
    w = np.random.default_rng(23).standard_normal((8, 40)).astype(np.float32)
    np.save(root / "le.npy", w)  # header then the array: tiled
    np.save(root / "be.npy", w.astype(">f4"))  # ranges tile, but the digest covers swapped bytes: chunks


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # name: (builder, path hashed relative to the built root)
    "model": (_model, "."),
    "dataset": (_dataset, "."),
    "single-file": (_single, "weights.safetensors"),
    "formats": (_formats, "."),
    "tiling": (_tiling, "."),
}
#: The cases pinned in each version (version 1: the goldens written before version 2 existed).
VERSION_CASES = {1: ("model", "dataset", "single-file", "formats"), 2: tuple(CASES)}


def build(case: str, root: Path) -> Path:
    builder, rel = CASES[case]
    builder(root)
    return root / rel


def manifest_json_text(case: str, root: Path, version: int) -> tuple[str, bytes]:
    m = hash_path(str(build(case, root)), HashConfig(chunk_size=CHUNK, threads=2, version=version))
    return json.dumps(to_json(m), indent=1, sort_keys=True) + "\n", encode(m)


def golden(case: str, version: int, suffix: str) -> Path:
    return FOLDERS[version] / f"{case}.{suffix}"


def main() -> None:
    for version, cases in VERSION_CASES.items():
        FOLDERS[version].mkdir(exist_ok=True)
        for case in cases:
            with tempfile.TemporaryDirectory() as tmp:
                text, raw = manifest_json_text(case, Path(tmp), version)
            golden(case, version, "json").write_text(text, encoding="utf-8")
            golden(case, version, "bin").write_bytes(raw)
            print(f"wrote {golden(case, version, 'json').relative_to(HERE)} and .bin")


if __name__ == "__main__":
    main()
