"""Fuzz the gRPC surface of a real server: random and mutated request bytes, oversized messages.

Every method of LogService (and of RegistryService and the health service, when served)
gets raw bytes through ``channel.unary_unary`` with identity serializers: random bytes,
valid requests with byte-level mutations, and messages around the receive limit. The
server must answer each call within the deadline with OK or a clear status (never
INTERNAL, UNKNOWN or a hang, and a non-empty message with every error), stay SERVING,
and the log must not change except by the entries AddEntries acknowledged.

``make test`` runs a few hundred calls; ``make fuzz`` (``FUZZ_SECONDS``) keeps going.
The fixed bad-input cases with their exact status codes are in tests/grpc/test_bad_input.py.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2

from client._pb.provenance.ledger.v1 import ledger_pb2 as pb
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Verifier
from tests.servers import ServerProcess, running_server

FUZZ_SECONDS = float(os.environ.get("FUZZ_SECONDS", "0"))
CALLS = int(os.environ.get("FUZZ_GRPC_CALLS", "400"))  # per run in make test
MAX_ENTRY = 2048
MAX_BATCH = 16
MAX_RECEIVE = 256 * 1024
SEED = int(os.environ.get("FUZZ_SEED", "0")) or random.randrange(1 << 30)

Code = grpc.StatusCode
ALLOWED = {Code.OK, Code.INVALID_ARGUMENT, Code.NOT_FOUND, Code.OUT_OF_RANGE, Code.RESOURCE_EXHAUSTED,
           Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED}

LOG = "/provenance.ledger.v1.LogService/"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# The health service is grpcio's servicer behind our parsing (ledger/grpc/health.py): held to the same rules.
BIG = 1 << 62


def _log_seeds() -> dict[str, list[bytes]]:
    def enc(*msgs: object) -> list[bytes]:
        return [m.SerializeToString() for m in msgs]  # type: ignore[attr-defined]

    return {
        "AddEntries": enc(pb.AddEntriesRequest(entries=[b"fuzz seed"]),
                          pb.AddEntriesRequest(entries=[b"a", b"b", b"c"], wait_for_checkpoint=True)),
        "GetCheckpoint": enc(pb.GetCheckpointRequest()),
        "GetEntries": enc(pb.GetEntriesRequest(start=0, end=3), pb.GetEntriesRequest(start=1, end=BIG)),
        "GetInclusionProof": enc(pb.GetInclusionProofRequest(index=1, tree_size=3),
                                 pb.GetInclusionProofRequest(leaf_hash=b"\x01" * 32)),
        "GetInclusionProofs": enc(pb.GetInclusionProofsRequest(indices=[0, 1, 2], tree_size=3)),
        "GetConsistencyProof": enc(pb.GetConsistencyProofRequest(old_size=1, new_size=3)),
        "GetLogInfo": enc(pb.GetLogInfoRequest()),
    }


def _other_methods(channel: grpc.Channel) -> dict[str, list[bytes]]:
    """Health Check, and every RegistryService method (seeded with real records) if the server has it."""
    methods = {HEALTH_CHECK: [health_pb2.HealthCheckRequest(service="x").SerializeToString()]}
    try:
        from client._pb.provenance.registry.v1 import registry_pb2 as rpb
    except ImportError:
        return methods
    service = rpb.DESCRIPTOR.services_by_name["RegistryService"]
    prefix = f"/{service.full_name}/"
    try:
        channel.unary_unary(prefix + "GetManifest")(b"", timeout=10)
    except grpc.RpcError as err:
        if err.code() == Code.UNIMPLEMENTED:
            return methods
    from tests.registry_kit import Lab

    lab = Lab("fuzz-lab")
    ident = lab.register()
    ds_sub, ds = lab.dataset("fuzz-data")
    register = rpb.RegisterRequest(records=[rpb.Submission(entry=ident.entry),
                                            rpb.Submission(entry=ds_sub.entry, manifest=ds_sub.manifest or b"")])
    channel.unary_unary(prefix + "Register")(register.SerializeToString(), timeout=30)  # the ids below exist
    digest = ds.record.statement.manifest  # type: ignore[union-attr]
    seeds: dict[str, list[object]] = {
        "Register": [register],
        "GetRecord": [rpb.GetRecordRequest(id=ds.id), rpb.GetRecordRequest(index=1),
                      rpb.GetRecordRequest(name=rpb.NameVersion(kind=rpb.KIND_DATASET, name="fuzz-data", version="1"))],
        "ListBySigner": [rpb.ListBySignerRequest(key=lab.signer.public_key, limit=5)],
        "ListAbout": [rpb.ListAboutRequest(id=ds.id, limit=5)],
        "GetLineage": [rpb.GetLineageRequest(id=ds.id, depth=3), rpb.GetLineageRequest(id=ds.id, descendants=True)],
        "FindDigest": [rpb.FindDigestRequest(digest=digest, kinds=["manifest", "chunk"], limit=3)],
        "GetManifest": [rpb.GetManifestRequest(digest=digest)],
        "GetIdentity": [rpb.GetIdentityRequest(name="fuzz-lab"), rpb.GetIdentityRequest(key=lab.signer.public_key)],
        "Prove": [rpb.ProveRequest(id=ds.id), rpb.ProveRequest(id=ds.id, lineage_to=ds.id)],
    }
    for m in service.methods:
        encoded = [x.SerializeToString() for x in seeds.get(m.name, [])]  # type: ignore[attr-defined]
        methods[prefix + m.name] = encoded or [b""]
    return methods


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 5)):
        op = rng.randrange(6)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            out[at:at] = rng.randbytes(rng.randint(1, 12))
        elif op == 2:
            del out[at : at + rng.randint(1, 8)]
        elif op == 3:
            del out[at:]
        elif op == 4:  # a length or varint that claims far more than follows
            out[at:at] = bytes([rng.choice([0x0A, 0x12, 0x1A, 0x22, 0x08, 0x10])]) + b"\xff" * rng.randint(1, 10)
        else:
            out[at:at] = out[at : at + rng.randint(1, 16)] * rng.randint(2, 8)
    return bytes(out)


def request(rng: random.Random, seeds: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.2:
        return rng.randbytes(rng.randint(0, 256))
    if roll < 0.25:  # near the receive limit (the server refuses above it with RESOURCE_EXHAUSTED)
        return b"\x0a" + rng.randbytes(rng.randint(MAX_RECEIVE - 64, MAX_RECEIVE + 64))
    return mutate(rng, rng.choice(seeds))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    args = ["--max-entry-bytes", str(MAX_ENTRY), "--max-batch-entries", str(MAX_BATCH),
            "--max-receive-bytes", str(MAX_RECEIVE)]
    with running_server(tmp_path_factory.mktemp("fuzz-grpc") / "data", args) as srv:
        with srv.client() as c:
            c.add_entries([f"seed {i}".encode() for i in range(5)], wait_for_checkpoint=True)
        yield srv


def _state(srv: ServerProcess, verifier: Verifier) -> Checkpoint:
    with srv.client() as c:
        return open_checkpoint(c.checkpoint(), verifier)


def test_fuzz_grpc_surface(server: ServerProcess) -> None:
    rng = random.Random(SEED)
    with server.client() as c:
        verifier = Verifier.from_text(c.log_info().verifier_key)
    with grpc.insecure_channel(server.address, options=[("grpc.max_send_message_length", 8 << 20),
                                                        ("grpc.max_receive_message_length", 64 << 20)]) as ch:
        methods = {LOG + name: seeds for name, seeds in _log_seeds().items()}
        methods.update(_other_methods(ch))
        stubs = {name: ch.unary_unary(name) for name in methods}  # identity (de)serializers: raw bytes
        names = sorted(methods)
        before = _state(server, verifier)
        added = 0
        codes: dict[str, int] = {}
        stop = time.monotonic() + FUZZ_SECONDS
        calls = 0
        while calls < CALLS or time.monotonic() < stop:
            calls += 1
            name = rng.choice(names)
            body = request(rng, methods[name])
            try:
                resp = stubs[name](body, timeout=10)
                code = Code.OK
            except grpc.RpcError as err:
                code = err.code()
                assert code in ALLOWED, f"seed {SEED}: {name} answered {code} ({err.details()}) to {body[:200]!r}"
                assert err.details(), f"seed {SEED}: {name} gave {code} without a message"
            codes[code.name] = codes.get(code.name, 0) + 1
            if name == LOG + "AddEntries" and code == Code.OK:
                added += sum(not e.duplicate for e in pb.AddEntriesResponse.FromString(resp).entries)
            if name.endswith("/RegistryService/Register") and code == Code.OK:
                from client._pb.provenance.registry.v1 import registry_pb2 as rpb

                records = rpb.RegisterResponse.FromString(resp).records  # a refused record (code) is not logged
                added += sum(not r.duplicate and r.code == 0 for r in records)
            if calls % 100 == 0:  # the log moved only by what AddEntries acknowledged
                after = _state(server, verifier)
                assert after.size == before.size + added, f"seed {SEED}: log moved without an acknowledgement"
                if added == 0:
                    assert after.root == before.root
                before, added = after, 0
        assert server.proc is not None and server.proc.poll() is None, "the server died"
        status = ch.unary_unary(HEALTH_CHECK)(health_pb2.HealthCheckRequest().SerializeToString(), timeout=10)
        assert health_pb2.HealthCheckResponse.FromString(status).status == health_pb2.HealthCheckResponse.SERVING
        print(f"seed {SEED}: {calls} calls to {len(names)} methods: {codes}")
        assert codes.get("INVALID_ARGUMENT", 0) > 0 and codes.get("OK", 0) > 0


def test_watch_stream_with_garbage_requests(server: ServerProcess) -> None:
    """WatchCheckpoints takes an empty message: garbage is refused, a valid request streams a checkpoint."""
    rng = random.Random(SEED)
    with grpc.insecure_channel(server.address) as ch:
        watch = ch.unary_stream(LOG + "WatchCheckpoints")
        for _ in range(20):
            body = request(rng, [b""])
            stream = watch(body, timeout=5)
            try:
                first = next(stream)
                assert pb.WatchCheckpointsResponse.FromString(first).checkpoint.note
            except grpc.RpcError as err:
                assert err.code() in ALLOWED, f"seed {SEED}: WatchCheckpoints answered {err.code()}"
            finally:
                stream.cancel()
