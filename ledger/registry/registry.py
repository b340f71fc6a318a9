"""The registry personality on top of a :class:`ledger.log.Log`: prepare, submit, query.

Construct a :class:`Registry`, open the log with ``hook=registry.hook``, then
:meth:`Registry.attach` the log. Submission runs the expensive checks (record
format, Ed25519 signature, manifest parsing and digest) in a small thread pool,
a large batch's signatures on worker processes (:mod:`ledger.registry.verifier`),
and only then hands the entries to the sequencer, whose hook does the cheap
reference and identity checks in log order. A record refused at either stage
never reaches the log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from client.core.records import Attestation, Claim, Dataset, ModelCheckpoint, SignedRecord, parse_entry
from client.core.records.signing import signature_error, verify_signature
from client.errors import InvalidInputError, ProvenanceError, UnavailableError
from ledger.errors import CorruptStorageError
from ledger.registry import fingerprints, oms
from ledger.registry import keys as K
from ledger.registry.hook import Prepared, RegistryHook
from ledger.registry.manifests import ManifestReader
from ledger.registry.policy import Policy
from ledger.registry.queries import RegistryReader
from ledger.registry.verifier import SignatureChecker

log = logging.getLogger(__name__)


class _View(Protocol):
    index: int

    def get(self, key: bytes) -> bytes | None: ...
    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...


class _Log(Protocol):
    def submit(self, entries: Sequence[bytes]) -> Future[Any]: ...
    def get_aux_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...
    def scan_aux(self, prefix: bytes, limit: int | None = None) -> list[tuple[bytes, bytes]]: ...
    def entries(self, start: int, end: int) -> Sequence[bytes]: ...


class Hook(RegistryHook):
    """The :class:`ledger.log.IntegrationHook` adapter: the log's view carries the index being admitted."""

    def admit(self, entry: bytes, view: _View) -> list[tuple[bytes, bytes]]:
        return self.admit_at(entry, view.index, view.get, view.get_many, getattr(view, "blind", None))


@dataclass(frozen=True, slots=True)
class Submission:
    """One record to register: its exact entry bytes and, for datasets and checkpoints, its manifest."""

    entry: bytes
    manifest: bytes | None = None
    fingerprint: bytes | None = None  # a checkpoint's published fingerprint (canonical bytes)


def _chain(src: Future[list[Any]], dst: Future[list[Any]]) -> None:
    exc = src.exception()
    if exc is not None:
        dst.set_exception(exc)
    else:
        dst.set_result(src.result())


class Registry:
    """See the module docstring."""

    def __init__(self, policy: Policy, manifest_reader: ManifestReader, workers: int = 2,
                 verify_processes: int = 0) -> None:
        self.policy = policy
        self.hook = Hook(policy)
        self._manifests = manifest_reader
        self._signatures = SignatureChecker(verify_processes)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="registry-prepare")
        self._log: _Log | None = None
        self._reader: RegistryReader | None = None

    def attach(self, log: _Log) -> None:
        """Serve queries from ``log``. Raises :class:`CorruptStorageError` for a store indexed by an older layout."""
        first = log.scan_aux(K.MANIFEST_POSTS, 1)
        if first and len(first[0][0]) != len(K.MANIFEST_POSTS) + 32 + 8:
            # Before 50f1d2d posting lists were read-modify-write heads (``rm digest``, 34 bytes);
            # read as one-key postings they would answer with wrong indices.
            raise CorruptStorageError("the store's registry indexes use the first layout (posting-list heads); "
                                      "this code reads one key per posting: rebuild the indexes from the entries")
        marked = log.get_aux_many([K.IDENTITY_POSTS_COMPLETE])[0] is not None
        self.hook.identity_postings_complete = marked or not log.scan_aux(K.NAME, 1)
        if not self.hook.identity_postings_complete:
            # (``log`` is the parameter here, not this module's logger)
            logging.getLogger(__name__).warning(
                "this store's identity events were indexed before key-status notes: its bundles do not prove "
                "key status (verifiers refuse them by default) until the indexes are rebuilt")
        self._log = log
        self._reader = RegistryReader(log)

    @property
    def log(self) -> _Log:
        if self._log is None:
            raise UnavailableError("registry is not attached to a log")
        return self._log

    @property
    def reader(self) -> RegistryReader:
        if self._reader is None:
            raise UnavailableError("registry is not attached to a log")
        return self._reader

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._signatures.close()

    def prepare(self, sub: Submission) -> Prepared:
        """Check one record's format, signature and manifest. Raises the refusal."""
        signed = parse_entry(sub.entry)
        verify_signature(signed.record.signer, signed.body, signed.signature)
        return self._finish(sub, signed)

    def _finish(self, sub: Submission, signed: SignedRecord) -> Prepared:
        """The checks after the record signature: a rotation's endorsement, the manifest, the fingerprint."""
        signed.verify_endorsement()
        s = signed.record.statement
        manifest = None
        if sub.manifest is not None:
            if not isinstance(s, Dataset | ModelCheckpoint):
                raise InvalidInputError(f"a {signed.record.kind.label} record has no manifest")
            manifest = self._manifests(sub.manifest)
            if manifest.digest != s.manifest:
                raise InvalidInputError(
                    f"the manifest sent has digest {manifest.digest.hex()}, the record names {s.manifest.hex()}"
                )
        summary = oms.prepare(s, self.reader) if isinstance(s, Attestation) and s.claim is Claim.OMS_SIGNATURE else None
        return Prepared(signed, manifest, fingerprints.prepare(s, sub.fingerprint), summary)

    def _prepare_chunk(self, subs: Sequence[Submission]) -> list[Prepared | ProvenanceError]:
        """:meth:`prepare` each (a refusal in place of its record), the signatures checked together
        (on worker processes for a large batch, see :mod:`ledger.registry.verifier`)."""
        parsed: list[SignedRecord | ProvenanceError] = []
        for sub in subs:
            try:
                parsed.append(parse_entry(sub.entry))
            except ProvenanceError as err:
                parsed.append(err)
        signed = [p for p in parsed if isinstance(p, SignedRecord)]
        valid = iter(self._signatures.check([(p.record.signer, p.body, p.signature) for p in signed]))
        out: list[Prepared | ProvenanceError] = []
        for sub, p in zip(subs, parsed, strict=True):
            if isinstance(p, ProvenanceError):
                out.append(p)
            elif not next(valid):
                out.append(signature_error(p.record.signer))
            else:
                try:
                    out.append(self._finish(sub, p))
                except ProvenanceError as err:
                    out.append(err)
        return out

    def submit(self, subs: Sequence[Submission]) -> Future[list[Any]]:
        """Register records without blocking. The future's list has, per submission in order, the log's
        ``Appended`` or the :class:`ProvenanceError` that refused it (refused records never touch the log).

        The batch is prepared on one pool thread and reaches the sequencer in order, so a record may
        reference one earlier in the same batch. Concurrent calls are prepared in parallel.
        """
        out: Future[list[Any]] = Future()

        def task() -> None:
            try:
                inner = self.submit_prepared(self._prepare_chunk(subs))
            except BaseException as err:  # delivered to the caller through the future
                out.set_exception(err)
                return
            inner.add_done_callback(lambda f: _chain(f, out))

        self._pool.submit(task)
        return out

    def submit_prepared(self, prepared: Sequence[Prepared | ProvenanceError]) -> Future[list[Any]]:
        ok = [p for p in prepared if isinstance(p, Prepared)]
        out: Future[list[Any]] = Future()
        if not ok:
            out.set_result(list(prepared))
            return out
        for p in ok:
            self.hook.stage(p)
        try:
            inner = self.log.submit([p.signed.entry for p in ok])
        except BaseException:  # refused up front (over a limit, pushback, draining): nothing was staged for long
            for p in ok:
                self.hook.unstage(p.signed.entry)
            raise

        def done(f: Future[Any]) -> None:
            for p in ok:
                self.hook.unstage(p.signed.entry)
            exc = f.exception()
            if exc is not None:
                out.set_exception(exc)
                return
            results = iter(f.result())
            out.set_result([next(results) if isinstance(p, Prepared) else p for p in prepared])

        inner.add_done_callback(done)
        return out

    def register(self, subs: Sequence[Submission], timeout: float | None = 30.0) -> list[Any]:
        """Blocking :meth:`submit`."""
        return self.submit(subs).result(timeout)
