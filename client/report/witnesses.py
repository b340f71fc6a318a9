"""The checkpoint's signature lines for the report: the log's, the policy's witnesses', the rest. Pure.

The sorting is :func:`client.core.witnessed.check_signatures` (run by the verifier, with the
``--policy`` given or none); this module only words it. A line under no key of the log or the
policy is listed as unverified and never as a witness; the checkpoint note the report reprints as
signed holds only the lines that verified (:func:`client.core.witnessed.verified_note`).
"""

from __future__ import annotations

from client.core.note import Verifier, split_signatures
from client.core.records.display import safe_text
from client.core.signer_time import signer_time
from client.core.witnessed import ABSENT, BAD, MISSING, VERIFIED, SignatureReport
from client.report.model import Witness

_WORDS = {
    BAD: "its cosignature line does NOT verify with the policy's key",
    MISSING: "no cosignature, and the policy's quorum counts it",
    ABSENT: "no cosignature (the policy's quorum does not need it)",
}


def witness_views(note: bytes, log: Verifier, sig: SignatureReport | None) -> tuple[tuple[Witness, ...], str]:
    """Every signature line of ``note`` (and every witness of the policy), and one sentence on the policy."""
    _, lines = split_signatures(note)
    out = [Witness(safe_text(s.name), s.key_id.hex(), VERIFIED, "the log's own signature, verified with its key")
           for s in lines if (s.name, s.key_id) == (log.name, log.key_id)][:1]
    if sig is None or sig.quorum is None:
        summary = ("No witness policy was given (--policy FILE): only the log's own signature is checked; any "
                   "other line is listed as unverified and counts for nothing.")
    else:
        summary = (f"Witness policy quorum {safe_text(sig.quorum)!r}: "
                   f"{'met' if sig.satisfied else 'NOT met'}. A witness's time is its own claim of when it saw "
                   "this checkpoint.")
    for w in sig.witnesses if sig is not None else ():
        if w.status == VERIFIED:
            when = "" if w.timestamp is None else f" at {signer_time(w.timestamp, iso=False)} (the witness's claim)"
            note_text = f"cosigned this checkpoint{when}; verified with the policy's key"
        else:
            note_text = _WORDS.get(w.status, w.status)
        out.append(Witness(safe_text(w.name), safe_text(w.key), w.status, note_text))
    for s in sig.unverified if sig is not None else ():
        out.append(Witness(safe_text(s.name), s.key_id.hex(), "unverified",
                           "under no key of the log or the policy: not checked, not counted"))
    return tuple(out), summary
