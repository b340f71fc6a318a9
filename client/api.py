"""Python API for registering datasets, checkpoints and claims, e.g. from a training loop.

Example::

    from client.api import Registrar
    from client.core.records import RecordSigner

    signer = RecordSigner.from_pem(open("lab.key", "rb").read())
    with Registrar(signer, server="127.0.0.1:50051") as reg:
        base = reg.register_dataset("data/web", name="web", version="2024-06")
        for step in range(...):
            train(); save("ckpt/step-%d" % step)
            # Returns at once: hashing and registration happen on a background thread.
            fut = reg.register_checkpoint_async("ckpt/step-%d" % step, model="m", step=step,
                                                datasets=[(base.id, "pretraining")])
        reg.wait()   # every queued checkpoint is registered (or its error is raised)

Every record is signed here, with the caller's key; the server checks it again. A manifest over
:data:`STAGE_ABOVE` bytes (or one the server refuses as too large for a Register call) is uploaded in
parts first and its record registered without it, so manifest size never meets the message limit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import blake3

from client.core.records import (
    Attestation,
    Claim,
    Dataset,
    DatasetParent,
    DatasetRelation,
    DatasetRole,
    Digest,
    Dispute,
    FingerprintCommitment,
    Identity,
    IdentityEvent,
    ModelCheckpoint,
    ModelParent,
    ModelRelation,
    Record,
    RecordSigner,
    SignedRecord,
    Statement,
    TrainingData,
    endorse_rotation,
    sign_record,
)
from client.core.records.display import check_display_names
from client.errors import InvalidInputError, ResourceExhaustedError
from client.remote import DEFAULT_SERVER
from client.remote.registry import Registered, RegistryClient, transfer_timeout

log = logging.getLogger(__name__)

STAGE_ABOVE = 8 << 20
"""Manifests larger than this (bytes) are staged with ``UploadManifest`` before their ``Register``."""


FINGERPRINT_MODES = ("auto", "publish", "commit", "none")
"""How a checkpoint registration carries its model fingerprint (docs/registry.md section 7): ``publish``
(the bytes go to the ledger, which stores them and lets ``match`` test suspects against them),
``commit`` (only their BLAKE3 digest is logged; keep the bytes to reveal later), ``none``, or ``auto``
(the default: ``publish`` when the path holds a model the readers recognise, else ``none``)."""


@dataclass(frozen=True, slots=True)
class ModelRegistration:
    """A registered checkpoint and the fingerprint it carries (None when it carries none)."""

    registered: Registered
    fingerprint: bytes | None
    commitment: FingerprintCommitment | None


def fingerprint_model(path: str | Path, *, required: bool = True) -> bytes | None:
    """Canonical fingerprint bytes of the model at ``path`` (docs/descent.md section 4).

    With ``required=False``, a path that holds no model the readers recognise gives None instead of
    the reader's FormatError (a malformed model file still raises).
    """
    from client.core.descent.fingerprint import build
    from client.formats import detect_format, open_model

    p = Path(path)
    if not required:
        try:
            detect_format(p)
        except InvalidInputError:
            return None
    return build(open_model(p).tensors(), source=str(p), reread=lambda: open_model(p).tensors()).encode()


def hash_manifest(path: str | Path, threads: int | None = None) -> tuple[bytes, bytes, int, str]:
    """Hash ``path``: (canonical manifest bytes, manifest digest, total size, tensor format or "")."""
    from client.core.manifest import encode, manifest_digest
    from client.hashing import HashConfig, hash_path

    config = HashConfig() if threads is None else HashConfig(threads=threads)
    m = hash_path(str(path), config)
    formats = sorted({f.tensor_format for f in m.files if f.tensor_format})
    return encode(m), manifest_digest(m), m.total_size, ",".join(formats)


class Registrar:
    """Signs records with one key and registers them on a ledger. Thread-safe; close when done."""

    def __init__(self, signer: RecordSigner, server: str = DEFAULT_SERVER, *, hash_threads: int | None = None,
                 client: RegistryClient | None = None) -> None:
        self.signer = signer
        self.client = client or RegistryClient(server)
        self._hash_threads = hash_threads
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registrar")
        self._pending: list[Future[Registered]] = []

    def __enter__(self) -> Registrar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for background registrations, then close the connection."""
        self._background.shutdown(wait=True)
        self.client.close()

    def sign(self, statement: Statement) -> SignedRecord:
        """Sign ``statement`` now. Refuses (UnsafeTextError) a name or version the registry would refuse:
        one with control or bidi characters, or not NFC (``client/core/records/display.py``)."""
        check_display_names(statement)
        return sign_record(Record(statement, self.signer.public_key, int(time.time())), self.signer)

    def submit(self, signed: SignedRecord, manifest: bytes | None = None, fingerprint: bytes | None = None
               ) -> Registered:
        """Register ``signed`` with its manifest: in the Register call, or staged first when large.

        A manifest over :data:`STAGE_ABOVE`, or one the server refuses as too large for one message
        (RESOURCE_EXHAUSTED), is uploaded in parts and the record registered without it.
        """
        if manifest is not None and len(manifest) > STAGE_ABOVE:
            got = self._submit_staged(signed, manifest, fingerprint)
        else:
            try:
                (got,) = self.client.register([(signed.entry, manifest)], [fingerprint])
            except ResourceExhaustedError:
                if manifest is None:
                    raise
                log.info("manifest too large for one Register call; uploading it in parts",
                         extra={"record_id": signed.id.hex(), "bytes": len(manifest)})
                got = self._submit_staged(signed, manifest, fingerprint)
        if got.id != signed.id:
            raise InvalidInputError("the server returned another id than the record's")
        log.info("registered record", extra={"record_id": signed.id.hex(), "index": got.index})
        return got

    def _submit_staged(self, signed: SignedRecord, manifest: bytes, fingerprint: bytes | None) -> Registered:
        statement = signed.record.statement
        if not isinstance(statement, Dataset | ModelCheckpoint):
            raise InvalidInputError(f"a {signed.record.kind.label} record has no manifest")
        self.client.upload_manifest(manifest, statement.manifest)
        # The server parses the staged manifest again and indexes its digests: give it time to.
        timeout = transfer_timeout(self.client.timeout, len(manifest))
        (got,) = self.client.register([(signed.entry, None)], [fingerprint], timeout=timeout)
        return got

    # --- identities ---------------------------------------------------------------------------

    def register_identity(self, name: str) -> Registered:
        return self.submit(self.sign(Identity(IdentityEvent.REGISTER, name, self.signer.public_key)))

    def rotate_identity(self, name: str, new: RecordSigner) -> Registered:
        """Sign ``new`` in as ``name``'s key (signed by the current key); later records use ``new``."""
        endorsement = endorse_rotation(new, name, self.signer.public_key)
        got = self.submit(self.sign(Identity(IdentityEvent.ROTATE, name, new.public_key, endorsement)))
        self.signer = new
        return got

    def revoke_identity(self, name: str, key: bytes | None = None) -> Registered:
        """Revoke ``key`` (default: this registrar's own key) under ``name``."""
        return self.submit(self.sign(Identity(IdentityEvent.REVOKE, name, key or self.signer.public_key)))

    # --- datasets and checkpoints ----------------------------------------------------------------

    def dataset_record(self, manifest_digest: bytes, size: int, *, name: str, version: str = "1", license: str = "",
                       sources: Sequence[str] = (), parents: Sequence[tuple[bytes, str]] = ()) -> SignedRecord:
        ps = tuple(DatasetParent(p, DatasetRelation.parse(r)) for p, r in parents)
        return self.sign(Dataset(name, version, manifest_digest, size, license, tuple(sources), ps))

    def register_dataset(self, path: str | Path, **fields: object) -> Registered:
        """Hash ``path`` and register it as a dataset (fields as :meth:`dataset_record`)."""
        encoded, digest, size, _ = hash_manifest(path, self._hash_threads)
        return self.submit(self.dataset_record(digest, size, **fields), encoded)  # type: ignore[arg-type]

    def checkpoint_record(self, manifest_digest: bytes, *, model: str, step: int, run: str = "", format: str = "",
                          parents: Sequence[tuple[bytes, str]] = (), datasets: Sequence[tuple[bytes, str]] = (),
                          config: Digest | None = None, metadata: dict[str, str] | None = None,
                          fingerprint: FingerprintCommitment | None = None) -> SignedRecord:
        ps = tuple(ModelParent(p, ModelRelation.parse(r)) for p, r in parents)
        ds = tuple(TrainingData(d, DatasetRole.parse(r)) for d, r in datasets)
        meta = ModelCheckpoint.sorted_metadata(metadata or {})
        return self.sign(ModelCheckpoint(model, run, step, manifest_digest, format, ds, ps, config, meta, fingerprint))

    def register_model(self, path: str | Path, *, fingerprint: str = "auto", **fields: object) -> ModelRegistration:
        """Hash and fingerprint ``path`` and register it as a checkpoint (fields as :meth:`checkpoint_record`).

        ``fingerprint`` is one of :data:`FINGERPRINT_MODES`. A committed fingerprint's bytes are returned
        and never sent: keep them (e.g. ``provenance fingerprint`` output) to reveal them later.
        """
        if fingerprint not in FINGERPRINT_MODES:
            raise InvalidInputError(f"fingerprint mode {fingerprint!r} is not one of {', '.join(FINGERPRINT_MODES)}")
        encoded, digest, _, fmt = hash_manifest(path, self._hash_threads)
        fields.setdefault("format", fmt)
        fp = None if fingerprint == "none" else fingerprint_model(path, required=fingerprint != "auto")
        commitment = None
        if fp is not None:
            commitment = FingerprintCommitment(blake3.blake3(fp).digest(), published=fingerprint != "commit")
        signed = self.checkpoint_record(digest, fingerprint=commitment, **fields)  # type: ignore[arg-type]
        sent = fp if commitment is not None and commitment.published else None
        return ModelRegistration(self.submit(signed, encoded, sent), fp, commitment)

    def register_checkpoint(self, path: str | Path, **fields: object) -> Registered:
        """:meth:`register_model`, returning only the registration."""
        return self.register_model(path, **fields).registered  # type: ignore[arg-type]

    def register_checkpoint_async(self, path: str | Path, **fields: object) -> Future[Registered]:
        """Queue a checkpoint folder: hashed and registered on a background thread, in order.

        Returns at once; the folder must not change until the future is done.
        """
        fut = self._background.submit(self.register_checkpoint, path, **fields)
        self._pending.append(fut)
        return fut

    def wait(self, timeout: float | None = None) -> list[Registered]:
        """Block until every queued registration is done; raises the first failure."""
        done, self._pending = self._pending, []
        return [f.result(timeout) for f in done]

    # --- claims ----------------------------------------------------------------------------------

    def attest(self, claim: str, subject: bytes, obj: bytes, *, evidence: Digest | None = None,
               summary: str = "") -> Registered:
        return self.submit(self.sign(Attestation(Claim.parse(claim), subject, obj, evidence, summary)))

    def dispute(self, target: bytes, reason: str, *, evidence: Digest | None = None) -> Registered:
        return self.submit(self.sign(Dispute(target, reason, evidence)))
