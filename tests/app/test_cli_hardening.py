"""Issue 15 point 7, the client's side: what `provenance` prints and accepts.

- names and versions with control and bidi characters (U+202E, U+009B) are escaped by `show`,
  `lineage` and `verify`, and refused at registration (client and registry), as are names not in NFC;
- a record key readable by group or others gets a warning, as ssh gives;
- `verify` with a malformed `--log-key` is a usage error (exit 2) naming the option;
- `prove --format tlog-proof` of a record too large for a 64 KiB extra line writes the hash-only
  form, and `verify --entry` checks it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_kit import CHUNK, Env, Lab, make_manifest, open_env

from client.api import Registrar
from client.cli._registry_common import load_signer
from client.core.bundle import to_bytes
from client.core.records import Dataset, DatasetRole, ModelCheckpoint, RecordSigner, TrainingData
from client.core.records.display import UnsafeTextError, check_display_names, safe_text
from ledger.grpc.registry_service import RegistryService
from ledger.registry import hook as registry_hook
from ledger.registry.prove import build_bundle
from ledger.registry.registry import Submission
from tests.cli_kit import cli
from tests.inproc import serving

RLO, CSI = "\u202e", "\x9b"
EVIL_NAME = f"safe-model{RLO}ledom-live"
EVIL_VERSION = f"1{CSI}31m"


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[str, Env, dict[str, bytes]]]:
    """A served registry holding a dataset and a checkpoint named with control and bidi characters, logged
    as by an older server (admission's name check switched off while they are registered)."""
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    env = open_env()
    lab = Lab("lab-x")
    with monkeypatch.context() as m:
        m.setattr(registry_hook, "check_display_names", lambda s: None, raising=False)
        assert not isinstance(env.registry.register([lab.register()])[0], Exception)
        encoded, digest = make_manifest("hostile-ds")
        ds = lab.sign(Dataset(f"web{RLO}txt", EVIL_VERSION, digest, 3 * CHUNK, f"MIT{CSI}2J"))
        encoded2, digest2 = make_manifest("hostile-cp")
        cp = lab.sign(ModelCheckpoint(EVIL_NAME, f"r{CSI}", 1, digest2, "safetensors",
                                      (TrainingData(ds.id, DatasetRole.parse("pretraining")),)))
        got = env.registry.register([Submission(ds.entry, encoded), Submission(cp.entry, encoded2)])
        assert not any(isinstance(g, Exception) for g in got), got
    service = RegistryService(env.registry, env.log, env.log_key)
    try:
        with serving(env.log, env.log_key, extra=[service], origin="example.com/registry-test") as (address, _):
            yield address, env, {"dataset": ds.id, "checkpoint": cp.id}
    finally:
        env.close()


def _no_raw_controls(out: str) -> None:
    assert RLO not in out and CSI not in out, ascii(out)


def test_show_lineage_and_verify_escape_control_and_bidi_characters(
        hostile: tuple[str, Env, dict[str, bytes]], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    address, env, ids = hostile
    s = ["--server", address]
    out = cli(capsys, "show", ids["checkpoint"].hex(), *s)
    _no_raw_controls(out)
    assert "safe-model\\u202eledom-live" in out and "r\\x9b/1" in out
    out = cli(capsys, "show", ids["dataset"].hex(), *s)
    _no_raw_controls(out)
    assert "\\x9b" in out and "MIT\\x9b2J" in out
    out = cli(capsys, "lineage", ids["checkpoint"].hex(), *s)
    _no_raw_controls(out)
    assert "web\\u202etxt 1\\x9b31m" in out
    bundle = tmp_path / "b.json"
    bundle.write_bytes(to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, ids["checkpoint"],
                                             ids["dataset"])))
    out = cli(capsys, "verify", str(bundle), "--log-key", env.log_key)
    _no_raw_controls(out)
    assert "VERIFIED" in out and "\\u202e" in out


def test_safe_text_is_inert_and_tells_strings_apart() -> None:
    assert safe_text("plain model 1.0 modèle") == "plain model 1.0 modèle"
    assert safe_text(f"a{RLO}b{CSI}c\x1b[2Jd\u2066e\U000e0001") == "a\\u202eb\\x9bc\\x1b[2Jd\\u2066e\\U000e0001"
    assert safe_text("a\\u202e") != safe_text(f"a{RLO}")  # a literal backslash is doubled
    assert safe_text("line\nbreak\u2028") == "line\\x0abreak\\u2028"


@pytest.mark.parametrize("name", [f"evil{RLO}", f"csi{CSI}", "e\u0301cole", "zero\u200bwidth", "nbsp\u00a0x"],
                         ids=["bidi", "c1-control", "not-nfc", "zero-width", "nbsp"])
def test_registration_refuses_names_a_terminal_would_not_show_as_written(name: str) -> None:
    _, digest = make_manifest("n")
    statement = Dataset(name, "1", digest, 3 * CHUNK)
    with pytest.raises(UnsafeTextError):
        check_display_names(statement)
    registrar = Registrar(RecordSigner.generate(), "127.0.0.1:1")
    try:
        with pytest.raises(UnsafeTextError):
            registrar.sign(statement)  # the client refuses before signing
    finally:
        registrar.close()
    env = open_env()  # and the registry's admission refuses what another client signed
    try:
        lab = Lab("lab-n")
        assert not isinstance(env.registry.register([lab.register()])[0], Exception)
        encoded, _ = make_manifest("n")
        (got,) = env.registry.register([Submission(lab.sign(statement).entry, encoded)])
        assert isinstance(got, UnsafeTextError), got
    finally:
        env.close()
    with pytest.raises(UnsafeTextError, match="run"):
        check_display_names(ModelCheckpoint("ok", name, 1, digest))


def test_nfc_non_ascii_names_are_fine() -> None:
    _, digest = make_manifest("ok")
    check_display_names(Dataset("modèle-日本語", "v1.0-β", digest, 3 * CHUNK))


def test_a_key_file_readable_by_others_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "k"
    cli(capsys, "keygen", "--out", str(key))
    load_signer(key)
    assert "warning" not in capsys.readouterr().err  # 0600 as keygen wrote it
    os.chmod(key, 0o644)
    signer = load_signer(key)
    err = capsys.readouterr().err
    assert "warning" in err and "0644" in err and "chmod 600" in err and str(key) in err
    assert signer.public_key == load_signer(key).public_key  # still usable


@pytest.mark.parametrize("log_key", ["not-a-key", "name+zzzzzzzz+AAAA", "example.com/x+00000000+AQ=="])
def test_verify_with_a_malformed_log_key_is_a_usage_error(log_key: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    env = open_env()
    try:
        lab = Lab("lab-k")
        env.registry.register([lab.register()])
        sub, ds = lab.dataset("web")
        env.registry.register([sub])
        bundle = tmp_path / "b.json"
        bundle.write_bytes(to_bytes(build_bundle(env.registry.reader, env.log, env.log_key, ds.id)))
    finally:
        env.close()
    out = cli(capsys, "verify", str(bundle), "--log-key", log_key, code=2)  # was 1, as if verification failed
    assert "--log-key" in out and "NOT VERIFIED" not in out
    key_file = tmp_path / "key.txt"
    key_file.write_text(log_key + "\n")
    out = cli(capsys, "verify", str(bundle), "--log-key", str(key_file), code=2)
    assert "--log-key" in out


def test_prove_a_record_too_large_for_an_extra_line_and_verify_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    env = open_env()
    lab = Lab("lab-big")
    env.registry.register([lab.register()])
    encoded, digest = make_manifest("big")
    big = lab.sign(Dataset("big", "1", digest, 3 * CHUNK, "", tuple("s" * 4000 for _ in range(20))))
    env.registry.register([Submission(big.entry, encoded)])
    service = RegistryService(env.registry, env.log, env.log_key)
    proof, entry = tmp_path / "p.tlog", tmp_path / "p.entry"
    try:
        with serving(env.log, env.log_key, extra=[service], origin="example.com/registry-test") as (address, _):
            out = cli(capsys, "prove", big.id.hex(), "--format", "tlog-proof", "-o", str(proof),
                      "--entry-out", str(entry), "--server", address)
        assert "without it" in out
        text = proof.read_bytes()
        assert b"\nextra " not in text and max(len(line) for line in text.split(b"\n")) < 64 * 1024
        assert entry.read_bytes() == big.entry
        out = cli(capsys, "verify", str(proof), "--log-key", env.log_key, "--entry", str(entry))
        assert "VERIFIED" in out
        out = cli(capsys, "verify", str(proof), "--log-key", env.log_key, code=2)
        assert "--entry" in out
    finally:
        env.close()
