from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SignedCheckpoint(_message.Message):
    __slots__ = ("note",)
    NOTE_FIELD_NUMBER: _ClassVar[int]
    note: bytes
    def __init__(self, note: _Optional[bytes] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("index", "tree_size", "leaf_hash", "hashes")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    leaf_hash: bytes
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AddEntriesRequest(_message.Message):
    __slots__ = ("entries", "wait_for_checkpoint", "wait_for_cosignatures")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_COSIGNATURES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    wait_for_checkpoint: bool
    wait_for_cosignatures: bool
    def __init__(self, entries: _Optional[_Iterable[bytes]] = ..., wait_for_checkpoint: _Optional[bool] = ..., wait_for_cosignatures: _Optional[bool] = ...) -> None: ...

class AddedEntry(_message.Message):
    __slots__ = ("index", "leaf_hash", "duplicate", "inclusion_proof")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_PROOF_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf_hash: bytes
    duplicate: bool
    inclusion_proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, index: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., duplicate: _Optional[bool] = ..., inclusion_proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class AddEntriesResponse(_message.Message):
    __slots__ = ("entries", "checkpoint")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AddedEntry]
    checkpoint: SignedCheckpoint
    def __init__(self, entries: _Optional[_Iterable[_Union[AddedEntry, _Mapping]]] = ..., checkpoint: _Optional[_Union[SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCheckpointResponse(_message.Message):
    __slots__ = ("checkpoint", "cosigned")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    COSIGNED_FIELD_NUMBER: _ClassVar[int]
    checkpoint: SignedCheckpoint
    cosigned: SignedCheckpoint
    def __init__(self, checkpoint: _Optional[_Union[SignedCheckpoint, _Mapping]] = ..., cosigned: _Optional[_Union[SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: int
    end: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, entries: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetInclusionProofRequest(_message.Message):
    __slots__ = ("index", "leaf_hash", "tree_size")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    index: int
    leaf_hash: bytes
    tree_size: int
    def __init__(self, index: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofResponse(_message.Message):
    __slots__ = ("proof",)
    PROOF_FIELD_NUMBER: _ClassVar[int]
    proof: InclusionProof
    def __init__(self, proof: _Optional[_Union[InclusionProof, _Mapping]] = ...) -> None: ...

class GetInclusionProofsRequest(_message.Message):
    __slots__ = ("indices", "tree_size")
    INDICES_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    indices: _containers.RepeatedScalarFieldContainer[int]
    tree_size: int
    def __init__(self, indices: _Optional[_Iterable[int]] = ..., tree_size: _Optional[int] = ...) -> None: ...

class GetInclusionProofsResponse(_message.Message):
    __slots__ = ("proofs",)
    PROOFS_FIELD_NUMBER: _ClassVar[int]
    proofs: _containers.RepeatedCompositeFieldContainer[InclusionProof]
    def __init__(self, proofs: _Optional[_Iterable[_Union[InclusionProof, _Mapping]]] = ...) -> None: ...

class GetConsistencyProofRequest(_message.Message):
    __slots__ = ("old_size", "new_size")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ...) -> None: ...

class GetConsistencyProofResponse(_message.Message):
    __slots__ = ("old_size", "new_size", "hashes")
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    NEW_SIZE_FIELD_NUMBER: _ClassVar[int]
    HASHES_FIELD_NUMBER: _ClassVar[int]
    old_size: int
    new_size: int
    hashes: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, old_size: _Optional[int] = ..., new_size: _Optional[int] = ..., hashes: _Optional[_Iterable[bytes]] = ...) -> None: ...

class WatchCheckpointsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchCheckpointsResponse(_message.Message):
    __slots__ = ("checkpoint",)
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    checkpoint: SignedCheckpoint
    def __init__(self, checkpoint: _Optional[_Union[SignedCheckpoint, _Mapping]] = ...) -> None: ...

class GetLogInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetLogInfoResponse(_message.Message):
    __slots__ = ("origin", "verifier_key", "max_entry_bytes", "max_batch_entries", "max_range", "max_proofs_per_call")
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    MAX_ENTRY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MAX_RANGE_FIELD_NUMBER: _ClassVar[int]
    MAX_PROOFS_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    origin: str
    verifier_key: str
    max_entry_bytes: int
    max_batch_entries: int
    max_range: int
    max_proofs_per_call: int
    def __init__(self, origin: _Optional[str] = ..., verifier_key: _Optional[str] = ..., max_entry_bytes: _Optional[int] = ..., max_batch_entries: _Optional[int] = ..., max_range: _Optional[int] = ..., max_proofs_per_call: _Optional[int] = ...) -> None: ...
