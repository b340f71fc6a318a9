"""The registry personality: signed records of datasets, checkpoints, lineage and identities on the log.

- :mod:`ledger.registry.registry` -- :class:`Registry`: prepare (parse, verify, manifests), submit, attach.
- :mod:`ledger.registry.hook` -- the sequencer hook: identity, reference and name checks; index writes.
- :mod:`ledger.registry.queries` -- reads: by id / index / name, signer, lineage, digests.
- :mod:`ledger.registry.keys`, :mod:`ledger.registry.postings` -- the aux index layout.
- :mod:`ledger.registry.policy` -- open registration or an allowlist.
"""
