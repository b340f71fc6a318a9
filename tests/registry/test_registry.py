"""The registry personality in-process against the real log: admission, refusals, queries."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from registry_kit import BACKENDS, Env, Lab, backend_storage, open_env

from client.core.records import (
    Attestation,
    Claim,
    Dispute,
    Identity,
    IdentityEvent,
    Kind,
    RecordSigner,
    endorse_rotation,
)
from client.errors import FormatError, NotFoundError, ProvenanceError, SignatureError
from ledger.log import Appended
from ledger.registry.errors import (
    ConflictError,
    ManifestMissingError,
    NotAllowedError,
    RevokedKeyError,
    UnknownReferenceError,
    UnknownSignerError,
    WrongReferenceKindError,
)
from ledger.registry.policy import Policy, format_allowlist, parse_allowlist
from ledger.registry.registry import Submission


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with backend_storage(request.param) as storage:
        e = open_env(storage=storage)
        yield e
        e.close()


def ok(env: Env, *subs: Submission) -> list[Appended]:
    out = env.registry.register(list(subs))
    for r in out:
        assert isinstance(r, Appended), r
    return out


def refused(env: Env, sub: Submission, cls: type[ProvenanceError], match: str) -> ProvenanceError:
    before = env.log.size
    (r,) = env.registry.register([sub])
    assert isinstance(r, cls), r
    assert re.search(match, str(r)), str(r)
    assert env.log.size == before, "a refused record must not touch the log"
    return r


def test_lineage_story(env: Env) -> None:
    a, b = Lab("lab-a"), Lab("lab-b")
    ok(env, a.register(), b.register())
    ds_sub, ds = a.dataset("web")
    ok(env, ds_sub)
    base_sub, base = a.checkpoint("base", 1000, datasets=((ds.id, "pretraining"),))
    ok(env, base_sub)
    ft_sub, ft = b.checkpoint("chat", 10, parents=((base.id, "fine-tune"),))
    q_sub, q = b.checkpoint("chat-q4", 10, parents=((ft.id, "quantization"),))
    ok(env, ft_sub, q_sub)  # a child may reference a parent earlier in the same batch
    r = env.registry.reader
    assert r.by_id(q.id).signed == q
    assert r.by_name(Kind.CHECKPOINT, "chat", "10").id == ft.id
    assert r.by_name(Kind.DATASET, "web", "1").id == ds.id
    nodes, edges = r.ancestors(q.id, 10)
    assert {n.id for n in nodes} == {q.id, ft.id, base.id, ds.id}
    assert [(e.child, e.parent, e.relation, e.depth) for e in edges] == [
        (q.id, ft.id, "quantization", 1),
        (ft.id, base.id, "fine-tune", 2),
        (base.id, ds.id, "trained-on:pretraining", 3),
    ]
    nodes, edges = r.descendants(ds.id, 10)
    assert {n.id for n in nodes} == {q.id, ft.id, base.id, ds.id}
    assert [x.id for x in r.path(q.id, ds.id)] == [q.id, ft.id, base.id, ds.id]
    assert [x.id for x in r.by_signer(b.signer.public_key)][1:] == [ft.id, q.id]
    chain = r.identity_chain(b.signer.public_key)
    want = Identity(IdentityEvent.REGISTER, "lab-b", b.signer.public_key)
    assert [c.signed.record.statement for c in chain] == [want]


def test_digest_index_earliest_first(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s1, r1 = a.checkpoint("m", 1, seed="shared")
    s2, r2 = a.checkpoint("m-copy", 1, seed="shared")  # same manifest, registered again
    s3, r3 = a.checkpoint("other", 1)
    ok(env, s1, s2, s3)
    from client.core.manifest.codec import decode

    assert s1.manifest is not None
    m = decode(s1.manifest)
    chunk = m.files[0].chunks[1]
    got = env.registry.reader.find(chunk)
    assert [(x.kind, x.record.id) for x in got] == [("chunk", r1.id), ("chunk", r2.id)]
    got = env.registry.reader.find(m.files[0].blake3, ["file"])
    assert [x.record.id for x in got] == [r1.id, r2.id]
    st = r1.record.statement
    assert [x.kind for x in env.registry.reader.find(st.manifest)] == ["manifest", "manifest"]  # type: ignore[union-attr]
    assert env.registry.reader.manifest(st.manifest) == s1.manifest  # type: ignore[union-attr]
    assert env.registry.reader.find(b"\x00" * 32) == []


def test_refuse_unknown_parent(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    sub, _ = a.checkpoint("m", 1, parents=((b"\x07" * 32, "fine-tune"),))
    refused(env, sub, UnknownReferenceError, "parent checkpoint 0707.* is not in the registry")


def test_refuse_wrong_reference_kind(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s, ds = a.dataset("web")
    ok(env, s)
    sub, _ = a.checkpoint("m", 1, parents=((ds.id, "fine-tune"),))
    refused(env, sub, WrongReferenceKindError, "is a dataset record, not a checkpoint")


def test_refuse_bad_signature(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    sub, _ = a.dataset("web")
    bad = Submission(sub.entry[:-1] + bytes([sub.entry[-1] ^ 1]), sub.manifest)
    refused(env, bad, SignatureError, "signature does not verify")


def test_refuse_malformed(env: Env) -> None:
    refused(env, Submission(b"PLR\x09" + b"\x00" * 100), FormatError, "unsupported record format version 9")
    refused(env, Submission(b"hello world" * 10), FormatError, "bad magic")


def test_refuse_unknown_signer(env: Env) -> None:
    sub, _ = Lab("nobody").dataset("web")
    refused(env, sub, UnknownSignerError, "is not registered under any name")


def test_refuse_revoked_key(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    ok(env, Submission(a.sign(Identity(IdentityEvent.REVOKE, "lab-a", a.signer.public_key)).entry))
    sub, _ = a.dataset("web")
    refused(env, sub, RevokedKeyError, "of 'lab-a' was revoked at index 1")
    # Under the open policy a revoked name cannot be taken over.
    thief = Lab("lab-a")
    refused(env, thief.register(), ConflictError, "had its key revoked")


def test_rotate(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s1, d1 = a.dataset("web")
    ok(env, s1)
    new = RecordSigner.generate()
    squat = RecordSigner.generate()  # someone else's key, without its holder's endorsement
    bad = Identity(IdentityEvent.ROTATE, "lab-a", squat.public_key, endorse_rotation(new, "lab-a", a.signer.public_key))
    refused(env, Submission(a.sign(bad).entry), SignatureError, "endorsement does not verify")
    endorsement = endorse_rotation(new, "lab-a", a.signer.public_key)
    ok(env, Submission(a.sign(Identity(IdentityEvent.ROTATE, "lab-a", new.public_key, endorsement)).entry))
    old = a.signer
    sub, _ = a.dataset("web2")
    refused(env, sub, RevokedKeyError, "rotated out at index 2")
    a.signer = new
    sub, _ = a.dataset("web2")
    ok(env, sub)
    chain = env.registry.reader.identity_chain(new.public_key)
    assert [c.index for c in chain] == [0, 2]
    assert env.registry.reader.key_info(old.public_key).status == "retired"
    assert env.registry.reader.current_key("lab-a") == new.public_key
    # The retired key can still revoke itself.
    ok(env, Submission(a.sign(Identity(IdentityEvent.REVOKE, "lab-a", old.public_key), signer=old).entry))
    assert env.registry.reader.key_info(old.public_key).status == "revoked"


def test_refuse_taken_name_and_key(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    refused(env, Lab("lab-a").register(), ConflictError, "already registered to another key")
    other = Lab("lab-z", signer=a.signer)
    refused(env, other.register(), ConflictError, "already registered, under 'lab-a'")


def test_refuse_register_signed_by_other_key(env: Env) -> None:
    a = Lab("lab-a")
    victim = RecordSigner.generate()
    refused(env, Submission(a.sign(Identity(IdentityEvent.REGISTER, "x", victim.public_key)).entry),
            SignatureError, "signed by the key it registers")


def test_refuse_duplicate_name_version(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s1, _ = a.dataset("web", seed="one")
    s2, _ = a.dataset("web", seed="two")
    ok(env, s1)
    refused(env, s2, ConflictError, "dataset 'web' version '1' is already registered at index 1")


def test_refuse_missing_manifest(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s, _ = a.dataset("web")
    refused(env, Submission(s.entry), ManifestMissingError, "was not sent with the record")


def test_manifest_stored_once_may_be_omitted(env: Env) -> None:
    a = Lab("lab-a")
    ok(env, a.register())
    s1, _ = a.dataset("web", seed="same")
    s2, _ = a.dataset("web", seed="same", version="2")
    ok(env, s1)
    ok(env, Submission(s2.entry))


def test_refuse_unknown_attestation_subject(env: Env) -> None:
    a = Lab("auditor")
    ok(env, a.register())
    sub = Submission(a.sign(Attestation(Claim.DESCENDS_FROM, b"\x01" * 32, b"\x02" * 32)).entry)
    refused(env, sub, UnknownReferenceError, "attestation subject 0101")


def test_attestation_and_dispute(env: Env) -> None:
    a, aud = Lab("lab-a"), Lab("auditor")
    ok(env, a.register(), aud.register())
    s1, base = a.checkpoint("base", 1)
    s2, child = a.checkpoint("child", 1, parents=((base.id, "fine-tune"),))
    ok(env, s1, s2)
    att = aud.sign(Attestation(Claim.DESCENDS_FROM, child.id, base.id, None, "weights correlate"))
    dis = a.sign(Dispute(att.id, "evaluation was on the wrong checkpoint"))
    ok(env, Submission(att.entry), Submission(dis.entry))
    about = env.registry.reader.about(child.id)
    assert [x.id for x in about] == [att.id]
    assert [x.id for x in env.registry.reader.about(att.id)] == [dis.id]


def test_allowlist(env: Env) -> None:
    a, b = Lab("lab-a"), Lab("lab-b")
    policy = parse_allowlist("# operators\n" + format_allowlist([("lab-a", a.signer.public_key)]))
    e = open_env(policy)
    try:
        ok(e, a.register())
        refused(e, b.register(), NotAllowedError, "allowlist does not list 'lab-b'")
    finally:
        e.close()
    with pytest.raises(FormatError, match="line 1"):
        parse_allowlist("lab-a not-a-key\n")
    assert Policy().is_open


def test_raw_log_entries_are_checked_too(env: Env) -> None:
    """An entry reaching the log without Registry.prepare (e.g. plain AddEntries) gets the same checks."""
    a = Lab("lab-a")
    ok(env, a.register())
    sub, _ = a.dataset("web")
    bad = sub.entry[:-1] + bytes([sub.entry[-1] ^ 1])
    (r,) = env.log.add([bad])
    assert isinstance(r, SignatureError)
    (r,) = env.log.add([b"PLR" + b"\x01" * 80])
    assert isinstance(r, FormatError)
    (r,) = env.log.add([sub.entry])
    assert isinstance(r, ManifestMissingError)
    assert env.log.size == 1
    # Entries that do not claim to be records are opaque log entries: logged, not indexed.
    (r,) = env.log.add([b"an opaque log entry"])
    assert isinstance(r, Appended) and env.log.size == 2


def test_not_found(env: Env) -> None:
    with pytest.raises(NotFoundError):
        env.registry.reader.by_id(b"\x00" * 32)
    with pytest.raises(NotFoundError):
        env.registry.reader.by_name(Kind.DATASET, "x", "1")


def test_one_chunk_file_indexed_once_and_found_as_chunk(env: Env) -> None:
    from registry_kit import make_manifest

    from client.core.manifest.codec import decode
    from client.core.records import Dataset
    from ledger.registry.manifests import read_manifest

    a = Lab("lab-a")
    ok(env, a.register())
    encoded, digest = make_manifest("small", chunks=1)
    f = decode(encoded).files[0]
    assert f.chunks == (f.blake3,)
    assert len(read_manifest(encoded).index_keys) == 1  # the file digest only
    signed = a.sign(Dataset("tiny", "1", digest, 1024))
    ok(env, Submission(signed.entry, encoded))
    got = env.registry.reader.find(f.blake3, ["chunk"])
    assert [(m.kind, m.record.id) for m in got] == [("file", signed.id)]


def test_log_pushback_unstages(env: Env) -> None:
    """A batch the log refuses up front (here: over its entry limit) leaves nothing staged in the hook."""
    from client.errors import InvalidInputError

    a = Lab("lab-a")
    ok(env, a.register())
    subs = [a.dataset(f"d{i}")[0] for i in range(3)]
    original = env.log.submit

    def refuse(entries: object) -> object:
        raise InvalidInputError("batch over the limit")

    env.log.submit = refuse  # type: ignore[method-assign]
    try:
        with pytest.raises(InvalidInputError):
            env.registry.register(subs)
    finally:
        env.log.submit = original  # type: ignore[method-assign]
    assert env.registry.hook._prepared == {}
    ok(env, *subs)


def test_shared_chunk_in_two_new_manifests_lists_both_earliest_first(env: Env) -> None:
    import hashlib

    from client.core.manifest.codec import encode
    from client.core.manifest.model import FileEntry, Manifest
    from client.core.records import Dataset
    from ledger.registry.manifests import read_manifest

    def manifest(chunks: list[bytes], name: str) -> tuple[bytes, bytes]:
        whole = hashlib.blake2s(name.encode()).digest()
        enc = encode(Manifest(1024, (FileEntry(name, 1024 * len(chunks), whole, tuple(chunks)),)))
        return enc, read_manifest(enc).digest

    shared = hashlib.blake2s(b"shared chunk").digest()
    a = Lab("lab-a")
    ok(env, a.register())
    got = []
    for i in range(3):  # the third one is in the same batch as the second: earlier writes are visible
        enc, digest = manifest([shared, hashlib.blake2s(b"own %d" % i).digest()], f"f{i}.bin")
        signed = a.sign(Dataset(f"d{i}", "1", digest, 2048))
        got.append((Submission(signed.entry, enc), signed.id))
    ok(env, got[0][0])
    ok(env, got[1][0], got[2][0])
    found = env.registry.reader.find(shared, ["chunk"])
    assert [m.record.id for m in found] == [rid for _, rid in got]
