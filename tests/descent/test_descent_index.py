"""Matching a suspect against many registered fingerprints."""

from __future__ import annotations

import numpy as np

from client.core.descent.fingerprint import build
from client.core.descent.index import FingerprintIndex
from tests.descent_fixtures import base_model, noisy, permute_hidden, prune


def _small(seed: int) -> dict[str, np.ndarray]:
    return base_model(seed, d=64, h=128, layers=2, vocab=128)


def test_finds_the_ancestor_among_many() -> None:
    index = FingerprintIndex()
    for seed in range(40):
        index.add(f"model-{seed}", build(_small(seed).items()))
    suspect = build(permute_hidden(prune(noisy(_small(17), 0.05), 0.3)).items())
    matches = index.match(suspect)
    assert matches[0].key == "model-17" and matches[0].significant
    assert not any(m.significant for m in matches[1:])


def test_exact_tensor_sharing_is_always_checked() -> None:
    index = FingerprintIndex()
    for seed in range(10):
        index.add(f"m{seed}", build(_small(seed).items()))
    donor = _small(3)
    suspect = {**_small(99), "stolen": donor["layers.0.mlp.up.weight"]}
    matches = index.match(build(suspect.items()), top=0)
    assert [m.key for m in matches if m.significant] == ["m3"]
    assert matches[0].comparison.basis == "exact"


def test_empty_index() -> None:
    assert FingerprintIndex().match(build(_small(0).items())) == []
