"""Descent evidence against a real ledger process (issue 5, ledger parts), through the CLI.

A lab registers a base checkpoint with a published fingerprint, a derived one (fine-tune), and a
third with only a committed fingerprint. ``match`` on a permuted + noised copy finds the base as
related at its log index (and the client reruns the test on the fetched fingerprint); on an exact
copy in another container it finds the shared tensors; an independent model matches nothing. The
committed fingerprint is never used by ``match`` but reveals correctly, offline from a bundle and
against the server; a wrong reveal fails. ``compare --attest`` logs a ``descent-test``
attestation whose fields are right.
"""

from __future__ import annotations

import json
from pathlib import Path

import blake3
import pytest
from descent_fixtures import base_model, noisy, permute_hidden, write_safetensors, write_sharded
from servers import running_server

from client.api import Registrar, fingerprint_model, hash_manifest
from client.cli._registry_common import load_signer
from client.core.records import Attestation, Claim, FingerprintCommitment, Kind
from client.errors import InvalidInputError, NotFoundError
from client.remote.registry import RegistryClient
from tests.cli_kit import cli

pytestmark = pytest.mark.slow


def test_register_match_reveal_attest(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    base = base_model(11, layers=2)
    models = {
        "base": base,
        "derived": noisy(base, 0.05, seed=21),
        "secret": base_model(12, layers=2),  # registered with a committed fingerprint only
        "suspect": permute_hidden(noisy(base, 0.03, seed=22), seed=23),
        "independent": base_model(13, layers=2),
    }
    for name, t in models.items():
        write_safetensors(tmp_path / f"{name}.safetensors", t)
    write_sharded(tmp_path / "copy", dict(reversed(list(base.items()))), shards=2)  # same tensors, new container
    key, auditor = tmp_path / "lab.key", tmp_path / "auditor.key"
    cli(capsys, "keygen", "--out", str(key))
    cli(capsys, "keygen", "--out", str(auditor))

    with running_server(tmp_path / "data") as srv:
        s = ["--server", srv.address]
        cli(capsys, "identity", "register", "lab-a", "--key", str(key), *s)
        cli(capsys, "identity", "register", "auditor", "--key", str(auditor), *s)

        def reg(path: str, *args: str) -> dict[str, object]:
            out = cli(capsys, "register", "checkpoint", str(tmp_path / path), *args, "--key", str(key), "--json", *s)
            return json.loads(out)  # type: ignore[no-any-return]

        b = reg("base.safetensors", "--name", "base", "--step", "100")  # default: publish
        d = reg("derived.safetensors", "--name", "chat", "--step", "5", "--parent", "base@100:fine-tune",
                "--fingerprint", "publish")
        secret_fp = tmp_path / "secret.plfp"
        c = reg("secret.safetensors", "--name", "secret", "--step", "1", "--fingerprint", "commit",
                "--fingerprint-out", str(secret_fp))
        assert b["fingerprint"]["mode"] == "published" and c["fingerprint"]["mode"] == "committed"  # type: ignore[index]
        assert c["fingerprint"]["digest"] == "blake3:" + blake3.blake3(secret_fp.read_bytes()).hexdigest()  # type: ignore[index]
        with RegistryClient(srv.address) as rc:  # published bytes are stored content-addressed; committed are not
            digest = bytes.fromhex(str(b["fingerprint"]["digest"]).split(":")[1])  # type: ignore[index]
            assert blake3.blake3(rc.fingerprint(digest)).digest() == digest
            with pytest.raises(NotFoundError):
                rc.fingerprint(bytes.fromhex(str(c["fingerprint"]["digest"]).split(":")[1]))  # type: ignore[index]

        # refusals at the gRPC edge carry the right codes (mapped back to the client's error classes)
        with RegistryClient(srv.address) as rc:
            with pytest.raises(InvalidInputError, match="32 bytes"):
                rc.match([b"short"], [])
            with pytest.raises(InvalidInputError, match="suspect fingerprint"):
                rc.match([], [], b"PLFP" + bytes(12))
            with pytest.raises(InvalidInputError, match="alpha"):
                rc.match([], [], secret_fp.read_bytes(), alpha=2.0)
        with Registrar(load_signer(key), srv.address) as api:
            encoded, manifest_digest, _, _ = hash_manifest(tmp_path / "independent.safetensors")
            fp = fingerprint_model(tmp_path / "independent.safetensors")
            assert fp is not None
            for published, sent in ((True, secret_fp.read_bytes()), (False, fp)):
                commitment = FingerprintCommitment(blake3.blake3(fp).digest(), published)
                signed = api.checkpoint_record(manifest_digest, model="refused", step=int(published),
                                               fingerprint=commitment)
                with pytest.raises(InvalidInputError, match="fingerprint"):
                    api.submit(signed, encoded, sent)
            with pytest.raises(NotFoundError):  # neither reached the log
                api.client.by_name(Kind.CHECKPOINT, "refused", "1")

        # (a) statistical: a permuted, noised copy of the base is related to the base (at its index)
        got = json.loads(cli(capsys, "match", str(tmp_path / "suspect.safetensors"), "--json", *s))
        assert got["exact"] == []
        assert got["searched_fingerprints"] == 2  # base and derived; the committed one is not searchable
        related = {r["id"]: r for r in got["related"] if r["significant"]}
        assert b["id"] in related and c["id"] not in related
        hit = related[b["id"]]
        assert hit["index"] == b["index"] and hit["model"] == "base" and hit["signer_name"] == "lab-a"
        assert hit["verdict"] == "related" and hit["adjusted_log10_p"] < -10
        assert hit["rechecked"]["agrees"] and hit["rechecked"]["verdict"] == "related"
        assert hit["proved_in_tree_size"] >= 5
        assert min(r["index"] for r in related.values()) == b["index"]  # the base registered first
        text = cli(capsys, "match", str(tmp_path / "suspect.safetensors"), *s)
        assert f"index {b['index']}: base 100" in text and "rechecked locally: agrees" in text

        # (b) exact: the same tensors in another container share every informative tensor with the base only
        got = json.loads(cli(capsys, "match", str(tmp_path / "copy"), "--json", *s))
        assert [e["id"] for e in got["exact"]] == [b["id"]]
        e = got["exact"][0]
        assert e["shared_tensors"] == sum(1 for v in base.values() if v.ndim == 2)
        assert e["server_claim_confirmed"] and e["suspect_in_candidate"] > 0.95 and e["candidate_in_suspect"] > 0.95
        assert b["id"] in {r["id"] for r in got["related"] if r["significant"]}

        # an independent model of the same architecture matches nothing
        got = json.loads(cli(capsys, "match", str(tmp_path / "independent.safetensors"), "--json", *s))
        assert got["exact"] == [] and not [r for r in got["related"] if r["significant"]]

        # reveal: the committed fingerprint checks against the record on the server, a wrong one fails
        out = cli(capsys, "verify-fingerprint", str(secret_fp), "--record", "secret@1", *s)
        assert "VERIFIED" in out and f"index {c['index']}" in out
        wrong = tmp_path / "wrong.plfp"
        cli(capsys, "fingerprint", str(tmp_path / "independent.safetensors"), "-o", str(wrong))
        out = cli(capsys, "verify-fingerprint", str(wrong), "--record", "secret@1", *s, code=1)
        assert "NOT VERIFIED" in out and "commits to blake3:" in out
        bundle = tmp_path / "secret-bundle.json"
        cli(capsys, "prove", "secret@1", "-o", str(bundle), *s)
        log_key = cli(capsys, "log-key", *s).strip()

        # compare --attest: a signed descent-test attestation about the two records, found by manifest digest
        evidence = tmp_path / "evidence.json"
        out = json.loads(cli(capsys, "compare", str(tmp_path / "base.safetensors"),
                             str(tmp_path / "derived.safetensors"), "--json", "--attest", "--key", str(auditor),
                             "--evidence-out", str(evidence), *s))
        att = out["attestation"]
        assert att["subject"] == b["id"] and att["object"] == d["id"]
        with RegistryClient(srv.address) as rc:
            logged = rc.at(att["index"])
            about = [r.id.hex() for r in rc.about(bytes.fromhex(str(b["id"])))]
        assert logged.id.hex() == att["id"] and att["id"] in about
        st = logged.signed.record.statement
        assert isinstance(st, Attestation) and st.claim is Claim.DESCENT_TEST
        assert st.subject.hex() == b["id"] and st.object.hex() == d["id"]
        assert st.evidence is not None and st.evidence.value == blake3.blake3(evidence.read_bytes()).digest()
        assert st.summary.startswith("descent test: related (statistical), p-value ")
        report = json.loads(evidence.read_bytes())
        shared = report["shared_fraction"]
        assert f"a_in_b {shared['a_in_b']:.4f}, b_in_a {shared['b_in_a']:.4f}" in st.summary
        assert 0 < shared["a_in_b"] < 0.01  # only LayerNorm ones and zero biases: never evidence
        assert report["verdict"] == "related" and report["subject"] == b["id"] and report["object"] == d["id"]
        assert evidence.read_bytes() == json.dumps(report, sort_keys=True, separators=(",", ":")).encode()

        # A later registration of the same tensors (a mirror) is listed after the base: earliest first.
        # After a restart the lazily built index comes back from the stored signatures.
        m = reg("copy", "--name", "mirror", "--step", "1")
        assert srv.stop() == 0
        srv.restart()
        got = json.loads(cli(capsys, "match", str(tmp_path / "copy"), "--json", *s))
        assert [e["id"] for e in got["exact"]] == [b["id"], m["id"]] and b["index"] < m["index"]
        got = json.loads(cli(capsys, "match", str(tmp_path / "suspect.safetensors"), "--json", *s))
        assert got["searched_fingerprints"] == 3
        assert b["id"] in {r["id"] for r in got["related"] if r["significant"]}
        assert srv.stop() == 0

    # offline reveal from the bundle, server stopped; and a wrong reveal fails offline too
    out = cli(capsys, "verify-fingerprint", str(secret_fp), "--bundle", str(bundle), "--log-key", log_key)
    assert "VERIFIED" in out and "bundle verified offline" in out
    out = cli(capsys, "verify-fingerprint", str(wrong), "--bundle", str(bundle), "--log-key", log_key, code=1)
    assert "NOT VERIFIED" in out
