"""Read side of the registry: records by id, index, name/version and signer; lineage; digest lookups.

Everything is point reads and prefix scans (posting lists) of the aux store plus
entry reads from the log; parsed records are cached by index, and their ids with
them (entries never change, so neither does a cached answer).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from client.core.records import Attestation, Dataset, Kind, ModelCheckpoint, SignedRecord, parse_entry
from client.core.records.lineage import Edge as Edge_
from client.core.records.lineage import lineage_edges
from client.core.records.signing import key_text
from client.errors import InvalidInputError, NotFoundError
from ledger.registry import keys as K
from ledger.registry import postings

MAX_DEPTH = 64
MAX_RESULTS = 10_000
OMS_FILE = "oms-file"


class RegistryLog(Protocol):
    """What queries need from the log."""

    def get_aux_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]: ...
    def entries(self, start: int, end: int) -> Sequence[bytes]: ...


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """A record and where it is logged."""

    index: int
    signed: SignedRecord

    @property
    def id(self) -> bytes:
        return self.signed.id


@dataclass(frozen=True, slots=True)
class Edge:
    """``child`` derives from (or was trained on) ``parent``; ``relation`` as in docs/records.md
    (dataset roles appear as ``trained-on:<role>``). ``depth`` counts from the query's record."""

    child: bytes
    parent: bytes
    relation: str
    depth: int


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key: bytes
    name: str
    status: str
    since_index: int
    registered_index: int


@dataclass(frozen=True, slots=True)
class DigestMatch:
    """``record`` contains the digest as a ``kind`` (manifest, file, tensor, chunk)."""

    kind: str
    record: LoggedRecord


def parent_edges(signed: SignedRecord) -> tuple[Edge_, ...]:
    """``(parent id, relation)`` of every lineage link a record states (:func:`lineage_edges`)."""
    return lineage_edges(signed.record.statement)


class RegistryReader:
    """Queries over a registry log. Thread-safe."""

    def __init__(self, log: RegistryLog, cache_records: int = 200_000) -> None:
        self._log = log
        self._cache: OrderedDict[int, LoggedRecord] = OrderedDict()
        self._index_of: dict[bytes, int] = {}  # id -> index of every cached record
        self._cache_max = cache_records
        self._lock = threading.Lock()

    def _get(self, key: bytes) -> bytes | None:
        return self._log.get_aux_many([key])[0]

    # --- single records ------------------------------------------------------------

    def at(self, index: int) -> LoggedRecord:
        """The record logged at ``index``."""
        with self._lock:
            hit = self._cache.get(index)
        if hit is not None:
            return hit
        if index < 0:
            raise InvalidInputError(f"negative index {index}")
        entries = self._log.entries(index, index + 1)
        if not entries:
            raise NotFoundError(f"no entry at index {index}")
        rec = LoggedRecord(index, parse_entry(bytes(entries[0])))
        with self._lock:
            self._cache[index] = rec
            self._index_of[rec.id] = index
            if len(self._cache) > self._cache_max:
                self._index_of.pop(self._cache.popitem(last=False)[1].id, None)
        return rec

    def index_of(self, rid: bytes) -> int:
        hit = self._index_of.get(rid)
        if hit is not None:
            return hit
        v = self._get(K.RECORD + rid)
        if v is None:
            raise NotFoundError(f"record {rid.hex()} is not in the registry")
        return K.read_u64(v)

    def by_id(self, rid: bytes) -> LoggedRecord:
        return self.at(self.index_of(rid))

    def by_ids(self, rids: Sequence[bytes]) -> list[LoggedRecord]:
        """:meth:`by_id` of each, with one multi-read for the ids not cached."""
        known = self._index_of
        missing = list(dict.fromkeys(r for r in rids if r not in known))
        found = dict(zip(missing, self._log.get_aux_many([K.RECORD + r for r in missing]), strict=True))
        out = []
        for rid in rids:
            index = known.get(rid)
            if index is None:
                v = found.get(rid)
                if v is None:
                    raise NotFoundError(f"record {rid.hex()} is not in the registry")
                index = K.read_u64(v)
            out.append(self.at(index))
        return out

    def by_name(self, kind: Kind, name: str, version: str) -> LoggedRecord:
        v = self._get(K.version_key(kind.value, name, version))
        if v is None:
            raise NotFoundError(f"no {kind.label} {name!r} version {version!r} in the registry")
        return self.at(K.read_u64(v))

    def by_signer(self, key: bytes, limit: int = 1000) -> list[LoggedRecord]:
        idx = postings.read(self._log.scan_aux, K.SIGNER_POSTS + key, min(limit, MAX_RESULTS))
        return [self.at(i) for i in idx]

    def about(self, rid: bytes, limit: int = 1000) -> list[LoggedRecord]:
        """Attestations and disputes that name ``rid``, earliest first."""
        idx = postings.read(self._log.scan_aux, K.ABOUT_POSTS + rid, min(limit, MAX_RESULTS))
        return [self.at(i) for i in idx]

    # --- identities ------------------------------------------------------------------

    def key_info(self, key: bytes) -> KeyInfo:
        v = self._get(K.KEY + key)
        if v is None:
            raise NotFoundError(f"key {key_text(key)} is not registered")
        status, since, registered, name = K.parse_key_state(v)
        return KeyInfo(key, name, K.KEY_STATUS_TEXT[status], since, registered)

    def identity_events(self, name: str) -> list[int]:
        """Log indices of every identity event of ``name``, earliest first (needs
        :meth:`identity_events_complete` to be every one)."""
        return postings.read(self._log.scan_aux, K.identity_posts(name), MAX_RESULTS)

    def identity_events_complete(self) -> bool:
        """Whether the store indexed every identity event by name (not so in stores indexed before that)."""
        return self._get(K.IDENTITY_POSTS_COMPLETE) is not None

    def current_key(self, name: str) -> bytes | None:
        v = self._get(K.NAME + name.encode())
        if v is None:
            raise NotFoundError(f"identity {name!r} is not registered")
        return v[:-8] or None

    def identity_chain(self, key: bytes) -> list[LoggedRecord]:
        """The identity events that establish ``key`` (its register event, or the rotations leading to it
        back to the first register), plus the event that retired or revoked it, in log order."""
        out: dict[int, LoggedRecord] = {}
        info = self.key_info(key)
        if info.since_index != info.registered_index:
            out[info.since_index] = self.at(info.since_index)
        while True:
            event = self.at(info.registered_index)
            out[event.index] = event
            signer = event.signed.record.signer
            if signer == key:
                break  # a self-signed register
            key = signer  # a rotation: signed by the previous key
            info = self.key_info(key)
        return [out[i] for i in sorted(out)]

    # --- lineage -----------------------------------------------------------------------

    def ancestors(self, rid: bytes, depth: int) -> tuple[list[LoggedRecord], list[Edge]]:
        """Records ``rid`` derives from, up to ``depth`` links away, and the links (breadth first)."""
        return self._walk(rid, depth, up=True)

    def descendants(self, rid: bytes, depth: int) -> tuple[list[LoggedRecord], list[Edge]]:
        """Records derived from (or trained on) ``rid``, up to ``depth`` links away, and the links."""
        return self._walk(rid, depth, up=False)

    def _walk(self, rid: bytes, depth: int, *, up: bool) -> tuple[list[LoggedRecord], list[Edge]]:
        if not 0 <= depth <= MAX_DEPTH:
            raise InvalidInputError(f"depth must be in 0..{MAX_DEPTH}, got {depth}")
        start = self.by_id(rid)
        nodes = {start.id: start}
        edges: list[Edge] = []
        frontier = [start]
        scan = self._log.scan_aux
        for level in range(1, depth + 1):
            nxt: list[LoggedRecord] = []
            if up:  # the parents of the whole level in one multi-read
                stated = [(rec, parent_edges(rec.signed)) for rec in frontier]
                parents = iter(self.by_ids([pid for _, links in stated for pid, _ in links]))
                level_links = [(rec, [(next(parents), rel) for _, rel in links]) for rec, links in stated]
            else:  # one prefix scan per record; the posting carries the relation
                level_links = [
                    (rec, [(self.at(i), rel.decode()) for i, rel in
                           postings.read_labelled(scan, K.CHILD_POSTS + rec.id, MAX_RESULTS)])
                    for rec in frontier
                ]
            for rec, links in level_links:
                for other, rel in links:
                    edge = Edge(rec.id, other.id, rel, level) if up else Edge(other.id, rec.id, rel, level)
                    edges.append(edge)
                    if other.id not in nodes:
                        nodes[other.id] = other
                        nxt.append(other)
                if len(nodes) > MAX_RESULTS:
                    raise InvalidInputError(f"lineage has more than {MAX_RESULTS} records; ask for a smaller depth")
            frontier = nxt
            if not frontier:
                break
        return list(nodes.values()), edges

    def path(self, rid: bytes, ancestor: bytes) -> list[LoggedRecord]:
        """The records on a shortest lineage path from ``rid`` up to ``ancestor`` (both included)."""
        start = self.by_id(rid)
        back: dict[bytes, bytes | None] = {start.id: None}
        frontier = [start]
        for _ in range(MAX_DEPTH):
            nxt: list[LoggedRecord] = []
            for rec in frontier:
                for pid, _rel in parent_edges(rec.signed):
                    if pid in back:
                        continue
                    back[pid] = rec.id
                    if pid == ancestor:
                        chain = [pid]
                        cur: bytes | None = rec.id
                        while cur is not None:
                            chain.append(cur)
                            cur = back[cur]
                        return [self.by_id(x) for x in reversed(chain)]
                    nxt.append(self.by_id(pid))
            frontier = nxt
            if not frontier:
                break
        raise NotFoundError(f"record {ancestor.hex()} is not an ancestor of {rid.hex()}")

    # --- manifests and digests -------------------------------------------------------

    def manifest(self, digest: bytes) -> bytes:
        v = self._get(K.MANIFEST + digest)
        if v is None:
            raise NotFoundError(f"manifest {digest.hex()} is not stored")
        return v

    def find(self, digest: bytes, kinds: Sequence[str] = tuple(K.DIGEST_KINDS), limit: int = 1000) -> list[DigestMatch]:
        """Records that contain ``digest`` as any of ``kinds``, earliest first.

        Kind ``oms-file`` (never in the default): ``digest`` is a SHA-256 file digest listed by an
        oms-signature attestation; the checkpoint it is about comes back as ``oms-file`` and the
        attestation itself as ``oms-attestation`` (ledger/registry/oms.py).

        A one-chunk file's chunk digest is its file digest and is indexed once, as a file: asking for
        chunks also finds those files (reported as ``file`` matches).
        """
        limit = min(limit, MAX_RESULTS)
        found: dict[int, str] = {}
        scan = self._log.scan_aux
        kinds = list(kinds)
        if "chunk" in kinds and "file" not in kinds:
            kinds.append("file")
        for kind in kinds:
            if kind == OMS_FILE:
                for i in postings.read(scan, K.OMS_FILE_POSTS + digest, limit):
                    found.setdefault(i, "oms-attestation")
                    found.setdefault(self.index_of(_subject_of(self.at(i).signed)), OMS_FILE)
                continue
            if kind not in K.DIGEST_KINDS:
                raise InvalidInputError(f"unknown digest kind {kind!r} (one of {', '.join(K.DIGEST_KINDS)})")
            if kind == "manifest":
                manifests = [digest]
            else:
                firsts = postings.read(scan, K.DIGEST_POSTS + bytes([K.DIGEST_KINDS[kind]]) + digest, limit)
                manifests = [_manifest_of(self.at(i).signed) for i in firsts]
            for m in manifests:
                for i in postings.read(scan, K.MANIFEST_POSTS + m, limit):
                    found.setdefault(i, kind)
        return [DigestMatch(found[i], self.at(i)) for i in sorted(found)[:limit]]


def _subject_of(signed: SignedRecord) -> bytes:
    s = signed.record.statement
    assert isinstance(s, Attestation)
    return s.subject


def _manifest_of(signed: SignedRecord) -> bytes:
    s = signed.record.statement
    assert isinstance(s, Dataset | ModelCheckpoint)
    return s.manifest
