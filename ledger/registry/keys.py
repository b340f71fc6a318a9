"""The registry's index layout in the log's aux store (docs/registry.md). Pure.

Every key starts with ``b"r"`` (registry) and one letter naming the index, so the
registry never collides with another personality's aux keys. Integers are
8-byte big-endian.
"""

from __future__ import annotations

import hashlib
import struct

from client.core.records._codec import put_str

_U64 = struct.Struct(">Q")

RECORD = b"rR"  # + id(32) -> index(8) kind(1)
KEY = b"rK"  # + signer key(32) -> status(1) since_index(8) registered_index(8) name(utf-8)
NAME = b"rN"  # + identity name (utf-8) -> current key(32) or empty, then index(8) of the event
VERSION = b"rV"  # + kind(1) + str(name) + str(version) -> index(8)
MANIFEST = b"rM"  # + manifest digest(32) -> canonical manifest bytes
MANIFEST_HELD = b"rH"  # + manifest digest(32) -> index(8) of the record that stored it
FINGERPRINT = b"rF"  # + fingerprint digest(32) -> canonical fingerprint bytes (published ones only)
FINGERPRINT_SIGS = b"rG"  # + fingerprint digest(32) -> its screening signatures (ledger.registry.fingerprints)

# Posting lists: one key per posting, ``list key || index(8)``, written once and never read back
# during admission; a prefix scan of the list key lists them earliest first (ledger.registry.postings).
SIGNER_POSTS = b"rS"  # + signer key(32): records signed by the key -> empty
CHILD_POSTS = b"rC"  # + parent id(32): records naming it as parent or training dataset -> the relation
MANIFEST_POSTS = b"rm"  # + manifest digest(32): records with that manifest -> empty
DIGEST_POSTS = b"rD"  # + kind(1) + digest(32): records that first stored a manifest containing the
#                       digest -> empty
ABOUT_POSTS = b"rA"  # + id(32): attestations and disputes about the record -> empty
PUBLISHED_POSTS = b"rP"  # (no suffix): checkpoints that published a fingerprint -> its digest(32)
FINGERPRINT_POSTS = b"rf"  # + fingerprint digest(32): checkpoints publishing or committing to it -> mode(1)
IDENTITY_POSTS = b"rI"  # + SHA-256(identity name): its identity events (register, rotate, revoke) -> empty
OMS_FILE_POSTS = b"rO"  # + SHA-256 file digest(32): oms-signature attestations listing it -> empty (oms.py)
IDENTITY_POSTS_COMPLETE = b"rJ"  # (no suffix) -> b"\x01": IDENTITY_POSTS holds every identity event of the
#                                  store (written by a registry that indexed them from the first one on)

KEY_ACTIVE = 1
KEY_RETIRED = 2
KEY_REVOKED = 3
KEY_STATUS_TEXT = {KEY_ACTIVE: "active", KEY_RETIRED: "retired", KEY_REVOKED: "revoked"}

DIGEST_KINDS = {"manifest": 0, "file": 1, "tensor": 2, "chunk": 3}


def u64(n: int) -> bytes:
    return _U64.pack(n)


def read_u64(data: bytes, offset: int = 0) -> int:
    value: int = _U64.unpack_from(data, offset)[0]
    return value


def version_key(kind: int, name: str, version: str) -> bytes:
    out = bytearray(VERSION)
    out.append(kind)
    put_str(out, name)
    put_str(out, version)
    return bytes(out)


def identity_posts(name: str) -> bytes:
    """The list key of ``name``'s identity events (a fixed-length suffix, as postings require)."""
    return IDENTITY_POSTS + hashlib.sha256(name.encode("utf-8")).digest()


def key_state(status: int, since: int, registered: int, name: str) -> bytes:
    return bytes([status]) + u64(since) + u64(registered) + name.encode("utf-8")


def parse_key_state(value: bytes) -> tuple[int, int, int, str]:
    """``(status, since_index, registered_index, name)``."""
    return value[0], read_u64(value, 1), read_u64(value, 9), value[17:].decode("utf-8")
