"""client/core/tiles.py: tlog-tiles paths, widths, which tiles a tree adds, entry bundles (C2SP tlog-tiles)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.tiles import (
    Tile,
    TilePath,
    check_in_tree,
    decode_bundle,
    encode_bundle,
    index_path,
    parse_tile_path,
    partial_tiles,
    split_hashes,
    tile_in_tree,
    tile_width,
    tiles_between,
)
from client.errors import FormatError, InvalidInputError, OutOfRangeError

# (tile, path): the spec's own example index 1234067 -> x001/x234/067, and the edges of each element.
PATHS = [
    (Tile(0, 0), "tile/0/000"),
    (Tile(0, 1234067, 8), "tile/0/x001/x234/067.p/8"),
    (Tile(4, 1234067), "tile/4/x001/x234/067"),
    (Tile(0, 999), "tile/0/999"),
    (Tile(0, 1000), "tile/0/x001/000"),
    (Tile(1, 1000000, 255), "tile/1/x001/x000/000.p/255"),
    (Tile(63, 5, 1), "tile/63/005.p/1"),
]


@pytest.mark.parametrize(("tile", "path"), PATHS)
def test_paths_format_and_parse(tile: Tile, path: str) -> None:
    assert tile.path() == path
    assert parse_tile_path(path) == TilePath(tile)


@pytest.mark.parametrize(("tile", "path"), [
    (Tile(0, 0), "tile/entries/000"),
    (Tile(0, 1234067, 8), "tile/entries/x001/x234/067.p/8"),
])
def test_entry_bundle_paths(tile: Tile, path: str) -> None:
    assert tile.entries_path() == path
    assert parse_tile_path(path) == TilePath(tile, entries=True)


def test_only_level_zero_has_bundles() -> None:
    with pytest.raises(InvalidInputError):
        Tile(1, 0).entries_path()


@pytest.mark.parametrize("path", [
    "tile/0/x000/001",  # a leading zero element: not canonical
    "tile/00/001",  # leading zero in L
    "tile/0/001.p/256",  # a full tile never has .p/
    "tile/0/001.p/0",
    "tile/0/001.p/05",
    "tile/0/001.p/",
    "tile/0/001.p",
    "tile/0/1",
    "tile/0/0001",
    "tile/0/x001",  # x on the last element
    "tile/0/001/002",  # no x on a prefix element
    "tile/0/x1/002",
    "tile/64/000",  # L is 0..63
    "tile/-1/000",
    "tile/entries",
    "tile/entries/001/",
    "tile/0/",
    "tile//000",
    "tile/data/000",  # Go's sumdb record tiles are not C2SP
    "tile/8/0/000",  # nor are Go's height-in-the-path names (level 8 has no tile 0/000 element)
    "/tile/0/000",
    "tiles/0/000",
    "tile/0/00a",
    "tile/0/ 001",
    "tile/0/x" + "999/x" * 40 + "999",
])
def test_bad_paths_are_refused(path: str) -> None:
    with pytest.raises(FormatError):
        parse_tile_path(path)


@given(st.integers(0, 63), st.integers(0, 2**40), st.integers(1, 256), st.booleans())
def test_any_tile_round_trips(level: int, index: int, width: int, entries: bool) -> None:
    named = TilePath(Tile(0 if entries else level, index, width), entries)
    assert parse_tile_path(named.path()) == named


@given(st.integers(0, 10**12))
def test_index_path_elements(index: int) -> None:
    elements = index_path(index).split("/")
    assert all(e.startswith("x") and len(e) == 4 for e in elements[:-1]) and len(elements[-1]) == 3
    assert int("".join(e.lstrip("x") for e in elements)) == index
    assert index < 1000 or elements[0] != "x000"


def test_tile_validation() -> None:
    for bad in ((64, 0, 1), (0, -1, 1), (0, 0, 0), (0, 0, 257), (-1, 0, 1)):
        with pytest.raises(InvalidInputError):
            Tile(*bad)


def test_widths_in_a_tree() -> None:
    size = 70_000  # level 0: 273 full tiles + 112; level 1: 273 nodes; level 2: 1 node
    assert tile_width(0, 0, size) == 256 and tile_width(0, 273, size) == 112 and tile_width(0, 274, size) == 0
    assert tile_width(1, 0, size) == 256 and tile_width(1, 1, size) == 17
    assert tile_width(2, 0, size) == 1 and tile_width(3, 0, size) == 0
    assert tile_in_tree(1, 1, size) == Tile(1, 1, 17)
    with pytest.raises(OutOfRangeError):
        tile_in_tree(0, 274, size)
    assert partial_tiles(size) == [Tile(0, 273, 112), Tile(1, 1, 17), Tile(2, 0, 1)]
    assert partial_tiles(65536) == [Tile(2, 0, 1)]
    assert partial_tiles(0) == []


def test_check_in_tree_serves_prefixes_only_within_the_tree() -> None:
    check_in_tree(Tile(0, 1, 5), 256 + 7)  # narrower than the tile is now: its hashes never change
    check_in_tree(Tile(0, 0, 100), 1000)  # a prefix of a full tile
    with pytest.raises(OutOfRangeError):
        check_in_tree(Tile(0, 1, 8), 256 + 7)
    with pytest.raises(OutOfRangeError):
        check_in_tree(Tile(0, 1), 256 + 255)  # the full tile is not there yet
    with pytest.raises(OutOfRangeError):
        check_in_tree(Tile(1, 0, 1), 255)


def _naive_new_tiles(old: int, new: int) -> list[Tile]:
    """Every tile of the tree of ``new`` whose width differs from the tree of ``old``, by brute force."""
    out = []
    for level in range(8):
        for index in range((new >> (8 * level)) // 256 + 1):
            w_new, w_old = tile_width(level, index, new), tile_width(level, index, old)
            if w_new and w_new != w_old:
                out.append(Tile(level, index, w_new))
    return out


@given(st.integers(0, 300_000), st.integers(0, 300_000))
def test_tiles_between_is_what_changed(a: int, b: int) -> None:
    old, new = min(a, b), max(a, b)
    assert tiles_between(old, new) == _naive_new_tiles(old, new)


def test_tiles_between_refuses_shrinking() -> None:
    with pytest.raises(InvalidInputError):
        tiles_between(5, 4)


def test_split_hashes() -> None:
    data = bytes(range(64))
    assert split_hashes(data, Tile(0, 0, 2)) == [data[:32], data[32:]]
    with pytest.raises(FormatError):
        split_hashes(data, Tile(0, 0, 3))


# --- entry bundles --------------------------------------------------------------------------

def test_bundle_vector() -> None:
    assert encode_bundle([b"", b"ab", b"\x00" * 258]) == b"\x00\x00" + b"\x00\x02ab" + b"\x01\x02" + b"\x00" * 258
    assert decode_bundle(b"\x00\x01x\x00\x00", 2) == [b"x", b""]


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=256))
def test_bundles_round_trip(entries: list[bytes]) -> None:
    assert decode_bundle(encode_bundle(entries), len(entries)) == entries


def test_bundle_limits() -> None:
    assert decode_bundle(encode_bundle([b"x" * 65535])) == [b"x" * 65535]
    with pytest.raises(InvalidInputError):
        encode_bundle([b"x" * 65536])
    with pytest.raises(InvalidInputError):
        encode_bundle([])
    with pytest.raises(InvalidInputError):
        encode_bundle([b""] * 257)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x02a", b"\x00\x01a\x00", b"\x00\x00" * 257])
def test_bad_bundles_are_refused(data: bytes) -> None:
    with pytest.raises(FormatError):
        decode_bundle(data)


def test_bundle_width_must_match() -> None:
    with pytest.raises(FormatError):
        decode_bundle(encode_bundle([b"a", b"b"]), 3)

