"""``serve --witness-policy FILE``: read the policy, and run witness cosigning beside the log.

The entry point reads the policy before anything is opened (:func:`load_policy`: a malformed file
stops the start, naming the line), then starts :class:`ledger.log.witnessing.Witnessing` once the
log is open (:func:`start_witnessing`). The newest cosigned checkpoint is kept in
``DATA/cosigned-checkpoint`` (replaced atomically; not synced: a crash may lose the newest, and the
witnesses cosign the next checkpoint anyway), reloaded at start after its checks.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from client.core.note import Verifier
from client.core.witness_policy import WitnessPolicy
from client.errors import FormatError, InvalidInputError
from ledger.log.witnessing import Witnessing

_log = logging.getLogger(__name__)

COSIGNED_FILE = "cosigned-checkpoint"


def load_policy(path: Path, origin: str) -> WitnessPolicy:
    """The policy in ``path``; :class:`InvalidInputError` naming the file (and the line) when it is not one.

    A policy whose witnesses have no URL cannot be pushed to; a policy that lists logs but not
    ``origin`` was written for another log. Both are refused: serving them would cosign nothing.
    """
    try:
        text = path.read_bytes()
    except OSError as err:
        raise InvalidInputError(f"--witness-policy: cannot read {path}: {err}") from err
    try:
        policy = WitnessPolicy.parse(text)
    except FormatError as err:
        raise InvalidInputError(f"--witness-policy {path}: {err}") from err
    if not any(w.url for w in policy.witnesses):
        raise InvalidInputError(f"--witness-policy {path}: no witness has a URL to push checkpoints to "
                                "(witness NAME VKEY URL)")
    if policy.logs and origin not in {log.origin for log in policy.logs}:
        raise InvalidInputError(f"--witness-policy {path} lists logs {[log.origin for log in policy.logs]} but "
                                f"not this log, {origin!r}")
    for w in policy.witnesses:
        if not w.url:
            _log.warning("witness %s of the policy has no URL: it is never asked (it may still count if "
                         "another log feeds it)", w.name)
    return policy


def _persist_to(path: Path) -> Any:
    def persist(note: bytes) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(note)
        os.replace(tmp, path)

    return persist


def start_witnessing(policy: WitnessPolicy, data_dir: Path, log: Any, verifier: Verifier) -> Witnessing:
    """Witnessing for ``log`` under ``policy``, started; its saved cosigned checkpoint is reloaded first.

    The policy's log line for this origin, if any, must be this log's key (else the clients using the
    same policy would refuse every checkpoint).
    """
    for entry in policy.logs:
        if entry.origin == verifier.name and entry.verifier != verifier:
            raise InvalidInputError(f"the witness policy names the log {verifier.name!r} with key "
                                    f"{entry.verifier.text()}, but this log signs with {verifier.text()}")
    path = data_dir / COSIGNED_FILE
    try:
        saved = path.read_bytes() if path.exists() else None
    except OSError as err:
        _log.warning("cannot read %s (ignored): %s", path, err)
        saved = None
    witnessing = Witnessing(policy, verifier, saved=saved, persist=_persist_to(path))
    witnessing.start(log)
    return witnessing
