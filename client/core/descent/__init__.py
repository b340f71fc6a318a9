"""Descent evidence: does one model descend from another? Pure statistics over tensors.

- :mod:`sketch` — per-tensor, permutation-invariant unit features;
- :mod:`stats` — the two-matching agreement test and its p-value bound;
- :mod:`fingerprint` — tensor digests + sketches, canonical encoding and digest;
- :mod:`compare` — exact evidence, pairing by content, combined p-value, verdict;
- :mod:`index` — screening one fingerprint against many.

The method and its assumptions are in docs/descent.md.
"""
