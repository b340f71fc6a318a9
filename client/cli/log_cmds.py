"""Log commands: ``checkpoint``, ``log-key``, ``log append|entries|inclusion|consistency``, ``audit``.

Thin: parse flags, call :mod:`client.remote.log`, print. (``serve`` and ``backup`` are in
``client/cli/serve_cmds.py``.) ``--server`` and the TLS flags come from ``client/cli/_connect.py``,
shared with every command that talks to a server. JSON output is one object per
line with standard base64 for bytes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from client.cli import _connect
from client.cli._connect import add_server_args, add_tls_args, ledger_client
from client.errors import InvalidInputError, VerificationError

DEFAULT_SERVER = _connect.DEFAULT_SERVER  # serve_cmds reads it here
DEFAULT_DATA = Path("provenance-data")
PUBLIC_KEY_FILE = "log.pub"
KEY_HISTORY_FILE = "log-keys"
STATE_FILE = "audit-state.json"
APPEND_BATCH_BYTES = 16 << 20  # bytes of entries per AddEntries call (the server takes 64 MiB)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _print_json(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")


def _hash_arg(text: str) -> bytes:
    """A 32-byte hash given as 64 hex digits or standard base64."""
    try:
        raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as err:
        raise InvalidInputError(f"{text!r} is not a hash in hex or base64") from err
    if len(raw) != 32:
        raise InvalidInputError(f"hash is {len(raw)} bytes, want 32")
    return raw


def _size_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("checkpoint", help="print the checkpoint exactly as signed: the newest one the "
                              "server's witnesses cosigned, with their lines, else the latest the log signed")
    add_server_args(p)
    p.add_argument("--latest", action="store_true",
                   help="print the latest checkpoint the log signed, even when witnesses have not cosigned it yet")
    p.set_defaults(func=_checkpoint)

    p = subparsers.add_parser("log-key", help="print the log's verifier key")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--server", default=None, metavar="HOST:PORT")
    g.add_argument("--data", type=Path, default=None, metavar="DIR")
    p.add_argument("--all", action="store_true",
                   help="with --data: every key the log has signed with, oldest first (DATA/log-keys)")
    add_tls_args(p)
    p.set_defaults(func=_log_key)

    log = subparsers.add_parser("log", help="append to and read from the log")
    sub = log.add_subparsers(dest="log_command", required=True, metavar="LOG_COMMAND")
    p = sub.add_parser("append", help="append each file's bytes as one entry")
    add_server_args(p)
    p.add_argument("--wait", action="store_true", help="wait for a checkpoint; print it and each inclusion proof")
    p.add_argument("--cosigned", action="store_true",
                   help="with --wait: wait for a checkpoint the server's witness quorum cosigned")
    p.add_argument("files", nargs="+", type=Path, metavar="FILE")
    p.set_defaults(func=_append)

    p = sub.add_parser("entries", help="print entries [start, end) as JSON lines")
    add_server_args(p)
    p.add_argument("--start", type=_size_arg, required=True)
    p.add_argument("--end", type=_size_arg, required=True)
    p.set_defaults(func=_entries)

    p = sub.add_parser("inclusion", help="print an inclusion proof")
    add_server_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--index", type=_size_arg)
    g.add_argument("--leaf-hash", metavar="HASH", help="hex or base64")
    p.add_argument("--size", type=_size_arg, default=0, help="tree size (default: latest)")
    p.set_defaults(func=_inclusion)

    p = sub.add_parser("consistency", help="print a consistency proof")
    add_server_args(p)
    p.add_argument("--from", dest="old", type=_size_arg, required=True, metavar="M")
    p.add_argument("--to", dest="new", type=_size_arg, required=True, metavar="N")
    p.set_defaults(func=_consistency)

    p = subparsers.add_parser("audit", help="recompute the whole log and check it against its checkpoints")
    add_server_args(p)
    p.add_argument("--log-key", default=None, metavar="KEY|FILE", help="pin the log key (default: trust on first use)")
    p.add_argument("--state", type=Path, default=None, metavar="FILE", help="state file (default under the config dir)")
    p.add_argument("--policy", type=Path, default=None, metavar="FILE",
                   help="witness policy: audit the newest cosigned checkpoint and refuse it below the quorum")
    p.add_argument("--accept-key-rotation", action="store_true",
                   help="the log was handed over to the --log-key key (got out of band): trust it if its checkpoint "
                        "extends the last one trusted under the old key (docs/operations.md, Key rotation)")
    p.set_defaults(func=_audit)


# -- reading commands ------------------------------------------------------------------------------


def _checkpoint(args: argparse.Namespace) -> int:
    with ledger_client(args) as c:
        latest, cosigned = c.checkpoints()
    note = latest if args.latest or cosigned is None else cosigned
    sys.stdout.buffer.write(note)
    sys.stdout.flush()
    return 0


def _log_key(args: argparse.Namespace) -> int:
    if args.all and args.data is None:
        raise InvalidInputError("--all reads the key history of a data dir: give --data")
    if args.data is not None:
        keys = _key_history(args.data) if args.all else [_local_key(args.data)]
        sys.stdout.write("".join(k + "\n" for k in keys))
        return 0
    if args.server is None:
        args.server = DEFAULT_SERVER
    with ledger_client(args) as c:
        sys.stdout.write(c.log_info().verifier_key + "\n")
    return 0


def _local_key(data: Path) -> str:
    """The verifier key of the log in ``data``: ``DATA/log.pub``, written by ``serve``."""
    from client.core.note import Verifier

    path = data / PUBLIC_KEY_FILE
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise InvalidInputError(f"{path} does not exist; start `provenance serve --data {data}` once") from None
    return Verifier.from_text(text).text()


def _key_history(data: Path) -> list[str]:
    """Every verifier key in ``DATA/log-keys`` (kept by ``serve``; see docs/operations.md, key rotation)."""
    from client.core.note import Verifier

    path = data / KEY_HISTORY_FILE
    if not path.exists():
        return [_local_key(data)]  # a log from before the history was kept: its one key
    return [Verifier.from_text(line).text() for line in path.read_text(encoding="utf-8").split()]


def _entries(args: argparse.Namespace) -> int:
    if args.end <= args.start:
        raise InvalidInputError(f"empty range [{args.start}, {args.end})")
    with ledger_client(args) as c:
        for i, entry in enumerate(c.iter_entries(args.start, args.end), start=args.start):
            _print_json({"index": i, "entry": _b64(entry)})
    return 0


def _inclusion(args: argparse.Namespace) -> int:
    from client.core import merkle

    with ledger_client(args) as c:
        if args.index is not None:
            p = c.inclusion_proof(index=args.index, tree_size=args.size)
            leaf = merkle.leaf_hash(c.entries(p.index, p.index + 1)[0])  # asked by index: hash the entry ourselves
        else:
            leaf = _hash_arg(args.leaf_hash)
            p = c.inclusion_proof(leaf_hash=leaf, tree_size=args.size)
    proof = [_b64(h) for h in p.hashes]
    _print_json({"tree_size": p.tree_size, "index": p.index, "leaf_hash": _b64(leaf), "proof": proof})
    return 0


def _consistency(args: argparse.Namespace) -> int:
    with ledger_client(args) as c:
        p = c.consistency_proof(args.old, args.new)
    _print_json({"old_size": p.old_size, "new_size": p.new_size, "proof": [_b64(h) for h in p.hashes]})
    return 0


# -- append ----------------------------------------------------------------------------------------


def _batches(paths: list[Path], max_entries: int, max_bytes: int) -> Iterator[list[tuple[Path, bytes]]]:
    """Files read lazily and grouped into batches under the server's entry count and a byte budget."""
    batch: list[tuple[Path, bytes]] = []
    size = 0
    for path in paths:
        blob = path.read_bytes()
        if batch and (len(batch) >= max_entries or size + len(blob) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append((path, blob))
        size += len(blob)
    if batch:
        yield batch


def _append(args: argparse.Namespace) -> int:
    from client.core import merkle
    from client.core.checkpoint import open_checkpoint
    from client.core.note import Verifier

    with ledger_client(args) as c:
        info = c.log_info()
        verifier = Verifier.from_text(info.verifier_key)
        for batch in _batches(args.files, max(1, info.max_batch_entries), APPEND_BATCH_BYTES):
            result = c.add_entries([b for _, b in batch], wait_for_checkpoint=args.wait,
                                   wait_for_cosignatures=args.wait and args.cosigned)
            cp = open_checkpoint(result.checkpoint, verifier) if args.wait and result.checkpoint else None
            for (path, blob), added in zip(batch, result.entries, strict=True):
                if added.leaf_hash != merkle.leaf_hash(blob):
                    raise InvalidInputError(f"server returned a wrong leaf hash for {path}")
                out: dict[str, Any] = {
                    "file": str(path),
                    "index": added.index,
                    "leaf_hash": _b64(added.leaf_hash),
                    "duplicate": added.duplicate,
                }
                if cp is not None and result.checkpoint is not None:
                    merkle.verify_inclusion(added.index, cp.size, added.leaf_hash, added.inclusion_proof, cp.root)
                    out["tree_size"] = cp.size
                    out["inclusion_proof"] = [_b64(h) for h in added.inclusion_proof]
                    out["checkpoint"] = result.checkpoint.decode("utf-8")
                _print_json(out)
    return 0


# -- audit -----------------------------------------------------------------------------------------


def state_path(explicit: Path | None = None) -> Path:
    """The trust/audit state file: ``explicit``, else ``$PROVENANCE_STATE_DIR`` or ``~/.config/provenance``."""
    if explicit is not None:
        return explicit
    base = os.environ.get("PROVENANCE_STATE_DIR")
    root = Path(base) if base else Path.home() / ".config" / "provenance"
    return root / STATE_FILE


def _pinned_key(value: str | None) -> str | None:
    from client.cli._registry_common import read_log_key  # the one parser of --log-key (exit 2 when malformed)

    return None if value is None else read_log_key(value)


def _audit(args: argparse.Namespace) -> int:
    from client.cli._registry_common import pick_checkpoint, policy_log_key, read_policy
    from client.core import audit
    from client.core.checkpoint import SignedCheckpoint
    from client.core.trust import TrustState
    from client.core.witnessed import WitnessQuorumError
    from client.errors import InconsistencyError

    if args.accept_key_rotation and args.log_key is None:
        raise InvalidInputError("--accept-key-rotation needs --log-key: the new key, as its operator published it "
                                "(never the key this server presents)")
    policy = read_policy(args.policy)
    path = state_path(args.state)
    trust = TrustState.from_bytes(path.read_bytes()) if path.exists() else TrustState()
    with ledger_client(args) as c:
        info = c.log_info()
        previous = trust.trusted(info.origin)
        pinned = _pinned_key(args.log_key)
        verifier = audit.choose_verifier(info.origin, info.verifier_key, pinned, previous, policy)
        note = pick_checkpoint(c, policy)
        try:
            if args.log_key is None and policy_log_key(policy, info.origin) is None:
                trust.check_served_key(info.origin, info.verifier_key, str(path))
            signed = SignedCheckpoint.open(note, verifier)
            rebuilt = audit.TreeRebuilder([previous.size] if previous else [])
            if not (previous and signed.checkpoint.size < previous.size):  # a rollback fails in advance()
                rebuilt.add(c.iter_entries(0, signed.checkpoint.size))
                audit.check_root(signed, rebuilt)
            sizes = trust.proof_needed(signed, witnessed=policy is not None)
            proof = list(c.consistency_proof(*sizes).hashes) if sizes else []
            trust, _ = trust.advance(verifier, note, proof, policy, accept_rotation=args.accept_key_rotation)
            audit.check_old_root(previous, signed, rebuilt)
        except WitnessQuorumError as err:
            _print_json({"ok": False, "error": str(err), "missing_witnesses": list(err.report.missing),
                         "bad_witnesses": list(err.report.bad), "checkpoint": note.decode("utf-8", "replace")})
            sys.stderr.write(f"provenance audit: {err}\n")
            return 1
        except InconsistencyError as err:
            _print_evidence(str(err), old_note=err.old_note, new_note=err.new_note, proof=err.proof)
            return 1
        except audit.RootMismatchError as err:
            old_note = previous.note if previous else None
            _print_evidence(str(err), new_note=err.note, old_note=old_note, computed_root=err.computed_root)
            return 1
        except VerificationError as err:  # e.g. the checkpoint's signature: show what was served
            if previous is None:
                raise
            _print_evidence(str(err), old_note=previous.note, new_note=note, proof=[])
            return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(trust.to_text(), encoding="utf-8")
    os.replace(tmp, path)
    cp = signed.checkpoint
    out: dict[str, Any] = {
        "ok": True,
        "origin": cp.origin,
        "tree_size": cp.size,
        "root": _b64(cp.root),
        "previous_size": previous.size if previous else None,
    }
    if policy is not None:
        from client.core.witnessed import check_signatures

        sig = check_signatures(note, verifier, policy)
        out["witnessed_by"] = [w.name for w in sig.witnesses if w.status == "verified"]
    _print_json(out)
    return 0


def _print_evidence(
    why: str,
    *,
    new_note: bytes,
    old_note: bytes | None = None,
    proof: list[bytes] | None = None,
    computed_root: bytes | None = None,
) -> None:
    evidence: dict[str, Any] = {"ok": False, "error": why, "new_checkpoint": new_note.decode("utf-8", "replace")}
    if old_note is not None:
        evidence["old_checkpoint"] = old_note.decode("utf-8", "replace")
    if proof is not None:
        evidence["proof"] = [_b64(h) for h in proof]
    if computed_root is not None:
        evidence["computed_root"] = _b64(computed_root)
    _print_json(evidence)
    sys.stderr.write(f"provenance audit: {why}\n")
