"""``provenance serve --http --witness-policy``: the explorer's /log shows the policy's witnesses."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from servers import free_port

from client.core.cosignature import WitnessSigner
from client.core.note import Signer


def test_log_page_of_a_served_log_names_the_policy_witnesses(tmp_path: Path) -> None:
    signer = Signer.generate("example.org/witnessed-log")
    key = tmp_path / "log.key"
    key.write_text(signer.private_text() + "\n")
    key.chmod(0o600)
    witness = WitnessSigner("witness.example/w0", b"\x05" * 32)
    policy = tmp_path / "policy"  # its witness is never up: nothing gets cosigned
    policy.write_text(f"log {signer.verifier().text()}\nwitness w0 {witness.key().text()} http://127.0.0.1:1\n"
                      "quorum w0\n")
    http = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "client.cli", "serve", "--data", str(tmp_path / "data"),
                             "--key", str(key), "--listen", f"127.0.0.1:{free_port()}", "--http", http,
                             "--witness-policy", str(policy)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{http}/log", timeout=2) as resp:
                    body = resp.read().decode()
                    break
            except OSError:
                assert proc.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "the explorer did not answer"
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
    assert "no checkpoint has been cosigned yet" in body
    assert re.findall(r'<tr class="witness-(\w+)"><td class="mono">(\w+)</td>', body) == [("missing", "w0")]
    assert signer.verifier().text() in body
