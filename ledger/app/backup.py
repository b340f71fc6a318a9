"""Backups of a data directory: consistent copies, checked before they are reported.

The store is copied with a RocksDB checkpoint (``rocksdict.Checkpoint``): the
memtable is flushed and the live SST files are hard-linked (copied across file
systems), so the copy holds a whole number of sequencer batches and opens like
the original. Two ways to take one:

* :func:`backup` (``provenance backup``), OFFLINE: it opens the store as its
  primary, which RocksDB refuses while a server holds it. (A read-only or
  secondary instance could open it, but would miss what the server has not
  flushed yet, so it is not used.)
* :func:`online_backup`, inside a running server (``serve --backup-dir DIR``,
  then SIGUSR1): the checkpoint is taken through the server's own handle while
  the sequencer keeps committing.

The signing key is copied only when asked (``--with-key``): it never changes, so
it is backed up once, to a safer place than routine backups. Restoring is
starting ``provenance serve --data COPY`` (with the key put back, or ``--key``):
the server checks the store against its signed checkpoint at open.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from client.errors import InvalidInputError, UnavailableError
from ledger.app.config import KEY_FILE, KEY_HISTORY_FILE, ORIGIN_FILE, PUBLIC_KEY_FILE, STORE_DIR
from ledger.errors import StoreInUseError
from ledger.storage import Storage
from ledger.storage.open import StoreSpec, open_storage

_log = logging.getLogger(__name__)


def _open_primary(store: Path) -> Storage:
    """Open the store of a stopped server as its only user (RocksDB: takes the LOCK)."""
    try:
        return open_storage(StoreSpec.directory(store))
    except StoreInUseError:
        raise UnavailableError(f"{store} is in use, probably by a running server: stop it (SIGTERM) and "
                               "run the backup again, or send the server SIGUSR1 for an online backup into "
                               "its --backup-dir (docs/operations.md)") from None


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a secret file so that the copy is 0600 from its first byte."""
    data = src.read_bytes()
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(data_dir: Path, out: Path, *, key_path: Path | None = None, include_key: bool = False) -> dict[str, Any]:
    """Copy the log in ``data_dir`` to the new directory ``out`` and check the copy opens.

    Copies the store (RocksDB checkpoint), ``origin``, ``log.pub``, ``log-keys`` and,
    if ``include_key``, the signing key (mode 0600; from ``key_path`` if the server
    uses ``--key``). Requires that no server runs on ``data_dir``
    (:class:`UnavailableError` otherwise) and that ``out`` does not exist or is empty.
    Returns a report: tree size and root of the copy's signed checkpoint, and what was copied.
    """
    data_dir, out = Path(data_dir), Path(out)
    store = data_dir / STORE_DIR
    if not (store / "CURRENT").is_file() or not (data_dir / ORIGIN_FILE).is_file():
        raise InvalidInputError(f"{data_dir} is not a provenance data directory (no {STORE_DIR}/ or {ORIGIN_FILE})")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} exists and is not an empty directory")
    if out.resolve().is_relative_to(data_dir.resolve()):
        raise InvalidInputError(f"{out} is inside the data directory {data_dir}")
    storage = _open_primary(store)
    try:
        if not isinstance(storage, Checkpointable):
            raise InvalidInputError(f"the store in {store} cannot copy itself; back it up with its own tools")
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        storage.checkpoint(out / STORE_DIR)
    finally:
        storage.close()
    copied = [STORE_DIR, *_copy_side_files(data_dir, out)]
    key = key_path if key_path is not None else data_dir / KEY_FILE
    if include_key:
        if not key.is_file():
            raise InvalidInputError(f"signing key {key} not found (give --key, or leave out --with-key)")
        _copy_private(key, out / KEY_FILE)
        copied.append(KEY_FILE)
    report = check_copy(out)
    report.update(out=str(out), copied=copied, key_included=include_key)
    _log.info("backup written", extra={"out": str(out), "tree_size": report["tree_size"]})
    return report


def _copy_side_files(data_dir: Path, out: Path) -> list[str]:
    copied = []
    for name in (ORIGIN_FILE, PUBLIC_KEY_FILE, KEY_HISTORY_FILE):
        if (data_dir / name).is_file():
            shutil.copyfile(data_dir / name, out / name)
            copied.append(name)
    return copied


@runtime_checkable
class Checkpointable(Protocol):
    """A store that writes a consistent copy of itself to a new directory (RocksDB: a checkpoint)."""

    def checkpoint(self, path: Path) -> None: ...


def online_backup(storage: Checkpointable, data_dir: Path, root: Path) -> dict[str, Any]:
    """Back up a log that is being served into a new ``root/backup-<UTC time>`` directory.

    The copy is built in ``<name>.partial`` and renamed when complete and checked, so a
    directory without that suffix is always a whole backup. Blocking; run it off the event loop.
    """
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = "backup-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    final = root / name
    n = 1
    while final.exists() or final.with_name(final.name + ".partial").exists():
        n += 1
        final = root / f"{name}-{n}"
    partial = final.with_name(final.name + ".partial")
    partial.mkdir(mode=0o700)
    try:
        storage.checkpoint(partial / STORE_DIR)
        copied = [STORE_DIR, *_copy_side_files(data_dir, partial)]
        report = check_copy(partial)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    report.update(out=str(final), copied=copied, key_included=False)
    return report


def check_copy(data_dir: Path) -> dict[str, Any]:
    """Open the copied store and check that its tree head and saved checkpoint agree (signature included).

    This is the same check the server makes at start, short of serving. A RocksDB checkpoint
    does not copy the signed-head record (``SIGNED-HEAD``, beside RocksDB's files), so the
    copy gets its own: the copy's signed checkpoint (its tree head when it holds no note).
    """
    from client.core.checkpoint import open_checkpoint
    from client.core.note import Verifier
    from ledger.errors import CorruptStorageError

    origin = (data_dir / ORIGIN_FILE).read_text(encoding="utf-8").strip()
    storage = open_storage(StoreSpec.directory(data_dir / STORE_DIR))
    try:
        head = storage.read_head()
        note = storage.read_meta("checkpoint")
        if head is None:
            raise CorruptStorageError(f"the copy in {data_dir} has no tree head")
        signed_size = None
        pub = data_dir / PUBLIC_KEY_FILE
        if note is not None and pub.is_file():
            verifier = Verifier.from_text(pub.read_text(encoding="utf-8").strip())
            cp = open_checkpoint(note, verifier, origin)
            if cp.size > head.size or (cp.size == head.size and cp.root != head.root):
                raise CorruptStorageError(f"the copy's tree (size {head.size}) disagrees with its signed "
                                          f"checkpoint (size {cp.size})")
            signed_size = cp.size
        if storage.read_signed() is None:
            if signed_size is not None:
                storage.record_signed(cp.size, cp.root)
            else:
                storage.record_signed(head.size, head.root)
    finally:
        storage.close()
    return {"origin": origin, "tree_size": head.size, "root": base64.b64encode(head.root).decode(),
            "signed_size": signed_size}
