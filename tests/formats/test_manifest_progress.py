"""The progress bar draws on a terminal after a second, and never on a pipe."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from client.hashing.progress import ProgressBar, human
from tests import test_manifest_support as kit

ROOT = Path(__file__).resolve().parents[2]


def _drain(fd: int) -> bytes:
    """Everything written so far to the pty's other side (reads until 0.2 s of silence)."""
    out = b""
    while select.select([fd], [], [], 0.2)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
    return out


def test_bar_draws_on_a_pty_after_its_delay() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            bar = ProgressBar(tty, total_bytes=1000, delay=0.05)
            assert bar.enabled
            bar(500, 1)
            deadline = time.monotonic() + 10
            while not bar.drawn and time.monotonic() < deadline:
                time.sleep(0.02)
            bar.close()
        drawn = _drain(master).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "hashed 500 B, 1 files" in drawn and "[ 50%]" in drawn
    assert drawn.endswith("\r\x1b[K")


def test_bar_stays_silent_before_its_delay() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            bar = ProgressBar(tty, delay=5.0)
            bar(10, 1)
            bar.close()
        drawn = _drain(master)
    finally:
        os.close(master)
        os.close(slave)
    assert drawn == b""


def test_bar_never_draws_on_a_non_tty() -> None:
    buf = io.StringIO()
    bar = ProgressBar(buf, delay=0.0)
    assert not bar.enabled
    bar(10, 1)
    time.sleep(0.2)
    bar.close()
    assert buf.getvalue() == ""


def _cli(args: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "client.cli", "hash", *args], cwd=ROOT, check=True, **kw
    )


def test_cli_on_a_pipe_prints_no_control_characters(tmp_path: Path) -> None:
    kit.dataset_folder(tmp_path / "d", files=30)
    r = _cli([str(tmp_path / "d")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.stderr == b""
    assert b"\r" not in r.stdout and b"\x1b" not in r.stdout


def test_cli_on_a_pty_is_quiet_for_a_fast_hash(tmp_path: Path) -> None:
    kit.dataset_folder(tmp_path / "d", files=5)
    master, slave = pty.openpty()
    try:
        _cli([str(tmp_path / "d")], stdout=subprocess.DEVNULL, stderr=slave)
        drawn = _drain(master)
    finally:
        os.close(master)
        os.close(slave)
    assert drawn == b""  # under a second: no bar at all


def test_human_units() -> None:
    assert [human(0), human(1536), human(3 << 30)] == ["0 B", "1.5 KiB", "3.0 GiB"]
