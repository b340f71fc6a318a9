"""The log's key-status note: every identity event of the named identities up to a checkpoint. Pure.

A bundle shows a signer's key history through the identity records it carries; left alone, the
holder of a bundle could drop a revocation and the rest would still verify. The key-status note
closes that gap (docs/bundle.md, "Key status"): the log signs, with its own key, the list of log
indices of *every* identity event (register, rotate, revoke) of each named identity among the
first ``size`` entries of the checkpoint it names. The verifier then demands that the bundle
carry exactly those records for every identity it relies on, so omitting, adding or reordering
an identity event fails. Every event that changes a key's status names the key's identity
(docs/records.md, "Identities"), so a complete list per name is a complete list per key.

Text (a C2SP signed note, signed by the log's key)::

    provenance.dev/key-status@v1
    log <origin>
    size <tree size>
    root <base64 of the checkpoint's root hash>
    identity <name> <index> <index> ...      (one line per identity, names sorted, indices increasing)

The second line is not a decimal, so no checkpoint parser reads this note as a tree head
(domain separation: the same key signs both). Parsing is strict and canonical, like
:mod:`client.core.checkpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from client.core.checkpoint import Checkpoint
from client.core.note import MAX_NOTE_SIZE, Signer, Verifier, decode_base64, encode_base64, open_note, sign_note
from client.errors import FormatError, VerificationError

HEADER = "provenance.dev/key-status@v1"
MAX_IDENTITIES = 10_000
MAX_EVENTS = 10_000  # indices over all identities; a bundle carries at most 10,000 records anyway

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@/+-]{0,127}")  # docs/records.md identity names
_CONTROL = re.compile("[\x00-\x1f]")


class KeyStatusError(VerificationError):
    """The bundle's key-status note is missing, does not fit its checkpoint, or disagrees with its records."""

    def __init__(self, part: str, message: str) -> None:
        super().__init__(f"{part}: {message}")
        self.part = part


@dataclass(frozen=True, slots=True)
class KeyStatusNote:
    """The log's statement: among entries ``0 .. size-1`` of the tree with ``root``, the identity
    events of ``events[i][0]`` are exactly at indices ``events[i][1]``.

    Validated when constructed: names sorted and unique, each with 1 or more strictly increasing
    indices below ``size``, bounded counts. Raises :class:`FormatError` otherwise.
    """

    origin: str
    size: int
    root: bytes
    events: tuple[tuple[str, tuple[int, ...]], ...]

    def __post_init__(self) -> None:
        # The checkpoint's own constructor checks origin, size and root.
        Checkpoint(self.origin, self.size, self.root)
        if len(self.events) > MAX_IDENTITIES:
            raise FormatError(f"key status lists {len(self.events)} identities, more than {MAX_IDENTITIES}")
        total = 0
        previous = ""
        for name, indices in self.events:
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise FormatError(f"key status identity name {name[:40]!r} is not a valid identity name")
            if previous and name <= previous:
                raise FormatError(f"key status identities are not sorted and unique ({name!r} after {previous!r})")
            previous = name
            if not indices:
                raise FormatError(f"key status lists no events for {name!r}")
            total += len(indices)
            for a, b in zip(indices, indices[1:], strict=False):
                if not a < b:
                    raise FormatError(f"key status indices of {name!r} are not strictly increasing")
            if not all(type(i) is int and 0 <= i < self.size for i in indices):
                raise FormatError(f"key status lists an index of {name!r} outside the tree of size {self.size}")
        if total > MAX_EVENTS:
            raise FormatError(f"key status lists {total} events, more than {MAX_EVENTS}")

    def by_name(self) -> dict[str, tuple[int, ...]]:
        return dict(self.events)

    def to_text(self) -> str:
        """The note text (see the module docstring)."""
        lines = [HEADER, f"log {self.origin}", f"size {self.size}", f"root {encode_base64(self.root)}"]
        lines += [" ".join(["identity", name, *map(str, indices)]) for name, indices in self.events]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def from_text(cls, text: str) -> KeyStatusNote:
        """Parse note text; only the canonical form :meth:`to_text` writes is accepted."""
        if len(text) > MAX_NOTE_SIZE or not text.endswith("\n"):
            raise FormatError("key status text is too long or does not end in a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 4 or lines[0] != HEADER:
            raise FormatError(f"key status text must start with {HEADER!r} and name log, size and root")
        origin = lines[1].removeprefix("log ")
        if not lines[1].startswith("log ") or _CONTROL.search(origin):
            raise FormatError("key status second line must be 'log <origin>'")
        size_text = lines[2].removeprefix("size ")
        if not lines[2].startswith("size ") or not _DECIMAL.fullmatch(size_text):
            raise FormatError("key status third line must be 'size <canonical decimal>'")
        if not lines[3].startswith("root "):
            raise FormatError("key status fourth line must be 'root <base64>'")
        root = decode_base64(lines[3].removeprefix("root "), "key status root")
        events = []
        for line in lines[4:]:
            words = line.split(" ")
            if len(words) < 3 or words[0] != "identity" or not all(_DECIMAL.fullmatch(w) for w in words[2:]):
                raise FormatError(f"key status line {line[:60]!r} is not 'identity <name> <index> ...'")
            events.append((words[1], tuple(int(w) for w in words[2:])))
        note = cls(origin, int(size_text), root, tuple(events))
        if note.to_text() != text:
            raise FormatError("key status text is not in canonical form")
        return note


def make_key_status(checkpoint: Checkpoint, events: Mapping[str, Iterable[int]]) -> KeyStatusNote:
    """The key-status statement for ``checkpoint``: for each name, its identity events' indices."""
    listed = tuple((name, tuple(sorted(events[name]))) for name in sorted(events))
    return KeyStatusNote(checkpoint.origin, checkpoint.size, checkpoint.root, listed)


def sign_key_status(note: KeyStatusNote, signer: Signer) -> bytes:
    """The signed note of ``note`` by the log's key."""
    return sign_note(note.to_text(), [signer])


def open_key_status(data: bytes, verifier: Verifier, checkpoint: Checkpoint) -> KeyStatusNote:
    """Verify the log's signature on a key-status note and that it speaks of ``checkpoint``.

    Raises :class:`KeyStatusError` (part ``key_status``) for a bad signature, a malformed text,
    or a note about another log, size or root.
    """
    try:
        opened = open_note(data, [verifier])
        note = KeyStatusNote.from_text(opened.text)
    except (FormatError, VerificationError) as err:
        raise KeyStatusError("key_status", str(err)) from err
    if (note.origin, note.size, note.root) != (checkpoint.origin, checkpoint.size, checkpoint.root):
        raise KeyStatusError("key_status", f"speaks of log {note.origin!r} at size {note.size}, not of the "
                                           f"bundle's checkpoint ({checkpoint.origin!r} at size {checkpoint.size})")
    return note


def check_identity_records(note: KeyStatusNote, identities: Iterable[tuple[int, int, str]]) -> None:
    """Require the bundle's identity records to be exactly the events ``note`` lists.

    ``identities`` holds ``(position in the bundle, log index, identity name)`` of every identity
    record of the bundle. Every record's name must be listed, and every index listed for a name
    must be carried. Raises :class:`KeyStatusError` naming the record or the missing event.
    """
    listed = note.by_name()
    carried: dict[str, set[int]] = {}
    for position, index, name in identities:
        want = listed.get(name)
        if want is None or index not in want:
            raise KeyStatusError(f"records[{position}]", f"is an identity event of {name!r} at index {index} "
                                                         "that the log's key status does not list")
        carried.setdefault(name, set()).add(index)
    for name, indices in note.events:
        missing = [i for i in indices if i not in carried.get(name, set())]
        if missing:
            raise KeyStatusError("key_status", f"lists identity events of {name!r} at indices {missing} that the "
                                               "bundle does not carry (an identity event was left out)")


def check_against_log(note: KeyStatusNote, identities: Iterable[tuple[int, str]]) -> None:
    """A monitor's check: ``note`` agrees with the log's own identity events.

    ``identities`` holds ``(index, name)`` of every identity record among the log's first
    ``note.size`` entries (replayed from the log, whose root the monitor checked against the
    checkpoint). Raises :class:`KeyStatusError` if the log signed a false statement; the signed
    note is then evidence against the log's operator.
    """
    actual: dict[str, list[int]] = {}
    for index, name in identities:
        if index < note.size:
            actual.setdefault(name, []).append(index)
    for name, indices in note.events:
        if sorted(actual.get(name, [])) != list(indices):
            raise KeyStatusError("key_status", f"the log signed events {list(indices)} for {name!r}, but its entries "
                                               f"hold {sorted(actual.get(name, []))}")
