"""C2SP tlog-proofs without an ``extra`` line, and records too large for one (issue 15 point 7).

The spec makes ``extra`` optional: a proof without it (the hash-only form) is accepted, with the
entry supplied apart and checked by the same inclusion proof. Go's ``bufio.Scanner`` stops at a
64 KiB line, so no header line, ``extra`` included, is ever written or read over that.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from registry_kit import Env, Lab, make_manifest, open_env

from client.core.bundle import BundleVerificationError, format_tlog_proof, parse_tlog_proof, verify_tlog_proof
from client.core.bundle.tlog_proof import MAX_LINE, TlogProof, extra_fits
from client.core.records import Dataset
from client.errors import FormatError
from ledger.registry.prove import build_bundle
from ledger.registry.registry import Submission


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    e = open_env()
    yield e
    e.close()


def _proof_of(env: Env, lab: Lab, sources: tuple[str, ...]) -> TlogProof:
    encoded, digest = make_manifest(f"{lab.name}/{len(sources)}")
    signed = lab.sign(Dataset(f"d{len(sources)}", "1", digest, 3 * 1024, "", sources))
    got = env.registry.register([Submission(signed.entry, encoded)])
    assert not isinstance(got[0], Exception), got
    b = build_bundle(env.registry.reader, env.log, env.log_key, signed.id)
    r = b.records[0]
    return TlogProof(r.leaf, r.index, r.inclusion_proof, b.checkpoint)


@pytest.fixture(scope="module")
def small(env: Env) -> TlogProof:
    lab = Lab("lab-small")
    assert not isinstance(env.registry.register([lab.register()])[0], Exception)
    return _proof_of(env, lab, ("web",))


@pytest.fixture(scope="module")
def large(env: Env) -> TlogProof:
    lab = Lab("lab-large")
    assert not isinstance(env.registry.register([lab.register()])[0], Exception)
    return _proof_of(env, lab, tuple(f"{i:04d}" + "s" * 3990 for i in range(20)))  # an 80 KB record


def _hash_only(p: TlogProof) -> bytes:
    return format_tlog_proof(TlogProof(None, p.index, p.proof, p.checkpoint))


def test_a_proof_without_extra_parses_and_verifies_with_the_entry_supplied(env: Env, small: TlogProof) -> None:
    text = _hash_only(small)
    assert text.startswith(b"c2sp.org/tlog-proof@v1\nindex ")  # no extra line
    parsed = parse_tlog_proof(text)
    assert parsed.entry is None and parsed.index == small.index and parsed.proof == small.proof
    assert small.entry is not None
    report = verify_tlog_proof(text, env.log_key, entry=small.entry)
    assert report.records[0].index == small.index


def test_a_proof_without_extra_needs_the_entry_and_the_right_one(env: Env, small: TlogProof,
                                                                  large: TlogProof) -> None:
    text = _hash_only(small)
    with pytest.raises(BundleVerificationError, match="no 'extra' line"):
        verify_tlog_proof(text, env.log_key)
    assert large.entry is not None and small.entry is not None
    with pytest.raises(BundleVerificationError):
        verify_tlog_proof(text, env.log_key, entry=large.entry)  # another record: its leaf is not proved here
    with pytest.raises(BundleVerificationError, match="differs"):
        verify_tlog_proof(format_tlog_proof(small), env.log_key, entry=large.entry)
    verify_tlog_proof(format_tlog_proof(small), env.log_key, entry=small.entry)  # both given, equal: fine


def test_every_byte_flip_of_a_hash_only_proof_is_refused(env: Env, small: TlogProof) -> None:
    text = _hash_only(small)
    assert small.entry is not None
    for i in range(len(text)):
        mangled = text[:i] + bytes([text[i] ^ 0x01]) + text[i + 1 :]
        with pytest.raises(BundleVerificationError):
            verify_tlog_proof(mangled, env.log_key, entry=small.entry)


def test_a_record_too_large_for_an_extra_line_gets_the_hash_only_form(env: Env, large: TlogProof) -> None:
    assert large.entry is not None and len(large.entry) > 60_000
    assert not extra_fits(large.entry)
    with pytest.raises(FormatError, match="hash-only"):
        format_tlog_proof(large)  # before: an extra line of 107 KB that Go's line reader cannot read
    text = _hash_only(large)
    assert max(len(line) + 1 for line in text.split(b"\n")) <= MAX_LINE
    verify_tlog_proof(text, env.log_key, entry=large.entry)


def test_extra_fits_is_exact_at_the_line_limit() -> None:
    n = max(n for n in range(48_000, 50_000) if extra_fits(b"\x00" * n))
    text = format_tlog_proof(TlogProof(b"\x00" * n, 0, (), b"x\n"))
    assert len(text.split(b"\n")[1]) + 1 <= MAX_LINE  # the longest extra line written fits
    assert len(b"extra " + base64.b64encode(b"\x00" * (n + 1))) + 1 > MAX_LINE  # one byte more would not


def test_a_header_line_over_the_limit_is_refused_when_read() -> None:
    long_extra = b"c2sp.org/tlog-proof@v1\nextra " + b"A" * (MAX_LINE + 4) + b"\nindex 0\n\nx\n"
    with pytest.raises(FormatError, match="64 KiB"):
        parse_tlog_proof(long_extra)
