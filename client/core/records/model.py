"""The registry's statements as frozen dataclasses (docs/records.md section 3). Pure.

A :class:`Record` is one statement (dataset, checkpoint, attestation, dispute or
identity event) plus who signs it and when they say they did. Construction
validates every invariant, so a value of these types is always encodable.
Every reference to another record is its 32-byte record id (see
:mod:`client.core.records.signing`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import ClassVar, Self

from client.core.records.attachment import OmsAttachment
from client.errors import InvalidInputError

ID_SIZE = 32
KEY_SIZE = 32
SIGNATURE_SIZE = 64
DIGEST_SIZE = 32

# Bounds (bytes of UTF-8 or counts); the parser enforces the same ones.
MAX_NAME = 256
MAX_VERSION = 128
MAX_TEXT = 4096
MAX_SHORT = 128
MAX_LIST = 256
MAX_METADATA = 64
MAX_METADATA_VALUE = 1024

_IDENTITY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/+-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Kind(enum.Enum):
    """What a record states. The value is the kind byte of the encoding."""

    IDENTITY = 1
    DATASET = 2
    CHECKPOINT = 3
    ATTESTATION = 4
    DISPUTE = 5

    @property
    def label(self) -> str:
        return self.name.lower()


class _Coded(enum.Enum):
    """An enum whose value is its wire text; its wire byte is its position, from 1 (never reorder)."""

    @classmethod
    def parse(cls, text: str) -> Self:
        """The member whose text is ``text``, or :class:`InvalidInputError` listing the allowed ones."""
        for m in cls:
            if m.value == text:
                return m
        allowed = ", ".join(str(m.value) for m in cls)
        raise InvalidInputError(f"unknown {cls.__name__} {text!r} (one of: {allowed})")


class IdentityEvent(_Coded):
    """Identity events. Register: the key claims a name. Rotate: the name's key signs in a new key.
    Revoke: the key itself or the name's current key withdraws a key."""

    REGISTER = "register"
    ROTATE = "rotate"
    REVOKE = "revoke"


class DatasetRelation(_Coded):
    """How a dataset was derived from a parent dataset."""

    FILTERED = "filtered"
    DEDUPLICATED = "deduplicated"
    MIXED = "mixed"
    OTHER = "other"


class DatasetRole(_Coded):
    """What a checkpoint used a dataset for."""

    PRETRAINING = "pretraining"
    FINE_TUNING = "fine-tuning"
    EVALUATION = "evaluation"


class ModelRelation(_Coded):
    """How a checkpoint was made from a parent checkpoint."""

    CONTINUED_TRAINING = "continued-training"
    FINE_TUNE = "fine-tune"
    DISTILLATION = "distillation"
    MERGE = "merge"
    QUANTIZATION = "quantization"
    PRUNING = "pruning"
    ADAPTER = "adapter"
    FORMAT_CONVERSION = "format-conversion"
    OTHER = "other"


class Claim(_Coded):
    """What an attestation asserts about its subject."""

    DESCENDS_FROM = "descends-from"  # object is a record id
    DOES_NOT_DESCEND_FROM = "does-not-descend-from"  # object is a record id
    WEIGHTS_MATCH_MANIFEST = "weights-match-manifest"  # object is a manifest digest
    DESCENT_TEST = "descent-test"  # object is a record id; the summary holds the verdict, the evidence the report
    OMS_SIGNATURE = "oms-signature"  # object is the OMS model digest; the record carries the OMS document

    @property
    def object_is_record(self) -> bool:
        return self not in (Claim.WEIGHTS_MATCH_MANIFEST, Claim.OMS_SIGNATURE)


class DigestAlgorithm(_Coded):
    """Hash function of a :class:`Digest` (named in the encoding, per habit 9)."""

    SHA256 = "sha256"
    BLAKE3 = "blake3"


def _check_size(what: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InvalidInputError(f"{what} must be {size} bytes, got {got}")


def _check_text(what: str, value: str, max_len: int, *, empty_ok: bool = True, oneline: bool = True) -> None:
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string")
    n = len(value.encode("utf-8", "surrogatepass"))
    if n > max_len:
        raise InvalidInputError(f"{what} is {n} bytes, more than {max_len}")
    if not empty_ok and not value:
        raise InvalidInputError(f"{what} must not be empty")
    if "\x00" in value or (oneline and _CONTROL.search(value)):
        raise InvalidInputError(f"{what} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InvalidInputError(f"{what} is not valid Unicode") from err


def _check_uint(what: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= (1 << 63) - 1:
        raise InvalidInputError(f"{what} must be an integer in 0..2**63-1, got {value!r}")


def _check_unique(what: str, ids: list[bytes]) -> None:
    if len(set(ids)) != len(ids):
        raise InvalidInputError(f"{what} lists the same record twice")


def check_identity_name(name: str) -> None:
    """Identity names: 1-128 of ``A-Z a-z 0-9 . _ @ / + -``, starting with a letter or digit."""
    if not isinstance(name, str) or not _IDENTITY_NAME.fullmatch(name):
        raise InvalidInputError(f"identity name {name!r} must match {_IDENTITY_NAME.pattern}")


@dataclass(frozen=True, slots=True)
class Digest:
    """A content digest that names its algorithm."""

    algorithm: DigestAlgorithm
    value: bytes

    def __post_init__(self) -> None:
        _check_size(f"{self.algorithm.value} digest", self.value, DIGEST_SIZE)

    def text(self) -> str:
        return f"{self.algorithm.value}:{self.value.hex()}"

    @classmethod
    def parse(cls, text: str) -> Digest:
        """``sha256:<hex>`` or ``blake3:<hex>``."""
        alg, sep, hexa = text.partition(":")
        if not sep:
            raise InvalidInputError(f"digest {text!r} must look like sha256:<64 hex> or blake3:<64 hex>")
        try:
            value = bytes.fromhex(hexa)
        except ValueError as err:
            raise InvalidInputError(f"digest {text!r} is not hex") from err
        return cls(DigestAlgorithm.parse(alg), value)


@dataclass(frozen=True, slots=True)
class Identity:
    """An identity event: ``event`` applied to ``key`` under ``name``.

    A rotation carries ``endorsement``: the new key's signature accepting the name (proof that its
    holder asked for it; see :func:`client.core.records.signing.endorse_rotation`). Other events carry none.
    """

    KIND: ClassVar[Kind] = Kind.IDENTITY
    event: IdentityEvent
    name: str
    key: bytes
    endorsement: bytes = b""

    def __post_init__(self) -> None:
        check_identity_name(self.name)
        _check_size("identity key", self.key, KEY_SIZE)
        if self.event is IdentityEvent.ROTATE:
            _check_size("rotation endorsement (the new key's signature)", self.endorsement, SIGNATURE_SIZE)
        elif self.endorsement:
            raise InvalidInputError(f"only a rotation carries an endorsement, not a {self.event.value}")

    def references(self) -> list[tuple[str, bytes]]:
        return []


@dataclass(frozen=True, slots=True)
class DatasetParent:
    id: bytes
    relation: DatasetRelation

    def __post_init__(self) -> None:
        _check_size("parent dataset id", self.id, ID_SIZE)


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset: what it is called, what it held (manifest), and what it came from."""

    KIND: ClassVar[Kind] = Kind.DATASET
    name: str
    version: str
    manifest: bytes
    size: int
    license: str = ""
    sources: tuple[str, ...] = ()
    parents: tuple[DatasetParent, ...] = ()

    def __post_init__(self) -> None:
        _check_text("dataset name", self.name, MAX_NAME, empty_ok=False)
        _check_text("dataset version", self.version, MAX_VERSION)
        _check_size("manifest digest", self.manifest, DIGEST_SIZE)
        _check_uint("dataset size", self.size)
        _check_text("license", self.license, MAX_SHORT)
        if len(self.sources) > MAX_LIST or len(self.parents) > MAX_LIST:
            raise InvalidInputError(f"a dataset lists at most {MAX_LIST} sources and {MAX_LIST} parents")
        for s in self.sources:
            _check_text("source description", s, MAX_TEXT)
        _check_unique("dataset parents", [p.id for p in self.parents])

    def references(self) -> list[tuple[str, bytes]]:
        return [("parent dataset", p.id) for p in self.parents]


@dataclass(frozen=True, slots=True)
class TrainingData:
    id: bytes
    role: DatasetRole

    def __post_init__(self) -> None:
        _check_size("dataset id", self.id, ID_SIZE)


@dataclass(frozen=True, slots=True)
class ModelParent:
    id: bytes
    relation: ModelRelation

    def __post_init__(self) -> None:
        _check_size("parent checkpoint id", self.id, ID_SIZE)


@dataclass(frozen=True, slots=True)
class FingerprintCommitment:
    """A checkpoint's model fingerprint (docs/descent.md section 4), named by its digest.

    ``digest`` is BLAKE3 over the fingerprint's canonical bytes (``PLFP`` encoding; its version is
    inside the bytes hashed). ``published``: the bytes were sent with the registration and the
    registry stores and serves them; otherwise only this commitment is logged, and the bytes can
    be revealed later (e.g. to a court) and checked against it.
    """

    digest: bytes
    published: bool

    def __post_init__(self) -> None:
        _check_size("fingerprint digest", self.digest, DIGEST_SIZE)
        if not isinstance(self.published, bool):
            raise InvalidInputError("fingerprint published flag must be a bool")

    @property
    def mode(self) -> str:
        return "published" if self.published else "committed"


@dataclass(frozen=True, slots=True)
class ModelCheckpoint:
    """A model checkpoint: which weights (manifest), trained on what, derived from which checkpoints."""

    KIND: ClassVar[Kind] = Kind.CHECKPOINT
    model: str
    run: str
    step: int
    manifest: bytes
    format: str = ""
    datasets: tuple[TrainingData, ...] = ()
    parents: tuple[ModelParent, ...] = ()
    config: Digest | None = None
    metadata: tuple[tuple[str, str], ...] = field(default=())
    fingerprint: FingerprintCommitment | None = None

    def __post_init__(self) -> None:
        _check_text("model name", self.model, MAX_NAME, empty_ok=False)
        _check_text("run", self.run, MAX_VERSION)
        _check_uint("step", self.step)
        _check_size("manifest digest", self.manifest, DIGEST_SIZE)
        _check_text("format", self.format, MAX_SHORT)
        if len(self.datasets) > MAX_LIST or len(self.parents) > MAX_LIST:
            raise InvalidInputError(f"a checkpoint lists at most {MAX_LIST} datasets and {MAX_LIST} parents")
        _check_unique("checkpoint datasets", [d.id for d in self.datasets])
        _check_unique("checkpoint parents", [p.id for p in self.parents])
        if len(self.metadata) > MAX_METADATA:
            raise InvalidInputError(f"at most {MAX_METADATA} metadata entries")
        keys = [k for k, _ in self.metadata]
        if keys != sorted(set(keys)):
            raise InvalidInputError("metadata keys must be unique and sorted (use Checkpoint.with_metadata)")
        for k, v in self.metadata:
            _check_text("metadata key", k, MAX_SHORT, empty_ok=False)
            _check_text(f"metadata value of {k!r}", v, MAX_METADATA_VALUE, oneline=False)
        if self.fingerprint is not None and not isinstance(self.fingerprint, FingerprintCommitment):
            raise InvalidInputError("checkpoint fingerprint must be a FingerprintCommitment")

    @property
    def version(self) -> str:
        """The name/version key of a checkpoint: ``<step>`` or ``<run>/<step>``."""
        return f"{self.run}/{self.step}" if self.run else str(self.step)

    @staticmethod
    def sorted_metadata(metadata: dict[str, str]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(metadata.items()))

    def references(self) -> list[tuple[str, bytes]]:
        refs = [("training dataset", d.id) for d in self.datasets]
        refs += [("parent checkpoint", p.id) for p in self.parents]
        return refs


@dataclass(frozen=True, slots=True)
class Attestation:
    """An auditor's signed claim about ``subject`` (and ``object``: a record id or a digest); ``oms`` is
    present exactly when the claim is ``oms-signature`` (the OMS document it is about)."""

    KIND: ClassVar[Kind] = Kind.ATTESTATION
    claim: Claim
    subject: bytes
    object: bytes
    evidence: Digest | None = None
    summary: str = ""
    oms: OmsAttachment | None = None

    def __post_init__(self) -> None:
        _check_size("attestation subject", self.subject, ID_SIZE)
        _check_size("attestation object", self.object, ID_SIZE)
        _check_text("summary", self.summary, MAX_TEXT, oneline=False)
        if self.claim.object_is_record and self.object == self.subject:
            raise InvalidInputError("an attestation cannot relate a record to itself")
        oms_claim = self.claim is Claim.OMS_SIGNATURE
        if oms_claim != (self.oms is not None) or not isinstance(self.oms, OmsAttachment | None):
            raise InvalidInputError("an oms-signature attestation, and only one, carries an OmsAttachment")

    def references(self) -> list[tuple[str, bytes]]:
        refs = [("attestation subject", self.subject)]
        if self.claim.object_is_record:
            refs.append(("attestation object", self.object))
        return refs


@dataclass(frozen=True, slots=True)
class Dispute:
    """Contests ``target`` (any record, including an attestation's claim)."""

    KIND: ClassVar[Kind] = Kind.DISPUTE
    target: bytes
    reason: str
    evidence: Digest | None = None

    def __post_init__(self) -> None:
        _check_size("dispute target", self.target, ID_SIZE)
        _check_text("dispute reason", self.reason, MAX_TEXT, empty_ok=False, oneline=False)

    def references(self) -> list[tuple[str, bytes]]:
        return [("disputed record", self.target)]


Statement = Identity | Dataset | ModelCheckpoint | Attestation | Dispute


@dataclass(frozen=True, slots=True)
class Record:
    """An unsigned record: a statement, the Ed25519 public key that signs it, and the signer's claimed time."""

    statement: Statement
    signer: bytes
    timestamp: int

    def __post_init__(self) -> None:
        _check_size("signer key", self.signer, KEY_SIZE)
        _check_uint("timestamp", self.timestamp)

    @property
    def kind(self) -> Kind:
        return self.statement.KIND
