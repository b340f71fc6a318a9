from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    KIND_UNSPECIFIED: _ClassVar[Kind]
    KIND_IDENTITY: _ClassVar[Kind]
    KIND_DATASET: _ClassVar[Kind]
    KIND_CHECKPOINT: _ClassVar[Kind]
    KIND_ATTESTATION: _ClassVar[Kind]
    KIND_DISPUTE: _ClassVar[Kind]
KIND_UNSPECIFIED: Kind
KIND_IDENTITY: Kind
KIND_DATASET: Kind
KIND_CHECKPOINT: Kind
KIND_ATTESTATION: Kind
KIND_DISPUTE: Kind

class Record(_message.Message):
    __slots__ = ("id", "index", "entry")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    index: int
    entry: bytes
    def __init__(self, id: _Optional[bytes] = ..., index: _Optional[int] = ..., entry: _Optional[bytes] = ...) -> None: ...

class Submission(_message.Message):
    __slots__ = ("entry", "manifest", "fingerprint")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    entry: bytes
    manifest: bytes
    fingerprint: bytes
    def __init__(self, entry: _Optional[bytes] = ..., manifest: _Optional[bytes] = ..., fingerprint: _Optional[bytes] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Submission]
    def __init__(self, records: _Optional[_Iterable[_Union[Submission, _Mapping]]] = ...) -> None: ...

class Registered(_message.Message):
    __slots__ = ("id", "index", "duplicate", "code", "error")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    index: int
    duplicate: bool
    code: int
    error: str
    def __init__(self, id: _Optional[bytes] = ..., index: _Optional[int] = ..., duplicate: _Optional[bool] = ..., code: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Registered]
    def __init__(self, records: _Optional[_Iterable[_Union[Registered, _Mapping]]] = ...) -> None: ...

class NameVersion(_message.Message):
    __slots__ = ("kind", "name", "version")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    kind: Kind
    name: str
    version: str
    def __init__(self, kind: _Optional[_Union[Kind, str]] = ..., name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetRecordRequest(_message.Message):
    __slots__ = ("id", "index", "name")
    ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    index: int
    name: NameVersion
    def __init__(self, id: _Optional[bytes] = ..., index: _Optional[int] = ..., name: _Optional[_Union[NameVersion, _Mapping]] = ...) -> None: ...

class GetRecordResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: Record
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class ListBySignerRequest(_message.Message):
    __slots__ = ("key", "limit")
    KEY_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    limit: int
    def __init__(self, key: _Optional[bytes] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAboutRequest(_message.Message):
    __slots__ = ("id", "limit")
    ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    limit: int
    def __init__(self, id: _Optional[bytes] = ..., limit: _Optional[int] = ...) -> None: ...

class ListRecordsResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("id", "depth", "descendants")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    DESCENDANTS_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    depth: int
    descendants: bool
    def __init__(self, id: _Optional[bytes] = ..., depth: _Optional[int] = ..., descendants: _Optional[bool] = ...) -> None: ...

class Edge(_message.Message):
    __slots__ = ("child", "parent", "relation", "depth")
    CHILD_FIELD_NUMBER: _ClassVar[int]
    PARENT_FIELD_NUMBER: _ClassVar[int]
    RELATION_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    child: bytes
    parent: bytes
    relation: str
    depth: int
    def __init__(self, child: _Optional[bytes] = ..., parent: _Optional[bytes] = ..., relation: _Optional[str] = ..., depth: _Optional[int] = ...) -> None: ...

class GetLineageResponse(_message.Message):
    __slots__ = ("records", "edges")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    EDGES_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[Record]
    edges: _containers.RepeatedCompositeFieldContainer[Edge]
    def __init__(self, records: _Optional[_Iterable[_Union[Record, _Mapping]]] = ..., edges: _Optional[_Iterable[_Union[Edge, _Mapping]]] = ...) -> None: ...

class FindDigestRequest(_message.Message):
    __slots__ = ("digest", "kinds", "limit")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    kinds: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    def __init__(self, digest: _Optional[bytes] = ..., kinds: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ...) -> None: ...

class DigestMatch(_message.Message):
    __slots__ = ("kind", "record")
    KIND_FIELD_NUMBER: _ClassVar[int]
    RECORD_FIELD_NUMBER: _ClassVar[int]
    kind: str
    record: Record
    def __init__(self, kind: _Optional[str] = ..., record: _Optional[_Union[Record, _Mapping]] = ...) -> None: ...

class FindDigestResponse(_message.Message):
    __slots__ = ("matches",)
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    matches: _containers.RepeatedCompositeFieldContainer[DigestMatch]
    def __init__(self, matches: _Optional[_Iterable[_Union[DigestMatch, _Mapping]]] = ...) -> None: ...

class GetManifestRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    def __init__(self, digest: _Optional[bytes] = ...) -> None: ...

class GetManifestResponse(_message.Message):
    __slots__ = ("manifest",)
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    manifest: bytes
    def __init__(self, manifest: _Optional[bytes] = ...) -> None: ...

class ManifestPart(_message.Message):
    __slots__ = ("data", "digest", "total_size")
    DATA_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SIZE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    digest: bytes
    total_size: int
    def __init__(self, data: _Optional[bytes] = ..., digest: _Optional[bytes] = ..., total_size: _Optional[int] = ...) -> None: ...

class UploadManifestResponse(_message.Message):
    __slots__ = ("digest", "size")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    size: int
    def __init__(self, digest: _Optional[bytes] = ..., size: _Optional[int] = ...) -> None: ...

class GetIdentityRequest(_message.Message):
    __slots__ = ("key", "name")
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    key: bytes
    name: str
    def __init__(self, key: _Optional[bytes] = ..., name: _Optional[str] = ...) -> None: ...

class GetIdentityResponse(_message.Message):
    __slots__ = ("name", "key", "status", "events")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    key: bytes
    status: str
    events: _containers.RepeatedCompositeFieldContainer[Record]
    def __init__(self, name: _Optional[str] = ..., key: _Optional[bytes] = ..., status: _Optional[str] = ..., events: _Optional[_Iterable[_Union[Record, _Mapping]]] = ...) -> None: ...

class ProveRequest(_message.Message):
    __slots__ = ("id", "lineage_to")
    ID_FIELD_NUMBER: _ClassVar[int]
    LINEAGE_TO_FIELD_NUMBER: _ClassVar[int]
    id: bytes
    lineage_to: bytes
    def __init__(self, id: _Optional[bytes] = ..., lineage_to: _Optional[bytes] = ...) -> None: ...

class ProveResponse(_message.Message):
    __slots__ = ("bundle",)
    BUNDLE_FIELD_NUMBER: _ClassVar[int]
    bundle: bytes
    def __init__(self, bundle: _Optional[bytes] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("tensor_digests", "chunk_digests", "fingerprint", "alpha", "limit")
    TENSOR_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    tensor_digests: _containers.RepeatedScalarFieldContainer[bytes]
    chunk_digests: _containers.RepeatedScalarFieldContainer[bytes]
    fingerprint: bytes
    alpha: float
    limit: int
    def __init__(self, tensor_digests: _Optional[_Iterable[bytes]] = ..., chunk_digests: _Optional[_Iterable[bytes]] = ..., fingerprint: _Optional[bytes] = ..., alpha: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class ExactMatch(_message.Message):
    __slots__ = ("record", "tensors", "chunks")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    TENSORS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    record: Record
    tensors: _containers.RepeatedScalarFieldContainer[int]
    chunks: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., tensors: _Optional[_Iterable[int]] = ..., chunks: _Optional[_Iterable[int]] = ...) -> None: ...

class RelatedMatch(_message.Message):
    __slots__ = ("record", "fingerprint_digest", "screen_score", "verdict", "log10_p", "adjusted_log10_p", "significant", "comparison_json")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINT_DIGEST_FIELD_NUMBER: _ClassVar[int]
    SCREEN_SCORE_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    LOG10_P_FIELD_NUMBER: _ClassVar[int]
    ADJUSTED_LOG10_P_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    COMPARISON_JSON_FIELD_NUMBER: _ClassVar[int]
    record: Record
    fingerprint_digest: bytes
    screen_score: float
    verdict: str
    log10_p: float
    adjusted_log10_p: float
    significant: bool
    comparison_json: str
    def __init__(self, record: _Optional[_Union[Record, _Mapping]] = ..., fingerprint_digest: _Optional[bytes] = ..., screen_score: _Optional[float] = ..., verdict: _Optional[str] = ..., log10_p: _Optional[float] = ..., adjusted_log10_p: _Optional[float] = ..., significant: _Optional[bool] = ..., comparison_json: _Optional[str] = ...) -> None: ...

class MatchResponse(_message.Message):
    __slots__ = ("exact", "related", "fingerprints")
    EXACT_FIELD_NUMBER: _ClassVar[int]
    RELATED_FIELD_NUMBER: _ClassVar[int]
    FINGERPRINTS_FIELD_NUMBER: _ClassVar[int]
    exact: _containers.RepeatedCompositeFieldContainer[ExactMatch]
    related: _containers.RepeatedCompositeFieldContainer[RelatedMatch]
    fingerprints: int
    def __init__(self, exact: _Optional[_Iterable[_Union[ExactMatch, _Mapping]]] = ..., related: _Optional[_Iterable[_Union[RelatedMatch, _Mapping]]] = ..., fingerprints: _Optional[int] = ...) -> None: ...

class GetFingerprintRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: bytes
    def __init__(self, digest: _Optional[bytes] = ...) -> None: ...

class GetFingerprintResponse(_message.Message):
    __slots__ = ("fingerprint",)
    FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    fingerprint: bytes
    def __init__(self, fingerprint: _Optional[bytes] = ...) -> None: ...
