"""The witness's key file: ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x04 || 32-byte Ed25519 seed)>``, mode 0600.

The layout of Go's note signer keys, with the cosignature/v1 type byte 0x04 and the key ID
of the cosigner vkey (:class:`client.core.cosignature.CosignerKey`). The file is created
with ``O_CREAT | O_EXCL`` (never overwriting a key) and mode 0600, synced, and refused when
group or others may read it. Key material is never logged or put in an error message.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from client.core.cosignature import ALG_COSIGNATURE_V1, WitnessSigner
from client.core.note import decode_base64, encode_base64
from client.errors import FormatError, InvalidInputError
from ledger.errors import KeyFileError

__all__ = ["create_key", "load_key"]

_PREFIX = "PRIVATE+KEY+"
_MAX_BYTES = 4096


def _text(signer: WitnessSigner, seed: bytes) -> str:
    key = signer.key()
    return f"{_PREFIX}{key.name}+{key.key_id.hex()}+{encode_base64(bytes([ALG_COSIGNATURE_V1]) + seed)}\n"


def create_key(path: Path, name: str) -> WitnessSigner:
    """Write a new random witness key named ``name`` to ``path`` (which must not exist); return its signer."""
    seed = secrets.token_bytes(32)
    signer = WitnessSigner(name, seed)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path} exists: a witness key is never overwritten") from None
    except OSError as e:
        raise KeyFileError(f"cannot create witness key {path}: {e.strerror}") from None
    try:
        os.write(fd, _text(signer, seed).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent if str(path.parent) else Path("."), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return signer


def load_key(path: Path) -> WitnessSigner:
    """Read the witness key at ``path``; it must be a regular file private to its owner.

    Raises :class:`KeyFileError` for an unsafe or malformed file (never quoting its content).
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        raise KeyFileError(f"cannot open witness key {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"witness key {path} is not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(f"witness key {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must not be "
                               "readable or writable by group or others (chmod 600)")
        raw = os.read(fd, _MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        text = raw.decode("ascii").removesuffix("\n")
    except UnicodeDecodeError:
        raise KeyFileError(f"witness key {path} is not ASCII text") from None
    parts = text[len(_PREFIX):].split("+", 2) if text.startswith(_PREFIX) else []
    if len(raw) > _MAX_BYTES or len(parts) != 3:
        raise KeyFileError(f"witness key {path} is not PRIVATE+KEY+<name>+<key ID>+<key>")
    name, hex8, key64 = parts
    try:
        data = decode_base64(key64, "witness key")
        if len(data) != 33 or data[0] != ALG_COSIGNATURE_V1:
            raise FormatError("not a 0x04 Ed25519 seed")
        signer = WitnessSigner(name, data[1:])
    except InvalidInputError:
        raise KeyFileError(f"witness key {path} does not hold a 0x04 Ed25519 seed") from None
    if signer.key().key_id.hex() != hex8:
        raise KeyFileError(f"witness key {path} does not match its key ID")
    return signer
