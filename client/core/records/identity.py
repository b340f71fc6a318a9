"""The identity rule: which key speaks for which name, replayed over identity events in log order. Pure.

One implementation, used by both sides of a dispute: the registry's sequencer hook applies it to
every entry before logging it (:mod:`ledger.registry.hook`, over its index store), and the offline
bundle verifier replays it over the identity records a bundle carries
(:mod:`client.core.bundle.verify`, over a dict). Neither side re-states the rule; each supplies
only a :class:`IdentityView` (where the current state is read from) and a :class:`NamePolicy`
(the operator's allowlist on the registry; on the verifier, which cannot know the operator's
policy, one that permits what the log admitted).

The rule (docs/records.md, "Identities"):

* **register**: signed by the key it registers; the key is new, the name unclaimed. A name whose
  key was revoked stays taken under open registration (only an allowlist can give it a new key).
* **rotate**: signed by the name's current, active key; the new key is new; the old key is
  *retired* from that index on.
* **revoke**: signed by the key itself (always allowed, even once rotated out) or by the name's
  current key; the key must be registered under that name and not already revoked. Revoking the
  current key leaves the name with no key.
* Any other record's signer must be a registered, **active** key the policy still permits.

:func:`apply_identity` returns the changes to make; it reads, never writes, so a refusal leaves
nothing to undo.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from client.core.records.model import Identity, IdentityEvent
from client.core.records.signing import key_text
from client.errors import InvalidInputError, SignatureError


class UnknownSignerError(SignatureError):
    """The signer key is not registered under any name."""


class RevokedKeyError(SignatureError):
    """The signer key was revoked or rotated out; it signs nothing new."""


class NotAllowedError(SignatureError):
    """The operator's allowlist does not list this name and key."""


class ConflictError(InvalidInputError):
    """A name, key or name/version is already taken."""


class KeyStatus(enum.Enum):
    """A key's status; the stored byte values are the registry's (docs/registry.md)."""

    ACTIVE = 1
    RETIRED = 2
    REVOKED = 3

    @property
    def text(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class KeyState:
    """A registered key: the name it belongs to, its status since log index ``since``, registered at ``registered``."""

    name: str
    status: KeyStatus
    since: int
    registered: int


@dataclass(frozen=True, slots=True)
class NameState:
    """A claimed name: its current key (``None`` once that key was revoked) since log index ``since``."""

    key: bytes | None
    since: int


class IdentityView(Protocol):
    """Where the state before an event is read from."""

    def key_state(self, key: bytes) -> KeyState | None: ...

    def name_state(self, name: str) -> NameState | None: ...


class NamePolicy(Protocol):
    """Who may hold a name (ledger/registry/policy.py on the registry)."""

    @property
    def is_open(self) -> bool: ...

    def permits(self, name: str, key: bytes) -> bool: ...


class AdmittedPolicy:
    """The verifier's policy: the log admitted each event under its operator's policy, which a bundle
    does not carry, so every name/key pair is permitted and a revoked name may take a new key."""

    is_open = False

    def permits(self, name: str, key: bytes) -> bool:
        return True


@dataclass(frozen=True, slots=True)
class IdentityChange:
    """What an admitted identity event changes: new key states and name states."""

    keys: tuple[tuple[bytes, KeyState], ...]
    names: tuple[tuple[str, NameState], ...]


def check_signer(view: IdentityView, signer: bytes, policy: NamePolicy) -> str:
    """The name ``signer`` speaks for; raises unless it is registered, active and still permitted."""
    state = view.key_state(signer)
    if state is None:
        raise UnknownSignerError(f"signer key {key_text(signer)} is not registered under any name")
    if state.status is KeyStatus.REVOKED:
        raise RevokedKeyError(f"signer key {key_text(signer)} of {state.name!r} was revoked at index {state.since}")
    if state.status is KeyStatus.RETIRED:
        raise RevokedKeyError(f"signer key {key_text(signer)} of {state.name!r} was rotated out at index {state.since}")
    if not policy.permits(state.name, signer):
        raise NotAllowedError(f"the allowlist no longer lists {state.name!r} with key {key_text(signer)}")
    return state.name


def apply_identity(view: IdentityView, s: Identity, signer: bytes, index: int, policy: NamePolicy) -> IdentityChange:
    """The changes identity event ``s``, signed by ``signer`` and logged at ``index``, makes; raises if refused."""
    name_state = view.name_state(s.name)
    current = name_state.key if name_state is not None else None
    key_state = view.key_state(s.key)
    match s.event:
        case IdentityEvent.REGISTER:
            if signer != s.key:
                raise SignatureError(f"registering {s.name!r} must be signed by the key it registers")
            if not policy.permits(s.name, s.key):
                raise NotAllowedError(f"the allowlist does not list {s.name!r} with key {key_text(s.key)}")
            if key_state is not None:
                raise ConflictError(f"key {key_text(s.key)} is already registered, under {key_state.name!r}")
            if current is not None:
                raise ConflictError(f"name {s.name!r} is already registered to another key")
            if name_state is not None and policy.is_open:
                raise ConflictError(f"name {s.name!r} had its key revoked; only an allowlist can re-register it")
            return IdentityChange(((s.key, KeyState(s.name, KeyStatus.ACTIVE, index, index)),),
                                  ((s.name, NameState(s.key, index)),))
        case IdentityEvent.ROTATE:
            signer_name = check_signer(view, signer, policy)
            if signer_name != s.name or current != signer:
                raise SignatureError(f"rotating {s.name!r} must be signed by its current key")
            if key_state is not None:
                raise ConflictError(f"key {key_text(s.key)} is already registered, under {key_state.name!r}")
            if not policy.permits(s.name, s.key):
                raise NotAllowedError(f"the allowlist does not list {s.name!r} with key {key_text(s.key)}")
            old = view.key_state(signer)
            assert old is not None  # check_signer found it
            return IdentityChange(
                ((signer, KeyState(s.name, KeyStatus.RETIRED, index, old.registered)),
                 (s.key, KeyState(s.name, KeyStatus.ACTIVE, index, index))),
                ((s.name, NameState(s.key, index)),),
            )
        case IdentityEvent.REVOKE:
            # A key may always revoke itself, even after rotation.
            self_revoke = signer == s.key
            signer_name = s.name if self_revoke else check_signer(view, signer, policy)
            if key_state is None or key_state.name != s.name:
                raise UnknownSignerError(f"key {key_text(s.key)} is not registered under {s.name!r}")
            if key_state.status is KeyStatus.REVOKED:
                raise ConflictError(f"key {key_text(s.key)} was already revoked at index {key_state.since}")
            if not self_revoke and not (signer_name == s.name and current == signer):
                raise SignatureError(
                    f"revoking a key of {s.name!r} must be signed by that key or the name's current key"
                )
            names = ((s.name, NameState(None, index)),) if current == s.key else ()
            return IdentityChange(((s.key, KeyState(s.name, KeyStatus.REVOKED, index, key_state.registered)),), names)


class IdentityReplay:
    """The identity state held in memory, for a replay over a known set of events (a bundle's)."""

    def __init__(self, policy: NamePolicy | None = None) -> None:
        self.policy: NamePolicy = policy if policy is not None else AdmittedPolicy()
        self.keys: dict[bytes, KeyState] = {}
        self.names: dict[str, NameState] = {}

    def key_state(self, key: bytes) -> KeyState | None:
        return self.keys.get(key)

    def name_state(self, name: str) -> NameState | None:
        return self.names.get(name)

    def apply(self, s: Identity, signer: bytes, index: int) -> None:
        """Apply one event, logged at ``index`` (events must come in log order); raises if refused."""
        change = apply_identity(self, s, signer, index, self.policy)
        self.keys.update(change.keys)
        self.names.update(change.names)

    def signer(self, signer: bytes) -> str:
        """The name an active ``signer`` speaks for at this point of the replay; raises otherwise."""
        return check_signer(self, signer, self.policy)

    def inactive(self) -> Iterable[tuple[bytes, KeyState]]:
        """Keys retired or revoked so far."""
        return ((k, st) for k, st in self.keys.items() if st.status is not KeyStatus.ACTIVE)
