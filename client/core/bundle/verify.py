"""Offline verification of a proof bundle against the log's key (docs/bundle.md section 3). Pure.

Checks, naming the part that fails: the document's form; that its ``log_key`` is
the key the verifier trusts; the checkpoint's signature; for every record that its
id is the leaf hash of its exact bytes, that it parses, that its Ed25519
signature verifies and that its inclusion proof leads to the checkpoint's root;
every hash link of the lineage path; and that every signer key is established by
identity records in the bundle, logged before the record and not revoked or
rotated out before it. The identity records follow the lineage path in log order, and the
log's key-status note (:mod:`client.core.bundle.keystatus`) proves they are every identity
event of their identities up to the checkpoint, so none was left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from client.core.bundle.format import Bundle, parse
from client.core.bundle.keystatus import KeyStatusError, check_identity_records, open_key_status
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.merkle import verify_inclusion
from client.core.note import Verifier
from client.core.records import Attestation, Claim, SignedRecord, parse_entry, record_id
from client.core.records.identity import IdentityReplay, UnknownSignerError
from client.core.records.jsonform import named_label, short
from client.core.records.lineage import lineage_edges
from client.core.records.model import Identity
from client.core.records.oms_claim import check_oms_attestation
from client.core.records.signing import key_text
from client.core.witness_policy import WitnessPolicy
from client.core.witnessed import SignatureReport, WitnessQuorumError, check_signatures, require_quorum
from client.errors import FormatError, ProvenanceError, VerificationError


class BundleVerificationError(VerificationError):
    """A bundle failed verification; ``part`` names what broke (e.g. ``records[2].inclusion_proof``)."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """A record of the bundle that verified; ``role`` is subject, lineage or identity."""

    position: int
    index: int
    signed: SignedRecord
    role: str
    signer_name: str | None


@dataclass(frozen=True, slots=True)
class Link:
    """``child`` names ``parent`` with ``relation`` (hash link checked)."""

    child: bytes
    parent: bytes
    relation: str


@dataclass
class BundleReport:
    """What a verified bundle proves."""

    origin: str
    log_key: str
    tree_size: int
    root: bytes
    checkpoint_note: bytes
    subject: bytes
    lineage_to: bytes | None
    records: list[VerifiedRecord] = field(default_factory=list)
    path: list[Link] = field(default_factory=list)
    key_notes: list[str] = field(default_factory=list)
    key_status_proved: bool = False  # the log's key-status note covers every identity record
    key_status_warning: str | None = None  # set when a bundle without that note was accepted
    oms_notes: list[str] = field(default_factory=list)  # each oms-signature attestation's rechecked signature
    signatures: SignatureReport | None = None  # the checkpoint's witness and other signature lines


class BundleQuorumError(BundleVerificationError):
    """The bundle's checkpoint does not meet the witness policy; ``report`` lists each witness and line."""

    def __init__(self, message: str, report: SignatureReport) -> None:
        super().__init__("checkpoint", message)
        self.report = report


def parent_links(signed: SignedRecord) -> dict[bytes, str]:
    """Parent id -> relation of every lineage link the record states (:func:`lineage_edges`; first wins)."""
    links: dict[bytes, str] = {}
    for pid, rel in lineage_edges(signed.record.statement):
        links.setdefault(pid, rel)
    return links


UNPROVEN_KEY_STATUS = (
    "this bundle carries no key-status note from the log (it was made before bundles had one): the "
    "signers' key history it shows may be incomplete, e.g. a revocation logged before its checkpoint "
    "could have been left out"
)


def verify_bundle(data: bytes, log_key: str, *, accept_unproven_key_status: bool = False,
                  policy: WitnessPolicy | None = None) -> BundleReport:
    """Verify bundle bytes with the log's verifier key text; return the report or raise naming the part.

    A bundle without the log's key-status note is refused (part ``key_status``) unless
    ``accept_unproven_key_status``; then the report carries :data:`UNPROVEN_KEY_STATUS` as a warning.
    With a witness ``policy`` the checkpoint must meet it (:func:`client.core.witnessed.require_quorum`;
    :class:`BundleQuorumError` otherwise); with or without one, the report accounts for every signature
    line of the checkpoint (``report.signatures``).
    """
    try:
        bundle = parse(data)
    except FormatError as err:
        part = getattr(err, "part", "bundle")
        raise BundleVerificationError(part, str(err).removeprefix(f"{part}: ")) from err
    return verify_parsed(bundle, log_key, accept_unproven_key_status=accept_unproven_key_status, policy=policy)


def _fail(part: str, err: ProvenanceError | str) -> BundleVerificationError:
    return BundleVerificationError(part, str(err))


def _inclusion_error(index: int, size: int, leaf: bytes, proof: tuple[bytes, ...], root: bytes) -> str | None:
    try:
        verify_inclusion(index, size, leaf, list(proof), root)
    except ProvenanceError as err:
        return str(err)
    return None


def verify_parsed(bundle: Bundle, log_key: str, *, require_identities: bool = True,
                  accept_unproven_key_status: bool = False, policy: WitnessPolicy | None = None) -> BundleReport:
    try:
        verifier = Verifier.from_text(log_key.strip())
    except ProvenanceError as err:
        raise _fail("--log-key", err) from err
    if bundle.log_key != verifier.text():
        raise BundleVerificationError("log_key", f"is {bundle.log_key!r}, not the trusted key {verifier.text()!r}")
    try:
        cp = open_checkpoint(bundle.checkpoint, verifier)
    except ProvenanceError as err:
        raise _fail("checkpoint", err) from err
    if bundle.origin != cp.origin:
        raise BundleVerificationError("origin", f"is {bundle.origin!r}, but the checkpoint is of log {cp.origin!r}")
    report = BundleReport(cp.origin, verifier.text(), cp.size, cp.root, bundle.checkpoint, bundle.subject,
                          bundle.lineage_to)
    try:
        report.signatures = check_signatures(bundle.checkpoint, verifier, policy)
        require_quorum(report.signatures)
    except WitnessQuorumError as err:
        raise BundleQuorumError(str(err), err.report) from err
    except ProvenanceError as err:
        raise _fail("checkpoint", err) from err
    signed_at: list[SignedRecord] = []
    seen: set[bytes] = set()
    for i, r in enumerate(bundle.records):
        part = f"records[{i}]"
        computed = record_id(r.leaf)
        proof_error = _inclusion_error(r.index, cp.size, computed, r.inclusion_proof, cp.root)
        if proof_error is None:
            if r.id != computed:
                raise BundleVerificationError(f"{part}.id", "is not the leaf hash of the record's bytes")
        elif r.id != computed and _inclusion_error(r.index, cp.size, r.id, r.inclusion_proof, cp.root) is None:
            why = "bytes are not the logged record (their hash is not the proved leaf)"
            raise BundleVerificationError(f"{part}.leaf", why)
        else:
            why = f"does not prove index {r.index} in the checkpoint of size {cp.size}: {proof_error}"
            raise BundleVerificationError(f"{part}.inclusion_proof", why)
        if r.id in seen:
            raise BundleVerificationError(f"{part}.id", "appears twice in the bundle")
        seen.add(r.id)
        try:
            signed = parse_entry(r.leaf)
        except ProvenanceError as err:
            raise _fail(f"{part}.leaf", err) from err
        try:
            signed.verify()
        except ProvenanceError as err:
            raise _fail(f"{part}.leaf signature", err) from err
        s = signed.record.statement
        if isinstance(s, Attestation) and s.claim is Claim.OMS_SIGNATURE:  # its DSSE signature, offline
            try:
                report.oms_notes.append(f"{r.id.hex()}: {check_oms_attestation(s).summary()}")
            except ProvenanceError as err:
                raise _fail(f"{part}.leaf oms", err) from err
        signed_at.append(signed)
    if bundle.records[0].id != bundle.subject:
        raise BundleVerificationError("subject", "is not the first record of the bundle")
    path_len = 1
    if bundle.lineage_to is not None:
        path_len = _check_path(bundle, signed_at, report)
    names: dict[bytes, str] = {}
    if require_identities:
        _check_order(bundle, path_len)
        names = _check_identities(bundle, signed_at, report)
        _check_key_status(bundle, signed_at, cp, verifier, report, accept_unproven_key_status)
    for i, (r, signed) in enumerate(zip(bundle.records, signed_at, strict=True)):
        role = "subject" if i == 0 else "lineage" if i < path_len else "identity"
        if role == "identity" and not isinstance(signed.record.statement, Identity):
            raise BundleVerificationError(f"records[{i}]", "is neither on the lineage path nor an identity record")
        report.records.append(VerifiedRecord(i, r.index, signed, role, names.get(signed.record.signer)))
    return report


def _check_path(bundle: Bundle, signed_at: list[SignedRecord], report: BundleReport) -> int:
    ids = [r.id for r in bundle.records]
    try:
        end = ids.index(bundle.lineage_to)  # type: ignore[arg-type]
    except ValueError:
        raise BundleVerificationError("lineage_to", "is not a record of the bundle") from None
    if end == 0:
        raise BundleVerificationError("lineage_to", "is the subject itself")
    for j in range(end):
        links = parent_links(signed_at[j])
        rel = links.get(ids[j + 1])
        if rel is None:
            raise BundleVerificationError(
                f"records[{j + 1}]", f"is not a parent or training dataset named by records[{j}] (broken lineage link)"
            )
        report.path.append(Link(ids[j], ids[j + 1], rel))
    return end + 1


def _check_order(bundle: Bundle, path_len: int) -> None:
    """The records after the lineage path come in increasing log index (one order, so one spelling)."""
    for i in range(path_len + 1, len(bundle.records)):
        if bundle.records[i].index <= bundle.records[i - 1].index:
            raise BundleVerificationError(f"records[{i}]", f"is at index {bundle.records[i].index}, not after "
                                          f"records[{i - 1}] (index {bundle.records[i - 1].index}): the records "
                                          "after the lineage path must be in log order")


def _check_key_status(bundle: Bundle, signed_at: list[SignedRecord], cp: Checkpoint, verifier: Verifier,
                      report: BundleReport, accept_unproven: bool) -> None:
    """Every identity record is an event the log's key-status note lists, and every event it lists is carried."""
    if bundle.key_status is None:
        if not accept_unproven:
            raise BundleVerificationError("key_status", f"is missing; {UNPROVEN_KEY_STATUS} (to accept such a "
                                          "bundle anyway, pass --accept-unproven-key-status)")
        report.key_status_warning = UNPROVEN_KEY_STATUS
        return
    identities = [(i, bundle.records[i].index, s.record.statement.name)
                  for i, s in enumerate(signed_at) if isinstance(s.record.statement, Identity)]
    try:
        check_identity_records(open_key_status(bundle.key_status, verifier, cp), identities)
    except KeyStatusError as err:
        raise BundleVerificationError(err.part, str(err).removeprefix(f"{err.part}: ")) from err
    report.key_status_proved = True


def _check_identities(bundle: Bundle, signed_at: list[SignedRecord], report: BundleReport) -> dict[bytes, str]:
    """Replay the bundle's identity events in log order with the registry's own rule
    (:mod:`client.core.records.identity`); every signer must be established and active."""
    order = sorted(range(len(signed_at)), key=lambda i: bundle.records[i].index)
    replay = IdentityReplay()
    names: dict[bytes, str] = {}
    for i in order:
        signed, index, part = signed_at[i], bundle.records[i].index, f"records[{i}]"
        rec, s = signed.record, signed.record.statement
        try:
            if isinstance(s, Identity):
                replay.apply(s, rec.signer, index)
                names.setdefault(s.key, s.name)
            else:
                replay.signer(rec.signer)
        except UnknownSignerError as err:
            raise BundleVerificationError(
                part, f"{err}: no identity record of this bundle logged before index {index} establishes it"
            ) from err
        except ProvenanceError as err:
            raise BundleVerificationError(part, f"{err} (record at index {index})") from err
    for key, st in replay.inactive():
        report.key_notes.append(f"key {key_text(key)} of {st.name!r} was {st.status.text} at index {st.since}")
    return names


def describe_id(report: BundleReport, rid: bytes) -> str:
    """A label for a record of the report (its name and version where it has one)."""
    for r in report.records:
        if r.signed.id == rid:
            label = named_label(r.signed.record.statement, rid)
            if label is not None:
                return label
    return short(rid)


def verify_tlog_proof(data: bytes, log_key: str, entry: bytes | None = None,
                      policy: WitnessPolicy | None = None) -> BundleReport:
    """Verify a C2SP tlog-proof of one record (see :mod:`client.core.bundle.tlog_proof`).

    ``entry``: the record's entry bytes, supplied apart; needed when the proof has no ``extra`` line
    (the hash-only form), and when both are there they must be equal. Either way the inclusion proof
    authenticates the entry. The signer's identity is not part of this form: the report names the key only.
    ``policy``: as for :func:`verify_bundle`, on the proof's checkpoint.
    """
    from client.core.bundle.format import BundleRecord
    from client.core.bundle.tlog_proof import parse_tlog_proof

    try:
        p = parse_tlog_proof(data)
    except FormatError as err:
        raise _fail("tlog-proof", err) from err
    if p.entry is None and entry is None:
        raise BundleVerificationError("tlog-proof", "has no 'extra' line: supply the record's entry apart "
                                                    "(provenance verify --entry FILE)")
    if p.entry is not None and entry is not None and p.entry != entry:
        raise BundleVerificationError("tlog-proof", "its 'extra' line differs from the entry supplied apart")
    leaf = p.entry if p.entry is not None else entry
    assert leaf is not None
    rid = record_id(leaf)
    origin = p.checkpoint.split(b"\n", 1)[0].decode("utf-8", "replace")  # checked against the signed checkpoint
    bundle = Bundle(log_key.strip(), origin, p.checkpoint, rid, None, (BundleRecord(rid, p.index, leaf, p.proof),))
    return verify_parsed(bundle, log_key, require_identities=False, policy=policy)
