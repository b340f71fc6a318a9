"""End to end through the CLI against real server processes (issue 4 acceptance).

Two labs' keys, a dataset, a base checkpoint, a fine-tuned child and a quantized
grandchild (generated safetensors weights); ``lineage`` shows the tree; a bundle
from the grandchild to the base verifies offline with the server stopped; any
flipped byte fails naming the part. Then a forked log and a shrunken log are
refused by the client's trust state, with the evidence printed.
"""

from __future__ import annotations

import importlib.util
import json
import stat
from pathlib import Path
from types import ModuleType

import pytest
from servers import running_server

from client.core.bundle import BundleVerificationError, verify_bundle
from tests.cli_kit import cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location("provenance_demo", REPO / "deploy" / "demo.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_story_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    demo = _demo()
    demo.write_dataset(tmp_path / "corpus")
    base = demo.base_weights()
    child = demo.fine_tune(base)
    demo.write_safetensors(tmp_path / "base" / "model.safetensors", base)
    demo.write_safetensors(tmp_path / "child" / "model.safetensors", child)
    demo.write_safetensors(tmp_path / "grandchild" / "model.safetensors", demo.quantize(child))
    a_key, b_key = tmp_path / "a.key", tmp_path / "b.key"
    pub = cli(capsys, "keygen", "--out", str(a_key)).strip()
    assert pub.startswith("ed25519:") and stat.S_IMODE(a_key.stat().st_mode) == 0o600
    cli(capsys, "keygen", "--out", str(b_key))
    cli(capsys, "keygen", "--out", str(b_key), code=2)  # never overwrites a key

    with running_server(tmp_path / "data") as srv:
        s = ["--server", srv.address]
        cli(capsys, "identity", "register", "lab-a", "--key", str(a_key), *s)
        cli(capsys, "identity", "register", "lab-b", "--key", str(b_key), *s)

        def reg(*args: str) -> dict[str, object]:
            return json.loads(cli(capsys, "register", *args, "--json", *s))  # type: ignore[no-any-return]

        ds = reg("dataset", str(tmp_path / "corpus"), "--name", "corpus", "--key", str(a_key))
        b = reg("checkpoint", str(tmp_path / "base"), "--name", "base", "--step", "100",
                "--dataset", f"{ds['id']}:pretraining", "--key", str(a_key))
        c = reg("checkpoint", str(tmp_path / "child"), "--name", "chat", "--step", "5",
                "--parent", f"{b['id']}:fine-tune", "--key", str(b_key))
        g = reg("checkpoint", str(tmp_path / "grandchild"), "--name", "chat-int8", "--step", "5",
                "--parent", "chat@5:quantization", "--key", str(b_key))
        assert {"id", "index"} <= set(g) and g["index"] == 5
        tree = cli(capsys, "lineage", str(g["id"]), *s)
        assert tree.splitlines() == [
            f"chat-int8 5 [{str(g['id'])[:12]}]",
            f"└── quantization: chat 5 [{str(c['id'])[:12]}]",
            f"    └── fine-tune: base 100 [{str(b['id'])[:12]}]",
            f"        └── trained-on:pretraining: corpus 1 [{str(ds['id'])[:12]}]",
        ]
        shown = cli(capsys, "show", "base@100", *s)
        assert "signed by 'lab-a'" in shown and "signature verified" in shown and "proved included" in shown
        manifest = json.loads(cli(capsys, "hash", str(tmp_path / "base"), "--json"))
        tensor = manifest["files"][0]["tensors"][0]["blake3"]
        found = json.loads(cli(capsys, "find", tensor, "--json", *s))
        # The fine-tune left this tensor untouched: both base and child contain it, base first.
        assert [(m["kind"], m["id"]) for m in found] == [("tensor", b["id"]), ("tensor", c["id"])]
        bundle = tmp_path / "court.json"
        cli(capsys, "prove", str(g["id"]), "--lineage-to", "base@100", "-o", str(bundle), *s)
        tlog = tmp_path / "g.tlog-proof"
        cli(capsys, "prove", str(g["id"]), "--format", "tlog-proof", "-o", str(tlog), *s)
        key = cli(capsys, "log-key", *s).strip()
        assert srv.stop() == 0

    (tmp_path / "log.pub").write_text(key + "\n")
    out = cli(capsys, "verify", str(bundle), "--log-key", str(tmp_path / "log.pub"))
    assert "VERIFIED" in out and "'lab-b'" in out and "--quantization-->" in out
    report = json.loads(cli(capsys, "verify", str(bundle), "--log-key", key, "--json"))
    assert report["verified"] is True and len(report["path"]) == 2
    assert "VERIFIED" in cli(capsys, "verify", str(tlog), "--log-key", key)

    data = bundle.read_bytes()
    for i in range(len(data)):  # every byte, through the verifier the CLI uses
        with pytest.raises(BundleVerificationError):
            verify_bundle(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :], key)
    mangled = tmp_path / "mangled.json"
    for i in range(0, len(data), max(1, len(data) // 40)):  # and a sample through the command itself
        mangled.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :])
        err = cli(capsys, "verify", str(mangled), "--log-key", key, code=1)
        assert "NOT VERIFIED: " in err
        part = err.split("NOT VERIFIED: ", 1)[1].split(":", 1)[0]
        assert part.split("[")[0].split(".")[0] in {"bundle", "format", "log_key", "origin", "checkpoint",
                                                    "subject", "lineage_to", "records", "key_status"}, err


def _register_some(capsys: pytest.CaptureFixture[str], address: str, tmp: Path, name: str, count: int) -> str:
    key = tmp / f"{name}.key"
    cli(capsys, "keygen", "--out", str(key))
    out = cli(capsys, "identity", "register", name, "--key", str(key), "--server", address, "--json")
    first = str(json.loads(out)["id"])
    for i in range(count):
        folder = tmp / f"{name}-ds{i}"
        folder.mkdir()
        (folder / "data.txt").write_text(f"{name} {i}\n")
        cli(capsys, "register", "dataset", str(folder), "--name", f"{name}-{i}", "--key", str(key),
            "--server", address)
    return first


@pytest.mark.parametrize("shape", ["fork", "rollback"])
def test_forked_or_shrunken_log_is_refused_with_evidence(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch, shape: str) -> None:
    """Two servers share one origin and one log key but hold different entries: one log that forked."""
    monkeypatch.setenv("PROVENANCE_STATE_DIR", str(tmp_path / "state"))
    with running_server(tmp_path / "one") as one:
        first = _register_some(capsys, one.address, tmp_path, "lab-one", 2)
        cli(capsys, "prove", first, "-o", str(tmp_path / "b1.json"), "--server", one.address)
        assert one.stop() == 0
    key_file = tmp_path / "one" / "log.key"
    with running_server(tmp_path / "two", ["--key", str(key_file)]) as two:
        # Same size (3 entries) with other entries: a fork; fewer entries: a rollback.
        first2 = _register_some(capsys, two.address, tmp_path, "lab-two", 2 if shape == "fork" else 0)
        err = cli(capsys, "prove", first2, "-o", str(tmp_path / "b2.json"), "--server", two.address, code=1)
    assert "SECURITY:" in err
    assert ("two different roots" if shape == "fork" else "shrank from size 3 to 1") in err
    origin = (tmp_path / "one" / "origin").read_text().strip()  # the second server took it from the key's name
    assert err.count(f"— {origin}") == 2  # both signed checkpoints are printed
    assert not (tmp_path / "b2.json").exists()
