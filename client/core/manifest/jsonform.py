"""The JSON form of a manifest (``provenance hash --json``); schema in docs/manifest.md.

JSON is for people and scripts; the canonical bytes (:mod:`client.core.manifest.codec`)
are what the digest covers. :func:`from_json` rebuilds the manifest, recomputes
its digest and refuses a JSON document whose ``digest`` does not match.
"""

from __future__ import annotations

from typing import Any

from client.core.manifest.codec import manifest_digest
from client.core.manifest.errors import DigestMismatchError, UnsupportedVersionError
from client.core.manifest.model import (
    ALGORITHM,
    DIGEST_SIZE,
    SUPPORTED_VERSIONS,
    Entry,
    FileEntry,
    Manifest,
    SymlinkEntry,
    TensorEntry,
)
from client.errors import FormatError, InvalidInputError

JSON_FORMAT = "provenance-ledger/manifest"


def tensor_json(t: TensorEntry) -> dict[str, Any]:
    return {
        "name": t.name,
        "dtype": t.dtype,
        "shape": list(t.shape),
        "start": t.start,
        "end": t.end,
        "blake3": t.blake3.hex(),
    }


def file_json(f: FileEntry) -> dict[str, Any]:
    """A file's JSON object: ``chunks`` for fixed chunks, ``header`` ({end, blake3}) for a tiled file."""
    out: dict[str, Any] = {"path": f.path, "size": f.size, "blake3": f.blake3.hex()}
    if f.header is None:
        out["chunks"] = [c.hex() for c in f.chunks]
    else:
        out["header"] = {"end": f.header_end, "blake3": f.header.hex()}
    if f.tensor_format:
        out["tensor_format"] = f.tensor_format
        out["tensors"] = [tensor_json(t) for t in f.tensors]
    return out


def to_json(manifest: Manifest) -> dict[str, Any]:
    """The JSON object for ``manifest``; ``digest`` is the manifest digest (hex)."""
    return {
        "format": JSON_FORMAT,
        "version": manifest.version,
        "algorithm": manifest.algorithm,
        "chunk_size": manifest.chunk_size,
        "digest": manifest_digest(manifest).hex(),
        "files": [file_json(f) for f in manifest.files],
        "symlinks": [{"path": s.path, "target": s.target} for s in manifest.symlinks],
    }


def _get(obj: Any, key: str, typ: type, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise FormatError(f"{where}: missing {key!r}")
    v = obj[key]
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise FormatError(f"{where}: {key!r} must be {typ.__name__}")
    return v


def _hex(s: Any, where: str) -> bytes:
    if not isinstance(s, str) or len(s) != 2 * DIGEST_SIZE or s != s.lower():
        raise FormatError(f"{where}: a digest is {2 * DIGEST_SIZE} lowercase hex characters")
    try:
        return bytes.fromhex(s)
    except ValueError as e:
        raise FormatError(f"{where}: bad hex digest") from e


def _tensor(obj: Any, where: str) -> TensorEntry:
    shape = _get(obj, "shape", list, where)
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise FormatError(f"{where}: shape must be a list of integers")
    return TensorEntry(
        name=_get(obj, "name", str, where),
        dtype=_get(obj, "dtype", str, where),
        shape=tuple(shape),
        start=_get(obj, "start", int, where),
        end=_get(obj, "end", int, where),
        blake3=_hex(_get(obj, "blake3", str, where), where),
    )


def _header(obj: Any, path: str) -> bytes | None:
    """A tiled file's header digest (``end`` is checked against the tensors by :func:`_file`), or None."""
    if "header" not in obj:
        return None
    if "chunks" in obj:
        raise FormatError(f"{path}: a file has either chunks or a header, not both")
    h = _get(obj, "header", dict, path)
    _get(h, "end", int, f"{path}: header")
    return _hex(_get(h, "blake3", str, f"{path}: header"), f"{path}: header")


def _file(obj: Any) -> FileEntry:
    path = _get(obj, "path", str, "file")
    header = _header(obj, path)
    chunks = _get(obj, "chunks", list, path) if header is None else []
    fmt = obj.get("tensor_format", "")
    if not isinstance(fmt, str):
        raise FormatError(f"{path}: tensor_format must be a string")
    tensors = obj.get("tensors", []) if fmt else []
    if not isinstance(tensors, list) or (not fmt and "tensors" in obj):
        raise FormatError(f"{path}: tensors need a tensor_format")
    f = FileEntry(
        path=path,
        size=_get(obj, "size", int, path),
        blake3=_hex(_get(obj, "blake3", str, path), path),
        chunks=tuple(_hex(c, path) for c in chunks),
        tensor_format=fmt,
        tensors=tuple(_tensor(t, f"{path}: tensor") for t in tensors),
        header=header,
    )
    if header is not None and obj["header"]["end"] != f.header_end:
        raise FormatError(f"{path}: header end {obj['header']['end']} is not the lowest tensor start {f.header_end}")
    return f


def from_json(obj: Any) -> Manifest:
    """Rebuild a manifest from its JSON object; verifies ``digest`` when present.

    Raises UnsupportedVersionError for an unknown version, FormatError for a
    malformed document and DigestMismatchError when ``digest`` disagrees.
    """
    if not isinstance(obj, dict) or obj.get("format") != JSON_FORMAT:
        raise FormatError(f"not a manifest JSON document (format must be {JSON_FORMAT!r})")
    version = _get(obj, "version", int, "manifest")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersionError(
            f"manifest format version {version} is not supported (this code: {', '.join(map(str, SUPPORTED_VERSIONS))})"
        )
    if _get(obj, "algorithm", str, "manifest") != ALGORITHM:
        raise FormatError(f"unknown manifest algorithm {obj['algorithm']!r}")
    try:
        entries: list[Entry] = [_file(f) for f in _get(obj, "files", list, "manifest")]
        symlinks = obj.get("symlinks", [])
        if not isinstance(symlinks, list):
            raise FormatError("manifest: symlinks must be a list")
        for s in symlinks:
            entries.append(
                SymlinkEntry(path=_get(s, "path", str, "symlink"), target=_get(s, "target", str, "symlink"))
            )
        entries.sort(key=lambda e: e.path)
        manifest = Manifest(
            chunk_size=_get(obj, "chunk_size", int, "manifest"), entries=tuple(entries), version=version
        )
    except InvalidInputError as e:
        if isinstance(e, FormatError):
            raise
        raise FormatError(f"manifest violates an invariant: {e}") from e
    if "digest" in obj:
        stated = _hex(obj["digest"], "digest")
        actual = manifest_digest(manifest)
        if stated != actual:
            raise DigestMismatchError(f"manifest digest {stated.hex()} does not match its content ({actual.hex()})")
    return manifest
