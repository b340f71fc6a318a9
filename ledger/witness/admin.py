"""The witness's offline commands: create a key, configure logs, show the state, export evidence.

Used by ``provenance witness init|add-log|status|evidence``; each returns text to print.
Exported evidence is one file per refused checkpoint, ``<id>-<origin hash prefix>.txt``:
a header (origin, time, reason), the whole add-checkpoint request as received, and the
note this witness had cosigned for that origin, so a third party can check both signatures.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from client.core.note import Verifier
from client.errors import FormatError, InvalidInputError
from ledger.witness.keyfile import create_key
from ledger.witness.state import WitnessState

__all__ = ["add_log", "export_evidence", "init_key", "status"]


def init_key(path: Path, name: str) -> str:
    """Create the key file; return the witness's vkey (what log operators and policies list)."""
    return create_key(path, name).key().text()


def add_log(data: Path, vkey: str, origin: str | None) -> str:
    """Trust ``vkey`` for checkpoints of ``origin`` (default: the vkey's name), creating the state if absent."""
    try:
        name = Verifier.from_text(vkey).name
    except FormatError as e:
        raise InvalidInputError(f"--vkey: {e}") from e
    with WitnessState.open(data, create=True) as state:
        state.add_log(origin or name, vkey)
    return f"witness in {data} trusts {vkey} for origin {origin or name} (restart a running witness to apply)"


def status(data: Path) -> str:
    """The configured logs, the latest cosigned size and time of each, and the count of kept evidence."""
    with WitnessState.open(data) as state:
        lines = []
        for origin, log in sorted(state.logs().items()):
            held = state.latest(origin)
            where = "nothing cosigned yet" if held is None else f"size {held.size} cosigned at {held.timestamp}"
            keys = ", ".join(v.text() for v in log.verifiers)
            lines.append(f"log {origin}: {where}; keys {keys}")
        evidence = state.evidence()
    lines.append(f"evidence kept: {len(evidence)} refused checkpoint(s)")
    return "\n".join(lines)


def export_evidence(data: Path, out: Path) -> str:
    """Write every kept piece of evidence to ``out`` (created 0700 if absent), one file each."""
    with WitnessState.open(data) as state:
        records = state.evidence()
    os.makedirs(out, mode=0o700, exist_ok=True)
    for rec in records:
        ev = rec.evidence
        prefix = hashlib.sha256(ev.origin.encode()).hexdigest()[:16]
        text = (f"origin: {ev.origin}\nreceived: {ev.received}\nreason: {ev.reason}\n\n"
                "-- add-checkpoint request as received --\n").encode() + ev.request
        text += b"\n-- note this witness had cosigned --\n" + (ev.held or b"(none)\n")
        (out / f"{rec.id:06d}-{prefix}.txt").write_bytes(text)
    return f"wrote {len(records)} evidence file(s) to {out}"
