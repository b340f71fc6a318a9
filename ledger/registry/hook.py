"""The registry's integration hook: the checks and index writes done for each entry, in log order.

Runs in the log's sequencer thread, one entry at a time; everything here is a few
point reads. Expensive work (parsing manifests, verifying signatures) happens in
:meth:`ledger.registry.registry.Registry.prepare` before submission; an entry that
arrives without that preparation (e.g. through the plain log API) is parsed and
verified here instead, so no path skips a check. Raising refuses the entry alone;
nothing is written for it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import assert_never

from client.core.records import (
    Attestation,
    Dataset,
    Dispute,
    Identity,
    Kind,
    ModelCheckpoint,
    SignedRecord,
    parse_entry,
)
from client.core.records.display import check_display_names
from client.core.records.encoding import MAGIC
from client.core.records.identity import (
    KeyState,
    KeyStatus,
    NameState,
    NotAllowedError,
    apply_identity,
    check_signer,
)
from client.core.records.lineage import lineage_edges
from ledger.registry import fingerprints, oms, postings
from ledger.registry import keys as K
from ledger.registry.errors import (
    ConflictError,
    ManifestMissingError,
    UnknownReferenceError,
    WrongReferenceKindError,
)
from ledger.registry.fingerprints import FingerprintSummary
from ledger.registry.manifests import LIST_KEY_SIZE, ManifestSummary
from ledger.registry.oms import OmsSummary
from ledger.registry.policy import Policy

log = logging.getLogger(__name__)

Get = Callable[[bytes], "bytes | None"]
GetMany = Callable[[Sequence[bytes]], "list[bytes | None]"]

_REFERENCE_KIND = {
    "parent dataset": Kind.DATASET,
    "training dataset": Kind.DATASET,
    "parent checkpoint": Kind.CHECKPOINT,
}


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record whose format and signature were checked, with its manifest (if one was sent)."""

    signed: SignedRecord
    manifest: ManifestSummary | None
    fingerprint: FingerprintSummary | None = None  # a published fingerprint's bytes, if sent
    oms: OmsSummary | None = None  # an oms-signature attestation checked against its checkpoint (oms.py)


class _Writes:
    """Writes of one admit call: ``out`` visible to its own later reads, ``blind`` (postings) never read."""

    __slots__ = ("get_base", "get_many", "local", "read", "out", "blind")

    def __init__(self, get: Get, get_many: GetMany | None) -> None:
        self.get_base = get
        self.get_many: GetMany = get_many or (lambda keys: [get(k) for k in keys])
        self.local: dict[bytes, bytes] = {}
        self.read: dict[bytes, bytes | None] = {}
        self.out: list[tuple[bytes, bytes]] = []
        self.blind: list[tuple[bytes, bytes]] = []

    def prefetch(self, keys: list[bytes]) -> None:
        """Read ``keys`` in one go (before any write of this call), so later gets of them cost nothing."""
        self.read.update(zip(keys, self.get_many(keys), strict=True))

    def get(self, key: bytes) -> bytes | None:
        v = self.local.get(key)
        if v is not None:
            return v
        if key in self.read:
            return self.read[key]
        return self.get_base(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.local[key] = value
        self.out.append((key, value))

    def post(self, list_key: bytes, index: int, label: bytes = b"") -> None:
        """Append ``index`` to a posting list: a blind write, never read back during admission."""
        self.blind.append((postings.posting(list_key, index), label))


class _StoredIdentities:
    """The identity state as the aux store holds it (docs/registry.md), for the shared identity rule."""

    def __init__(self, w: _Writes) -> None:
        self._w = w

    def key_state(self, key: bytes) -> KeyState | None:
        v = self._w.get(K.KEY + key)
        if v is None:
            return None
        status, since, registered, name = K.parse_key_state(v)
        return KeyState(name, KeyStatus(status), since, registered)

    def name_state(self, name: str) -> NameState | None:
        v = self._w.get(K.NAME + name.encode())
        if v is None:
            return None
        return NameState(v[:-8] or None, K.read_u64(v, len(v) - 8))


class RegistryHook:
    """Turns each admitted record into index writes; refuses what the registry must not hold."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # Keyed by the entry bytes themselves: the log hands the same bytes object back to admit_at,
        # whose hash Python has cached, so finding the preparation costs no second SHA-256.
        self._prepared: dict[bytes, Prepared] = {}
        self._lock = threading.Lock()
        # Set by Registry.attach when the store's identity postings hold every identity event (a store
        # with no identity yet, or one marked so): only then does admitting one mark the store complete.
        self.identity_postings_complete = False

    def stage(self, prepared: Prepared) -> None:
        """Hand a prepared record to the sequencer (called just before submitting its entry)."""
        with self._lock:
            self._prepared[prepared.signed.entry] = prepared

    def unstage(self, entry: bytes) -> None:
        with self._lock:
            self._prepared.pop(entry, None)

    def admit_at(
        self, entry: bytes, index: int, get: Get, get_many: GetMany | None = None,
        blind: list[tuple[bytes, bytes]] | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Check the record logged as ``entry`` at ``index`` and return its index writes.

        ``get`` (and ``get_many``, for many keys at once) read the aux store including earlier entries of
        the same batch. With ``blind``, the posting writes (never read back during admission) are
        appended to it instead of returned, once the record is admitted. Entries that do not
        start with the record magic are opaque log entries: admitted with no index writes when the
        policy admits them (open registration, or an allowlist with ``allow_raw``), else refused
        with NotAllowedError. Anything that claims to be a record must be a valid one.
        """
        if not entry.startswith(MAGIC):
            if not self.policy.admits_raw_entries:
                raise NotAllowedError("this registry has an allowlist: the log takes only signed records "
                                      "(an opaque entry has no signer to check; see --allow-raw-entries)")
            return []
        with self._lock:
            prepared = self._prepared.pop(entry, None)
        if prepared is None:
            signed = parse_entry(entry)
            signed.verify()
            prepared = Prepared(signed, None)
        w = _Writes(get, get_many)
        rec = prepared.signed.record
        s = rec.statement
        match s:
            case Identity():
                self._identity(w, s, rec.signer, index)
            case Dataset():
                self._admit_statement(w, s, rec.signer, index)
                self._version(w, s, s.name, index)
                self._manifest(w, s.manifest, prepared.manifest, index)
            case ModelCheckpoint():
                self._admit_statement(w, s, rec.signer, index)
                self._version(w, s, s.model, index)
                self._manifest(w, s.manifest, prepared.manifest, index)
                fingerprints.admit(w, s, prepared.fingerprint, index)
            case Attestation():
                self._admit_statement(w, s, rec.signer, index)
                oms.admit(w, s, prepared.oms, index)
            case Dispute():
                self._admit_statement(w, s, rec.signer, index)
            case _:
                assert_never(s)
        w.put(K.RECORD + prepared.signed.id, K.u64(index) + bytes([rec.kind.value]))
        w.post(K.SIGNER_POSTS + rec.signer, index)
        (w.out if blind is None else blind).extend(w.blind)
        return w.out

    def _admit_statement(
        self, w: _Writes, s: Dataset | ModelCheckpoint | Attestation | Dispute, signer: bytes, index: int
    ) -> None:
        """What every non-identity record needs: an active signer and references that resolve."""
        w.prefetch(_keys_to_read(s, signer))
        self._check_signer(w, signer)
        self._references(w, s, index)

    def _version(self, w: _Writes, s: Dataset | ModelCheckpoint, name: str, index: int) -> None:
        """Claim (kind, name, version) for ``s``: one registration per version, first come. A name or
        version with control or bidi characters, or not NFC, is refused (``client/core/records/display.py``)."""
        check_display_names(s)
        vkey = K.version_key(s.KIND.value, name, s.version)
        taken = w.get(vkey)
        if taken is not None:
            at = K.read_u64(taken)
            what = f"{s.KIND.label} {name!r} version {s.version!r}"
            raise ConflictError(f"{what} is already registered at index {at}")
        w.put(vkey, K.u64(index))

    # --- signers and identities: the rule is client.core.records.identity's, read from the aux store --

    def _check_signer(self, w: _Writes, signer: bytes) -> str:
        return check_signer(_StoredIdentities(w), signer, self.policy)

    def _identity(self, w: _Writes, s: Identity, signer: bytes, index: int) -> None:
        change = apply_identity(_StoredIdentities(w), s, signer, index, self.policy)
        for key, st in change.keys:
            w.put(K.KEY + key, K.key_state(st.status.value, st.since, st.registered, st.name))
        for name, ns in change.names:
            w.put(K.NAME + name.encode(), (ns.key or b"") + K.u64(ns.since))
        w.post(K.identity_posts(s.name), index)  # the name's events, for key-status notes (prove.py)
        if self.identity_postings_complete and w.get(K.IDENTITY_POSTS_COMPLETE) is None:
            w.put(K.IDENTITY_POSTS_COMPLETE, b"\x01")

    # --- references, lineage and manifests -----------------------------------------

    def _references(self, w: _Writes, s: Dataset | ModelCheckpoint | Attestation | Dispute, index: int) -> None:
        for role, rid in s.references():
            held = w.get(K.RECORD + rid)
            if held is None:
                raise UnknownReferenceError(f"{role} {rid.hex()} is not in the registry")
            want = _REFERENCE_KIND.get(role)
            if want is not None and held[8] != want.value:
                got = Kind(held[8]).label
                raise WrongReferenceKindError(f"{role} {rid.hex()} is a {got} record, not a {want.label}")
        # The relation rides on the posting, so a descendants query needs no child record to label its edge.
        for pid, relation in lineage_edges(s):
            w.post(K.CHILD_POSTS + pid, index, relation.encode())
        match s:
            case Dataset() | ModelCheckpoint():
                pass
            case Attestation():
                w.post(K.ABOUT_POSTS + s.subject, index)
                if s.claim.object_is_record:
                    w.post(K.ABOUT_POSTS + s.object, index)
            case Dispute():
                w.post(K.ABOUT_POSTS + s.target, index)
            case _:
                assert_never(s)

    def _manifest(self, w: _Writes, digest: bytes, manifest: ManifestSummary | None, index: int) -> None:
        if w.get(K.MANIFEST_HELD + digest) is None:
            if manifest is None:
                raise ManifestMissingError(f"manifest {digest.hex()} was not sent with the record and is not stored")
            if manifest.digest != digest:
                raise ManifestMissingError(
                    f"the manifest sent has digest {manifest.digest.hex()}, the record names {digest.hex()}"
                )
            w.put(K.MANIFEST + digest, manifest.encoded)
            w.put(K.MANIFEST_HELD + digest, K.u64(index))
            # One blind posting per contained digest, in the order prepared outside the sequencer.
            keys = postings.stamp(manifest.list_keys, LIST_KEY_SIZE, index)
            w.blind.extend(zip(keys, itertools.repeat(b"")))
        w.post(K.MANIFEST_POSTS + digest, index)


def _keys_to_read(s: Dataset | ModelCheckpoint | Attestation | Dispute, signer: bytes) -> list[bytes]:
    """Every aux key admitting ``s`` reads, for one multi-read up front."""
    keys = [K.KEY + signer]
    for _, rid in s.references():
        keys.append(K.RECORD + rid)
    match s:
        case ModelCheckpoint():
            keys += [K.version_key(s.KIND.value, s.model, s.version), K.MANIFEST_HELD + s.manifest]
        case Dataset():
            keys += [K.version_key(s.KIND.value, s.name, s.version), K.MANIFEST_HELD + s.manifest]
        case Attestation() | Dispute():
            pass
        case _:
            assert_never(s)
    return list(dict.fromkeys(keys))
