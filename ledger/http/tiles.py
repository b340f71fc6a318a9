"""The C2SP tlog-tiles read path over HTTP: ``/checkpoint``, ``/tile/<L>/<N>[.p/<W>]``, ``/tile/entries/<N>[.p/<W>]``.

Spec: C2SP tlog-tiles; the path arithmetic and the bundle format are the pure core
``client/core/tiles.py``. Everything served is bounded by the latest *signed* checkpoint:
a tile, or a tile width, that the tree of that size does not hold yet is 404. Hash tiles
come from the log's stored hash groups (``ledger/log/tree.py``: a group of 256 nodes of one
level is exactly a tile's data), level-0 tiles are the entries' leaf hashes, and bundles are
the entries themselves.

Caching: a full tile or bundle never changes, so it is served ``public, max-age=31536000,
immutable``; a partial tile (any width up to the tile's width in the signed tree: its hashes
are a prefix of the wider tile's) is cached briefly (:data:`PARTIAL_CACHE`), since a wider
one or the full tile soon replaces it; ``/checkpoint`` is ``no-cache``. An entry over
65,535 bytes cannot be carried by a bundle (its length is a uint16): that bundle is 404,
naming the entry to read over gRPC instead.

:class:`TileSource` renders the bytes, shared with the ``--tiles-dir`` writer
(``ledger/http/tiles_dir.py``), so the directory and the routes serve the same files.
"""

from __future__ import annotations

import re
from typing import Any

from client.core.checkpoint import SignedCheckpoint
from client.core.tiles import Tile, check_in_tree, encode_bundle, parse_tile_path
from client.errors import InvalidInputError, NotFoundError
from ledger.http.router import Request, Response, Route
from ledger.http.site import Site

IMMUTABLE = "public, max-age=31536000, immutable"
PARTIAL_CACHE = "public, max-age=10"
CHECKPOINT_CACHE = "no-cache"
TILE_TYPE = "application/octet-stream"
CHECKPOINT_TYPE = "text/plain; charset=utf-8"


class TileSource:
    """Tile, bundle and checkpoint bytes of one log (``ledger.log.Log``). Thread-safe (the log's reads are)."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def checkpoint(self) -> SignedCheckpoint:
        """The latest signed checkpoint: every tile served is one of its tree."""
        latest: SignedCheckpoint = self._log.latest()
        return latest

    def tile(self, tile: Tile, size: int) -> bytes:
        """The data of hash tile ``tile`` in the tree of ``size`` (at most the signed size).

        Raises :class:`OutOfRangeError` when that tree does not hold the tile at its width.
        """
        check_in_tree(tile, size)
        data: bytes = self._log.level_hashes(tile.tree_level, tile.first, tile.end)
        return data

    def bundle(self, tile: Tile, size: int) -> bytes:
        """The entry bundle of level-0 ``tile`` in the tree of ``size``.

        Raises :class:`OutOfRangeError` beyond that tree and :class:`NotFoundError` when an
        entry is too large for a bundle.
        """
        if tile.level != 0:
            raise InvalidInputError(f"only level-0 tiles have entry bundles, not level {tile.level}")
        check_in_tree(tile, size)
        entries: list[bytes] = self._log.entries(tile.first, tile.end)
        try:
            return encode_bundle(entries)
        except InvalidInputError as err:
            raise NotFoundError(f"{tile.entries_path()} cannot be served: {err} (read entries "
                                f"[{tile.first}, {tile.end}) over gRPC GetEntries)") from None


def cache_control(tile: Tile) -> str:
    """The ``Cache-Control`` of a tile or bundle: immutable when full, short when partial."""
    return IMMUTABLE if tile.full else PARTIAL_CACHE


def routes(site: Site) -> list[Route]:
    """``/checkpoint`` and ``/tile/...`` of ``site.log``."""
    source = TileSource(site.log)

    def checkpoint(request: Request, match: re.Match[str]) -> Response:
        return Response(200, source.checkpoint().note, CHECKPOINT_TYPE, (("Cache-Control", CHECKPOINT_CACHE),))

    def tile(request: Request, match: re.Match[str]) -> Response:
        named = parse_tile_path(request.path[1:])  # FormatError: 400
        size = source.checkpoint().checkpoint.size
        data = source.bundle(named.tile, size) if named.entries else source.tile(named.tile, size)
        return Response(200, data, TILE_TYPE, (("Cache-Control", cache_control(named.tile)),))

    return [Route.of(r"/checkpoint", checkpoint), Route.of(r"/tile/.+", tile)]
