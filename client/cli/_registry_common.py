"""Shared pieces of the registry commands: flags, key files, record references, trust state, output."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.cli._connect import add_server_args
from client.core.records import Kind, RecordSigner
from client.errors import FormatError, InvalidInputError, NotFoundError, ProvenanceError
from client.remote import LogClient
from client.remote.registry import RegistryClient

if TYPE_CHECKING:
    from client.core.witness_policy import WitnessPolicy


def add_common(p: argparse.ArgumentParser, *, key: bool = False) -> None:
    """``--server`` with the TLS flags (``client/cli/_connect.py``), ``--json``, and with ``key`` ``--key``."""
    add_server_args(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    if key:
        p.add_argument("--key", type=Path, required=True, metavar="FILE", help="private key (provenance keygen)")


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, sort_keys=True))


def load_signer(path: Path) -> RecordSigner:
    """The record signing key in ``path`` (PEM). Warns on stderr, as ssh does, when the file is readable
    or writable by group or others (its mode is checked on the file opened, not on the path)."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            data = f.read()
    except OSError as err:
        raise InvalidInputError(f"cannot read key file {path}: {err}") from err
    signer = RecordSigner.from_pem(data)
    if stat.S_ISREG(mode) and mode & 0o077:
        print(f"warning: private key file {path} has mode {stat.S_IMODE(mode):04o}: others may read it and sign "
              f"as you; run `chmod 600 {path}` (keygen writes 0600)", file=sys.stderr)
    return signer


def write_private_key(path: Path, signer: RecordSigner) -> None:
    """Write the PEM with mode 0600; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise InvalidInputError(f"{path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as f:
        f.write(signer.to_pem())


def resolve_ref(reg: RegistryClient, text: str) -> bytes:
    """A record id from REF: 64 hex digits, ``@INDEX``, or ``NAME@VERSION`` (a checkpoint, else a dataset)."""
    if len(text) == 64:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    if text.startswith("@") and text[1:].isdigit():
        return reg.at(int(text[1:])).id
    name, sep, version = text.rpartition("@")
    if sep and name:
        for kind in (Kind.CHECKPOINT, Kind.DATASET):
            try:
                return reg.by_name(kind, name, version).id
            except NotFoundError:
                continue
        raise NotFoundError(f"no checkpoint or dataset {name!r} version {version!r}")
    raise InvalidInputError(f"record reference {text!r} is not a 64-hex id, @INDEX or NAME@VERSION")


def split_ref(text: str, allowed: set[str], default: str) -> tuple[str, str]:
    """``REF[:QUALIFIER]`` -> (REF, QUALIFIER); the qualifier must be one of ``allowed``."""
    ref, sep, qual = text.rpartition(":")
    if not sep:
        return text, default
    if qual not in allowed:
        raise InvalidInputError(f"{qual!r} in {text!r} is not one of: {', '.join(sorted(allowed))}")
    return ref, qual


def read_log_key(value: str) -> str:
    """A verifier key given as text or as a file holding it (``--log-key``), checked to parse as one.

    A malformed key is a usage error (InvalidInputError, exit 2) naming ``--log-key``, not a failed
    verification (exit 1): nothing was verified."""
    from client.core.note import Verifier

    path = Path(value)
    if "+" not in value or path.is_file():
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidInputError(f"--log-key: cannot read log key file {value}: {err}") from err
    else:
        text = value.strip()
    try:
        Verifier.from_text(text)
    except FormatError as err:
        raise InvalidInputError(f"--log-key {value!r} is not a log verifier key: {err}") from err
    return text


def add_policy_arg(p: argparse.ArgumentParser) -> None:
    """``--policy FILE``: the witness policy checkpoints must meet (C2SP/Sigsum text)."""
    p.add_argument("--policy", type=Path, default=None, metavar="FILE",
                   help="witness policy (C2SP/Sigsum: log, witness, group, quorum lines): refuse a checkpoint "
                        "below its quorum, naming the missing witnesses (docs/guarantees.md, 'Witnesses')")


def read_policy(path: Path | None) -> WitnessPolicy | None:
    """The policy in ``path`` (None: none given); a usage error (exit 2) naming ``--policy`` when it is not one."""
    if path is None:
        return None
    from client.core.witness_policy import WitnessPolicy

    try:
        data = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"--policy: cannot read {path}: {err}") from err
    try:
        return WitnessPolicy.parse(data)
    except FormatError as err:
        raise InvalidInputError(f"--policy {path}: {err}") from err


def policy_log_key(policy: WitnessPolicy | None, origin: str) -> str | None:
    """The key ``policy`` lists for the log ``origin``, if it lists it (it then pins the log key)."""
    for entry in policy.logs if policy is not None else ():
        if entry.origin == origin:
            return entry.verifier.text()
    return None


def pick_checkpoint(c: LogClient, policy: WitnessPolicy | None) -> bytes:
    """The checkpoint to check: with a policy the server's cosigned one (else its latest, which then fails the
    quorum naming every witness missing), without one the latest."""
    latest, cosigned = c.checkpoints()
    return cosigned if policy is not None and cosigned is not None else latest


def trusted_key_and_advance(c: LogClient, note: bytes, pinned: str | None, state: Path | None,
                            policy: WitnessPolicy | None = None) -> str:
    """Trust ``note`` (a checkpoint the server of ``c`` just gave us) per the client trust state, and keep it.

    The log key is the pinned one, else the one ``policy`` lists, else the one remembered for the log,
    else the server's (first use). A checkpoint inconsistent with the last one trusted raises
    InconsistencyError with the evidence; with ``policy``, one below its quorum WitnessQuorumError.
    """
    from client.cli.log_cmds import state_path
    from client.core import audit
    from client.core.trust import TrustState

    path = state_path(state)
    trust = TrustState.from_bytes(path.read_bytes()) if path.exists() else TrustState()
    from client.core.checkpoint import SignedCheckpoint

    info = c.log_info()
    if pinned is None and policy_log_key(policy, info.origin) is None:
        trust.check_served_key(info.origin, info.verifier_key, str(path))
    verifier = audit.choose_verifier(info.origin, info.verifier_key, pinned, trust.trusted(info.origin), policy)
    signed = SignedCheckpoint.open(note, verifier)
    sizes = trust.proof_needed(signed, witnessed=policy is not None)
    proof = list(c.consistency_proof(*sizes).hashes) if sizes else []
    trust, _ = trust.advance(verifier, note, proof, policy)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(trust.to_text(), encoding="utf-8")
    os.replace(tmp, path)
    return verifier.text()


def fail_json(err: ProvenanceError) -> dict[str, Any]:
    return {"ok": False, "error": str(err), "part": getattr(err, "part", None), "type": type(err).__name__}
