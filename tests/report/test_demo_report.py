"""``make demo`` (deploy/demo.py) end to end: it ends by printing the explorer's address, having written
report.html and report.pdf of its court bundle with the descent-test attestation attached."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from references import require_pdftotext

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_writes_the_report_and_ends_with_the_explorer_address(tmp_path: Path) -> None:
    pdftotext = require_pdftotext()
    work = tmp_path / "demo"
    done = subprocess.run([sys.executable, str(REPO / "deploy" / "demo.py"), str(work)], cwd=REPO,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("explorer: http://127.0.0.1:") and "stopped" in last  # no terminal: the ledger is stopped
    assert "$ provenance report bundle.json" in done.stdout
    html = (work / "report.html").read_text(encoding="utf-8")
    assert '<h1 id="status" class="verified">VERIFIED: model chat-int8 10</h1>' in html
    assert 'id="verdict-0">related<' in html and "<svg" in html
    text = subprocess.run([pdftotext, "-raw", str(work / "report.pdf"), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert text.startswith("VERIFIED: model chat-int8 10") and "verdict related" in text
