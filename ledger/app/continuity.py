"""One data directory, one log: refusing to serve a data directory whose log has signed before as a new log.

A data directory remembers its log outside the store: ``origin`` (the log's name),
``log.pub`` (the verifier key it signs with) and ``log-keys`` (every key it used). They are
written only after the log opened (:func:`record_log_files`), so each of them means the key
has signed a checkpoint of this log. If the store is then missing or holds no log, a start
would take index 0 again and sign a checkpoint that conflicts with every one signed before:
:func:`check_store_present` refuses that (:class:`LostStoreError`, naming what is there and
what is missing). Starting over is explicit: ``--new-log`` (:attr:`ServerConfig.new_log`)
requires that no store and no signing key exist, sets the old ``log.pub`` and ``log-keys``
aside (:func:`retire_old_log`), and the start creates a new key.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from client.errors import InvalidInputError
from ledger.app.config import KEY_HISTORY_FILE, ORIGIN_FILE, PUBLIC_KEY_FILE, ServerConfig
from ledger.errors import KeyFileError, LostStoreError

log = logging.getLogger(__name__)

SIGNED_BEFORE = (PUBLIC_KEY_FILE, KEY_HISTORY_FILE, ORIGIN_FILE)
"""Files of a data directory that exist only once its log has opened (and so signed) with its key."""


def signed_before(data_dir: Path) -> list[str]:
    """The :data:`SIGNED_BEFORE` files present in ``data_dir``: empty for a log that never opened there."""
    return [name for name in SIGNED_BEFORE if (data_dir / name).exists()]


def _store_missing(store: Path) -> bool:
    return not store.exists() or (store.is_dir() and not any(store.iterdir()))


def _lost(config: ServerConfig, evidence: list[str], what: str) -> LostStoreError:
    return LostStoreError(
        f"the data dir {config.data_dir} belongs to a log that has signed before ({', '.join(evidence)} "
        f"present) but its store {config.store_spec.describe()} {what}: serving it would sign a new tree that "
        "conflicts with every checkpoint signed before. Restore the store from a backup (docs/operations.md, "
        "'Backups'), or, to start a new log with a new key, pass --new-log")


def check_store_present(config: ServerConfig) -> None:
    """Before anything is created: refuse a missing store of a log that signed before, and a bad ``--new-log``.

    Raises :class:`LostStoreError` (the store is missing or empty while :func:`signed_before`
    finds files), :class:`InvalidInputError` (``--new-log`` with a store present) or
    :class:`KeyFileError` (``--new-log`` with the signing key present: a new log needs a new key).
    """
    # A database store (PostgreSQL) is present or not by what it holds: checked after the open.
    missing = _store_missing(config.store_path) if config.store_spec.is_directory else True
    if config.new_log:
        if not missing:
            raise InvalidInputError(f"--new-log starts a log without a store, but {config.store_path} exists; "
                                    "move it away first (or drop --new-log to serve it)")
        if config.signer_key_path.exists() or config.signer_key_path.is_symlink():
            raise KeyFileError(f"--new-log needs a new signing key, but {config.signer_key_path} exists; move it "
                               "away first (keep it: checkpoints of the old log verify with its verifier key)")
        return
    evidence = signed_before(config.data_dir)
    if missing and evidence and config.store_spec.is_directory:
        raise _lost(config, evidence, "is missing or empty")


def check_store_holds_log(config: ServerConfig, has_head: bool) -> None:
    """After the store opened: one without a tree head is as lost as a missing one (see :func:`check_store_present`).

    For a database store this is where presence is decided (``read_head`` not None): ``--new-log``
    then refuses a database that already holds a log (:class:`InvalidInputError`).
    """
    if config.new_log and has_head:
        raise InvalidInputError(f"--new-log starts a log without a store, but {config.store_spec.describe()} "
                                "already holds a log; point --store at an empty database (or drop --new-log)")
    evidence = signed_before(config.data_dir)
    if not has_head and evidence and not config.new_log:
        raise _lost(config, evidence, "holds no log")


def retire_old_log(data_dir: Path) -> list[Path]:
    """``--new-log``: rename the old log's ``log.pub`` and ``log-keys`` to ``NAME.retired-<UTC time>``.

    Returns the new paths."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    moved = []
    for name in (PUBLIC_KEY_FILE, KEY_HISTORY_FILE):
        path = data_dir / name
        if path.exists():
            target = path.with_name(f"{name}.retired-{stamp}")
            os.replace(path, target)
            moved.append(target)
    if moved:
        log.warning("new log: the old log's key files set aside", extra={"retired": [str(p) for p in moved]})
    return moved


def record_origin(data_dir: Path, origin: str) -> None:
    """Write ``DATA/origin`` (atomically) unless it already holds ``origin``."""
    path = data_dir / ORIGIN_FILE
    if path.exists() and path.read_text(encoding="utf-8").strip() == origin:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(origin + "\n", encoding="utf-8")
    os.replace(tmp, path)
