"""Every signature line of a checkpoint, accounted for: the log's, the policy's witnesses', and the rest. Pure.

A checkpoint note may carry, after the log's own signature, witnesses' cosignature lines
(c2sp.org/tlog-cosignature). :func:`check_signatures` sorts them, given the log's key and the
relying party's witness policy (:mod:`client.core.witness_policy`), into a
:class:`SignatureReport`: each witness of the policy verified, bad, missing (the quorum needs it)
or absent; whether the quorum holds; and every line that verifies under *no* key of the log or
the policy (``unverified``), which is reported by name and never counted or shown as a witness.

:func:`require_quorum` is the rule the commands apply when given ``--policy``: the quorum must
hold, no line of a policy witness may fail, and no line may be by a key the policy does not
declare. That last part is strict on purpose: a relying party with a policy has said whose
signatures it accepts, and a court exhibit should carry nothing unverifiable; a witness it does
not rely on but whose lines it expects can be declared in the policy without joining the quorum.
Without a policy nothing is required (the log's signature is what is verified, as before): a
genuine cosignature is then as unknown as a fake one, so refusing would refuse every witnessed
checkpoint; such lines are reported as "unverified signature line by NAME (no key known)".
"""

from __future__ import annotations

from dataclasses import dataclass

from client.core.note import NoteSignature, Verifier, encode_base64, split_signatures
from client.core.witness_policy import WitnessPolicy
from client.errors import SignatureError, VerificationError

__all__ = ["SignatureReport", "WitnessCheck", "WitnessQuorumError", "check_signatures", "require_quorum",
           "verified_note"]

VERIFIED, BAD, MISSING, ABSENT = "verified", "bad", "missing", "absent"


@dataclass(frozen=True, slots=True)
class WitnessCheck:
    """One witness of the policy: ``status`` verified, bad (its line fails), missing (the quorum counts it
    and it has no line) or absent (no line; the quorum does not count it); ``timestamp`` when verified."""

    name: str
    key: str
    status: str
    timestamp: int | None = None


@dataclass(frozen=True, slots=True)
class SignatureReport:
    """The signature lines of one checkpoint note. ``quorum`` is None when no policy was given."""

    quorum: str | None
    satisfied: bool | None
    witnesses: tuple[WitnessCheck, ...]
    unverified: tuple[NoteSignature, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.witnesses if w.status == MISSING)

    @property
    def bad(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.witnesses if w.status == BAD)

    def unverified_text(self) -> list[str]:
        """One sentence per line under no known key."""
        return [f"unverified signature line by {s.name} (no key known; key ID {s.key_id.hex()})"
                for s in self.unverified]


class WitnessQuorumError(VerificationError):
    """A checkpoint does not meet the witness policy; ``report`` says which witnesses and lines."""

    def __init__(self, message: str, report: SignatureReport) -> None:
        super().__init__(message)
        self.report = report


def check_signatures(note: bytes, log_verifier: Verifier, policy: WitnessPolicy | None) -> SignatureReport:
    """Sort ``note``'s signature lines (see the module docstring). Verifies the witnesses' lines, not the log's:
    the caller opens the checkpoint with ``log_verifier`` (:func:`client.core.checkpoint.open_checkpoint`).

    With a policy that lists logs, ``log_verifier`` must be the key it lists for this origin
    (:class:`SignatureError` otherwise). Raises :class:`FormatError` for a malformed note.
    """
    _, lines = split_signatures(note)
    log_line = (log_verifier.name, log_verifier.key_id)
    if policy is None:
        others = tuple(dict.fromkeys(s for s in lines if (s.name, s.key_id) != log_line))
        return SignatureReport(None, None, (), others)
    if policy.logs:
        listed = [entry.verifier for entry in policy.logs if entry.origin == log_verifier.name]
        if not listed:
            raise SignatureError(f"the witness policy does not list the log {log_verifier.name!r}")
        if log_verifier not in listed:
            raise SignatureError(f"the witness policy lists the log {log_verifier.name!r} with key "
                                 f"{listed[0].text()}, not {log_verifier.text()}")
    result = policy.evaluate(note)
    times = dict(result.timestamps)
    checks = []
    for w in policy.witnesses:
        status = (VERIFIED if w.name in result.verified else BAD if w.name in result.bad
                  else MISSING if w.name in result.missing else ABSENT)
        checks.append(WitnessCheck(w.name, w.key.text(), status, times.get(w.name)))
    unknown = tuple(s for s in result.unknown_lines if (s.name, s.key_id) != log_line)
    return SignatureReport(policy.quorum, result.satisfied, tuple(checks), unknown)


def require_quorum(report: SignatureReport) -> None:
    """With a policy: raise :class:`WitnessQuorumError` unless the quorum holds, no witness line is bad and
    every line is under a key of the log or the policy. Without one (``report.quorum`` None): nothing."""
    if report.quorum is None:
        return
    problems = []
    if report.bad:
        problems.append(f"cosignatures that do not verify by {', '.join(report.bad)}")
    if not report.satisfied:
        missing = f"; missing cosignatures by {', '.join(report.missing)}" if report.missing else ""
        problems.append(f"the witness quorum {report.quorum!r} is not met{missing}")
    if report.unverified:
        problems.append("; ".join(report.unverified_text()) + " (declare a witness you expect in the policy, "
                        "outside the quorum, to accept its line)")
    if problems:
        raise WitnessQuorumError("checkpoint refused by the witness policy: " + "; ".join(problems), report)


def verified_note(note: bytes, report: SignatureReport) -> bytes:
    """``note`` without its unverified lines (what a report may echo as signed)."""
    if not report.unverified:
        return note
    drop = {_line(s) for s in report.unverified}
    text, sep, block = note.rpartition(b"\n\n")
    kept = [line for line in block.split(b"\n")[:-1] if line not in drop]
    return text + sep + b"".join(line + b"\n" for line in kept)


def _line(s: NoteSignature) -> bytes:
    return f"\u2014 {s.name} {encode_base64(s.key_id + s.signature)}".encode()
