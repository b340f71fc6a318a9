"""The README's "A witness of our own" commands run as written (in bash, port 0 for the listener)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from witness_kit import REPO, ToyLog, post


def _block() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## A witness of our own\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None
    return [raw.split("#", 1)[0].strip() for raw in block.group(1).splitlines() if raw.split("#", 1)[0].strip()]


def test_readme_witness_block_runs(tmp_path: Path) -> None:
    lines = _block()
    assert [line.split()[:3] for line in lines] == [["provenance", "witness", "init"],
                                                     ["provenance", "witness", "add-log"],
                                                     ["provenance", "witness", "serve"]]
    log = ToyLog().grow(3)
    (tmp_path / "log.pub").write_text(log.signer.verifier().text() + "\n")
    shell = f'provenance() {{ PYTHONPATH={REPO} {sys.executable} -m client.cli "$@"; }}\n'
    setup = subprocess.run(["bash", "-euc", shell + "\n".join(lines[:2])], cwd=tmp_path, capture_output=True,
                           text=True, timeout=60)
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.startswith("witness.example.org/w1+")
    serve = lines[2].replace("127.0.0.1:8090", "127.0.0.1:0")
    proc = subprocess.Popen(["bash", "-euc", shell + serve], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        m = re.fullmatch(r"witness \S+ listening on (\S+)\n", proc.stdout.readline())
        assert m is not None
        status, body, _ = post(f"http://{m.group(1)}/add-checkpoint", log.request(0, 3))
        assert status == 200 and body.startswith("\u2014 witness.example.org/w1 ".encode())
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # bash and the witness it runs
        proc.wait(20)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
