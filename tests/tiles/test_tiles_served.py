"""`provenance serve --http HOST:PORT --tiles-dir DIR`: the routes over a socket, and DIR holding the same files.

One server process; entries go in over gRPC. DIR must hold, file for file, what the HTTP routes
answer for the same path, the checkpoint last; a replaced partial tile is removed one
checkpoint later. (Catching up at start: tests/tiles/test_tiles_dir.py, in process.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ServerProcess, free_port, start_server
from tiles_kit import fetch, wait_for

from client.core.tiles import decode_bundle, partial_tiles


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str, Path]]:
    tiles = tmp_path / "tiles"
    port = free_port()
    srv = start_server(tmp_path / "data", ["--http", f"127.0.0.1:{port}", "--tiles-dir", str(tiles),
                                           "--origin", "example.com/tiles-served"])
    try:
        yield srv, f"http://127.0.0.1:{port}", tiles
    finally:
        srv.kill()


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _add(srv: ServerProcess, entries: list[bytes]) -> None:
    with srv.client() as c:
        for i in range(0, len(entries), 4000):
            c.add_entries(entries[i : i + 4000], wait_for_checkpoint=True)


def _at(tiles: Path, size: int) -> None:
    wait_for(lambda: (tiles / "checkpoint").exists()
             and int((tiles / "checkpoint").read_bytes().split(b"\n")[1]) == size, what=f"the tiles dir at {size}")


def _current(size: int) -> set[str]:
    """Paths of the partial tiles (and bundles) of the tree of ``size``."""
    out = set()
    for t in partial_tiles(size):
        out.add(t.path())
        if t.level == 0:
            out.add(t.entries_path())
    return out


def test_dir_holds_what_the_routes_serve(server: tuple[ServerProcess, str, Path]) -> None:
    srv, base, tiles = server
    _add(srv, [b"a", b"b", b"c"])
    _at(tiles, 3)
    assert (tiles / "tile/0/000.p/3").exists() and (tiles / "tile/entries/000.p/3").exists()
    _add(srv, [b"d"])
    _at(tiles, 4)
    assert (tiles / "tile/0/000.p/3").exists()  # kept for readers of the previous checkpoint
    _add(srv, [b"e"])
    _at(tiles, 5)
    # the writer removes the tiles two checkpoints old just after it publishes the new checkpoint
    wait_for(lambda: not (tiles / "tile/0/000.p/3").exists() and not (tiles / "tile/entries/000.p/3").exists(),
             what="the partial tiles of size 3 removed")
    assert (tiles / "tile/0/000.p/4").exists() and (tiles / "tile/0/000.p/5").exists()
    assert decode_bundle((tiles / "tile/entries/000.p/5").read_bytes(), 5) == [b"a", b"b", b"c", b"d", b"e"]

    _add(srv, [f"served {i}".encode() for i in range(5, 1300)])
    _at(tiles, 1300)
    files = _files(tiles)
    assert not [name for name in files if name.rsplit("/", 1)[-1].startswith(".")]  # no temporary files left
    status, note, headers = fetch(base + "/checkpoint")
    assert status == 200 and note == files["checkpoint"] and headers["Cache-Control"] == "no-cache"
    assert {"tile/0/005.p/20", "tile/entries/005.p/20", "tile/1/000.p/5"} <= set(files)
    assert {f"tile/0/00{i}" for i in range(5)} <= set(files)
    for name, data in files.items():
        if name == "checkpoint" or ".p/" in name and name not in _current(1300):
            continue  # a partial of the previous checkpoint, still in DIR for its readers: narrower, also served
        status, body, headers = fetch(f"{base}/{name}")
        assert status == 200 and body == data, name
        want = "public, max-age=10" if ".p/" in name else "public, max-age=31536000, immutable"
        assert headers["Cache-Control"] == want
    assert decode_bundle(files["tile/entries/004"], 256)[3] == b"served 1027"
    status, body, headers = fetch(base + "/tile/0/000", "HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == str(256 * 32)
    assert fetch(base + "/tile/0/005.p/21")[0] == 404 and fetch(base + "/tile/0/x000/001")[0] == 400
    assert srv.stop() == 0
