"""Manifest version 2 in the registry: a tiled file is indexed by its file digest, its tensors and its
header region (as a chunk); version 1 manifests (fixed chunks) keep registering and matching."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from registry_kit import BACKENDS, Env, Lab, backend_storage, open_env

from client.core.manifest.codec import decode
from client.core.records import ModelCheckpoint
from ledger.log import Appended
from ledger.registry.manifests import read_manifest
from ledger.registry.matching import Matcher
from ledger.registry.registry import Submission
from tests.golden.manifests import regen


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with backend_storage(request.param) as storage:
        e = open_env(storage=storage)
        yield e
        e.close()


def _register(env: Env, lab: Lab, encoded: bytes, step: int) -> bytes:
    digest = read_manifest(encoded).digest
    signed = lab.sign(ModelCheckpoint("m", "", step, digest, "safetensors", (), ()))
    (r,) = env.registry.register([Submission(signed.entry, encoded)])
    assert isinstance(r, Appended), r
    return signed.id


def test_tiled_and_fixed_chunk_manifests_are_found_by_their_digests(env: Env) -> None:
    lab = Lab("lab-a")
    (r,) = env.registry.register([lab.register()])
    assert isinstance(r, Appended)
    v1_raw, v2_raw = (regen.golden("model", v, "bin").read_bytes() for v in (1, 2))
    v1, v2 = decode(v1_raw), decode(v2_raw)
    id1 = _register(env, lab, v1_raw, 1)
    id2 = _register(env, lab, v2_raw, 2)
    tiled = next(f for f in v2.files if f.header is not None)
    assert tiled.header is not None
    find = env.registry.reader.find
    # the same tensor digests are in both versions: a lookup by tensor finds both records
    tensor = tiled.tensors[0].blake3
    assert [m.record.id for m in find(tensor, ["tensor"])] == [id1, id2]
    # the header region is a piece of the file: found as a chunk, only in the tiled manifest
    assert [(m.kind, m.record.id) for m in find(tiled.header, ["chunk"])] == [("chunk", id2)]
    # a version 1 manifest's fixed chunks are still indexed
    chunked = next(f for f in v1.files if f.path == tiled.path)
    assert len(chunked.chunks) > 1
    assert [m.record.id for m in find(chunked.chunks[1], ["chunk"])] == [id1]
    assert [m.record.id for m in find(tiled.blake3, ["file"])] == [id1, id2]
    exact = Matcher(env.log, env.registry.reader).exact([tensor], [tiled.header], 10)
    assert [(h.record.signed.id, h.tensors, h.chunks) for h in exact] == [(id1, [0], []), (id2, [0], [0])]
