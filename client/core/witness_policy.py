"""Transparency log trust policies (https://c2sp.org/tlog-policy, the Sigsum policy format). Pure: no I/O.

A policy names the logs and witnesses one trusts and the quorum of cosignatures a
checkpoint needs::

    log <vkey> [<url>]                 # a log's Ed25519 note key (type 0x01); its name is the origin
    witness <name> <vkey> [<url>]      # a witness's cosignature/v1 key (type 0x04)
    group <name> all|any|<k> <member>...
    quorum <name>|none

Fields are separated by ASCII spaces and tabs; blank lines and lines starting with
``#`` are ignored. Witnesses and groups share one namespace (``none`` is reserved); a
group or the quorum may only name what earlier lines defined, each member at most
once, and ``1 <= k <= n``. Exactly one quorum line. No two logs, and no two
witnesses, may share a public key. Every error is a :class:`FormatError` that names
the line number and what is wrong.

:meth:`WitnessPolicy.evaluate` checks the signature lines of one signed checkpoint
note against the policy: which witnesses' cosignatures verify, whether the quorum
holds, which needed witnesses are absent, which lines fail, and which lines are under
no key of the policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from client.core.cosignature import CosignerKey
from client.core.note import NoteSignature, Verifier, split_signatures
from client.errors import FormatError

__all__ = [
    "MAX_POLICY_ENTRIES",
    "MAX_POLICY_SIZE",
    "PolicyGroup",
    "PolicyLog",
    "PolicyWitness",
    "QuorumResult",
    "WitnessPolicy",
]

MAX_POLICY_SIZE = 1 << 20  # bytes
"""Largest policy text :meth:`WitnessPolicy.parse` reads."""

MAX_POLICY_ENTRIES = 1024
"""Most logs, witnesses and groups (each) in one policy (the spec asks implementations for at least 32)."""

NONE = "none"
_FIELD_SEP = re.compile(r"[ \t]+")
_BAD_CHAR = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_DECIMAL = re.compile(r"[1-9][0-9]{0,8}")


@dataclass(frozen=True)
class PolicyLog:
    """A trusted log: its note verifier (whose name is the log's origin) and an optional URL."""

    verifier: Verifier
    url: str | None = None

    @property
    def origin(self) -> str:
        return self.verifier.name


@dataclass(frozen=True)
class PolicyWitness:
    """A witness: its policy-local name, its cosignature/v1 key and an optional submission-prefix URL."""

    name: str
    key: CosignerKey
    url: str | None = None


@dataclass(frozen=True)
class PolicyGroup:
    """A group that witnesses a checkpoint when at least ``threshold`` of its ``members`` do."""

    name: str
    threshold: int
    members: tuple[str, ...]


@dataclass(frozen=True)
class QuorumResult:
    """What one note's signature lines say under a policy.

    - ``satisfied``: the quorum holds on the verified cosignatures (always, under ``quorum none``).
      The log's own signature is not part of it: see ``logs``.
    - ``verified``: policy names of witnesses every line of whose key verifies, in policy order.
    - ``timestamps``: ``(name, timestamp)`` of each verified witness (its latest line).
    - ``missing``: witnesses the quorum counts (directly or through groups) that have no line at all.
    - ``bad``: witnesses with a line (matching name and key ID) that does not verify.
    - ``logs``: origins of the policy's logs whose signature verifies; ``bad_logs`` those whose does not.
    - ``unknown_lines``: signature lines under no key of the policy, log or witness.
    """

    satisfied: bool
    verified: tuple[str, ...]
    missing: tuple[str, ...]
    bad: tuple[str, ...]
    unknown_lines: tuple[NoteSignature, ...]
    timestamps: tuple[tuple[str, int], ...] = ()
    logs: tuple[str, ...] = ()
    bad_logs: tuple[str, ...] = ()


def _fail(lineno: int, what: str) -> FormatError:
    return FormatError(f"policy line {lineno}: {what}")


def _url(fields: list[str], at: int, lineno: int, keyword: str) -> str | None:
    if len(fields) > at + 1:
        raise _fail(lineno, f"too many fields for '{keyword}' (want {keyword} ... [url])")
    return fields[at] if len(fields) == at + 1 else None


class WitnessPolicy:
    """A parsed policy; build it with :meth:`parse`. Immutable."""

    __slots__ = ("_logs", "_witnesses", "_groups", "_quorum", "_by_name", "_needed")

    def __init__(
        self,
        logs: Iterable[PolicyLog],
        witnesses: Iterable[PolicyWitness],
        groups: Iterable[PolicyGroup],
        quorum: str,
    ) -> None:
        """Requires what :meth:`parse` checks (defined-before-use names, unique keys); prefer :meth:`parse`."""
        self._logs = tuple(logs)
        self._witnesses = tuple(witnesses)
        self._groups = tuple(groups)
        self._quorum = quorum
        self._by_name: dict[str, PolicyWitness | PolicyGroup] = {w.name: w for w in self._witnesses}
        self._by_name.update({g.name: g for g in self._groups})
        if quorum != NONE and quorum not in self._by_name:
            raise FormatError(f"policy quorum {quorum!r} names no witness or group")
        self._needed = self._reachable(quorum)

    # -- parsing -----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str | bytes) -> WitnessPolicy:
        """Parse a policy text (tlog-policy); raises :class:`FormatError` naming the line and the problem."""
        if isinstance(text, bytes | bytearray):
            if len(text) > MAX_POLICY_SIZE:
                raise FormatError(f"policy is {len(text)} bytes, over the limit of {MAX_POLICY_SIZE}")
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as e:
                raise FormatError(f"policy is not valid UTF-8 (byte {e.start})") from e
        if not isinstance(text, str):
            raise FormatError("a policy must be text")
        if len(text) > MAX_POLICY_SIZE:
            raise FormatError(f"policy is over the limit of {MAX_POLICY_SIZE} characters")
        logs: list[PolicyLog] = []
        witnesses: list[PolicyWitness] = []
        groups: list[PolicyGroup] = []
        names: set[str] = set()
        log_keys: set[bytes] = set()
        witness_keys: dict[bytes, str] = {}
        quorum: str | None = None
        for lineno, line in enumerate(text.split("\n"), start=1):
            bad = _BAD_CHAR.search(line)
            if bad:
                raise _fail(lineno, f"control character 0x{ord(bad.group()):02x} (only tab and newline are allowed)")
            stripped = line.strip(" \t")
            if not stripped or stripped.startswith("#"):
                continue
            keyword, *fields = _FIELD_SEP.split(stripped)
            if keyword == "log":
                if not fields:
                    raise _fail(lineno, "'log' needs a vkey (log <vkey> [url])")
                try:
                    verifier = Verifier.from_text(fields[0])
                except FormatError as e:
                    raise _fail(lineno, f"log vkey: {e}") from e
                if verifier.public_key in log_keys:
                    raise _fail(lineno, f"log {verifier.name}: another log line has the same public key")
                log_keys.add(verifier.public_key)
                logs.append(PolicyLog(verifier, _url(fields, 1, lineno, "log")))
                if len(logs) > MAX_POLICY_ENTRIES:
                    raise _fail(lineno, f"more than {MAX_POLICY_ENTRIES} logs")
            elif keyword == "witness":
                if len(fields) < 2:
                    raise _fail(lineno, "'witness' needs a name and a vkey (witness <name> <vkey> [url])")
                name = cls._new_name(fields[0], names, lineno)
                try:
                    key = CosignerKey.from_text(fields[1])
                except FormatError as e:
                    raise _fail(lineno, f"witness {name}: {e}") from e
                if key.public_key in witness_keys:
                    other = witness_keys[key.public_key]
                    raise _fail(lineno, f"witness {name} has the same public key as witness {other}")
                witness_keys[key.public_key] = name
                names.add(name)
                witnesses.append(PolicyWitness(name, key, _url(fields, 2, lineno, "witness")))
                if len(witnesses) > MAX_POLICY_ENTRIES:
                    raise _fail(lineno, f"more than {MAX_POLICY_ENTRIES} witnesses")
            elif keyword == "group":
                groups.append(cls._parse_group(fields, names, lineno))
                names.add(groups[-1].name)
                if len(groups) > MAX_POLICY_ENTRIES:
                    raise _fail(lineno, f"more than {MAX_POLICY_ENTRIES} groups")
            elif keyword == "quorum":
                if len(fields) != 1:
                    raise _fail(lineno, "'quorum' takes exactly one name (quorum <name>|none)")
                if quorum is not None:
                    raise _fail(lineno, "a second quorum line (a policy has exactly one)")
                if fields[0] != NONE and fields[0] not in names:
                    raise _fail(lineno, f"quorum {fields[0]!r} is not a witness or group defined on an earlier line")
                quorum = fields[0]
            else:
                raise _fail(lineno, f"unknown keyword {keyword[:40]!r} (want log, witness, group or quorum)")
        if quorum is None:
            raise FormatError("policy has no quorum line (write 'quorum none' to require no witness)")
        return cls(logs, witnesses, groups, quorum)

    @staticmethod
    def _new_name(name: str, names: set[str], lineno: int) -> str:
        if name == NONE:
            raise _fail(lineno, "'none' is reserved and cannot name a witness or group")
        if name in names:
            raise _fail(lineno, f"name {name!r} is already defined (witnesses and groups share one namespace)")
        return name

    @classmethod
    def _parse_group(cls, fields: list[str], names: set[str], lineno: int) -> PolicyGroup:
        if len(fields) < 3:
            raise _fail(lineno, "'group' needs a name, a threshold and at least one member "
                        "(group <name> all|any|<k> <member>...)")
        name = cls._new_name(fields[0], names, lineno)
        spec, members = fields[1], fields[2:]
        seen: set[str] = set()
        for member in members:
            if member == NONE:
                raise _fail(lineno, f"group {name}: 'none' cannot be a group member")
            if member == name or member not in names:
                raise _fail(lineno, f"group {name}: member {member!r} is not a witness or group "
                            "defined on an earlier line")
            if member in seen:
                raise _fail(lineno, f"group {name}: member {member!r} is listed twice")
            seen.add(member)
        if spec == "all":
            threshold = len(members)
        elif spec == "any":
            threshold = 1
        elif _DECIMAL.fullmatch(spec):
            threshold = int(spec)
            if threshold > len(members):
                raise _fail(lineno, f"group {name}: threshold {threshold} is more than its {len(members)} members")
        else:
            raise _fail(lineno, f"group {name}: threshold {spec[:20]!r} is not all, any or a decimal k >= 1")
        return PolicyGroup(name, threshold, tuple(members))

    # -- reading -----------------------------------------------------------------------------

    @property
    def logs(self) -> tuple[PolicyLog, ...]:
        return self._logs

    @property
    def witnesses(self) -> tuple[PolicyWitness, ...]:
        return self._witnesses

    @property
    def groups(self) -> tuple[PolicyGroup, ...]:
        return self._groups

    @property
    def quorum(self) -> str:
        """The quorum's name, or ``"none"``."""
        return self._quorum

    def witness(self, name: str) -> PolicyWitness | None:
        found = self._by_name.get(name)
        return found if isinstance(found, PolicyWitness) else None

    def _reachable(self, name: str) -> frozenset[str]:
        """Witness names the definition of ``name`` counts, directly or through groups."""
        found: set[str] = set()
        todo = [] if name == NONE else [name]
        while todo:
            entry = self._by_name[todo.pop()]
            if isinstance(entry, PolicyWitness):
                found.add(entry.name)
            else:
                todo.extend(entry.members)
        return frozenset(found)

    # -- deciding ----------------------------------------------------------------------------

    def satisfied_by(self, witnessed: Iterable[str]) -> bool:
        """Whether the quorum holds when exactly the witnesses named in ``witnessed`` have cosigned."""
        if self._quorum == NONE:
            return True
        present = set(witnessed)
        done = {w.name: w.name in present for w in self._witnesses}
        for g in self._groups:  # groups only name earlier definitions, so one pass in order suffices
            done[g.name] = sum(done[m] for m in g.members) >= g.threshold
        return done[self._quorum]

    def evaluate(self, note: bytes) -> QuorumResult:
        """Check every signature line of a signed checkpoint note against this policy.

        Lines are matched to keys by key name and key ID (signed-note). A witness
        counts as verified only if every line under its key verifies over the note's
        text; one failing line makes it ``bad``. Raises :class:`FormatError` for a
        malformed note; signature failures are reported, not raised.
        """
        body, lines = split_signatures(note)
        logs = {(log.verifier.name, log.verifier.key_id): log for log in self._logs}
        keys = {(w.key.name, w.key.key_id): w for w in self._witnesses}
        good: dict[str, int] = {}
        failed: set[str] = set()
        logs_good: set[str] = set()
        logs_failed: set[str] = set()
        unknown: dict[NoteSignature, None] = {}
        for sig in lines:
            log = logs.get((sig.name, sig.key_id))
            if log is not None:
                (logs_good if log.verifier.verify(body, sig.signature) else logs_failed).add(log.origin)
                continue
            witness = keys.get((sig.name, sig.key_id))
            if witness is None:
                unknown[sig] = None
                continue
            timestamp = witness.key.verify(body, sig.signature)
            if timestamp is None:
                failed.add(witness.name)
            else:
                good[witness.name] = max(timestamp, good.get(witness.name, timestamp))
        verified = [w.name for w in self._witnesses if w.name in good and w.name not in failed]
        return QuorumResult(
            satisfied=self.satisfied_by(verified),
            verified=tuple(verified),
            missing=tuple(w.name for w in self._witnesses
                          if w.name in self._needed and w.name not in good and w.name not in failed),
            bad=tuple(w.name for w in self._witnesses if w.name in failed),
            unknown_lines=tuple(unknown),
            timestamps=tuple((name, good[name]) for name in verified),
            logs=tuple(log.origin for log in self._logs if log.origin in logs_good and log.origin not in logs_failed),
            bad_logs=tuple(log.origin for log in self._logs if log.origin in logs_failed),
        )

    def __repr__(self) -> str:
        return (f"WitnessPolicy(logs={len(self._logs)}, witnesses={len(self._witnesses)}, "
                f"groups={len(self._groups)}, quorum={self._quorum!r})")
