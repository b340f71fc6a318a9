"""Lineage edges: the links from a record to the records it descends from. Pure.

One definition, used by the registry when it indexes a record (:mod:`ledger.registry.hook`), by its
lineage queries (:mod:`ledger.registry.queries`) and by the offline bundle verifier
(:mod:`client.core.bundle.verify`). An edge is ``(parent id, relation)``: a parent's relation
(``fine-tune``, ``filtered`` ...) or, for a dataset a checkpoint was trained on,
``trained-on:<role>`` (docs/records.md).
"""

from __future__ import annotations

from typing import assert_never

from client.core.records.model import Attestation, Dataset, Dispute, Identity, ModelCheckpoint, Statement

Edge = tuple[bytes, str]


def lineage_edges(s: Statement) -> tuple[Edge, ...]:
    """Every lineage link ``s`` states, parents first, in the order the record lists them."""
    match s:
        case Dataset():
            return tuple((p.id, p.relation.value) for p in s.parents)
        case ModelCheckpoint():
            return (*((p.id, p.relation.value) for p in s.parents),
                    *((d.id, f"trained-on:{d.role.value}") for d in s.datasets))
        case Identity() | Attestation() | Dispute():
            return ()
        case _:
            assert_never(s)
