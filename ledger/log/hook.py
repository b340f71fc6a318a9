"""The integration-hook contract: how a personality (the registry) admits and indexes entries.

The sequencer calls :meth:`IntegrationHook.admit` for each new entry of a batch, on its
own thread, in index order; the hook reads the aux keys through an :class:`AuxView`
(its own batch's earlier writes first, then storage) and returns the aux writes that
are committed in the same atomic batch as the entry. Each entry ends as an
:class:`Appended` or, if the hook refused it, as the :class:`ProvenanceError` it raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from client.errors import ProvenanceError
from ledger.storage import Storage


@dataclass(frozen=True, slots=True)
class Appended:
    """Where an entry is in the log; ``duplicate`` when it was logged before (same leaf hash)."""

    index: int
    leaf_hash: bytes
    duplicate: bool


Result = Appended | ProvenanceError
"""What :meth:`ledger.log.Log.submit` answers for each entry: its place, or why the hook refused it."""


class AuxView:
    """Aux keys as the batch being integrated sees them: its own earlier writes, then storage."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self.pending: dict[bytes, bytes] = {}
        self.index = 0  # the index the entry being admitted will get, if admitted
        # Writes no admission reads back (e.g. posting keys unique to the entry): committed with the
        # batch after ``pending`` but never visible to get; the log drops those of a refused entry.
        self.blind: list[tuple[bytes, bytes]] = []

    def get(self, key: bytes) -> bytes | None:
        value = self.pending.get(key)
        if value is not None:
            return value
        return self._storage.read_aux([key])[0]

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """:meth:`get` for many keys, with one storage read for those not written by this batch."""
        pending = self.pending
        missing = [k for k in keys if k not in pending]
        stored = dict(zip(missing, self._storage.read_aux(missing), strict=True)) if missing else {}
        return [pending[k] if k in pending else stored[k] for k in keys]


class IntegrationHook(Protocol):
    """Lets a personality (the registry) admit entries and index them in the same atomic batch."""

    def admit(self, entry: bytes, view: AuxView) -> list[tuple[bytes, bytes]]:
        """Accept ``entry`` (return its aux writes) or raise a :class:`ProvenanceError` to refuse it alone.

        Called on the sequencer thread, only for entries not already logged, in index order;
        ``view.index`` is the index the entry gets if admitted.
        """
        ...
