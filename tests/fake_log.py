"""A small in-memory stand-in for ``ledger.log.Log``.

Used to test the gRPC edge (error mapping, request parsing, handler wiring) without RocksDB or a
subprocess: serve it with ``tests/inproc.serving(log)``; the process-level tests use the real log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from client.core import merkle
from client.core.checkpoint import Checkpoint, SignedCheckpoint, sign_checkpoint
from client.core.note import Signer
from client.errors import InvalidInputError, NotFoundError, OutOfRangeError, ProvenanceError


@dataclass(frozen=True)
class Appended:
    index: int
    leaf_hash: bytes
    duplicate: bool


class FakeLog:
    def __init__(self, origin: str = "example.com/fake", max_entry_bytes: int = 1024, max_batch: int = 16) -> None:
        self.signer = Signer.generate(origin)
        self.origin = origin
        self.max_entry_bytes = max_entry_bytes
        self.max_batch = max_batch
        self._entries: list[bytes] = []
        self._hashes: list[bytes] = []
        self._listeners: list[Callable[[Any], None]] = []
        self.healthy = True
        self.fail_next: ProvenanceError | None = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return len(self._entries)

    def submit(self, entries: Sequence[bytes]) -> Future[list[Appended | ProvenanceError]]:
        if not entries:
            raise InvalidInputError("empty batch")
        if len(entries) > self.max_batch:
            raise InvalidInputError(f"batch of {len(entries)} entries is over the limit {self.max_batch}")
        for e in entries:
            if len(e) > self.max_entry_bytes:
                raise InvalidInputError(f"entry of {len(e)} bytes is over the limit {self.max_entry_bytes}")
        fut: Future[list[Appended | ProvenanceError]] = Future()
        if self.fail_next is not None:
            err, self.fail_next = self.fail_next, None
            fut.set_result([err for _ in entries])
            return fut
        out: list[Appended | ProvenanceError] = []
        with self._lock:
            for e in entries:
                h = merkle.leaf_hash(e)
                if h in self._hashes:
                    out.append(Appended(self._hashes.index(h), h, True))
                    continue
                self._entries.append(e)
                self._hashes.append(h)
                out.append(Appended(len(self._entries) - 1, h, False))
        signed = self.latest()
        for fn in list(self._listeners):
            fn(signed)
        fut.set_result(out)
        return fut

    def latest(self) -> SignedCheckpoint:
        cp = Checkpoint(self.origin, self.size, merkle.root_from_leaf_hashes(self._hashes))
        return SignedCheckpoint(cp, sign_checkpoint(cp, self.signer))

    def wait_for_size(self, size: int, timeout: float | None) -> Future[SignedCheckpoint]:
        fut: Future[SignedCheckpoint] = Future()
        fut.set_result(self.latest())
        return fut

    def add_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn)

    def _check_size(self, size: int) -> None:
        if size > self.size:
            raise OutOfRangeError(f"tree size {size} is beyond the log's size {self.size}")

    def entries(self, start: int, end: int) -> list[bytes]:
        if start >= self.size:
            raise OutOfRangeError(f"start {start} is beyond the log's size {self.size}")
        return self._entries[start:end]

    def index_of(self, leaf_hash: bytes) -> int:
        if leaf_hash not in self._hashes:
            raise NotFoundError(f"no entry with leaf hash {leaf_hash.hex()}")
        return self._hashes.index(leaf_hash)

    def _node(self, node: merkle.Node) -> bytes:
        return merkle.root_from_leaf_hashes(self._hashes[node.begin : node.end])

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        self._check_size(tree_size)
        if index >= tree_size:
            raise OutOfRangeError(f"index {index} is outside tree size {tree_size}")
        plan = merkle.inclusion_plan(index, tree_size)
        return merkle.assemble(plan, {n: self._node(n) for n in merkle.plan_nodes(plan)})

    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> list[list[bytes]]:
        return [self.inclusion_proof(i, tree_size) for i in indices]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        self._check_size(size2)
        if not 0 < size1 <= size2:
            raise InvalidInputError(f"no consistency proof from {size1} to {size2}")
        plan = merkle.consistency_plan(size1, size2)
        return merkle.assemble(plan, {n: self._node(n) for n in merkle.plan_nodes(plan)})

    def root_at(self, size: int) -> bytes:
        return merkle.root_from_leaf_hashes(self._hashes[:size])

    def health(self) -> bool:
        return self.healthy

    def get(self, index: int) -> bytes:
        if index >= self.size:
            raise NotFoundError(str(index))
        return self._entries[index]
