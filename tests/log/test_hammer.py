"""The short hammer (bench/hammer.py): writers and verifying readers against a real server, then a full audit.

The long mode is ``make long`` (``python -m bench hammer``).
"""

from __future__ import annotations

from pathlib import Path

from bench.hammer import HammerConfig, run_hammer

SHORT = HammerConfig(seconds=5.0, writers=3, readers=2, seed=6)
WAIT_BOUND_MS = 5000.0  # docs/guarantees.md: a waited add gets its checkpoint in one sequencer step


def test_hammer_short_every_proof_verifies_and_the_audit_passes(tmp_path: Path) -> None:
    result = run_hammer(tmp_path / "data", SHORT)
    report = "\n".join(result.lines())
    print(report)  # figures, shown with pytest -s or on failure
    assert not result.failures, report
    assert result.entries >= 1000, f"too little load to mean anything:\n{report}"
    assert result.counts["entries checked"] == result.entries
    assert result.counts.get("consistency proofs verified", 0) >= 20, report
    assert result.counts.get("inclusion proofs verified", 0) >= 200, report
    assert result.audit["ok"] is True and result.audit["tree_size"] == result.final_size
    waited = result.latencies["add+wait"]
    assert result.counts["calls add+wait"] >= 20 and waited["max"] < WAIT_BOUND_MS, report
    assert result.counts["acks covered by the next checkpoint read"] >= 20, report
