"""An in-memory registry aux store as registration leaves it for published fingerprints, for the
server-side match benchmark: ``rP`` postings and ``rG`` signatures for every fingerprint, ``rF``
bytes for the ones given, and one signed checkpoint record served at every log index."""

from __future__ import annotations

from collections.abc import Sequence

import blake3

from client.core.descent.fingerprint import Fingerprint
from client.core.records import FingerprintCommitment, ModelCheckpoint, Record, RecordSigner, sign_record
from ledger.registry import keys as K
from ledger.registry import postings
from ledger.registry.fingerprints import encode_signatures


class SyntheticStore:
    def __init__(self) -> None:
        self.aux: dict[bytes, bytes] = {}
        self._signer = RecordSigner.generate()
        self._entries: dict[int, bytes] = {}
        self._sorted: list[tuple[bytes, bytes]] | None = None

    def publish(self, index: int, digest: bytes, signatures: bytes, data: bytes | None = None) -> None:
        self.aux[K.FINGERPRINT_SIGS + digest] = signatures
        self.aux[postings.posting(K.PUBLISHED_POSTS, index)] = digest
        if data is not None:
            self.aux[K.FINGERPRINT + digest] = data
        self._sorted = None

    def publish_fingerprint(self, index: int, fp: Fingerprint) -> None:
        data = fp.encode()
        digest = blake3.blake3(data).digest()
        self.publish(index, digest, encode_signatures(fp), data)
        st = ModelCheckpoint("ancestor", "", index, bytes(32), fingerprint=FingerprintCommitment(digest, True))
        self._entries[index] = sign_record(Record(st, self._signer.public_key, 0), self._signer).entry

    def get_aux_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self.aux.get(k) for k in keys]

    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]:
        if self._sorted is None:
            self._sorted = sorted(self.aux.items())
        out = [kv for kv in self._sorted if kv[0].startswith(prefix)]
        return out[:limit] if limit else out

    def entries(self, start: int, end: int) -> list[bytes]:
        return [self._entries[i] for i in range(start, end)]
