"""The proof bundle document, version 1 (docs/bundle.md, docs/bundle.schema.json). Pure.

A bundle is canonical JSON: ``json.dumps(obj, indent=2, sort_keys=True,
ensure_ascii=True) + "\\n"``. The parser accepts exactly that form, so every
byte of a bundle is either checked by verification or refused by the parser:
there is no field nobody checks and no second spelling of the same bundle.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from client.core.jsonlimits import MAX_DEPTH, nesting_depth
from client.core.merkle import HASH_SIZE
from client.errors import FormatError

FORMAT = "provenance-bundle@v1"
MAX_BUNDLE_BYTES = 64 << 20
MAX_RECORDS = 10_000
MAX_PROOF_HASHES = 64
MAX_LEAF_BYTES = 1 << 20


class BundleFormatError(FormatError):
    """The bundle document is malformed; ``part`` names where."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


@dataclass(frozen=True, slots=True)
class BundleRecord:
    """One logged record: its id, log index, exact entry bytes and RFC 9162 audit path."""

    id: bytes
    index: int
    leaf: bytes
    inclusion_proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Bundle:
    """``records[0]`` is the subject. With ``lineage_to``, ``records[0..k]`` is the lineage path from the
    subject to that ancestor (``records[k].id == lineage_to``); identity records follow, in log order.
    ``key_status`` is the log's signed list of those identities' events (docs/bundle.md, "Key status")."""

    log_key: str
    origin: str
    checkpoint: bytes
    subject: bytes
    lineage_to: bytes | None
    records: tuple[BundleRecord, ...]
    key_status: bytes | None = None  # the log's key-status note (keystatus.py); None in bundles made before it


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def to_json(bundle: Bundle) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "log_key": bundle.log_key,
        "origin": bundle.origin,
        "checkpoint": bundle.checkpoint.decode("utf-8"),
        "subject": bundle.subject.hex(),
        "lineage_to": None if bundle.lineage_to is None else bundle.lineage_to.hex(),
        "records": [
            {
                "id": r.id.hex(),
                "index": r.index,
                "leaf": _b64(r.leaf),
                "inclusion_proof": [_b64(h) for h in r.inclusion_proof],
            }
            for r in bundle.records
        ],
    } | ({} if bundle.key_status is None else {"key_status": bundle.key_status.decode("utf-8")})


def canonical(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def to_bytes(bundle: Bundle) -> bytes:
    """The canonical bytes of ``bundle``."""
    return canonical(to_json(bundle))


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BundleFormatError("bundle", f"key {k!r} appears twice")
        out[k] = v
    return out


def _keys(obj: Any, part: str, want: set[str]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise BundleFormatError(part, "must be a JSON object")
    if set(obj) != want:
        missing, extra = sorted(want - set(obj)), sorted(set(obj) - want)
        raise BundleFormatError(part, f"missing keys {missing}, unexpected keys {extra}")
    return obj


def _str(obj: Any, part: str) -> str:
    if not isinstance(obj, str):
        raise BundleFormatError(part, "must be a string")
    if not obj.isascii():
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as err:  # a lone surrogate from a \u escape: no UTF-8 spelling, cannot print
            raise BundleFormatError(part, f"holds a lone surrogate at character {err.start}, not text") from err
    return obj


def _utf8(obj: Any, part: str) -> bytes:
    try:
        return _str(obj, part).encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate from a \u escape
        raise BundleFormatError(part, "is not valid UTF-8 text") from err


def _hex32(obj: Any, part: str) -> bytes:
    text = _str(obj, part)
    if len(text) != 64 or text != text.lower():
        raise BundleFormatError(part, "must be 64 lowercase hex digits")
    try:
        return bytes.fromhex(text)
    except ValueError as err:
        raise BundleFormatError(part, "is not hex") from err


def _b64_decode(obj: Any, part: str, max_len: int) -> bytes:
    text = _str(obj, part)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BundleFormatError(part, "is not base64") from err
    if _b64(raw) != text:
        raise BundleFormatError(part, "is not canonical base64")
    if len(raw) > max_len:
        raise BundleFormatError(part, f"is {len(raw)} bytes, more than {max_len}")
    return raw


def _record(obj: Any, i: int) -> BundleRecord:
    part = f"records[{i}]"
    r = _keys(obj, part, {"id", "index", "leaf", "inclusion_proof"})
    index = r["index"]
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < (1 << 63):
        raise BundleFormatError(f"{part}.index", "must be a non-negative integer")
    proof = r["inclusion_proof"]
    if not isinstance(proof, list) or len(proof) > MAX_PROOF_HASHES:
        raise BundleFormatError(f"{part}.inclusion_proof", f"must be a list of at most {MAX_PROOF_HASHES} hashes")
    hashes = []
    for j, h in enumerate(proof):
        raw = _b64_decode(h, f"{part}.inclusion_proof[{j}]", HASH_SIZE)
        if len(raw) != HASH_SIZE:
            raise BundleFormatError(f"{part}.inclusion_proof[{j}]", f"must be {HASH_SIZE} bytes")
        hashes.append(raw)
    leaf = _b64_decode(r["leaf"], f"{part}.leaf", MAX_LEAF_BYTES)
    return BundleRecord(_hex32(r["id"], f"{part}.id"), index, leaf, tuple(hashes))


def parse(data: bytes) -> Bundle:
    """Parse bundle bytes strictly (see the module docstring). Raises :class:`BundleFormatError`."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleFormatError("bundle", f"is {len(data)} bytes, more than {MAX_BUNDLE_BYTES}")
    if (depth := nesting_depth(data)) > MAX_DEPTH:  # before json recurses (client/core/jsonlimits.py)
        raise BundleFormatError("bundle", f"nests {depth} levels deep, more than {MAX_DEPTH}")
    try:
        obj = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as err:
        if isinstance(err, BundleFormatError):
            raise
        raise BundleFormatError("bundle", f"is not JSON: {err}") from err
    want = {"format", "log_key", "origin", "checkpoint", "subject", "lineage_to", "records"}
    if isinstance(obj, dict) and "key_status" in obj:
        want.add("key_status")  # optional: bundles made before it lack it (docs/bundle.md, "Key status")
    top = _keys(obj, "bundle", want)
    if top["format"] != FORMAT:
        raise BundleFormatError("format", f"is {top['format']!r}; this verifier reads {FORMAT!r}")
    records = top["records"]
    if not isinstance(records, list) or not 1 <= len(records) <= MAX_RECORDS:
        raise BundleFormatError("records", f"must be a list of 1 to {MAX_RECORDS} records")
    lineage = top["lineage_to"]
    bundle = Bundle(
        log_key=_str(top["log_key"], "log_key"),
        origin=_str(top["origin"], "origin"),
        checkpoint=_str(top["checkpoint"], "checkpoint").encode("utf-8"),
        subject=_hex32(top["subject"], "subject"),
        lineage_to=None if lineage is None else _hex32(lineage, "lineage_to"),
        records=tuple(_record(r, i) for i, r in enumerate(records)),
        key_status=_utf8(top["key_status"], "key_status") if "key_status" in top else None,
    )
    if canonical(obj) != data:
        at = next((i for i, (a, b) in enumerate(zip(canonical(obj), data, strict=False)) if a != b), len(data))
        line = data[:at].count(b"\n") + 1
        raise BundleFormatError("bundle", f"is not in canonical form (first difference at byte {at}, line {line})")
    return bundle
