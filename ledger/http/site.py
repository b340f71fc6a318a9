"""The HTTP site of one running ledger: every route module's routes, in one :class:`Router`.

``provenance serve --http`` builds it with :func:`build_router` from the opened log and
registry. Each route module exposes ``routes(site: Site) -> list[Route]`` and is listed in
:data:`ROUTE_MODULES`; earlier modules' routes win.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from ledger.http.router import Route, Router

ROUTE_MODULES: tuple[str, ...] = ("ledger.http.tiles", "ledger.http.explorer")
"""Modules (import paths) whose ``routes(site)`` make up the site, in order."""


@dataclass(frozen=True)
class Site:
    """What route modules may read: the log (``ledger.log.Log``), the registry reader and the log's key."""

    log: Any
    registry: Any  # ledger.registry.queries.RegistryReader, or None for a bare log
    verifier_key: str
    origin: str
    witnessing: Any = None  # ledger.log.witnessing.Witnessing under --witness-policy: its cosigned() checkpoint


def build_router(site: Site, modules: tuple[str, ...] = ROUTE_MODULES) -> Router:
    routes: list[Route] = []
    for name in modules:
        routes.extend(importlib.import_module(name).routes(site))
    return Router(routes)
