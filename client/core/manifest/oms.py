"""OpenSSF Model Signing (OMS) v1.0: the in-toto statement of a manifest's file digests.

Pure. Produces the statement the ``model-signing`` package builds for a model
hashed with file serialization and BLAKE3 (its ``signing.Payload``)::

    {"_type": "https://in-toto.io/Statement/v1",
     "subject": [{"name": MODEL_NAME, "digest": {"sha256": ROOT}}],
     "predicateType": "https://model_signing/signature/v1.0",
     "predicate": {"serialization": {"method": "files", "hash_type": "blake3",
                                     "allow_symlinks": false, "ignore_paths": [...]},
                   "resources": [{"name": PATH, "algorithm": "blake3", "digest": HEX}, ...]}}

Resources are ordered as ``pathlib.PurePosixPath`` orders them (component by
component, which differs from our full-path code-point order: ``a/b`` < ``a-c``);
ROOT is SHA-256 over the concatenated raw digests in that order. A single-file
model has one resource named ``.``. Symlinks cannot be expressed (OMS hashes
what a link points to), so a manifest with symlinks is refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from client.core.manifest.model import Manifest
from client.errors import InvalidInputError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: What model-signing ignores by default; we skip every ``.git*`` entry (walk.py), a superset.
DEFAULT_IGNORED = (".git", ".gitattributes", ".github", ".gitignore")


def statement(
    manifest: Manifest, model_name: str, *, single_file: bool = False, skipped: Iterable[str] = ()
) -> dict[str, Any]:
    """The OMS v1.0 in-toto statement (a JSON-ready dict) for ``manifest``.

    ``single_file``: the manifest is of one file given directly (resource name
    ``.``). ``skipped``: paths the walk skipped, listed in ``ignore_paths`` so an
    OMS verifier skips them too.
    """
    if manifest.symlinks:
        raise InvalidInputError("OMS v1.0 file serialization cannot record symlinks as links")
    files = list(manifest.files)
    if single_file and len(files) != 1:
        raise InvalidInputError("a single-file statement needs exactly one file")
    named = [("." if single_file else f.path, f.blake3) for f in files]
    named.sort(key=lambda p: tuple(p[0].split("/")) if p[0] != "." else ())
    root = hashlib.sha256(b"".join(d for _, d in named)).hexdigest()
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "blake3",
                "allow_symlinks": False,
                "ignore_paths": sorted(set(DEFAULT_IGNORED) | set(skipped)),
            },
            "resources": [{"name": n, "algorithm": "blake3", "digest": d.hex()} for n, d in named],
        },
    }
