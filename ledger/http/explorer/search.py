"""The explorer's search: one box, read as whichever of these the text can be.

- ``123`` or ``#123``: the record at that log index;
- 64 hex digits: a record id, and a BLAKE3 digest (manifest, file, tensor or chunk); ``blake3:<hex>``:
  the digest only;
- 8 to 63 hex digits: records whose id starts with them (a prefix scan of the id index);
- ``ed25519:<base64>``: a signer key, its identity and its records;
- ``name@version``: that version of a checkpoint or dataset (a checkpoint's version is ``step`` or
  ``run/step``);
- anything else: every version of a checkpoint or dataset of exactly that name, and the identity of
  that name.

Every lookup is a point read or a bounded prefix scan of the registry's indexes (at most
:data:`LIMIT` hits per kind of answer), never a scan of the log.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from client.core.records import Kind, check_identity_name, parse_key
from client.errors import InvalidInputError, NotFoundError
from ledger.http.explorer.signers import resolve
from ledger.http.explorer.views import SignerView, Summary, signer_view, summarize
from ledger.registry import keys as K
from ledger.registry.queries import RegistryReader

LIMIT = 50
MAX_QUERY = 600

_INDEX = re.compile(r"#?([0-9]{1,19})")
_HEX = re.compile(r"[0-9a-fA-F]{8,64}")


@dataclass(frozen=True, slots=True)
class Hit:
    """A record found, and what of it matched (``record id``, ``file digest``, ``name`` ...)."""

    record: Summary
    why: str


@dataclass(frozen=True, slots=True)
class Results:
    query: str
    understood: tuple[str, ...]  # how the query was read, in words
    hits: tuple[Hit, ...]
    signers: tuple[SignerView, ...]
    more: bool  # some kind of answer had more than LIMIT hits


def search(reader: RegistryReader, log: Any, query: str) -> Results:
    """Everything ``query`` finds (see the module docstring). Raises InvalidInputError for an over-long query."""
    q = query.strip()
    if len(q) > MAX_QUERY:
        raise InvalidInputError(f"a search is at most {MAX_QUERY} characters")
    out = _Collector(reader, log)
    if not q:
        return out.results(q)
    if m := _INDEX.fullmatch(q):
        out.read_as("a log index")
        index = int(m.group(1))
        if index < log.size:
            out.add(reader.at(index), "log index")
    lowered = q.lower()
    if lowered.startswith("blake3:"):
        out.read_as("a BLAKE3 digest")
        out.digest(_hex32(lowered[len("blake3:"):]))
    elif _HEX.fullmatch(q):
        h = lowered
        if len(h) == 64:
            out.read_as("a record id or a BLAKE3 digest")
            rid = bytes.fromhex(h)
            with contextlib.suppress(NotFoundError):
                out.add(reader.by_id(rid), "record id")
            out.digest(rid)
        else:
            out.read_as("the start of a record id")
            rows = log.scan_aux(K.RECORD + bytes.fromhex(h[: len(h) // 2 * 2]), LIMIT + 1)
            ids = [key[len(K.RECORD):] for key, _ in rows if key[len(K.RECORD):].hex().startswith(h)]
            out.more |= len(rows) > LIMIT
            for rec in reader.by_ids(ids[:LIMIT]):
                out.add(rec, "record id")
    elif q.startswith("ed25519:"):
        out.read_as("a signer key")
        key = parse_key(q)
        out.signers.append(signer_view(reader, key))
        recs = reader.by_signer(key, LIMIT + 1)
        out.more |= len(recs) > LIMIT
        for rec in recs[:LIMIT]:
            out.add(rec, "signed by the key")
    else:
        out.names(q)
    return out.results(q)


def _hex32(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError as err:
        raise InvalidInputError("a BLAKE3 digest is 64 hex digits after blake3:") from err
    if len(raw) != 32:
        raise InvalidInputError("a BLAKE3 digest is 64 hex digits after blake3:")
    return raw


class _Collector:
    def __init__(self, reader: RegistryReader, log: Any) -> None:
        self.reader = reader
        self.log = log
        self.understood: list[str] = []
        self.hits: dict[int, Hit] = {}
        self.signers: list[SignerView] = []
        self.more = False
        self._signers: dict[bytes, SignerView] = {}

    def read_as(self, what: str) -> None:
        self.understood.append(what)

    def add(self, rec: Any, why: str) -> None:
        if rec.index not in self.hits:
            self.hits[rec.index] = Hit(summarize(self.reader, rec, self._signers), why)

    def digest(self, digest: bytes) -> None:
        found = self.reader.find(digest, limit=LIMIT + 1)
        self.more |= len(found) > LIMIT
        for match in found[:LIMIT]:
            self.add(match.record, f"{match.kind} digest")

    def names(self, q: str) -> None:
        name, at, version = q.rpartition("@")
        if at and name:
            self.read_as("name@version")
            for kind in (Kind.CHECKPOINT, Kind.DATASET):
                with contextlib.suppress(NotFoundError):
                    self.add(self.reader.by_name(kind, name, version), f"{kind.label} name and version")
        self.read_as("a checkpoint, dataset or identity name")
        for kind in (Kind.CHECKPOINT, Kind.DATASET):
            # version_key of an empty version ends in that version's one length byte (0): drop it for the
            # prefix of every version of the name.
            prefix = K.version_key(kind.value, q, "")[:-1]
            rows = self.log.scan_aux(prefix, LIMIT + 1)
            self.more |= len(rows) > LIMIT
            for _key, value in rows[:LIMIT]:
                self.add(self.reader.at(K.read_u64(value)), f"{kind.label} name")
        try:
            check_identity_name(q)
        except InvalidInputError:
            return
        with contextlib.suppress(NotFoundError):
            self.signers.append(signer_view(self.reader, resolve(self.reader, q)))

    def results(self, q: str) -> Results:
        hits = tuple(self.hits[i] for i in sorted(self.hits, reverse=True))
        return Results(q, tuple(self.understood), hits, tuple(self.signers), self.more)
