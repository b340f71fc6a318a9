"""Helpers for registry tests: labs with keys, manifests, an in-process log with the registry hook.

:func:`backend_storage` opens an empty store of a backend in :data:`BACKENDS` (memory, or a
new PostgreSQL schema of the session's cluster, ``tests/pg.py``) for ``open_env(storage=...)``;
fixtures parametrised over :data:`BACKENDS` run the registry's tests on both.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from client.core.manifest.codec import encode
from client.core.manifest.model import FileEntry, Manifest
from client.core.note import Signer
from client.core.records import (
    Dataset,
    DatasetParent,
    DatasetRelation,
    DatasetRole,
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
    sign_record,
)
from ledger.log import Log, LogConfig
from ledger.registry.manifests import read_manifest
from ledger.registry.policy import Policy
from ledger.registry.registry import Registry, Submission
from ledger.storage import Storage
from ledger.storage.memory import MemoryStorage

CHUNK = 1024
BACKENDS = ("memory", "postgresql")


@contextmanager
def backend_storage(backend: str) -> Iterator[Storage]:
    """An empty store of ``backend`` (PostgreSQL: a new schema of the session's test database)."""
    if backend == "memory":
        yield MemoryStorage()
        return
    from ledger.storage.postgres import PostgresStorage
    from tests.pg import schema

    with schema() as dsn:
        storage = PostgresStorage.open(dsn)
        try:
            yield storage
        finally:
            storage.close()


def make_manifest(seed: str, chunks: int = 3) -> tuple[bytes, bytes]:
    """A one-file manifest with ``chunks`` distinct chunk digests. Returns (encoded, digest)."""
    ds = [hashlib.blake2s(f"{seed}/{i}".encode()).digest() for i in range(chunks)]
    whole = hashlib.blake2s(seed.encode()).digest() if chunks > 1 else ds[0]
    m = Manifest(CHUNK, (FileEntry("data.bin", CHUNK * chunks, whole, tuple(ds)),))
    encoded = encode(m)
    return encoded, read_manifest(encoded).digest


@dataclass
class Lab:
    name: str
    signer: RecordSigner = field(default_factory=RecordSigner.generate)
    clock: int = 1_700_000_000

    def sign(self, statement: Statement, signer: RecordSigner | None = None) -> SignedRecord:
        s = signer or self.signer
        self.clock += 1
        return sign_record(Record(statement, s.public_key, self.clock), s)

    def register(self) -> Submission:
        return Submission(self.sign(Identity(IdentityEvent.REGISTER, self.name, self.signer.public_key)).entry)

    def dataset(self, name: str, parents: tuple[tuple[bytes, str], ...] = (), seed: str | None = None,
                version: str = "1") -> tuple[Submission, SignedRecord]:
        encoded, digest = make_manifest(seed or f"{self.name}/{name}/{version}")
        ps = tuple(DatasetParent(p, DatasetRelation.parse(r)) for p, r in parents)
        signed = self.sign(Dataset(name, version, digest, 3 * CHUNK, "CC-BY-4.0", ("test",), ps))
        return Submission(signed.entry, encoded), signed

    def checkpoint(self, model: str, step: int, parents: tuple[tuple[bytes, str], ...] = (),
                   datasets: tuple[tuple[bytes, str], ...] = (), seed: str | None = None
                   ) -> tuple[Submission, SignedRecord]:
        encoded, digest = make_manifest(seed or f"{self.name}/{model}/{step}")
        ps = tuple(ModelParent(p, ModelRelation.parse(r)) for p, r in parents)
        ds = tuple(TrainingData(d, DatasetRole.parse(r)) for d, r in datasets)
        signed = self.sign(ModelCheckpoint(model, "", step, digest, "safetensors", ds, ps))
        return Submission(signed.entry, encoded), signed


@dataclass
class Env:
    registry: Registry
    log: Log
    storage: Storage
    log_signer: Signer

    @property
    def log_key(self) -> str:
        return self.log_signer.verifier().text()

    def close(self) -> None:
        self.log.close()
        self.registry.close()


def open_env(policy: Policy | None = None, verify_processes: int = 0, storage: Storage | None = None) -> Env:
    storage = storage if storage is not None else MemoryStorage()
    registry = Registry(policy or Policy(), read_manifest, verify_processes=verify_processes)
    signer = Signer.generate("example.com/registry-test")
    log = Log.open(storage, signer, LogConfig("example.com/registry-test"), hook=registry.hook)
    registry.attach(log)
    return Env(registry, log, storage, signer)


def story(env: Env) -> dict[str, SignedRecord]:
    """Two labs, a dataset, a base checkpoint, a fine-tuned child and a quantized grandchild."""
    a, b = Lab("lab-a"), Lab("lab-b")
    out = env.registry.register([a.register(), b.register()])
    assert all(not isinstance(r, Exception) for r in out), out
    ds_sub, ds = a.dataset("web")
    base_sub, base = a.checkpoint("base", 1000, datasets=((ds.id, "pretraining"),))
    ft_sub, ft = b.checkpoint("chat", 10, parents=((base.id, "fine-tune"),))
    q_sub, q = b.checkpoint("chat-q4", 10, parents=((ft.id, "quantization"),))
    out = env.registry.register([ds_sub, base_sub, ft_sub, q_sub])
    assert all(not isinstance(r, Exception) for r in out), out
    return {"dataset": ds, "base": base, "child": ft, "grandchild": q}
