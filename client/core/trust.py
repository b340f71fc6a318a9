"""The client's trust state: the last verified checkpoint of each log. Pure: no I/O.

Like the Go checksum database client, a checkpoint is trusted only if it is
signed by the log's key and proved consistent with the last one trusted
(RFC 9162 2.1.4). The tree never goes backwards, never forks: either raises
:class:`~client.errors.InconsistencyError` carrying both signed notes and the
proof, evidence a third party can check with nothing but the log's key.

The CLI (``client/cli/registry_cmds.py``) is the shell: it loads the state file,
fetches the latest checkpoint and a consistency proof, calls :meth:`TrustState.advance`,
and writes the new state back. The file format is the one ``provenance audit`` keeps
(``client.core.audit.AuditState``), so both commands share what they have verified.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from client.core.audit import AuditState, format_states, parse_state_bytes, parse_states
from client.core.checkpoint import SignedCheckpoint
from client.core.merkle import verify_consistency
from client.core.note import Verifier
from client.core.witness_policy import WitnessPolicy
from client.core.witnessed import check_signatures, require_quorum
from client.errors import InconsistencyError, ProofError, SignatureError


@dataclass(frozen=True)
class TrustState:
    """Last verified checkpoint per log origin. Immutable: :meth:`advance` returns a new state."""

    logs: Mapping[str, AuditState] = field(default_factory=dict)

    @classmethod
    def from_text(cls, text: str) -> TrustState:
        return cls(parse_states(text)) if text.strip() else cls()

    @classmethod
    def from_bytes(cls, data: bytes) -> TrustState:
        """The state of a state file's bytes (UTF-8 JSON; empty is no state). Raises FormatError."""
        return cls(parse_state_bytes(data))

    def to_text(self) -> str:
        return format_states(self.logs)

    def trusted(self, origin: str) -> AuditState | None:
        return self.logs.get(origin)

    def check_served_key(self, origin: str, served_key: str, where: str = "the trust state") -> None:
        """Raise :class:`KeyChangedError` if ``origin`` is known with a key other than ``served_key``."""
        old = self.logs.get(origin)
        if old is not None and old.verifier_key != served_key:
            raise key_changed(origin, old.verifier_key, served_key, where)

    def proof_needed(self, signed: SignedCheckpoint, witnessed: bool = False) -> tuple[int, int] | None:
        """The ``(old_size, new_size)`` consistency proof :meth:`advance` needs for ``signed``, if any.

        ``witnessed`` (advance with a policy): a cosigned checkpoint smaller than the trusted one needs
        the proof from its size to the trusted size."""
        old = self.logs.get(signed.checkpoint.origin)
        size = signed.checkpoint.size
        if old is None or old.size == 0 or size == old.size:
            return None
        if size < old.size:
            return (size, old.size) if witnessed and size > 0 else None
        return old.size, size

    def advance(self, verifier: Verifier, note: bytes, proof: list[bytes], policy: WitnessPolicy | None = None,
                accept_rotation: bool = False) -> tuple[TrustState, SignedCheckpoint]:
        """Trust the checkpoint ``note`` if it is signed by ``verifier`` and consistent with the last one.

        ``proof`` is the consistency proof from the trusted size to the new size (empty when
        there is no trusted checkpoint yet or the sizes are equal). A checkpoint smaller than
        the trusted one is a rollback, a different root at the same size a fork: both raise
        :class:`InconsistencyError` with both notes and the proof. A key that differs from
        the one remembered for this log raises :class:`SignatureError`.

        With a witness ``policy`` the note must also meet it (:func:`client.core.witnessed.require_quorum`,
        :class:`WitnessQuorumError` naming the missing witnesses), and a checkpoint smaller than the
        trusted one is accepted, not kept, when ``proof`` proves it a prefix of the trusted one (witnesses
        cosign a little behind the log); the state keeps the larger one.

        ``accept_rotation``: the operator handed the log over to ``verifier``'s key (the caller got that
        key out of band). The checkpoint is then held to the same rules against the last one trusted
        under the old key -- no rollback, no fork, consistent by ``proof`` -- so the new key's tree
        provably extends what the old key signed, and the state remembers the new key from then on.
        """
        signed = SignedCheckpoint.open(note, verifier)
        if policy is not None:
            require_quorum(check_signatures(note, verifier, policy))
        cp = signed.checkpoint
        old = self.logs.get(cp.origin)
        if old is not None and old.verifier_key != verifier.text() and not accept_rotation:
            raise key_changed(cp.origin, old.verifier_key, verifier.text())

        def fail(why: str) -> InconsistencyError:
            assert old is not None
            return InconsistencyError(why, old_note=old.note, new_note=signed.note, proof=list(proof))

        if old is not None and old.size > 0:
            if cp.size < old.size and policy is not None:
                try:
                    if cp.size > 0:
                        verify_consistency(cp.size, old.size, proof, cp.root, old.root)
                except ProofError as err:
                    raise fail(f"the cosigned checkpoint of size {cp.size} is not a prefix of the trusted "
                               f"size {old.size}: {err}") from err
                return self, signed
            if cp.size < old.size:
                raise fail(f"log {cp.origin!r} shrank from size {old.size} to {cp.size} (rollback)")
            if cp.size == old.size:
                if cp.root != old.root:
                    raise fail(f"log {cp.origin!r} signed two different roots for tree size {cp.size} (fork)")
            else:
                try:
                    verify_consistency(old.size, cp.size, proof, old.root, cp.root)
                except ProofError as err:
                    raise fail(
                        f"checkpoint of size {cp.size} is not consistent with the trusted size {old.size}: {err}"
                    ) from err
        if old is not None and cp.size <= old.size:
            return self, signed if policy is not None else SignedCheckpoint.open(old.note, verifier)
        logs = dict(self.logs)
        logs[cp.origin] = AuditState(cp.origin, verifier.text(), cp.size, cp.root, signed.note)
        return TrustState(logs), signed


class KeyChangedError(SignatureError):
    """A log known by its origin now comes with another key: a key rotation, or another log of the same name."""


def key_changed(origin: str, trusted_key: str, new_key: str, where: str = "the trust state") -> KeyChangedError:
    """The error for a known ``origin`` presented with ``new_key`` instead of ``trusted_key``, in plain words.

    ``where`` names the state that remembers the log (the CLI passes its file). The text says
    what happened and the two ways out; it never decides which one it is.
    """
    return KeyChangedError(
        f"the log {origin!r} is known in {where} with the key {trusted_key}, but it now comes with the key "
        f"{new_key}. Either its operator rotated the key: get the new key from them out of band (not from this "
        f"server), check it is {new_key}, and run `provenance audit --log-key <that key> --accept-key-rotation`, "
        "which trusts it only if its checkpoints extend the last one trusted under the old key (a consistency "
        f"proof); or this is a different log that reuses the name {origin!r} (for instance a "
        "second development server with the same origin): then it is not the log you knew; give each log its "
        "own origin (provenance serve --origin, or no --origin on a fresh data dir for a unique one) or keep "
        "its trust state apart (PROVENANCE_STATE_DIR)."
    )


def evidence_text(err: InconsistencyError) -> str:
    """The evidence of an inconsistency, printable and checkable by a third party."""
    import base64

    lines = [
        f"SECURITY: {err}",
        "",
        "--- checkpoint trusted before ---",
        err.old_note.decode("utf-8", "replace").rstrip("\n"),
        "--- checkpoint presented now ---",
        err.new_note.decode("utf-8", "replace").rstrip("\n"),
        f"--- consistency proof ({len(err.proof)} hashes) ---",
        *(base64.b64encode(h).decode() for h in err.proof),
    ]
    return "\n".join(lines) + "\n"
