"""Assemble a proof bundle for a record (and its lineage path) from the log and the registry's indexes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from client.core.bundle.format import Bundle, BundleRecord
from client.core.records import Identity
from ledger.registry.queries import LoggedRecord, RegistryReader


class _ProofLog(Protocol):
    def latest(self) -> Any: ...
    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> Sequence[Sequence[bytes]]: ...


def bundle_records(reader: RegistryReader, subject: bytes, lineage_to: bytes | None) -> list[LoggedRecord]:
    """The subject (or the lineage path to ``lineage_to``), then every identity event its signers need."""
    path = reader.path(subject, lineage_to) if lineage_to is not None else [reader.by_id(subject)]
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


def build_bundle(reader: RegistryReader, log: _ProofLog, log_key: str, subject: bytes,
                 lineage_to: bytes | None = None) -> Bundle:
    """A bundle proving ``subject`` (and its path to ``lineage_to``) against the log's latest checkpoint."""
    records = bundle_records(reader, subject, lineage_to)
    signed = log.latest()
    size = signed.checkpoint.size
    proofs = log.inclusion_proofs([r.index for r in records], size)
    return Bundle(
        log_key=log_key,
        origin=signed.checkpoint.origin,
        checkpoint=signed.note,
        subject=subject,
        lineage_to=lineage_to,
        records=tuple(
            BundleRecord(r.id, r.index, r.signed.entry, tuple(p)) for r, p in zip(records, proofs, strict=True)
        ),
    )
