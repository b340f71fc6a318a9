"""Who may register a name: the operator's policy (docs/registry.md section 2). Pure.

Open registration (the default): a key registers its own name, first come, first
served. Allowlist: only (name, key) pairs listed in the operator's file.

Opaque entries (log entries that are not registry records, appended with ``AddEntries``) carry
no signer the policy could check. Under open registration anyone may append them (the log stays
a general log); under an allowlist they are refused unless the operator allows them explicitly
(``provenance serve --allow-raw-entries``), so an allowlist governs every way into the log.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.core.records import check_identity_name, parse_key
from client.core.records.signing import key_text
from client.errors import FormatError


@dataclass(frozen=True, slots=True)
class Policy:
    """``allow`` is None for open registration, else the allowed (name, key) pairs.

    ``allow_raw``: under an allowlist, accept opaque (non-record) entries too; open registration
    always does.
    """

    allow: frozenset[tuple[str, bytes]] | None = None
    allow_raw: bool = False

    @property
    def is_open(self) -> bool:
        return self.allow is None

    def permits(self, name: str, key: bytes) -> bool:
        return self.allow is None or (name, key) in self.allow

    @property
    def admits_raw_entries(self) -> bool:
        """Whether an entry that is not a registry record may be appended (see the module docstring)."""
        return self.allow is None or self.allow_raw

    def describe(self) -> str:
        if self.allow is None:
            return "open registration"
        raw = "accepted" if self.allow_raw else "refused"
        return f"allowlist of {len(self.allow)} keys, opaque entries {raw}"


def parse_allowlist(text: str, allow_raw: bool = False) -> Policy:
    """Parse an allowlist file: one ``NAME ed25519:BASE64`` per line; ``#`` comments and blank lines ignored.

    ``allow_raw``: the policy also admits opaque entries (:attr:`Policy.allow_raw`)."""
    allow: set[tuple[str, bytes]] = set()
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise FormatError(f"allowlist line {n}: want 'NAME ed25519:BASE64', got {line!r}")
        try:
            check_identity_name(parts[0])
            key = parse_key(parts[1])
        except Exception as err:
            raise FormatError(f"allowlist line {n}: {err}") from err
        allow.add((parts[0], key))
    return Policy(frozenset(allow), allow_raw)


def format_allowlist(pairs: list[tuple[str, bytes]]) -> str:
    return "".join(f"{name} {key_text(key)}\n" for name, key in pairs)
