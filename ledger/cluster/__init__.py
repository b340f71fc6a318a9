"""Several ``provenance serve`` frontends on one PostgreSQL database (issue 14, items 2 and 3).

Any frontend accepts writes and serves reads. Writes are sequenced in one transaction on the
coordinator row (``sequencing.py``), so every index is assigned exactly once and an
acknowledged entry is committed. Exactly one process at a time, the holder of a session-level
advisory lock, integrates the sequenced entries into the tree and signs (``signer.py``); its
head commit is fenced by an epoch, so a signer that lost the lock commits nothing. Every
frontend serves the newest committed checkpoint, checked against the one it served before
(``watch.py``), and proofs from the stored hash groups (read through
:class:`~ledger.storage.postgres.PostgresStorage`). ``log.py`` puts them together behind the
calls of :class:`ledger.log.Log`; ``sql.py`` holds every statement, over the tables of
``ledger/storage/migrations`` (0002 adds the cluster's own). docs/operations.md, "Running on
PostgreSQL", says what failover promises and what it does not.
"""
