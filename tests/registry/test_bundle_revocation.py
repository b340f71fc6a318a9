"""Issue 15 point 4: a revocation cut out of a court bundle, and identity records reordered.

A bundle's checkpoint covers a revocation of the subject's signer key; whoever holds the bundle (but
not the log's key) must not be able to drop that record, drop a rotation, add an identity record,
reorder them, or strip the log's key-status note and pass the result off as complete.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from registry_kit import BACKENDS, Env, Lab, backend_storage, open_env

from client.core.bundle import BundleVerificationError, parse, report_json, report_text, to_bytes, verify_bundle
from client.core.bundle.keystatus import KeyStatusError, KeyStatusNote, check_against_log, sign_key_status
from client.core.note import Signer
from client.core.records import Identity, IdentityEvent, RecordSigner, SignedRecord, parse_entry
from client.core.records.signing import endorse_rotation
from ledger.registry.prove import build_bundle
from ledger.registry.registry import Submission


def _ok(env: Env, *subs: Submission) -> None:
    out = env.registry.register(list(subs))
    assert all(not isinstance(r, Exception) for r in out), out


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Iterator[Env]:
    with backend_storage(request.param) as storage:
        e = open_env(storage=storage)
        yield e
        e.close()


@pytest.fixture(scope="module")
def story(env: Env) -> dict[str, Any]:
    """lab-a signs a dataset, then revokes its key; lab-b signs a checkpoint, rotates, then signs again."""
    a, b = Lab("lab-a"), Lab("lab-b")
    _ok(env, a.register(), b.register())
    ds_sub, ds = a.dataset("web")
    _ok(env, ds_sub)
    early_bundle = to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, ds.id))  # before the revocation
    _ok(env, Submission(a.sign(Identity(IdentityEvent.REVOKE, "lab-a", a.signer.public_key)).entry))
    ck_sub, ck = b.checkpoint("m", 1)
    _ok(env, ck_sub)
    new = RecordSigner.generate()
    endorsement = endorse_rotation(new, "lab-b", b.signer.public_key)
    rotate = Identity(IdentityEvent.ROTATE, "lab-b", new.public_key, endorsement)
    _ok(env, Submission(b.sign(rotate).entry))
    old, b.signer = b.signer, new
    ck2_sub, ck2 = b.checkpoint("m", 2)
    _ok(env, ck2_sub)
    return {"a": a, "b": b, "old_b": old, "ds": ds, "ck": ck, "ck2": ck2, "early_bundle": early_bundle}


def _bundle(env: Env, rid: bytes) -> bytes:
    return to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, rid))


def _reserialise(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")


def _event(record: dict[str, Any]) -> Identity | None:
    s = parse_entry(base64.b64decode(record["leaf"])).record.statement
    return s if isinstance(s, Identity) else None


def _drop(obj: dict[str, Any], event: IdentityEvent) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(obj))
    kept = [r for r in out["records"] if (e := _event(r)) is None or e.event is not event]
    assert len(kept) == len(out["records"]) - 1, "the bundle should carry exactly one such event"
    out["records"] = kept
    return out


def test_bundle_shows_the_revocation(env: Env, story: dict[str, Any]) -> None:
    report = verify_bundle(_bundle(env, story["ds"].id), env.log_key)
    assert report.key_status_proved
    assert any("revoked" in n for n in report.key_notes)
    assert "none was left out" in report_text(report)
    assert report_json(report)["key_status"]["proved"] is True


def test_revocation_cut_out_of_bundle_is_refused(env: Env, story: dict[str, Any]) -> None:
    """The issue's attack: delete the revocation record and re-serialise; today `verify` says VERIFIED."""
    obj = json.loads(_bundle(env, story["ds"].id))
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(_drop(obj, IdentityEvent.REVOKE)), env.log_key)
    assert info.value.part == "key_status" and "left out" in str(info.value)


def test_rotation_cut_out_of_bundle_is_refused(env: Env, story: dict[str, Any]) -> None:
    """lab-b's first key was rotated out after signing ``ck``: dropping the rotation hides that."""
    obj = json.loads(_bundle(env, story["ck"].id))
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(_drop(obj, IdentityEvent.ROTATE)), env.log_key)
    assert info.value.part == "key_status"


def test_swapped_identity_records_are_refused(env: Env, story: dict[str, Any]) -> None:
    """docs/bundle.md: every changed byte fails, so the order of identity records is fixed too."""
    obj = json.loads(_bundle(env, story["ds"].id))
    assert len(obj["records"]) == 3  # the dataset, lab-a's register, lab-a's revoke
    obj["records"][1], obj["records"][2] = obj["records"][2], obj["records"][1]
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(obj), env.log_key)
    assert info.value.part == "records[2]" and "log order" in str(info.value)


def test_identity_record_of_another_name_is_refused(env: Env, story: dict[str, Any]) -> None:
    extra = json.loads(_bundle(env, story["ck"].id))["records"][1]  # lab-b's register
    obj = json.loads(_bundle(env, story["ds"].id))
    obj["records"] = sorted(obj["records"][1:] + [extra], key=lambda r: r["index"])
    obj["records"].insert(0, json.loads(_bundle(env, story["ds"].id))["records"][0])
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(obj), env.log_key)
    assert info.value.part.startswith("records[") and "does not list" in str(info.value)


def test_stripped_key_status_is_refused_unless_accepted(env: Env, story: dict[str, Any]) -> None:
    """A bundle without the note (made before it existed, or stripped) is a named refusal by default."""
    obj = _drop(json.loads(_bundle(env, story["ds"].id)), IdentityEvent.REVOKE)
    del obj["key_status"]
    data = _reserialise(obj)
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(data, env.log_key)
    assert info.value.part == "key_status" and "--accept-unproven-key-status" in str(info.value)
    report = verify_bundle(data, env.log_key, accept_unproven_key_status=True)
    assert not report.key_status_proved and report.key_status_warning is not None
    text = report_text(report)
    assert "UNPROVEN" in text and "WARNING: key status unproven" in text
    assert report_json(report)["key_status"] == {"proved": False, "as_of_tree_size": None,
                                                 "warning": report.key_status_warning}


def test_old_bundle_form_still_parses_and_round_trips(env: Env, story: dict[str, Any]) -> None:
    obj = json.loads(_bundle(env, story["ds"].id))
    del obj["key_status"]
    data = _reserialise(obj)
    assert parse(data).key_status is None and to_bytes(parse(data)) == data


def test_key_status_from_an_older_checkpoint_is_refused(env: Env, story: dict[str, Any]) -> None:
    """The note made before the revocation cannot be spliced into a later bundle."""
    early = json.loads(story["early_bundle"])
    assert verify_bundle(story["early_bundle"], env.log_key).key_status_proved  # true as of its checkpoint
    obj = _drop(json.loads(_bundle(env, story["ds"].id)), IdentityEvent.REVOKE)
    obj["key_status"] = early["key_status"]
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(obj), env.log_key)
    assert info.value.part == "key_status" and "not of the bundle's checkpoint" in str(info.value)


def test_key_status_forged_by_another_key_is_refused(env: Env, story: dict[str, Any]) -> None:
    obj = json.loads(_bundle(env, story["ds"].id))
    note = KeyStatusNote.from_text(obj["key_status"].split("\n\n")[0] + "\n")
    lying = KeyStatusNote(note.origin, note.size, note.root,
                          tuple((n, ix[:1]) for n, ix in note.events))  # the register only
    obj = _drop(obj, IdentityEvent.REVOKE)
    obj["key_status"] = sign_key_status(lying, Signer.generate(note.origin)).decode()
    with pytest.raises(BundleVerificationError) as info:
        verify_bundle(_reserialise(obj), env.log_key)
    assert info.value.part == "key_status"


def test_every_byte_flip_of_the_key_status_fails(env: Env, story: dict[str, Any]) -> None:
    data = _bundle(env, story["ds"].id)
    start = data.index(b'"key_status": "') + len(b'"key_status": "')
    end = data.index(b'"', start)
    for i in range(start, end):
        mangled = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]
        with pytest.raises(BundleVerificationError):
            verify_bundle(mangled, env.log_key)


def _log_identities(env: Env, size: int) -> list[tuple[int, str]]:
    out = []
    for i, entry in enumerate(env.log.entries(0, size)):
        s: SignedRecord = parse_entry(entry)
        if isinstance(s.record.statement, Identity):
            out.append((i, s.record.statement.name))
    return out


def test_monitor_recomputes_key_status_from_the_log(env: Env, story: dict[str, Any]) -> None:
    """A note the log signs is checkable against its entries; a false one is evidence against it."""
    obj = json.loads(_bundle(env, story["ck2"].id))
    note = KeyStatusNote.from_text(obj["key_status"].split("\n\n")[0] + "\n")
    assert [n for n, _ in note.events] == ["lab-b"] and len(note.by_name()["lab-b"]) == 2
    check_against_log(note, _log_identities(env, note.size))
    false = KeyStatusNote(note.origin, note.size, note.root, (("lab-b", note.by_name()["lab-b"][:1]),))
    with pytest.raises(KeyStatusError):
        check_against_log(false, _log_identities(env, note.size))


def test_key_status_text_is_not_a_checkpoint(env: Env, story: dict[str, Any]) -> None:
    """The log's key signs both; a key-status note must never open as a checkpoint."""
    from client.core.checkpoint import open_checkpoint
    from client.errors import ProvenanceError

    obj = json.loads(_bundle(env, story["ds"].id))
    with pytest.raises(ProvenanceError):
        open_checkpoint(obj["key_status"].encode(), env.log_signer.verifier())


def test_cli_verify_refuses_then_accepts_an_unproven_bundle(env: Env, story: dict[str, Any], tmp_path: Any,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from cli_kit import cli

    good, old = tmp_path / "good.json", tmp_path / "old.json"
    good.write_bytes(_bundle(env, story["ds"].id))
    obj = _drop(json.loads(good.read_bytes()), IdentityEvent.REVOKE)
    del obj["key_status"]
    old.write_bytes(_reserialise(obj))
    assert "none was left out" in cli(capsys, "verify", str(good), "--log-key", env.log_key)
    err = cli(capsys, "verify", str(old), "--log-key", env.log_key, code=1)
    assert "NOT VERIFIED: key_status: is missing" in err
    out = cli(capsys, "verify", str(old), "--log-key", env.log_key, "--accept-unproven-key-status")
    assert "UNPROVEN" in out and "WARNING: key status unproven" in out


# --- a property: random identity histories, every identity record dropped or moved in turn ----------------

_KEYS = [RecordSigner.generate() for _ in range(4)]
_steps = st.lists(st.tuples(st.sampled_from(["register", "rotate", "revoke", "record"]), st.integers(0, 1),
                            st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=16)


def _statement(kind: str, name: str, subject: RecordSigner, signer: RecordSigner, n: int) -> Any:
    if kind == "record":
        return Lab(name, signer).dataset("web", version=str(n))[0]
    if kind == "rotate":
        s = Identity(IdentityEvent.ROTATE, name, subject.public_key, endorse_rotation(subject, name, signer.public_key))
    else:
        s = Identity(IdentityEvent(kind), name, subject.public_key)
    return Submission(Lab(name, signer).sign(s).entry)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_steps)
def test_no_identity_record_can_be_dropped_or_moved(sequence: list[tuple[str, int, int, int]]) -> None:
    e = open_env()
    try:
        made, owner = [], dict[bytes, str]()
        # Both names start registered (keys 0 and 1) so that most random steps are admissible.
        for n, (kind, name_i, subject_i, signer_i) in enumerate([("register", 0, 0, 0), ("register", 1, 1, 1),
                                                                 *sequence]):
            # Rotations and revocations mostly name the identity their key belongs to, so most are admitted.
            name = owner.get(_KEYS[signer_i if kind == "rotate" else subject_i].public_key, ["lab-a", "lab-b"][name_i])
            sub = _statement(kind, name, _KEYS[subject_i], _KEYS[signer_i], n)
            out = e.registry.register([sub])[0]
            if kind in ("register", "rotate") and not isinstance(out, Exception):
                owner[_KEYS[subject_i].public_key] = name
            if kind == "record" and not isinstance(out, Exception):
                made.append(parse_entry(sub.entry).id)
        for rid in made:
            data = _bundle(e, rid)
            assert verify_bundle(data, e.log_key).key_status_proved
            obj = json.loads(data)
            for i in range(1, len(obj["records"])):
                dropped = json.loads(data)
                del dropped["records"][i]
                with pytest.raises(BundleVerificationError):
                    verify_bundle(_reserialise(dropped), e.log_key)
                if i + 1 < len(obj["records"]):
                    moved = json.loads(data)
                    moved["records"][i], moved["records"][i + 1] = moved["records"][i + 1], moved["records"][i]
                    with pytest.raises(BundleVerificationError):
                        verify_bundle(_reserialise(moved), e.log_key)
    finally:
        e.close()


def test_store_indexed_before_identity_postings_signs_no_key_status() -> None:
    """A store with identities but no ``rJ`` marker cannot list their events completely: no note, ever."""
    e = open_env()
    try:
        e.registry.hook.identity_postings_complete = False  # as if these events were indexed by older code
        a = Lab("lab-a")
        ds_sub, ds = a.dataset("web")
        _ok(e, a.register())
        _ok(e, ds_sub)
        e.registry.attach(e.log)  # a restart: names exist, no marker, so it stays incomplete
        assert not e.registry.hook.identity_postings_complete
        bundle = build_bundle(e.registry.reader, e.log, e.log_key, ds.id)
        assert bundle.key_status is None
        with pytest.raises(BundleVerificationError) as info:
            verify_bundle(to_bytes(bundle), e.log_key)
        assert info.value.part == "key_status"
        assert verify_bundle(to_bytes(bundle), e.log_key, accept_unproven_key_status=True).key_status_warning
    finally:
        e.close()


def test_fresh_store_is_marked_complete_with_its_first_identity(env: Env, story: dict[str, Any]) -> None:
    assert env.registry.reader.identity_events_complete()
    env.registry.attach(env.log)
    assert env.registry.hook.identity_postings_complete
