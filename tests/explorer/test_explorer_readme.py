"""The README's explorer command, as written (ports and data dir swapped), serves the explorer."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from servers import REPO, free_port


def test_readme_serve_http_command_serves_the_explorer(tmp_path: Path) -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## The explorer: the ledger in a browser\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    first = block.group(1).splitlines()[0]
    line = first.split("#", 1)[0]
    assert "127.0.0.1:8080" in line and "open http://127.0.0.1:8080/" in first  # the address it tells to open
    argv = shlex.split(line)
    assert argv[:2] == ["provenance", "serve"] and "--http" in argv
    http = f"127.0.0.1:{free_port()}"
    argv[argv.index("--http") + 1] = http
    argv[argv.index("--data") + 1] = str(tmp_path / "data")
    argv += ["--listen", f"127.0.0.1:{free_port()}"]
    proc = subprocess.Popen([sys.executable, "-m", "client.cli", *argv[1:]], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://{http}/", timeout=2) as resp:
                    body = resp.read().decode()
                    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
                    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
                    break
            except OSError:
                assert proc.poll() is None, "serve exited"
                assert time.monotonic() < deadline, "the explorer did not answer"
                time.sleep(0.1)
        assert "Provenance Ledger explorer" in body and "The log holds no records yet." in body
    finally:
        proc.terminate()
        proc.wait(30)
