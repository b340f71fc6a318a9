"""Who may register a name: the operator's policy (docs/registry.md section 2). Pure.

Open registration (the default): a key registers its own name, first come, first
served. Allowlist: only (name, key) pairs listed in the operator's file.
"""

from __future__ import annotations

from dataclasses import dataclass

from client.core.records import check_identity_name, parse_key
from client.core.records.signing import key_text
from client.errors import FormatError


@dataclass(frozen=True, slots=True)
class Policy:
    """``allow`` is None for open registration, else the allowed (name, key) pairs."""

    allow: frozenset[tuple[str, bytes]] | None = None

    @property
    def is_open(self) -> bool:
        return self.allow is None

    def permits(self, name: str, key: bytes) -> bool:
        return self.allow is None or (name, key) in self.allow

    def describe(self) -> str:
        return "open registration" if self.allow is None else f"allowlist of {len(self.allow)} keys"


def parse_allowlist(text: str) -> Policy:
    """Parse an allowlist file: one ``NAME ed25519:BASE64`` per line; ``#`` comments and blank lines ignored."""
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
    return Policy(frozenset(allow))


def format_allowlist(pairs: list[tuple[str, bytes]]) -> str:
    return "".join(f"{name} {key_text(key)}\n" for name, key in pairs)
