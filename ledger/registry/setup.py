"""Build the registry for ``provenance serve`` from its config (the entry point's only registry I/O)."""

from __future__ import annotations

import logging
from pathlib import Path

from client.errors import InvalidInputError
from ledger.registry.manifests import read_manifest
from ledger.registry.policy import Policy, parse_allowlist
from ledger.registry.registry import Registry

log = logging.getLogger(__name__)


def load_policy(allowlist: Path | None, allow_raw: bool = False) -> Policy:
    """Open registration, or the allowlist in ``allowlist`` (docs/registry.md); ``allow_raw``: an
    allowlist that also admits opaque entries (``ledger/registry/policy.py``)."""
    if allowlist is None:
        return Policy()
    try:
        text = allowlist.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInputError(f"cannot read the allowlist {allowlist}: {err}") from err
    return parse_allowlist(text, allow_raw)


def registry_for(allowlist: Path | None, verify_processes: int = 0, allow_raw: bool = False) -> Registry:
    policy = load_policy(allowlist, allow_raw)
    log.info("registry policy: %s", policy.describe())
    return Registry(policy, read_manifest, verify_processes=verify_processes)
