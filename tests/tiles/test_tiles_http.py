"""ledger/http/tiles.py: /checkpoint, hash tiles and entry bundles of a real log, held to a naive tree.

In process (the router, no sockets) over ``ledger.log.Log`` on the in-memory store with no hash
cache, so every tile above level 0 comes from the stored hash groups.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from client.core.checkpoint import SignedCheckpoint, open_checkpoint
from client.core.note import Signer
from client.core.tiles import Tile, decode_bundle, split_hashes
from ledger.http.router import Request, Response, Router
from ledger.http.site import Site, build_router
from ledger.http.tiles import IMMUTABLE, PARTIAL_CACHE
from ledger.log import Log, LogConfig
from ledger.storage.memory import MemoryStorage

ORIGIN = "example.com/tiles-test"
SIGNER = Signer.from_seed(ORIGIN, b"\x0b" * 32)
SIZE = 65536 + 300  # one full level-1 tile, a partial one, a level-2 tile of width 1


def entry(i: int) -> bytes:
    return f"entry {i}".encode()


def levels(n: int) -> list[list[bytes]]:
    """Every perfect node hash of the tree of ``n`` leaves, by level: the plain definition, bottom up."""
    out = [[hashlib.sha256(b"\x00" + entry(i)).digest() for i in range(n)]]
    while len(out[-1]) > 1:
        below = out[-1]
        out.append([hashlib.sha256(b"\x01" + below[i] + below[i + 1]).digest() for i in range(0, len(below) - 1, 2)])
    return out


@dataclass
class Served:
    log: Log
    router: Router
    first: SignedCheckpoint  # the checkpoint after the first batch

    def get(self, path: str, method: str = "GET") -> Response:
        return self.router.dispatch(Request.from_target(method, path))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    log = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN, cache_bytes=0))
    first = None
    try:
        for start in range(0, SIZE, 4096):
            log.add([entry(i) for i in range(start, min(SIZE, start + 4096))], timeout=30)
            first = first or log.latest()
        assert first is not None
        site = Site(log=log, registry=None, verifier_key=SIGNER.verifier().text(), origin=ORIGIN)
        yield Served(log, build_router(site), first)
    finally:
        log.close()


@pytest.fixture(scope="module")
def tree() -> list[list[bytes]]:
    return levels(SIZE)


def test_checkpoint_is_the_latest_signed_note(served: Served) -> None:
    resp = served.get("/checkpoint")
    assert resp.status == 200 and resp.body == served.log.latest().note
    assert dict(resp.headers)["Cache-Control"] == "no-cache" and resp.content_type.startswith("text/plain")
    assert open_checkpoint(resp.body, SIGNER.verifier()).size == SIZE


@pytest.mark.parametrize("tile", [
    Tile(0, 0), Tile(0, 17), Tile(0, 256), Tile(0, SIZE // 256, SIZE % 256),  # leaf hashes
    Tile(1, 0), Tile(1, 1, 1),  # level 8: the roots of the level-0 tiles
    Tile(2, 0, 1),  # level 16: the root of the first 65,536 leaves
    Tile(0, 3, 10), Tile(1, 0, 7),  # narrower than the tile is now: a prefix, never changing
])
def test_tiles_hold_the_nodes_of_their_level(served: Served, tree: list[list[bytes]], tile: Tile) -> None:
    resp = served.get("/" + tile.path())
    assert resp.status == 200, resp.body
    assert split_hashes(resp.body, tile) == tree[tile.tree_level][tile.first : tile.end]
    assert resp.content_type == "application/octet-stream"
    assert dict(resp.headers)["Cache-Control"] == (IMMUTABLE if tile.full else PARTIAL_CACHE)


@pytest.mark.parametrize("tile", [Tile(0, 0), Tile(0, 200), Tile(0, SIZE // 256, SIZE % 256), Tile(0, 1, 3)])
def test_bundles_hold_the_entries(served: Served, tile: Tile) -> None:
    resp = served.get("/" + tile.entries_path())
    assert resp.status == 200, resp.body
    assert decode_bundle(resp.body, tile.width) == [entry(i) for i in range(tile.first, tile.end)]
    assert dict(resp.headers)["Cache-Control"] == (IMMUTABLE if tile.full else PARTIAL_CACHE)


@pytest.mark.parametrize("path", [
    f"/tile/0/{SIZE // 256:03d}",  # the edge tile is not full yet
    f"/tile/0/{SIZE // 256:03d}.p/{SIZE % 256 + 1}",  # wider than the tree holds
    f"/tile/entries/{SIZE // 256:03d}",
    f"/tile/0/{SIZE // 256 + 1:03d}.p/1",
    "/tile/1/001",
    "/tile/2/000",
    "/tile/3/000.p/1",
])
def test_beyond_the_tree_is_not_found(served: Served, path: str) -> None:
    resp = served.get(path)
    assert resp.status == 404, (path, resp.body)
    assert dict(resp.headers)["Cache-Control"] == "no-store"  # a 404 now may be there soon


@pytest.mark.parametrize("path", ["/tile/0/x000/001", "/tile/0/000.p/256", "/tile/0/1", "/tile/8/0/000",
                                  "/tile/entries/000.p/0", "/tile/data/000"])
def test_bad_names_are_refused(served: Served, path: str) -> None:
    assert served.get(path).status == 400


def test_head_and_other_methods(served: Served) -> None:
    assert served.get("/tile/0/000", "HEAD").status == 200
    assert served.get("/checkpoint", "POST").status == 405


class _OlderLog:
    """The served log, but its latest signed checkpoint is an older one (a head durable, not yet signed)."""

    def __init__(self, log: Log, latest: SignedCheckpoint) -> None:
        self._log, self._latest = log, latest

    def latest(self) -> SignedCheckpoint:
        return self._latest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


def test_only_the_signed_tree_is_served(served: Served) -> None:
    old = served.first.checkpoint.size  # 4096
    site = Site(log=_OlderLog(served.log, served.first), registry=None, verifier_key="", origin=ORIGIN)
    router = build_router(site)
    assert router.dispatch(Request.from_target("GET", "/checkpoint")).body == served.first.note
    assert router.dispatch(Request.from_target("GET", f"/tile/0/{old // 256 - 1:03d}")).status == 200
    assert router.dispatch(Request.from_target("GET", f"/tile/0/{old // 256:03d}")).status == 404
    assert router.dispatch(Request.from_target("GET", f"/tile/entries/{old // 256:03d}.p/1")).status == 404
    assert router.dispatch(Request.from_target("GET", "/tile/1/000.p/16")).status == 200
    assert router.dispatch(Request.from_target("GET", "/tile/1/000.p/17")).status == 404


def test_an_entry_too_large_for_a_bundle() -> None:
    log = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN))
    try:
        log.add([b"small", b"x" * 70_000], timeout=10)
        router = build_router(Site(log=log, registry=None, verifier_key="", origin=ORIGIN))
        resp = router.dispatch(Request.from_target("GET", "/tile/entries/000.p/2"))
        assert resp.status == 404 and b"65535 bytes" in resp.body and b"GetEntries" in resp.body
        assert router.dispatch(Request.from_target("GET", "/tile/0/000.p/2")).status == 200  # hashes are fine
        assert decode_bundle(router.dispatch(Request.from_target("GET", "/tile/entries/000.p/1")).body) == [b"small"]
    finally:
        log.close()
