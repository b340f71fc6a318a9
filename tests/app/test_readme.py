"""The README's "Talk to the running server" commands run, as written, against a real server."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.servers import REPO, running_server

DEFAULT = "127.0.0.1:50051"


def _readme_block(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under '## {heading}'"
    lines = []
    for raw in block.group(1).splitlines():
        code = raw.split("#", 1)[0].strip()
        if code:
            lines.append(code)
    return lines


def test_talk_to_the_running_server_block_runs(tmp_path: Path) -> None:
    lines = _readme_block("Talk to the running server")
    assert any(line.startswith("provenance log append") for line in lines)
    with running_server(tmp_path / "data") as srv:
        ran = 0
        for line in lines:
            for part in line.split(";"):
                argv = shlex.split(part.strip())
                if argv[0] == "echo":  # echo 'x' > file
                    text, _, target = part.partition(">")
                    (tmp_path / target.strip()).write_text(shlex.split(text)[1] + "\n")
                    continue
                assert argv[0] == "provenance", part
                if DEFAULT in argv:
                    argv[argv.index(DEFAULT)] = srv.address
                else:
                    argv += ["--server", srv.address]
                if argv[1] == "audit":
                    argv += ["--state", str(tmp_path / "audit-state.json")]
                done = subprocess.run([sys.executable, "-m", "client.cli", *argv[1:]], cwd=tmp_path,
                                      capture_output=True, text=True, timeout=60,
                                      env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
                assert done.returncode == 0, f"{part}: {done.stderr}"
                assert done.stdout.strip(), f"{part} printed nothing"
                ran += 1
        assert ran >= 7
