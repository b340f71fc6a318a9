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

from client.core.records import (
    Attestation,
    Dataset,
    Dispute,
    Identity,
    IdentityEvent,
    Kind,
    ModelCheckpoint,
    SignedRecord,
    parse_entry,
)
from client.core.records.encoding import MAGIC
from client.core.records.signing import key_text
from client.errors import SignatureError
from ledger.registry import fingerprints, postings
from ledger.registry import keys as K
from ledger.registry.errors import (
    ConflictError,
    ManifestMissingError,
    NotAllowedError,
    RevokedKeyError,
    UnknownReferenceError,
    UnknownSignerError,
    WrongReferenceKindError,
)
from ledger.registry.fingerprints import FingerprintSummary
from ledger.registry.manifests import LIST_KEY_SIZE, ManifestSummary
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


class RegistryHook:
    """Turns each admitted record into index writes; refuses what the registry must not hold."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        # Keyed by the entry bytes themselves: the log hands the same bytes object back to admit_at,
        # whose hash Python has cached, so finding the preparation costs no second SHA-256.
        self._prepared: dict[bytes, Prepared] = {}
        self._lock = threading.Lock()

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
        start with the record magic are opaque log entries (the log stays a general log): admitted
        with no index writes. Anything that claims to be a record must be a valid one.
        """
        if not entry.startswith(MAGIC):
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
        if isinstance(s, Identity):
            self._identity(w, s, rec.signer, index)
        else:
            w.prefetch(_keys_to_read(s, rec.signer))
            self._check_signer(w, rec.signer)
            self._references(w, s, index)
            if isinstance(s, Dataset | ModelCheckpoint):
                name, version = (s.name, s.version) if isinstance(s, Dataset) else (s.model, s.version)
                vkey = K.version_key(s.KIND.value, name, version)
                taken = w.get(vkey)
                if taken is not None:
                    at = K.read_u64(taken)
                    what = f"{s.KIND.label} {name!r} version {version!r}"
                    raise ConflictError(f"{what} is already registered at index {at}")
                w.put(vkey, K.u64(index))
                self._manifest(w, s.manifest, prepared.manifest, index)
                if isinstance(s, ModelCheckpoint):
                    fingerprints.admit(w, s, prepared.fingerprint, index)
        w.put(K.RECORD + prepared.signed.id, K.u64(index) + bytes([rec.kind.value]))
        w.post(K.SIGNER_POSTS + rec.signer, index)
        (w.out if blind is None else blind).extend(w.blind)
        return w.out

    # --- signers and identities -------------------------------------------------

    def _key_state(self, w: _Writes, key: bytes) -> tuple[int, int, int, str] | None:
        v = w.get(K.KEY + key)
        return None if v is None else K.parse_key_state(v)

    def _check_signer(self, w: _Writes, signer: bytes) -> str:
        state = self._key_state(w, signer)
        if state is None:
            raise UnknownSignerError(f"signer key {key_text(signer)} is not registered under any name")
        status, since, _, name = state
        if status == K.KEY_REVOKED:
            raise RevokedKeyError(f"signer key {key_text(signer)} of {name!r} was revoked at index {since}")
        if status == K.KEY_RETIRED:
            raise RevokedKeyError(f"signer key {key_text(signer)} of {name!r} was rotated out at index {since}")
        if not self.policy.permits(name, signer):
            raise NotAllowedError(f"the allowlist no longer lists {name!r} with key {key_text(signer)}")
        return name

    def _identity(self, w: _Writes, s: Identity, signer: bytes, index: int) -> None:
        name_value = w.get(K.NAME + s.name.encode())
        current = name_value[:-8] if name_value else None
        key_state = self._key_state(w, s.key)
        if s.event is IdentityEvent.REGISTER:
            if signer != s.key:
                raise SignatureError(f"registering {s.name!r} must be signed by the key it registers")
            if not self.policy.permits(s.name, s.key):
                raise NotAllowedError(f"the allowlist does not list {s.name!r} with key {key_text(s.key)}")
            if key_state is not None:
                raise ConflictError(f"key {key_text(s.key)} is already registered, under {key_state[3]!r}")
            if current:
                raise ConflictError(f"name {s.name!r} is already registered to another key")
            if name_value is not None and self.policy.is_open:
                raise ConflictError(f"name {s.name!r} had its key revoked; only an allowlist can re-register it")
            w.put(K.KEY + s.key, K.key_state(K.KEY_ACTIVE, index, index, s.name))
            w.put(K.NAME + s.name.encode(), s.key + K.u64(index))
            return
        # A key may always revoke itself, even after rotation.
        self_revoke = s.event is IdentityEvent.REVOKE and signer == s.key
        signer_name = s.name if self_revoke else self._check_signer(w, signer)
        if s.event is IdentityEvent.ROTATE:
            if signer_name != s.name or current != signer:
                raise SignatureError(f"rotating {s.name!r} must be signed by its current key")
            if key_state is not None:
                raise ConflictError(f"key {key_text(s.key)} is already registered, under {key_state[3]!r}")
            if not self.policy.permits(s.name, s.key):
                raise NotAllowedError(f"the allowlist does not list {s.name!r} with key {key_text(s.key)}")
            old = self._key_state(w, signer)
            assert old is not None
            w.put(K.KEY + signer, K.key_state(K.KEY_RETIRED, index, old[2], s.name))
            w.put(K.KEY + s.key, K.key_state(K.KEY_ACTIVE, index, index, s.name))
            w.put(K.NAME + s.name.encode(), s.key + K.u64(index))
            return
        # REVOKE
        if key_state is None or key_state[3] != s.name:
            raise UnknownSignerError(f"key {key_text(s.key)} is not registered under {s.name!r}")
        if key_state[0] == K.KEY_REVOKED:
            raise ConflictError(f"key {key_text(s.key)} was already revoked at index {key_state[1]}")
        if signer != s.key and not (signer_name == s.name and current == signer):
            raise SignatureError(f"revoking a key of {s.name!r} must be signed by that key or the name's current key")
        w.put(K.KEY + s.key, K.key_state(K.KEY_REVOKED, index, key_state[2], s.name))
        if current == s.key:
            w.put(K.NAME + s.name.encode(), K.u64(index))

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
        if isinstance(s, Dataset | ModelCheckpoint):
            # The relation rides on the posting, so a descendants query needs no child record to label its edge.
            for p in s.parents:
                w.post(K.CHILD_POSTS + p.id, index, p.relation.value.encode())
            if isinstance(s, ModelCheckpoint):
                for d in s.datasets:
                    w.post(K.CHILD_POSTS + d.id, index, f"trained-on:{d.role.value}".encode())
        elif isinstance(s, Attestation):
            w.post(K.ABOUT_POSTS + s.subject, index)
            if s.claim.object_is_record:
                w.post(K.ABOUT_POSTS + s.object, index)
        else:
            w.post(K.ABOUT_POSTS + s.target, index)

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
    if isinstance(s, ModelCheckpoint):
        keys += [K.version_key(s.KIND.value, s.model, s.version), K.MANIFEST_HELD + s.manifest]
    elif isinstance(s, Dataset):
        keys += [K.version_key(s.KIND.value, s.name, s.version), K.MANIFEST_HELD + s.manifest]
    return list(dict.fromkeys(keys))
