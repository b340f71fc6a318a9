"""The court report as values: what the HTML and the PDF both render. Pure.

Built by :mod:`client.report.build`. Strings meant for display have already passed
:func:`client.core.records.display.safe_text` where a signer chose them, so a renderer only has to
escape its own markup (HTML) or its font's limits (PDF). Digests, ids and keys are given in full.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled value: ``label`` is ours, ``value`` may be signer-chosen (already made safe)."""

    label: str
    value: str
    mono: bool = False  # a digest, key or id: shown in a fixed-width font, never wrapped mid-value if avoidable


@dataclass(frozen=True, slots=True)
class RecordView:
    """One record of the bundle, as it was verified."""

    position: int  # its place in the bundle (records[position])
    role: str  # subject, lineage or identity
    index: int  # its log index
    kind: str
    title: str  # "chat-int8 10", "identity lab-a: register"
    sentence: str  # what it states, in one sentence (client.core.records.jsonform.describe)
    record_id: str  # 64 hex digits
    signer_name: str | None
    signer_key: str  # ed25519:<base64>
    signer_time: str  # the time the signer states, labelled as the signer's claim wherever shown
    fields: tuple[Fact, ...]  # the signed fields, digests in full


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """One identity event of a signer's history, from the identity records the bundle carries."""

    index: int
    event: str  # register, rotate, revoke
    key: str


@dataclass(frozen=True, slots=True)
class SignerView:
    """An identity that signed a record of the bundle: its name, keys and the history the bundle shows."""

    name: str
    keys: tuple[str, ...]
    events: tuple[KeyEvent, ...]


@dataclass(frozen=True, slots=True)
class Witness:
    """One signature line of the checkpoint note: by the log's own key, or a cosigner's."""

    name: str
    key: str  # the key ID (8 hex digits), or the policy's verifier key for a witness it lists
    status: str  # verified, bad, missing, absent (client.core.witnessed) or unverified
    note: str  # how it was (or was not) checked

    @property
    def verified(self) -> bool:
        return self.status == "verified"


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One layer group of the compared model A: whether it is shared with B, and with which layers."""

    layer: str
    shared: bool
    tensors: str  # "3 of 4"
    b_layers: str


@dataclass(frozen=True, slots=True)
class ComparisonView:
    """A ``descent-test`` (or other) attestation attached to the report, and its evidence if supplied."""

    attestation_id: str
    subject_id: str  # hex ids of the two records compared
    object_id: str
    index: int
    tree_size: int  # the size of the checkpoint its own bundle proves it in
    claim: str
    attester: str  # "'lab-c' (ed25519:...)"
    subject: str  # label of the compared record A
    object: str  # label of record B
    summary: str  # the attester's own words (signed)
    evidence_digest: str | None
    evidence_checked: bool  # an evidence file whose BLAKE3 is the signed digest was supplied and read
    verdict: str | None
    p_value: str | None
    alpha: str | None
    basis: str | None
    shared_tensors: str | None  # "12 of 16 informative tensors, 3 of 4 layers"
    shared_fraction: str | None
    layers: tuple[LayerRow, ...]
    signer_time: str


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A box of the lineage drawing; ``x``, ``y`` are its top-left corner in drawing units."""

    key: str  # the record id (hex)
    title: str
    subtitle: str
    x: int
    y: int
    in_bundle: bool  # False: named by a record of the bundle, whose own record is not in it
    subject: bool


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """An arrow from a child's box to its parent's, labelled with the relation; ``points`` its polyline.

    ``dashed``: not a hash link the verifier checked along the lineage path (a parent outside the
    bundle, or an attestation's claim)."""

    label: str
    points: tuple[tuple[int, int], ...]
    label_at: tuple[int, int]
    dashed: bool


@dataclass(frozen=True, slots=True)
class Graph:
    width: int
    height: int
    node_width: int
    node_height: int
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]


@dataclass(frozen=True, slots=True)
class Check:
    """One check the verifier made, in words, and how anyone can make it again by hand."""

    what: str
    how: str


@dataclass(frozen=True, slots=True)
class CourtReport:
    """The whole report. ``verified`` False: ``title`` and ``lead`` say NOT VERIFIED and name ``failure_part``."""

    verified: bool
    title: str
    lead: str
    failure_part: str | None
    bundle_name: str
    bundle_sha256: str
    origin: str
    log_key: str
    tree_size: int | None
    root: str | None  # base64, as in the checkpoint
    checkpoint_note: str
    claims: tuple[str, ...]  # the plain-language statements proved (or, unverified, stated)
    records: tuple[RecordView, ...]
    signers: tuple[SignerView, ...]
    key_status: str
    witnesses: tuple[Witness, ...]
    witness_summary: str
    lineage: Graph | None
    comparisons: tuple[ComparisonView, ...]
    checks: tuple[Check, ...]
    commands: tuple[str, ...]
    warnings: tuple[str, ...]
    digests: tuple[Fact, ...]
