"""The add-checkpoint decision of a tlog-witness (https://c2sp.org/tlog-witness). Pure: no I/O, no clock.

:func:`parse_request` reads a request body; :func:`decide` takes the configured log,
the state held for its origin, the parsed request and the time, and returns a
:class:`Decision`: the HTTP status and body to answer, the state to persist before
answering (only on 200) and the evidence to keep (a log-signed checkpoint that
contradicts what was cosigned). The caller must run read-state, decide and write as
one atomic step (tlog-witness, "add-checkpoint": the race that rolls back leaves).

Status codes, in the order the checks run:

- 400: malformed body or checkpoint, or ``old`` above the checkpoint's size;
- 404: an origin this witness does not know;
- 403: no valid signature by a configured key of that log, or one that fails;
- 409 (``text/x.tlog.size``, the held size): ``old`` is not the size last cosigned;
- 422: a proof that does not verify, a proof where none belongs, a root other than the
  held one at the held size (a fork), a size-0 checkpoint with a root other than the
  empty tree's;
- 200: the cosignature line(s), after the new state is returned for persisting.

A smaller tree is never cosigned (``old`` must equal the held size and not exceed the
new one) and timestamps never go backwards for an origin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from client.core.checkpoint import Checkpoint
from client.core.cosignature import WitnessSigner
from client.core.merkle import EMPTY_ROOT, verify_consistency
from client.core.note import Verifier, decode_base64, encode_base64, open_note, split_signatures
from client.errors import FormatError, ProofError, SignatureError

__all__ = [
    "MAX_PROOF_LINES",
    "SIZE_CONTENT_TYPE",
    "AddCheckpoint",
    "Decision",
    "Evidence",
    "LogConfig",
    "LogState",
    "add_checkpoint",
    "decide",
    "parse_request",
]

MAX_PROOF_LINES = 63
"""Most consistency proof lines a request may carry (tlog-witness)."""

SIZE_CONTENT_TYPE = "text/x.tlog.size"
COSIGNATURE_CONTENT_TYPE = "text/plain; charset=utf-8"
_OLD = re.compile(rb"old (0|[1-9][0-9]{0,18})")


@dataclass(frozen=True)
class LogConfig:
    """A log this witness cosigns: its origin and the note keys it trusts for it (any one suffices)."""

    origin: str
    verifiers: tuple[Verifier, ...]


@dataclass(frozen=True)
class LogState:
    """What the witness last cosigned for an origin: size, root, the cosignature's time, and the note it
    serves to monitors (the checkpoint text, the log signatures that verified and this witness's lines)."""

    origin: str
    size: int
    root: bytes
    timestamp: int
    note: bytes


@dataclass(frozen=True)
class Evidence:
    """A log-signed checkpoint the witness refused because it contradicts what it cosigned.

    ``request`` is the whole add-checkpoint body (old size, proof, signed note);
    ``held`` is the note the witness had cosigned for the origin (None if nothing).
    """

    origin: str
    received: int
    reason: str
    request: bytes
    held: bytes | None


@dataclass(frozen=True)
class Decision:
    """The answer to one request, and what to persist before giving it."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    new_state: LogState | None = None
    evidence: Evidence | None = None


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request: the old size, the proof hashes, the signed note and its parts."""

    old_size: int
    proof: tuple[bytes, ...]
    note: bytes
    text: bytes
    checkpoint: Checkpoint
    raw: bytes


def _text(status: int, message: str, evidence: Evidence | None = None) -> Decision:
    return Decision(status, (message + "\n").encode(), evidence=evidence)


def parse_request(body: bytes) -> AddCheckpoint:
    """Parse an add-checkpoint body: ``old N``, up to 63 base64 hash lines, a blank line, a checkpoint note.

    Only canonical input (decimal without leading zeroes, canonical base64 of 32 bytes)
    is accepted. Raises :class:`FormatError` naming what is wrong (answered as 400).
    """
    head, sep, note = bytes(body).partition(b"\n\n")
    if not sep:
        raise FormatError("request has no blank line between the old size and proof and the checkpoint")
    lines = head.split(b"\n")
    m = _OLD.fullmatch(lines[0])
    if m is None:
        raise FormatError("the first line must be 'old <size>' in canonical decimal")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise FormatError(f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof: list[bytes] = []
    for i, line in enumerate(lines[1:], start=1):
        try:
            digest = decode_base64(line.decode("ascii"), f"proof line {i}")
        except UnicodeDecodeError:
            raise FormatError(f"proof line {i} is not ASCII") from None
        if len(digest) != 32:
            raise FormatError(f"proof line {i} is {len(digest)} bytes, not a 32-byte hash")
        proof.append(digest)
    text, _ = split_signatures(note)
    cp = Checkpoint.from_text(text.decode("utf-8"))
    old = int(m.group(1))
    if old > (1 << 63) - 1:
        raise FormatError("old size is over 2**63 - 1")
    return AddCheckpoint(old, tuple(proof), note, text, cp, bytes(body))


def decide(
    log: LogConfig | None,
    state: LogState | None,
    request: AddCheckpoint,
    now: int,
    signers: Sequence[WitnessSigner],
) -> Decision:
    """The answer to ``request`` given the configured ``log`` (None: unknown origin) and its held ``state``.

    ``now`` is POSIX seconds; the cosignature's timestamp is ``max(now, held timestamp, 1)``.
    Requires ``state`` (if any) and ``log`` (if any) to be for ``request.checkpoint.origin``,
    and at least one signer.
    """
    cp = request.checkpoint
    if log is None:
        return _text(404, f"unknown log origin {cp.origin[:200]!r}")
    try:
        opened = open_note(request.note, log.verifiers)
    except SignatureError as e:
        return _text(403, f"checkpoint is not signed by a key of this log: {e}")
    except FormatError as e:
        return _text(400, f"malformed checkpoint note: {e}")
    if request.old_size > cp.size:
        return _text(400, f"old size {request.old_size} is above the checkpoint size {cp.size}")
    held_size = 0 if state is None else state.size
    if request.old_size != held_size:
        return Decision(409, f"{held_size}\n".encode(), SIZE_CONTENT_TYPE)

    def refuse(reason: str) -> Decision:
        ev = Evidence(cp.origin, now, reason, request.raw, None if state is None else state.note)
        return _text(422, reason, evidence=ev)

    if cp.size == 0 and cp.root != EMPTY_ROOT:
        return refuse("a checkpoint of size 0 must have the empty tree's root")
    if held_size == 0:
        if request.proof:
            return _text(422, "a consistency proof from size 0 must be empty")
    elif held_size == cp.size:
        if request.proof:
            return _text(422, "a consistency proof between equal sizes must be empty")
        assert state is not None
        if cp.root != state.root:
            return refuse(f"fork: another root for size {cp.size} than the one cosigned")
    else:
        assert state is not None
        try:
            verify_consistency(held_size, cp.size, request.proof, state.root, cp.root)
        except ProofError as e:
            return refuse(f"consistency proof from {held_size} to {cp.size} does not verify: {e}")
    timestamp = max(now, 1 if state is None else state.timestamp, 1)
    lines = "".join(s.cosign(request.text, timestamp) for s in signers)
    log_lines = "".join(f"\u2014 {sig.name} {encode_base64(sig.key_id + sig.signature)}\n" for sig in opened.signatures)
    served = request.text + b"\n" + log_lines.encode() + lines.encode()
    new = LogState(cp.origin, cp.size, cp.root, timestamp, served)
    return Decision(200, lines.encode(), COSIGNATURE_CONTENT_TYPE, new_state=new)


def add_checkpoint(
    logs: Mapping[str, LogConfig],
    states: Mapping[str, LogState],
    body: bytes,
    now: int,
    signers: Sequence[WitnessSigner],
) -> Decision:
    """:func:`parse_request` then :func:`decide`, with the logs and held states by origin; 400 for a bad body."""
    try:
        request = parse_request(body)
    except FormatError as e:
        return _text(400, f"malformed add-checkpoint request: {e}")
    origin = request.checkpoint.origin
    return decide(logs.get(origin), states.get(origin), request, now, signers)
