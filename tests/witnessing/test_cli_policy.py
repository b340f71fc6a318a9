"""``--policy FILE`` on verify, show, prove and audit, end to end through the CLI against a witnessed serve.

A bundle carries the cosigned checkpoint; ``verify --policy`` lists each witness; a policy whose
quorum needs a witness that never cosigned refuses, naming it; a fake signature line appended to the
checkpoint is called out (and, under a policy, refused) and never echoed as a witness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.cli import main
from client.core.bundle.format import parse, to_bytes
from client.core.cosignature import WitnessSigner
from client.core.note import encode_base64
from tests.cli_kit import cli
from tests.witnessing.conftest import Witnessed

LINE_PREFIX = "\u2014 "


@dataclasses.dataclass
class Story:
    bundle: Path
    record: str
    server: list[str]
    policy: Path  # the server's policy: both running witnesses, quorum all
    policy3: Path  # the same plus a third witness that never cosigned, quorum all
    log_key: str


@pytest.fixture(scope="module")
def story(witnessed: Witnessed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("cli-policy")
    key = tmp / "lab.key"
    s = ["--server", witnessed.server.address]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROVENANCE_STATE_DIR", str(tmp / "state"))
        _run("keygen", "--out", str(key))
        _run("identity", "register", "lab-w", "--key", str(key), *s)
        (tmp / "corpus").mkdir()
        (tmp / "corpus" / "a.txt").write_text("witnessed data\n")
        got = json.loads(_run("register", "dataset", str(tmp / "corpus"), "--name", "wcorpus", "--key", str(key),
                              "--json", *s))
        bundle = tmp / "bundle.json"
        _run("prove", got["id"], "-o", str(bundle), "--policy", str(witnessed.policy_path), *s)
    third = WitnessSigner("never.test/w3", bytes(range(32))).key()
    policy3 = tmp / "policy3.txt"
    lines = witnessed.policy_path.read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith(("group", "quorum"))]
    policy3.write_text("\n".join([*lines, f"witness w2 {third.text()}", "group g3 all w0 w1 w2", "quorum g3", ""]))
    yield Story(bundle, got["id"], s, witnessed.policy_path, policy3, witnessed.signer.verifier().text())


def _run(*args: str) -> str:
    """``provenance ARGS`` in this process for module-scoped set-up (no capsys there); its stdout."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(args))
    assert code == 0, f"provenance {' '.join(args)} exited {code}: {out.getvalue()}"
    return out.getvalue()


def _with_checkpoint(bundle: Path, out: Path, extra_line: str) -> Path:
    b = parse(bundle.read_bytes())
    out.write_bytes(to_bytes(dataclasses.replace(b, checkpoint=b.checkpoint + extra_line.encode())))
    return out


def test_the_bundle_carries_the_cosigned_checkpoint_and_verify_lists_each_witness(
        story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "verify", str(story.bundle), "--policy", str(story.policy))  # the policy names the log key
    assert out.startswith("VERIFIED")
    assert "Witnesses (the policy's quorum 'g': met)" in out
    assert out.count(": checks out") == 2
    report = json.loads(cli(capsys, "verify", str(story.bundle), "--log-key", story.log_key, "--policy",
                            str(story.policy), "--json"))
    w = report["witnesses"]
    assert w["quorum_met"] is True and [x["status"] for x in w["witnesses"]] == ["verified", "verified"]
    assert all(isinstance(x["timestamp"], int) for x in w["witnesses"])


def test_below_quorum_is_refused_naming_the_missing_witness(story: Story, capsys: pytest.CaptureFixture[str]) -> None:
    err = cli(capsys, "verify", str(story.bundle), "--log-key", story.log_key, "--policy", str(story.policy3), code=1)
    assert "NOT VERIFIED" in err and "missing cosignatures by w2" in err
    assert "w2 (never.test/w3+" in err and "MISSING" in err
    report = json.loads(cli(capsys, "verify", str(story.bundle), "--log-key", story.log_key, "--policy",
                            str(story.policy3), "--json", code=1).split("\nNOT VERIFIED")[0])
    assert report["ok"] is False and report["witnesses"]["quorum_met"] is False


def test_a_fake_witness_line_is_called_out_not_echoed(story: Story, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    fake = f"{LINE_PREFIX}fake.example/witness {encode_base64(b'ABCD' + bytes(72))}\n"
    faked = _with_checkpoint(story.bundle, tmp_path / "faked.json", fake)
    out = cli(capsys, "verify", str(faked), "--log-key", story.log_key)  # no policy: reported, not refused
    assert "unverified signature line by fake.example/witness" in out and "NOT verified" in out
    report = json.loads(cli(capsys, "verify", str(faked), "--log-key", story.log_key, "--json"))
    # Without a policy no witness key is known: the genuine cosignatures are as unverified as the fake one,
    # and the note echoed holds the log's signature only.
    assert report["checkpoint"]["note"].count(LINE_PREFIX) == 1 and "fake.example" not in report["checkpoint"]["note"]
    assert {"name": "fake.example/witness", "key_id": b"ABCD".hex(), "verified": False} in \
        report["witnesses"]["unverified_signature_lines"]
    assert report["witnesses"]["witnesses"] == []
    with_policy = json.loads(cli(capsys, "verify", str(story.bundle), "--log-key", story.log_key, "--policy",
                                 str(story.policy), "--json"))
    assert with_policy["checkpoint"]["note"].count(LINE_PREFIX) == 3  # the log's and both witnesses' lines
    err = cli(capsys, "verify", str(faked), "--log-key", story.log_key, "--policy", str(story.policy), code=1)
    assert "unverified signature line by fake.example/witness" in err


def test_a_forged_line_under_a_policy_witness_key_is_refused(story: Story, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from client.core.witness_policy import WitnessPolicy

    w0 = WitnessPolicy.parse(story.policy.read_text()).witnesses[0].key
    b = parse(story.bundle.read_bytes())
    body, _, block = b.checkpoint.partition(b"\n\n")
    kept = [ln for ln in block.decode().splitlines() if not ln.startswith(f"{LINE_PREFIX}{w0.name} ")]
    forged = f"{LINE_PREFIX}{w0.name} {encode_base64(w0.key_id + bytes(72))}"
    note = body + b"\n\n" + "".join(ln + "\n" for ln in [*kept, forged]).encode()
    path = tmp_path / "forged.json"
    path.write_bytes(to_bytes(dataclasses.replace(b, checkpoint=note)))
    err = cli(capsys, "verify", str(path), "--log-key", story.log_key, "--policy", str(story.policy), code=1)
    assert "cosignatures that do not verify by w0" in err


def test_show_and_audit_with_a_policy(story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    shown = cli(capsys, "show", story.record, "--policy", str(story.policy), *story.server)
    assert "meets the witness policy: cosigned by w0, w1" in shown
    err = cli(capsys, "show", story.record, "--policy", str(story.policy3), *story.server, code=1)
    assert "missing cosignatures by w2" in err
    audited = json.loads(cli(capsys, "audit", "--policy", str(story.policy), "--state", str(tmp_path / "a.json"),
                             *story.server))
    assert audited["ok"] is True and audited["witnessed_by"] == ["w0", "w1"]
    refused = cli(capsys, "audit", "--policy", str(story.policy3), "--state", str(tmp_path / "a.json"),
                  *story.server, code=1)
    assert '"missing_witnesses": ["w2"]' in refused


def test_a_malformed_policy_is_a_usage_error(story: Story, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("witness only-a-name\nquorum none\n")
    err = cli(capsys, "verify", str(story.bundle), "--log-key", story.log_key, "--policy", str(bad), code=2)
    assert "--policy" in err and "line 1" in err
