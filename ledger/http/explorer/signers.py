"""Signers and the log's checkpoint as the explorer shows them: identity histories, signature lines.

An identity's history is every identity event of its name (register, rotate, revoke), from the
registry's per-name postings when the store has them all, else the chain of events that
established the key asked about (:meth:`RegistryReader.identity_chain`). The checkpoint's
signature lines are shown as the latest note carries them: the log's own line is checked against
the log key here; other lines are listed by name and key id. Under a witness policy
(``serve --witness-policy``) the newest cosigned checkpoint is shown too, each policy witness with
what its line says under the policy (:meth:`WitnessPolicy.evaluate`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from client.core.note import Verifier, open_note
from client.core.records import Identity, parse_key
from client.errors import InvalidInputError, NotFoundError
from ledger.http.explorer.views import SignerView, signer_view, when
from ledger.registry.queries import LoggedRecord, RegistryReader

_HEX_KEY = re.compile(r"[0-9a-f]{64}")
MAX_EVENTS = 200


@dataclass(frozen=True, slots=True)
class EventView:
    """One identity event: what happened to which key under which name, signed by whom."""

    index: int
    rid_hex: str
    event: str
    name: str
    key: SignerView
    signed_by_hex: str
    time: str


@dataclass(frozen=True, slots=True)
class History:
    name: str | None
    events: tuple[EventView, ...]
    complete: bool  # every event of the name, not only those that establish the key asked about
    more: bool


def resolve(reader: RegistryReader, ref: str) -> bytes:
    """A signer key from ``ref``: 64 hex digits, ``ed25519:<base64>``, or an identity name (its current
    key, or the last key it had when it has none now). Raises NotFoundError, InvalidInputError."""
    if _HEX_KEY.fullmatch(ref):
        return bytes.fromhex(ref)
    if ref.startswith("ed25519:"):
        return parse_key(ref)
    try:
        key = reader.current_key(ref)
    except UnicodeEncodeError as err:
        raise InvalidInputError("not an identity name") from err
    if key is not None:
        return key
    for i in reversed(reader.identity_events(ref)):
        s = reader.at(i).signed.record.statement
        if isinstance(s, Identity):
            return s.key
    raise NotFoundError(f"identity {ref!r} has no key")


def history(reader: RegistryReader, key: bytes) -> History:
    """The identity history of ``key``'s name (see the module docstring); at most :data:`MAX_EVENTS` events."""
    try:
        info = reader.key_info(key)
    except NotFoundError:
        return History(None, (), False, False)
    complete = reader.identity_events_complete()
    recs: list[LoggedRecord]
    if complete:
        recs = [reader.at(i) for i in reader.identity_events(info.name)[: MAX_EVENTS + 1]]
    else:
        recs = reader.identity_chain(key)
    signers: dict[bytes, SignerView] = {}
    events = []
    for rec in recs[:MAX_EVENTS]:
        s = rec.signed.record.statement
        if not isinstance(s, Identity):
            continue
        view = signers.get(s.key) or signers.setdefault(s.key, signer_view(reader, s.key))
        events.append(EventView(rec.index, rec.id.hex(), s.event.value, s.name, view,
                                rec.signed.record.signer.hex(), when(rec.signed.record.timestamp)))
    return History(info.name, tuple(events), complete, len(recs) > MAX_EVENTS)


@dataclass(frozen=True, slots=True)
class SignatureLine:
    name: str
    key_id_hex: str
    role: str  # "log" (checked against the log key) or "cosignature" (listed; see Witnessed)


@dataclass(frozen=True, slots=True)
class CheckpointView:
    origin: str
    size: int
    root_hex: str
    note: str
    verifier_key: str
    signatures: tuple[SignatureLine, ...]


def checkpoint(log: Any, verifier_key: str) -> CheckpointView:
    """The latest signed checkpoint, its note and its signature lines (the log's verified here)."""
    cp = log.latest()
    opened = open_note(cp.note, [Verifier.from_text(verifier_key)])
    lines = [SignatureLine(s.name, s.key_id.hex(), "log") for s in opened.signatures]
    lines += [SignatureLine(s.name, s.key_id.hex(), "cosignature") for s in opened.unverified]
    return CheckpointView(cp.checkpoint.origin, cp.checkpoint.size, cp.checkpoint.root.hex(),
                          cp.note.decode("utf-8", "replace"), verifier_key, tuple(lines))


@dataclass(frozen=True, slots=True)
class WitnessRow:
    """One witness of the policy and what the cosigned note holds of it."""

    name: str
    status: str  # "cosigned" (its line verifies), "bad" (a line that does not), "missing" (counted, no line)
    time: str | None  # the witness's cosignature timestamp, for "cosigned"


@dataclass(frozen=True, slots=True)
class Witnessed:
    """The newest cosigned checkpoint under the server's witness policy (``size`` None: none yet)."""

    size: int | None
    root_hex: str
    note: str
    quorum: str
    satisfied: bool
    witnesses: tuple[WitnessRow, ...]
    unknown: tuple[str, ...]  # key names of lines under no key of the policy


def witnessed(witnessing: Any, log_key: str) -> Witnessed | None:
    """What ``witnessing`` (a :class:`ledger.log.witnessing.Witnessing`, or None) has cosigned; the log's
    own line (``log_key``'s name) is not counted among the lines under no key of the policy."""
    if witnessing is None:
        return None
    policy = witnessing.policy
    cp = witnessing.cosigned()
    if cp is None:
        none = tuple(WitnessRow(w.name, "missing", None) for w in policy.witnesses)
        return Witnessed(None, "", "", policy.quorum, False, none, ())
    result = policy.evaluate(cp.note)
    times = dict(result.timestamps)
    rows: list[WitnessRow] = []
    for w in policy.witnesses:
        if w.name in result.verified:
            rows.append(WitnessRow(w.name, "cosigned", when(times[w.name]) if w.name in times else None))
        elif w.name in result.bad:
            rows.append(WitnessRow(w.name, "bad", None))
        else:
            rows.append(WitnessRow(w.name, "missing", None))
    return Witnessed(cp.checkpoint.size, cp.checkpoint.root.hex(), cp.note.decode("utf-8", "replace"),
                     policy.quorum, result.satisfied, tuple(rows),
                     tuple(sig.name for sig in result.unknown_lines if sig.name != Verifier.from_text(log_key).name))
