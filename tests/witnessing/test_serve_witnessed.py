"""``provenance serve --witness-policy``: the cosigned checkpoint over gRPC and the CLI, waited adds, restarts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client.core.checkpoint import SignedCheckpoint
from client.core.note import Signer
from client.core.witness_policy import WitnessPolicy
from client.errors import InvalidInputError
from client.remote import LogClient
from tests.references import REPO
from tests.servers import ServerProcess
from tests.witnessing.conftest import Witnessed, WitnessPool


def test_waited_add_returns_a_quorum_cosigned_checkpoint(witnessed: Witnessed) -> None:
    with witnessed.client() as c:
        got = c.add_entries([b"first", b"second"], wait_for_cosignatures=True)
        assert got.checkpoint is not None
        cp = SignedCheckpoint.open(got.checkpoint, witnessed.signer.verifier()).checkpoint
        assert cp.size >= 2
        assert witnessed.policy.evaluate(got.checkpoint).satisfied
        from client.core.merkle import verify_inclusion

        for e in got.entries:
            verify_inclusion(e.index, cp.size, e.leaf_hash, list(e.inclusion_proof), cp.root)
        latest, cosigned = c.checkpoints()
    assert cosigned is not None and witnessed.policy.evaluate(cosigned).satisfied
    SignedCheckpoint.open(latest, witnessed.signer.verifier())


def test_provenance_checkpoint_prints_the_cosigned_note(witnessed: Witnessed) -> None:
    with witnessed.client() as c:
        c.add_entries([b"third"], wait_for_cosignatures=True)
    out = subprocess.run([sys.executable, "-m", "client.cli", "checkpoint", "--server", witnessed.server.address],
                         capture_output=True, cwd=REPO, check=True).stdout
    result = witnessed.policy.evaluate(out)
    assert result.satisfied and result.verified == ("w0", "w1")
    latest = subprocess.run([sys.executable, "-m", "client.cli", "checkpoint", "--latest", "--server",
                             witnessed.server.address], capture_output=True, cwd=REPO, check=True).stdout
    assert witnessed.policy.evaluate(latest).verified == ()


def test_restart_serves_the_saved_cosigned_checkpoint(witnessed: Witnessed) -> None:
    with witnessed.client() as c:
        c.add_entries([b"before restart"], wait_for_cosignatures=True)
        _, before = c.checkpoints()
    assert (witnessed.server.data_dir / "cosigned-checkpoint").read_bytes() == before
    assert witnessed.server.stop() == 0
    witnessed.server.restart()
    with witnessed.client() as c:
        _, after = c.checkpoints()
    assert after == before


def test_wait_for_cosignatures_without_a_policy_is_refused() -> None:
    from ledger.log import Log, LogConfig
    from ledger.storage.memory import MemoryStorage
    from tests.inproc import serving

    signer = Signer.generate("test.example/unwitnessed")
    lg = Log.open(MemoryStorage(), signer, LogConfig(origin=signer.name))
    try:
        with serving(lg, signer.verifier().text(), origin=signer.name) as (address, _), LogClient(address) as c:
            with pytest.raises(InvalidInputError, match="no witness policy"):
                c.add_entries([b"x"], wait_for_cosignatures=True)
            assert c.checkpoints()[1] is None
            assert c.log_info().origin == signer.name
    finally:
        lg.close()


def test_a_dead_witness_delays_nothing_and_audit_names_it(witness_pool: WitnessPool, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """One witness of the quorum never answers (nothing listens at its URL): the log signs and serves as
    always, the cosigned checkpoint carries the other's line only, and ``audit --policy`` names the missing one."""
    import json
    import time

    from tests.cli_kit import cli
    from tests.servers import free_port

    signer = witness_pool.signer()
    key = tmp_path / "log.key"
    key.write_text(signer.private_text() + "\n")
    key.chmod(0o600)
    live, dead = witness_pool.pair
    policy = tmp_path / "policy.txt"
    policy.write_text(f"log {signer.verifier().text()}\nwitness w0 {live.vkey} {live.url}\n"
                      f"witness w1 {dead.vkey} http://127.0.0.1:{free_port()}\ngroup g all w0 w1\nquorum g\n")
    srv = ServerProcess(tmp_path / "data", ["--key", str(key), "--origin", signer.name,
                                            "--witness-policy", str(policy)])
    srv.start()
    try:
        with srv.client() as c:
            t0 = time.monotonic()
            for i in range(5):
                assert c.add_entries([f"e{i}".encode()], wait_for_checkpoint=True).checkpoint is not None
            assert time.monotonic() - t0 < 5.0
            deadline = time.monotonic() + 10
            while (cosigned := c.checkpoints()[1]) is None or b"\n5\n" not in cosigned:
                assert time.monotonic() < deadline, "the live witness never cosigned size 5"
                time.sleep(0.05)
        result = WitnessPolicy.parse(policy.read_text()).evaluate(cosigned)
        assert result.verified == ("w0",) and result.missing == ("w1",) and not result.satisfied
        out = cli(capsys, "audit", "--policy", str(policy), "--state", str(tmp_path / "state.json"),
                  "--server", srv.address, code=1)
        assert json.loads(out.splitlines()[0])["missing_witnesses"] == ["w1"]
        assert "missing cosignatures by w1" in out
    finally:
        srv.kill()
