"""The auditor's decisions, with no I/O: trust on first use, root recomputation, consistency.

The ``provenance audit`` command is the I/O shell: it fetches the log info, the
latest checkpoint, every entry and a consistency proof, and reads and writes
the state file. Everything it decides is decided here:

* :func:`choose_verifier`: the key checkpoints must be signed by -- a pinned key
  if given, else the key remembered for this origin, else the key the server
  presents now (trust on first use, remembered from then on).
* :class:`TreeRebuilder`: recomputes every leaf hash and the root from the
  entries, remembering the root at the previously audited size too.
* :func:`check_root`, :func:`check_old_root`: compare the recomputed tree with
  the signed checkpoint and with the one kept from last time; failures carry the
  evidence (both signed notes, the roots). The consistency proof itself is
  checked by :class:`client.core.trust.TrustState`, the one home of that rule.
* :class:`AuditState` and :func:`parse_states` / :func:`format_states`: the
  small JSON state, keyed by origin.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from client.core import jsonlimits
from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import CompactRange, leaf_hash
from client.core.note import Verifier
from client.core.witness_policy import WitnessPolicy
from client.errors import FormatError, InconsistencyError, SignatureError, VerificationError

STATE_VERSION = 1
MAX_STATE_BYTES = 1 << 20


class RootMismatchError(VerificationError):
    """The entries the log served do not hash to the root its checkpoint signs."""

    def __init__(self, message: str, *, note: bytes, size: int, computed_root: bytes) -> None:
        super().__init__(message)
        self.note = note
        self.size = size
        self.computed_root = computed_root


@dataclass(frozen=True, slots=True)
class AuditState:
    """What an auditor keeps about one log: its key and the last checkpoint it verified."""

    origin: str
    verifier_key: str
    size: int
    root: bytes
    note: bytes

    def to_json(self) -> dict[str, object]:
        return {
            "verifier_key": self.verifier_key,
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "note": self.note.decode("utf-8"),
        }

    @classmethod
    def from_json(cls, origin: str, obj: object) -> AuditState:
        if not isinstance(obj, dict):
            raise FormatError(f"audit state for {origin!r} is not an object")
        try:
            key, size, root, note = obj["verifier_key"], obj["size"], obj["root"], obj["note"]
            if not (isinstance(key, str) and type(size) is int and isinstance(root, str) and isinstance(note, str)):
                raise TypeError("wrong field types")
            raw_root = base64.b64decode(root, validate=True)
            raw_note = note.encode("utf-8")
        # ValueError: non-ASCII base64; UnicodeEncodeError: a lone surrogate from a JSON \u escape.
        except (KeyError, TypeError, ValueError, UnicodeEncodeError) as err:
            raise FormatError(f"audit state for {origin!r} is malformed: {err}") from err
        if size < 0 or len(raw_root) != 32:
            raise FormatError(f"audit state for {origin!r} has a bad size or root")
        return cls(origin, key, size, raw_root, raw_note)


def parse_state_bytes(data: bytes) -> dict[str, AuditState]:
    """:func:`parse_states` of a state file's bytes, which must be UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise FormatError(f"audit state file is not UTF-8 (byte {err.start})") from err
    return parse_states(text)


def parse_states(text: str) -> dict[str, AuditState]:
    """Parse a state file's text (``{"version": 1, "logs": {origin: state}}``); empty text is no state."""
    if not text.strip():
        return {}
    if len(text) > MAX_STATE_BYTES:
        raise FormatError("audit state file is too large")
    obj = jsonlimits.loads(text, "audit state file")
    if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION or not isinstance(obj.get("logs"), dict):
        raise FormatError(f"audit state file is not version {STATE_VERSION}")
    return {origin: AuditState.from_json(origin, s) for origin, s in obj["logs"].items()}


def format_states(states: Mapping[str, AuditState]) -> str:
    logs = {origin: states[origin].to_json() for origin in sorted(states)}
    return json.dumps({"version": STATE_VERSION, "logs": logs}, indent=2) + "\n"


def choose_verifier(
    served_origin: str, served_key: str, pinned_key: str | None, previous: AuditState | None,
    policy: WitnessPolicy | None = None,
) -> Verifier:
    """The key to check checkpoints with.

    A pinned key wins; else the key a witness ``policy`` lists for ``served_origin`` (a policy names
    its logs by key); else the key remembered for ``served_origin``; else the key the server presents
    (trust on first use). A remembered key that differs from the one served is not an error here: the
    checkpoint will fail to verify, with evidence.
    """
    if pinned_key is None and policy is not None:
        pinned_key = next((entry.verifier.text() for entry in policy.logs if entry.origin == served_origin), None)
    if pinned_key is not None:
        verifier = Verifier.from_text(pinned_key.strip())
        if verifier.name != served_origin:
            raise SignatureError(f"pinned key is for {verifier.name!r}, the server is {served_origin!r}")
        return verifier
    if previous is not None:
        return Verifier.from_text(previous.verifier_key)
    verifier = Verifier.from_text(served_key)
    if verifier.name != served_origin:
        raise SignatureError(f"server key is for {verifier.name!r} but the server says it is {served_origin!r}")
    return verifier


class TreeRebuilder:
    """Recomputes the tree from entries in index order; remembers the roots at chosen sizes."""

    def __init__(self, remember: Iterable[int] = ()) -> None:
        self._range = CompactRange()
        self._wanted = {s for s in remember if s > 0}
        self.roots: dict[int, bytes] = {}

    @property
    def size(self) -> int:
        return self._range.size

    def add(self, entries: Iterable[bytes]) -> None:
        for entry in entries:
            self._range.append(leaf_hash(entry))
            if self._range.size in self._wanted:
                self.roots[self._range.size] = self._range.root()

    def root(self) -> bytes:
        return self._range.root()


def check_root(signed: SignedCheckpoint, rebuilt: TreeRebuilder) -> None:
    """The rebuilt tree must have the checkpoint's size and root."""
    cp = signed.checkpoint
    if rebuilt.size != cp.size or rebuilt.root() != cp.root:
        raise RootMismatchError(
            f"the {rebuilt.size} entries served hash to a different root than the signed checkpoint of size {cp.size}",
            note=signed.note,
            size=cp.size,
            computed_root=rebuilt.root(),
        )


def check_old_root(previous: AuditState | None, signed: SignedCheckpoint, rebuilt: TreeRebuilder) -> None:
    """The entries served now must hash, at the previously trusted size, to the previously trusted root.

    Complements the consistency proof (checked by :meth:`client.core.trust.TrustState.advance`):
    an auditor holding every entry needs no proof to see a rewritten prefix. Raises
    :class:`InconsistencyError` with both signed notes (and no proof) on a mismatch.
    """
    if previous is None or previous.size == 0:
        return
    local = rebuilt.roots.get(previous.size)
    if local is not None and local != previous.root:
        raise InconsistencyError(
            f"the entries served hash to a different root at the trusted size {previous.size} (fork)",
            old_note=previous.note,
            new_note=signed.note,
            proof=[],
        )
