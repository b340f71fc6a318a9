"""``provenance.ledger.v1.LogService``: the log's handlers on ``grpc.aio`` (RFC 9162 section 4 reads).

Thin: take the parsed request, call the log, build the response. Requests arrive parsed, and
errors leave, through the one wrapper in ``ledger/grpc/handlers.py``. Read handlers call the log
directly on the event loop (its reads are short and cached); writes await the sequencer's
futures, so no thread is parked per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.errors import InvalidInputError, OutOfRangeError, ProvenanceError, UnavailableError
from ledger.app.config import ServerConfig
from ledger.errors import WaitTimeoutError
from ledger.grpc.bridge import LoopBridge
from ledger.grpc.handlers import Method, ServerStream, Unary
from ledger.log.progress import ProgressWatch, track

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LogService"].full_name

_log = logging.getLogger(__name__)


class CheckpointBody(Protocol):
    @property
    def size(self) -> int: ...


class SignedCheckpointLike(Protocol):
    """What the server reads from a signed checkpoint: the note bytes and the tree size."""

    @property
    def checkpoint(self) -> CheckpointBody: ...

    @property
    def note(self) -> bytes: ...


class CosignedSource(Protocol):
    """Witness cosigning beside the log (``ledger.log.witnessing.Witnessing``), when serve has a witness policy."""

    def cosigned(self) -> SignedCheckpointLike | None: ...
    def wait_for_cosigned(self, size: int) -> Future[Any]: ...


class LogLike(Protocol):
    """The part of ``ledger.log.Log`` the server uses (a fake in tests, the real log in production).

    Reads raise :class:`~client.errors.ProvenanceError` subclasses for a request they cannot
    answer (``index_of`` NotFoundError for a leaf hash it does not hold; proofs OutOfRangeError for
    a size beyond the tree); :meth:`submit` resolves to one result per entry, in order: the entry's
    index, leaf hash and whether it was a duplicate, or the error that refused it.
    """

    def submit(self, entries: Sequence[bytes]) -> Future[Any]: ...
    def latest(self) -> SignedCheckpointLike: ...
    def wait_for_size(self, size: int, timeout: float) -> Future[Any]: ...
    def add_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]: ...
    def entries(self, start: int, end: int) -> Sequence[bytes]: ...
    def index_of(self, leaf_hash: bytes) -> int: ...
    def inclusion_proof(self, index: int, tree_size: int) -> Sequence[bytes]: ...
    def inclusion_proofs(self, indices: Sequence[int], tree_size: int) -> Sequence[Sequence[bytes]]: ...
    def consistency_proof(self, size1: int, size2: int) -> Sequence[bytes]: ...
    def health(self) -> bool: ...

    @property
    def size(self) -> int: ...


class LogService:
    """The handlers of ``LogService``: host it on a :class:`~ledger.grpc.server.LedgerServer`."""

    name = SERVICE_NAME

    def __init__(self, log: LogLike, config: ServerConfig, verifier_key: str,
                 watch: ProgressWatch | None = None, witnessing: CosignedSource | None = None) -> None:
        """``watch`` counts this service's writes (the server's health reads it); None: a fresh one.
        ``witnessing``: the cosigned checkpoint for GetCheckpoint and AddEntries' wait_for_cosignatures."""
        self._log = log
        self._witnessing = witnessing
        self._watch = watch if watch is not None else ProgressWatch()
        self._config = config
        self._info = pb.GetLogInfoResponse(
            origin=config.origin,
            verifier_key=verifier_key,
            max_entry_bytes=config.max_entry_bytes,
            max_batch_entries=config.max_batch_entries,
            max_range=config.max_range,
            max_proofs_per_call=config.max_proofs_per_call,
        )
        self._draining = False
        self._closing = asyncio.Event()
        self._watchers: set[asyncio.Event] = set()
        self._loop_bridge: LoopBridge | None = None

    def methods(self) -> Mapping[str, Method]:
        return {
            "AddEntries": Unary(pb.AddEntriesRequest, self.add_entries),
            "GetCheckpoint": Unary(pb.GetCheckpointRequest, self.get_checkpoint),
            "GetEntries": Unary(pb.GetEntriesRequest, self.get_entries),
            "GetInclusionProof": Unary(pb.GetInclusionProofRequest, self.get_inclusion_proof),
            "GetInclusionProofs": Unary(pb.GetInclusionProofsRequest, self.get_inclusion_proofs),
            "GetConsistencyProof": Unary(pb.GetConsistencyProofRequest, self.get_consistency_proof),
            "WatchCheckpoints": ServerStream(pb.WatchCheckpointsRequest, self.watch_checkpoints),
            "GetLogInfo": Unary(pb.GetLogInfoRequest, self.get_log_info),
        }

    def _bridge(self) -> LoopBridge:
        """The bridge of the running loop (created on first use: the service is built before the loop runs)."""
        loop = asyncio.get_running_loop()
        bridge = self._loop_bridge
        if bridge is None or bridge.loop is not loop:
            bridge = self._loop_bridge = LoopBridge(loop)
        return bridge

    def start_draining(self) -> None:
        """Refuse new writes (UNAVAILABLE) and end every watch stream."""
        self._draining = True
        self._closing.set()
        for event in self._watchers:
            event.set()

    # -- handlers -----------------------------------------------------------------------------------

    async def add_entries(self, req: pb.AddEntriesRequest) -> pb.AddEntriesResponse:
        if self._draining:
            raise UnavailableError("the server is draining; retry against another instance")
        entries = list(req.entries)
        if req.wait_for_cosignatures and self._witnessing is None:
            raise InvalidInputError("wait_for_cosignatures: this log has no witness policy (serve --witness-policy)")
        results = await self._bridge().wait(track(self._watch, self._log.submit, entries))
        for result in results:
            if isinstance(result, ProvenanceError):
                # Entries of the batch that did land are durable; resubmitting is safe (duplicates keep their index).
                raise result
        resp = pb.AddEntriesResponse()
        add = resp.entries.add
        for a in results:
            add(index=a.index, leaf_hash=a.leaf_hash, duplicate=a.duplicate)
        if _log.isEnabledFor(logging.DEBUG):
            for a in results:
                _log.debug("entry added", extra={"index": a.index, "record_id": a.leaf_hash.hex(),
                                                 "duplicate": a.duplicate})
        if req.wait_for_checkpoint and results:
            needed = max(a.index for a in results) + 1
            signed = self._log.latest()  # the sequencer signs before it answers: usually covers already
            if signed.checkpoint.size < needed:
                signed = await self._bridge().wait(
                    self._log.wait_for_size(needed, self._config.checkpoint_wait_seconds)
                )
            proofs = self._log.inclusion_proofs([a.index for a in results], signed.checkpoint.size)
            for added, proof in zip(resp.entries, proofs, strict=True):
                added.inclusion_proof.extend(proof)
            resp.checkpoint.note = signed.note
        if req.wait_for_cosignatures and results:
            await self._wait_cosigned(resp, max(a.index for a in results) + 1)
        return resp

    async def _wait_cosigned(self, resp: pb.AddEntriesResponse, needed: int) -> None:
        """Fill ``resp`` with the first quorum-cosigned checkpoint of at least ``needed`` leaves and the proofs."""
        assert self._witnessing is not None
        fut = self._witnessing.wait_for_cosigned(needed)
        try:
            # The bridge wakes the loop once for all the writers one quorum resolves (ledger/grpc/bridge.py).
            signed = await asyncio.wait_for(self._bridge().wait(fut), self._config.checkpoint_wait_seconds)
        except TimeoutError:
            fut.cancel()
            raise WaitTimeoutError(f"no checkpoint of size >= {needed} met the witness quorum within "
                                   f"{self._config.checkpoint_wait_seconds} s (the entries are durable)") from None
        proofs = self._log.inclusion_proofs([a.index for a in resp.entries], signed.checkpoint.size)
        for added, proof in zip(resp.entries, proofs, strict=True):
            del added.inclusion_proof[:]
            added.inclusion_proof.extend(proof)
        resp.checkpoint.note = signed.note

    async def get_checkpoint(self, req: pb.GetCheckpointRequest) -> pb.GetCheckpointResponse:
        resp = pb.GetCheckpointResponse(checkpoint=pb.SignedCheckpoint(note=self._log.latest().note))
        cosigned = self._witnessing.cosigned() if self._witnessing is not None else None
        if cosigned is not None:
            resp.cosigned.note = cosigned.note
        return resp

    async def get_log_info(self, req: pb.GetLogInfoRequest) -> pb.GetLogInfoResponse:
        return self._info

    async def get_entries(self, req: pb.GetEntriesRequest) -> pb.GetEntriesResponse:
        start, end = req.start, req.end
        if end <= start:
            raise InvalidInputError(f"empty or reversed range [{start}, {end})")
        size = self._log.size
        if start >= size:
            raise OutOfRangeError(f"start {start} is beyond the tree size {size}")
        entries = self._log.entries(start, min(end, start + self._config.max_range, size))
        # Stay under the send limit: cut the response short; the caller asks again.
        budget = self._config.max_send_message_bytes - 1024
        total = 0
        for n, entry in enumerate(entries):
            total += len(entry) + 8
            if total > budget and n:
                entries = entries[:n]
                break
        return pb.GetEntriesResponse(entries=entries)

    async def get_inclusion_proof(self, req: pb.GetInclusionProofRequest) -> pb.GetInclusionProofResponse:
        log = self._log
        which = req.WhichOneof("leaf")
        if which == "leaf_hash":
            leaf = req.leaf_hash
            if len(leaf) != 32:
                raise InvalidInputError(f"leaf_hash is {len(leaf)} bytes, want 32")
            index = log.index_of(leaf)  # NotFoundError when no entry has it
        elif which == "index":
            index, leaf = req.index, b""
        else:
            raise InvalidInputError("give index or leaf_hash")
        size = req.tree_size or log.size
        resp = pb.GetInclusionProofResponse()
        out = resp.proof  # filled in place: constructing nested messages by keyword copies them
        out.hashes.extend(log.inclusion_proof(index, size))
        out.index, out.tree_size, out.leaf_hash = index, size, leaf
        return resp

    async def get_inclusion_proofs(self, req: pb.GetInclusionProofsRequest) -> pb.GetInclusionProofsResponse:
        indices = req.indices
        if not indices:
            raise InvalidInputError("no indices given")
        if len(indices) > self._config.max_proofs_per_call:
            raise InvalidInputError(f"{len(indices)} indices, more than the limit {self._config.max_proofs_per_call}")
        size = req.tree_size or self._log.size
        proofs = self._log.inclusion_proofs(indices, size)
        resp = pb.GetInclusionProofsResponse()
        add = resp.proofs.add  # several times faster than building each message and copying it in
        for i, p in zip(indices, proofs, strict=True):
            add(index=i, tree_size=size, hashes=p)
        return resp

    async def get_consistency_proof(self, req: pb.GetConsistencyProofRequest) -> pb.GetConsistencyProofResponse:
        size = self._log.size
        new = req.new_size or size
        if req.old_size > size:
            raise OutOfRangeError(f"old size {req.old_size} is beyond the tree size {size}")
        proof = self._log.consistency_proof(req.old_size, new)
        return pb.GetConsistencyProofResponse(old_size=req.old_size, new_size=new, hashes=proof)

    async def watch_checkpoints(self, req: pb.WatchCheckpointsRequest) -> AsyncIterator[pb.WatchCheckpointsResponse]:
        loop = asyncio.get_running_loop()
        wake = asyncio.Event()

        def on_checkpoint(_: object) -> None:  # called from the sequencer's thread
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(wake.set)

        self._watchers.add(wake)
        unsubscribe = self._log.add_listener(on_checkpoint)
        # Server-side cap on how long one stream holds a slot; the client reopens it (docs/operations.md).
        ends = loop.time() + self._config.max_stream_seconds
        try:
            sent = -1
            while not self._closing.is_set():
                signed = self._log.latest()
                if signed.checkpoint.size > sent:
                    sent = signed.checkpoint.size
                    yield pb.WatchCheckpointsResponse(checkpoint=pb.SignedCheckpoint(note=signed.note))
                left = ends - loop.time()
                if left <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), left)
                wake.clear()
        finally:
            unsubscribe()
            self._watchers.discard(wake)
