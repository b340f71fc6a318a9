"""Unique origins (issue 13 point 5): a fresh data dir without --origin gets its own, kept; a key change explained.

The old default made every development log ``localhost/provenance-ledger``, so a client that knew
one refused the next with "note has no signature by a known key".
"""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers import REPO, ServerProcess

from client.core.audit import AuditState
from client.core.merkle import EMPTY_ROOT
from client.core.note import Signer
from client.core.trust import KeyChangedError, TrustState, key_changed
from ledger.app.config import DEFAULT_ORIGIN, ServerConfig
from ledger.app.origins import derive_origin, host_label, key_file_name
from ledger.app.serve import resolve_origin

DERIVED = re.compile(r"[a-z0-9.-]+/provenance-ledger/[0-9a-f]{8}")


@pytest.mark.parametrize(("hostname", "label"), [
    ("build-7.example.org", "build-7.example.org"), ("My Laptop", "my-laptop"), ("", "localhost"),
    ("host+name", "host-name"), ("..", "localhost"), ("ü-box", "box"), ("a" * 80, "a" * 63)])
def test_host_label(hostname: str, label: str) -> None:
    assert host_label(hostname) == label


def test_derived_origin_is_a_valid_origin_and_key_name() -> None:
    origin = derive_origin("My Laptop", b"\x01\x02\xab\xcd")
    assert origin == "my-laptop/provenance-ledger/0102abcd"
    assert ServerConfig(origin=origin).origin == origin  # no spaces, no '+'
    assert Signer.generate(origin).verifier().name == origin


def test_fresh_dirs_get_different_origins(tmp_path: Path) -> None:
    one, two = resolve_origin(tmp_path / "one", None), resolve_origin(tmp_path / "two", None)
    assert DERIVED.fullmatch(one) and DERIVED.fullmatch(two) and one != two


def test_what_exists_wins(tmp_path: Path) -> None:
    stored = tmp_path / "stored"
    stored.mkdir()
    (stored / "origin").write_text("example.com/kept\n")
    assert resolve_origin(stored, None) == "example.com/kept"

    keyed = tmp_path / "keyed"
    keyed.mkdir()
    (keyed / "log.key").write_text(Signer.generate("example.com/from-key").private_text() + "\n")
    assert resolve_origin(keyed, None) == "example.com/from-key"  # a start that failed after making the key
    other_key = tmp_path / "other.key"
    other_key.write_text(Signer.generate("example.com/other").private_text() + "\n")
    assert resolve_origin(tmp_path / "fresh", None, key_path=other_key) == "example.com/other"
    assert key_file_name(tmp_path / "missing.key") is None

    legacy = tmp_path / "legacy"
    (legacy / "log.rocksdb").mkdir(parents=True)
    (legacy / "log.rocksdb" / "CURRENT").write_text("MANIFEST-000001\n")
    assert resolve_origin(legacy, None) == DEFAULT_ORIGIN  # a store from before DATA/origin: its old name

    assert resolve_origin(tmp_path / "asked", "example.com/asked") == "example.com/asked"


def test_key_change_is_explained() -> None:
    old, new = Signer.generate("dev/log").verifier().text(), Signer.generate("dev/log").verifier().text()
    text = str(key_changed("dev/log", old, new, "/home/me/.config/provenance/state.json"))
    assert old in text and new in text and "/home/me/.config/provenance/state.json" in text
    assert "rotated" in text and "out of band" in text and "different log" in text and "--origin" in text
    state = TrustState({"dev/log": AuditState("dev/log", old, 0, EMPTY_ROOT, b"")})
    state.check_served_key("dev/log", old)
    state.check_served_key("another/log", new)
    with pytest.raises(KeyChangedError, match="it now comes with the key"):
        state.check_served_key("dev/log", new)


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PROVENANCE_STATE_DIR": str(state), "PATH": "/usr/bin:/bin"})


def test_two_dev_servers_are_two_logs_and_a_reused_name_is_explained(tmp_path: Path) -> None:
    a, b = ServerProcess(tmp_path / "a"), ServerProcess(tmp_path / "b")
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: s.start(), (a, b)))
    try:
        origin_a = (tmp_path / "a" / "origin").read_text().strip()
        assert DERIVED.fullmatch(origin_a) and origin_a != (tmp_path / "b" / "origin").read_text().strip()
        state = tmp_path / "state"
        for srv in (a, b):  # one client state, two logs: both trusted (the old default refused the second)
            done = _cli("audit", "--server", srv.address, state=state)
            assert done.returncode == 0, done.stderr
        assert a.stop() == 0
    finally:
        a.kill()
        b.kill()
    c = ServerProcess(tmp_path / "c", ["--origin", origin_a])  # another log (new key) under A's name
    c.start()
    try:
        done = _cli("audit", "--server", c.address, state=state)
    finally:
        c.kill()
    assert done.returncode != 0
    assert f"the log {origin_a!r} is known in" in done.stderr + done.stdout
    assert "rotated" in done.stderr + done.stdout and "different log that reuses the name" in done.stderr + done.stdout
