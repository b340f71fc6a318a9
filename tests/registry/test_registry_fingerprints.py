"""Checkpoint fingerprints in the registry (in process): admission rules, storage, the match index.

Published fingerprints are stored content-addressed after their digest is checked; committed ones
never reach the registry; refusals leave the log untouched. The matcher's index loads lazily from
the stored signatures, never holds fingerprints in memory, and picks up fingerprints registered
after it was built (and after a restart).
"""

from __future__ import annotations

from collections.abc import Iterator

import blake3
import grpc
import pytest
from descent_fixtures import base_model, noisy, permute_hidden
from registry_kit import BACKENDS, Env, Lab, backend_storage, make_manifest, open_env

from client.core.descent.fingerprint import build
from client.core.descent.ledger_evidence import RevealError, check_reveal
from client.core.records import FingerprintCommitment, ModelCheckpoint
from client.errors import FormatError, InvalidInputError
from ledger.registry import keys as K
from ledger.registry.fingerprints import FingerprintMismatchError, FingerprintMissingError
from ledger.registry.matching import Matcher
from ledger.registry.registry import Submission


def _fp(seed: int, derive: bool = False) -> bytes:
    t = base_model(seed, layers=1)
    if derive:
        t = permute_hidden(noisy(t, 0.03, seed=seed + 100))
    return build(t.items()).encode()


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with backend_storage(request.param) as storage:
        e = open_env(storage=storage)
        yield e
        e.close()


def _lab(env: Env) -> Lab:
    lab = Lab("lab-a")
    assert not isinstance(env.registry.register([lab.register()])[0], Exception)
    return lab


def _checkpoint(lab: Lab, step: int, fp: bytes | None, *, published: bool = True, send: bytes | None = None,
                seed: str | None = None) -> Submission:
    manifest, digest = make_manifest(seed or f"m/{step}")
    fc = None if fp is None else FingerprintCommitment(blake3.blake3(fp).digest(), published)
    signed = lab.sign(ModelCheckpoint("m", "", step, digest, "safetensors", fingerprint=fc))
    return Submission(signed.entry, manifest, send)


def _refused(env: Env, sub: Submission) -> Exception:
    size = env.log.size
    got = env.registry.register([sub])[0]
    assert isinstance(got, Exception), got
    assert env.log.size == size  # a refused record never reaches the log
    return got


def test_published_fingerprint_is_stored_once_content_addressed(env: Env) -> None:
    lab = _lab(env)
    fp = _fp(1)
    got = env.registry.register([_checkpoint(lab, 1, fp, send=fp)])[0]
    assert not isinstance(got, Exception)
    digest = blake3.blake3(fp).digest()
    assert env.log.get_aux_many([K.FINGERPRINT + digest]) == [fp]
    # Another checkpoint publishing the same fingerprint need not send it again.
    again = env.registry.register([_checkpoint(lab, 2, fp, send=None, seed="other")])[0]
    assert not isinstance(again, Exception)
    assert Matcher(env.log, env.registry.reader).fingerprint(digest) == fp


def test_refusals(env: Env) -> None:
    lab = _lab(env)
    fp, other = _fp(1), _fp(2)
    assert isinstance(_refused(env, _checkpoint(lab, 1, fp, send=other)), FingerprintMismatchError)
    assert isinstance(_refused(env, _checkpoint(lab, 1, fp, send=None)), FingerprintMissingError)
    err = _refused(env, _checkpoint(lab, 1, fp, published=False, send=fp))
    assert isinstance(err, FingerprintMismatchError) and "without publishing" in str(err)
    assert isinstance(_refused(env, _checkpoint(lab, 1, None, send=fp)), FingerprintMismatchError)
    bad = fp + b"\x00"  # the digest matches these bytes, but they are not a canonical fingerprint
    assert isinstance(_refused(env, _checkpoint(lab, 1, bad, send=bad)), FormatError)
    # A committed fingerprint is logged without its bytes, and is not stored.
    sub = _checkpoint(lab, 1, fp, published=False)
    assert not isinstance(env.registry.register([sub])[0], Exception)
    assert env.log.get_aux_many([K.FINGERPRINT + blake3.blake3(fp).digest()]) == [None]


def test_matcher_index_is_lazy_incremental_and_holds_no_fingerprints(env: Env) -> None:
    lab = _lab(env)
    base, secret = _fp(1), _fp(3)
    env.registry.register([_checkpoint(lab, 1, base, send=base),
                           _checkpoint(lab, 2, secret, published=False)])
    matcher = Matcher(env.log, env.registry.reader)
    assert len(matcher) == 0  # nothing loaded before the first match
    suspect = build(permute_hidden(noisy(base_model(1, layers=1), 0.03, seed=5)).items())
    hits, held = matcher.related(suspect, 0.01, 10)
    assert held == 1 and [h.record.index for h in hits if h.match.significant] == [1]
    assert all(fp is None for fp in matcher._index._fps)  # type: ignore[union-attr]  # signatures only
    # A fingerprint registered later is found by the same matcher; a restarted one loads both.
    later = _fp(4)
    env.registry.register([_checkpoint(lab, 3, later, send=later)])
    hits, held = matcher.related(build(base_model(4, layers=1).items()), 0.01, 10)
    assert held == 2 and hits[0].record.index == 3 and hits[0].match.comparison.verdict == "identical"
    assert len(Matcher(env.log, env.registry.reader).related(suspect, 0.01, 10)[0]) >= 1


def test_exact_lookup_finds_checkpoints_holding_the_digests(env: Env) -> None:
    lab = _lab(env)
    env.registry.register([_checkpoint(lab, 1, None, seed="shared"), _checkpoint(lab, 2, None, seed="x")])
    from client.core.manifest.codec import decode

    chunks = list(decode(make_manifest("shared")[0]).files[0].chunks)
    hits = Matcher(env.log, env.registry.reader).exact([], [b"\x00" * 32, chunks[1]], 10)
    assert [(h.record.index, h.chunks) for h in hits] == [(1, [1])]
    with pytest.raises(InvalidInputError):
        Matcher(env.log, env.registry.reader).exact([b"short"], [], 10)


def test_reveal_checks_the_signed_digest() -> None:
    lab = Lab("lab-a")
    fp = _fp(1)
    manifest_digest = make_manifest("r")[1]
    rec = lab.sign(ModelCheckpoint("m", "", 1, manifest_digest, fingerprint=FingerprintCommitment(
        blake3.blake3(fp).digest(), False))).record
    assert check_reveal(rec, fp).fingerprint is not None
    with pytest.raises(RevealError, match="commits to blake3:"):
        check_reveal(rec, fp + b"x")
    with pytest.raises(RevealError, match="no fingerprint"):
        check_reveal(lab.sign(ModelCheckpoint("m", "", 2, manifest_digest)).record, fp)


def test_status_codes_at_the_grpc_edge() -> None:
    from ledger.grpc.status import code_for

    assert code_for(FingerprintMismatchError("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert code_for(FingerprintMissingError("x")) is grpc.StatusCode.INVALID_ARGUMENT
