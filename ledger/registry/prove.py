"""Assemble a proof bundle for a record (and its lineage path) from the log and the registry's indexes."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from client.core.bundle.format import Bundle, BundleRecord
from client.core.bundle.keystatus import KeyStatusNote, make_key_status
from client.core.records import Identity
from ledger.registry.queries import LoggedRecord, RegistryReader

log = logging.getLogger(__name__)


class _ProofLog(Protocol):
    def latest(self) -> Any: ...
    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> Sequence[Sequence[bytes]]: ...
    def sign_key_status(self, note: KeyStatusNote) -> bytes: ...


def _path(reader: RegistryReader, subject: bytes, lineage_to: bytes | None) -> list[LoggedRecord]:
    return reader.path(subject, lineage_to) if lineage_to is not None else [reader.by_id(subject)]


def bundle_records(reader: RegistryReader, subject: bytes, lineage_to: bytes | None) -> list[LoggedRecord]:
    """The subject (or the lineage path to ``lineage_to``), then the identity events that establish its
    signers' keys and any that retired or revoked them (the form of stores indexed before key-status
    notes; :func:`build_bundle` carries every identity event of the signers' names when it can)."""
    path = _path(reader, subject, lineage_to)
    chosen = {r.id: r for r in path}
    extra: dict[int, LoggedRecord] = {}
    for r in path:
        for ev in reader.identity_chain(r.signed.record.signer):
            if ev.id not in chosen:
                extra[ev.index] = ev
    # Identity events are themselves signed; their signers' chains are included in identity_chain.
    for ev in list(extra.values()):
        if isinstance(ev.signed.record.statement, Identity):
            for more in reader.identity_chain(ev.signed.record.signer):
                if more.id not in chosen:
                    extra.setdefault(more.index, more)
    return path + [extra[i] for i in sorted(extra)]


def identity_events(reader: RegistryReader, path: list[LoggedRecord], size: int) -> dict[str, list[int]]:
    """Every identity event below ``size`` of every identity that signed a record of ``path`` (or that a
    path record is an event of). Every event that changes a key's status, and every signer of such an
    event, belongs to the key's own identity (docs/records.md), so these names close the set."""
    names = {reader.key_info(r.signed.record.signer).name for r in path}
    names |= {r.signed.record.statement.name for r in path if isinstance(r.signed.record.statement, Identity)}
    return {name: [i for i in reader.identity_events(name) if i < size] for name in sorted(names)}


def build_bundle(reader: RegistryReader, log_: _ProofLog, log_key: str, subject: bytes,
                 lineage_to: bytes | None = None, at: Any = None) -> Bundle:
    """A bundle proving ``subject`` (and its path to ``lineage_to``) against the log's latest checkpoint (or
    ``at``, a signed checkpoint of this log: the witnesses' cosigned one), with the log's key-status note for
    its signers when the store indexed every identity event by name. A record beyond ``at`` raises
    OutOfRangeError."""
    signed = log_.latest() if at is None else at
    cp = signed.checkpoint
    key_status: bytes | None = None
    if reader.identity_events_complete():
        path = _path(reader, subject, lineage_to)
        events = identity_events(reader, path, cp.size)
        on_path = {r.index for r in path}
        wanted = sorted({i for indices in events.values() for i in indices} - on_path)
        records = path + [reader.at(i) for i in wanted]
        key_status = log_.sign_key_status(make_key_status(cp, events))
    else:
        log.warning("bundle without key status: this store's identity events predate their index",
                    extra={"record_id": subject.hex()})
        records = bundle_records(reader, subject, lineage_to)
    proofs = log_.inclusion_proofs([r.index for r in records], cp.size)
    return Bundle(
        log_key=log_key,
        origin=cp.origin,
        checkpoint=signed.note,
        subject=subject,
        lineage_to=lineage_to,
        records=tuple(
            BundleRecord(r.id, r.index, r.signed.entry, tuple(p)) for r, p in zip(records, proofs, strict=True)
        ),
        key_status=key_status,
    )
