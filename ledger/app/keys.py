"""The log's signing-key file: Go's note signer-key text (``PRIVATE+KEY+<name>+<id>+<key>``), mode 0600.

The key is created on first start, atomically and never readable by others: it is
written to a temporary file opened ``O_CREAT | O_EXCL`` with mode 0600, synced,
then hard-linked into place (which fails rather than overwrite a key another
process created meanwhile). Key material is never logged.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from client.core.note import Signer
from client.errors import FormatError
from ledger.errors import KeyFileError

log = logging.getLogger(__name__)

MAX_KEY_FILE_BYTES = 4096


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create(path: Path, origin: str) -> None:
    signer = Signer.generate(origin)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            os.write(fd, (signer.private_text() + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return  # another process created it first: use theirs
        _fsync_dir(path.parent)
        log.info("created log signing key", extra={"path": str(path), "key_name": origin,
                                                   "key_id": signer.key_id.hex()})
    finally:
        tmp.unlink(missing_ok=True)


def load_signer(path: Path, origin: str) -> Signer:
    """Read the signing key at ``path``; it must be private to its owner and named ``origin``.

    Raises :class:`KeyFileError` otherwise (the message never contains key material).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise KeyFileError(f"cannot open signing key {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"signing key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"signing key {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be "
                               "readable or writable by group or others (chmod 600)")
        raw = os.read(fd, MAX_KEY_FILE_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"signing key {path} is too large")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"signing key {path} is not ASCII text") from None
    text = text[:-1] if text.endswith("\n") else text
    try:
        signer = Signer.from_private_text(text)
    except FormatError as e:
        raise KeyFileError(f"signing key {path} is not a signer key ({e})") from None
    if signer.name != origin:
        raise KeyFileError(f"signing key {path} is named {signer.name!r}, but the log origin is {origin!r}")
    return signer


def load_or_create_signer(path: Path, origin: str) -> Signer:
    """The log's signer from ``path``, generating a new Ed25519 key named ``origin`` there on first start."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        _create(path, origin)
    return load_signer(path, origin)
