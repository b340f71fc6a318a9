"""The registry and the court's verifier decide identity events alike: one rule, two views of its state.

Random sequences of register / rotate / revoke events and signed records go through the registry's
sequencer hook (its state in the aux store's encoding) and through the in-memory replay the bundle
verifier uses; every event must get the same decision (admitted, or refused with the same error
class and message), and the states must agree after each step.
"""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.records import (
    Dataset,
    Identity,
    IdentityEvent,
    Record,
    RecordSigner,
    endorse_rotation,
    parse_entry,
    sign_record,
)
from client.core.records.identity import IdentityReplay, check_signer
from client.errors import ProvenanceError
from ledger.registry.hook import RegistryHook
from ledger.registry.policy import Policy

SIGNERS = [RecordSigner.generate() for _ in range(4)]
NAMES = ["lab-a", "lab-b"]
DIGEST = bytes(range(32))

# (event kind, name index, subject key index, signer key index)
steps = st.lists(
    st.tuples(st.sampled_from(["register", "rotate", "revoke", "record"]), st.integers(0, 1), st.integers(0, 3),
              st.integers(0, 3)),
    min_size=1, max_size=14,
)


def _entry(kind: str, name: str, subject: RecordSigner, signer: RecordSigner) -> bytes:
    if kind == "record":
        statement: Identity | Dataset = Dataset("web", f"v-{subject.public_key.hex()[:6]}", DIGEST, 1)
    elif kind == "rotate":
        endorsement = endorse_rotation(subject, name, signer.public_key)
        statement = Identity(IdentityEvent.ROTATE, name, subject.public_key, endorsement)
    else:
        statement = Identity(IdentityEvent(kind), name, subject.public_key)
    return sign_record(Record(statement, signer.public_key, 0), signer).entry


def _outcome(fn: Callable[[], object]) -> str:
    try:
        fn()
    except ProvenanceError as err:
        return f"{type(err).__name__}: {err}"
    return "admitted"


@settings(max_examples=150, deadline=None)
@given(steps)
def test_registry_hook_and_verifier_replay_decide_alike(sequence: list[tuple[str, int, int, int]]) -> None:
    policy = Policy()
    hook = RegistryHook(policy)
    store: dict[bytes, bytes] = {}
    replay = IdentityReplay(policy)
    for index, (kind, n, subject_i, signer_i) in enumerate(sequence):
        name, subject, signer = NAMES[n], SIGNERS[subject_i], SIGNERS[signer_i]
        if kind == "register":
            signer = subject  # most registrations are self-signed; the bad ones come from the other kinds
        entry = _entry(kind, name, subject, signer)
        writes: list[tuple[bytes, bytes]] = []

        def through_hook(entry: bytes = entry, index: int = index, writes: list[tuple[bytes, bytes]] = writes) -> None:
            writes.extend(hook.admit_at(entry, index, store.get))

        by_hook = _outcome(through_hook)
        if kind == "record":
            by_replay = _outcome(lambda signer=signer: check_signer(replay, signer.public_key, replay.policy))
        else:
            s = parse_entry(entry).record.statement
            assert isinstance(s, Identity)
            by_replay = _outcome(lambda s=s, signer=signer, index=index: replay.apply(s, signer.public_key, index))
        if kind == "record" and by_replay == "admitted":
            # Its signer is good; the hook goes on to the record's own checks, and this test sends no manifest.
            assert by_hook.startswith("ManifestMissingError"), by_hook
            continue
        assert by_hook == by_replay, f"step {index} ({kind}): registry {by_hook!r}, verifier {by_replay!r}"
        store.update(writes)


def test_the_replay_admits_a_whole_life_and_refuses_after_it() -> None:
    """register, rotate, revoke the new key; then the name's retired and revoked keys sign nothing."""
    a, b = SIGNERS[0], SIGNERS[1]
    events = [("register", a, a), ("rotate", b, a), ("revoke", b, b)]
    hook, store, replay = RegistryHook(Policy()), {}, IdentityReplay(Policy())
    for index, (kind, subject, signer) in enumerate(events):
        entry = _entry(kind, "lab-a", subject, signer)
        store.update(hook.admit_at(entry, index, store.get))
        s = parse_entry(entry).record.statement
        assert isinstance(s, Identity)
        replay.apply(s, signer.public_key, index)
    for signer, text in [(a, "rotated out at index 1"), (b, "was revoked at index 2")]:
        assert text in _outcome(lambda signer=signer: check_signer(replay, signer.public_key, replay.policy))
        record = _entry("record", "lab-a", a, signer)
        assert text in _outcome(lambda record=record: hook.admit_at(record, 3, store.get))
