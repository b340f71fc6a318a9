"""The origin a fresh log takes when ``provenance serve`` is given no ``--origin``: unique, then kept.

Every log used to default to ``localhost/provenance-ledger``, so a client that had trusted one
development server refused the next ("note has no signature by a known key"): same name,
another key. Now a data directory's first start derives ``<host>/provenance-ledger/<8 hex>``
(the host name, made a valid C2SP origin: lower-case letters, digits, ``.`` and ``-``; the
suffix 32 random bits), and ``DATA/origin`` keeps it once the log has opened
(``ledger/app/continuity.py``). What already exists wins, so no log changes its name:

1. ``DATA/origin`` (``ledger/app/serve.py`` :func:`~ledger.app.serve.resolve_origin`);
2. else the name of an existing signing key (``--key FILE`` or ``DATA/log.key``): a key is
   made for one origin, and a start that failed after creating it keeps that name;
3. else, for a RocksDB store made before ``DATA/origin`` existed, the old default;
4. else a new unique origin.
"""

from __future__ import annotations

import platform
import re
import secrets
from pathlib import Path

from client.core.note import Signer
from client.errors import FormatError
from ledger.app.config import DEFAULT_ORIGIN

MAX_HOST = 63
_NOT_HOST = re.compile(r"[^a-z0-9.-]+")


def host_label(hostname: str) -> str:
    """``hostname`` as the first element of an origin: lower-case ``[a-z0-9.-]``, at most 63 characters."""
    label = _NOT_HOST.sub("-", hostname.strip().lower())[:MAX_HOST].strip(".-")
    return label or "localhost"


def derive_origin(hostname: str, token: bytes) -> str:
    """``<host>/provenance-ledger/<token hex>``: no spaces, no ``+`` (a valid C2SP origin and key name)."""
    return f"{host_label(hostname)}/provenance-ledger/{token.hex()}"


def key_file_name(path: Path) -> str | None:
    """The key name in the signer-key file at ``path``, or None if there is none that parses.

    Only the name is read here; :func:`ledger.app.keys.load_signer` checks the file's mode and form.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(4097)
        return Signer.from_private_text(raw.decode("ascii").strip()).name
    except (OSError, UnicodeDecodeError, FormatError):
        return None


def default_origin(data_dir: Path, key_path: Path, store_dir: Path) -> str:
    """The origin of a data directory without ``DATA/origin`` and without ``--origin`` (module docstring)."""
    named = key_file_name(key_path)
    if named is not None:
        return named
    if store_dir.is_dir() and any(store_dir.iterdir()):
        return DEFAULT_ORIGIN
    return derive_origin(platform.node(), secrets.token_bytes(4))
