"""Running the `provenance` CLI in-process from tests."""

from __future__ import annotations

import pytest

from client.cli import main


def cli(capsys: pytest.CaptureFixture[str], *args: str, code: int = 0) -> str:
    """``provenance ARGS`` in this process; asserts the exit code and returns stdout + stderr."""
    capsys.readouterr()
    got = main(list(args))
    out, err = capsys.readouterr()
    assert got == code, f"provenance {' '.join(args)} exited {got}:\n{out}\n{err}"
    return out + err
