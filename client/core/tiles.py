"""C2SP tlog-tiles arithmetic: tile coordinates and their paths, which hashes a tile holds, entry bundles. No I/O.

Spec: C2SP tlog-tiles (https://c2sp.org/tlog-tiles). The Merkle tree (RFC 9162 2.1) is cut
into tiles of height :data:`TILE_HEIGHT` = 8: the tile at level ``L`` and index ``N`` holds
the hashes of the perfect nodes of tree level ``8 * L`` with indices ``256 * N`` up to
``256 * N + W - 1``, concatenated (32 bytes each). ``W`` (the width) is 256 for a full tile
and 1..255 for the partial tile at the right edge of a tree whose size is not a multiple of
the tile's span. Paths (relative to the log's prefix):

* ``tile/<L>/<N>`` and, for a partial tile, ``tile/<L>/<N>.p/<W>``;
* ``tile/entries/<N>[.p/<W>]``: the entry bundle of the level-0 tile ``N``, its entries
  each prefixed by their length as a big-endian uint16;
* ``<N>`` is written as 3-digit zero-padded decimal path elements, every one but the last
  prefixed by ``x``: 1234067 is ``x001/x234/067``; ``L`` and ``W`` are plain decimals.

Parsing is strict (habit 7): a path must re-format to exactly itself, so there is one name
per tile (no leading zeros in ``L`` or ``W``, no ``x000`` prefix elements, no ``.p/256``).

Go's ``golang.org/x/mod/sumdb/tlog`` names the same tiles with the height in the path
(``tile/8/<L>/<N>[.p/<W>]``, and ``tile/8/data/<N>`` for its own record tiles); the tile
contents are the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from client.core.merkle import HASH_SIZE
from client.errors import FormatError, InvalidInputError, OutOfRangeError

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # hashes (or entries) in a full tile
MAX_LEVEL = 63  # the spec's bound on L
MAX_INDEX = (1 << 64) >> TILE_HEIGHT  # a tile index must start below 2**64 nodes
MAX_PATH = 128  # characters; the longest canonical path is far shorter
MAX_BUNDLE_ENTRY = 0xFFFF  # bytes: an entry's length is a uint16 in a bundle

_ELEMENT = re.compile(r"[0-9]{3}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,2}")


@dataclass(frozen=True, slots=True, order=True)
class Tile:
    """Tile ``(level, index)`` of width ``width`` (1..256; 256 is full). Validated when constructed.

    Raises :class:`InvalidInputError` for a level outside 0..63, a negative or too large
    index, or a width outside 1..256.
    """

    level: int
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if not 0 <= self.level <= MAX_LEVEL:
            raise InvalidInputError(f"tile level {self.level} is not in 0..{MAX_LEVEL}")
        if not 0 <= self.index < MAX_INDEX:
            raise InvalidInputError(f"tile index {self.index} is not in 0..{MAX_INDEX - 1}")
        if not 1 <= self.width <= TILE_WIDTH:
            raise InvalidInputError(f"tile width {self.width} is not in 1..{TILE_WIDTH}")

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def tree_level(self) -> int:
        """The tree level whose node hashes this tile holds (``8 * level``)."""
        return TILE_HEIGHT * self.level

    @property
    def first(self) -> int:
        """Index (at :attr:`tree_level`) of the first node this tile holds."""
        return self.index * TILE_WIDTH

    @property
    def end(self) -> int:
        """One past the index of the last node this tile holds."""
        return self.first + self.width

    @property
    def data_bytes(self) -> int:
        """Length of the tile's data: ``width`` hashes."""
        return self.width * HASH_SIZE

    def path(self) -> str:
        """``tile/<L>/<N>[.p/<W>]``."""
        return f"tile/{self.level}/{index_path(self.index)}{self._suffix()}"

    def entries_path(self) -> str:
        """``tile/entries/<N>[.p/<W>]``, the entry bundle of a level-0 tile. Requires ``level == 0``."""
        if self.level != 0:
            raise InvalidInputError(f"only level-0 tiles have entry bundles, not level {self.level}")
        return f"tile/entries/{index_path(self.index)}{self._suffix()}"

    def _suffix(self) -> str:
        return "" if self.full else f".p/{self.width}"


@dataclass(frozen=True, slots=True)
class TilePath:
    """What a tile path names: a hash tile, or (``entries``) the entry bundle of a level-0 tile."""

    tile: Tile
    entries: bool = False

    def path(self) -> str:
        return self.tile.entries_path() if self.entries else self.tile.path()


def index_path(index: int) -> str:
    """``index`` as 3-digit path elements, all but the last prefixed by ``x`` (1234067: ``x001/x234/067``).

    Requires ``index >= 0``."""
    if index < 0:
        raise InvalidInputError(f"tile index {index} is negative")
    parts = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        parts.append(f"x{index % 1000:03d}")
        index //= 1000
    return "/".join(reversed(parts))


def parse_tile_path(path: str) -> TilePath:
    """The tile or bundle named by ``path`` (``tile/...``, no leading slash). Strict: one spelling per tile.

    Raises :class:`FormatError` for anything that is not a canonical tlog-tiles path.
    """
    if len(path) > MAX_PATH or not path.startswith("tile/"):
        raise FormatError(f"not a tile path: {path[:MAX_PATH]!r}")
    elements = path[len("tile/"):].split("/")
    if len(elements) < 2:
        raise FormatError(f"not a tile path: {path!r}")
    first, rest = elements[0], elements[1:]
    entries = first == "entries"
    if not entries and not _DECIMAL.fullmatch(first):
        raise FormatError(f"tile path {path!r}: level {first!r} is not a decimal without leading zeros")
    level = 0 if entries else int(first)
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not _DECIMAL.fullmatch(w):
            raise FormatError(f"tile path {path!r}: width {w!r} is not a decimal without leading zeros")
        width = int(w)
        rest = [*rest[:-2], rest[-2][: -len(".p")]]
    index = 0
    for i, element in enumerate(rest):
        last = i == len(rest) - 1
        digits = element if last else element[1:] if element.startswith("x") else ""
        if not _ELEMENT.fullmatch(digits):
            raise FormatError(f"tile path {path!r}: index element {element!r} is not 3 digits "
                              "(x-prefixed but for the last)")
        index = index * 1000 + int(digits)
    try:
        named = TilePath(Tile(level, index, width), entries)
    except InvalidInputError as err:
        raise FormatError(f"tile path {path!r}: {err}") from None
    if named.path() != path:  # leading x000 elements, .p/256, ...
        raise FormatError(f"tile path {path!r} is not canonical (the canonical name is {named.path()!r})")
    return named


def level_width(level: int, size: int) -> int:
    """How many perfect nodes tree level ``8 * level`` has in the tree of ``size`` leaves."""
    return size >> (TILE_HEIGHT * level)


def tile_width(level: int, index: int, size: int) -> int:
    """The width of tile ``(level, index)`` in the tree of ``size`` leaves: 0 (not there yet) to 256."""
    return max(0, min(TILE_WIDTH, level_width(level, size) - index * TILE_WIDTH))


def tile_in_tree(level: int, index: int, size: int) -> Tile:
    """Tile ``(level, index)`` at its width in the tree of ``size``; :class:`OutOfRangeError` if it has none."""
    width = tile_width(level, index, size)
    if width == 0:
        raise OutOfRangeError(f"the tree of size {size} has no tile at level {level}, index {index}")
    return Tile(level, index, width)


def check_in_tree(tile: Tile, size: int) -> None:
    """Raise :class:`OutOfRangeError` unless every hash ``tile`` names is a node of the tree of ``size``.

    A partial tile of any width up to the tile's width in that tree qualifies (its hashes
    are a prefix of that tile's, and never change); a full tile needs the whole tile there.
    """
    have = tile_width(tile.level, tile.index, size)
    if tile.width > have:
        there = f"has width {have}" if have else "is not there yet"
        raise OutOfRangeError(f"{tile.path()} is beyond the tree of size {size} (that tile {there})")


def tiles_between(old: int, new: int) -> list[Tile]:
    """The tiles of the tree of ``new`` leaves that the tree of ``old`` leaves lacks (new or wider).

    Requires ``0 <= old <= new``. Ordered by level, then index; with ``old == 0`` it is every
    tile of the tree. Like Go's ``tlog.NewTiles`` with height 8.
    """
    if not 0 <= old <= new:
        raise InvalidInputError(f"no tiles between sizes {old} and {new}: need 0 <= old <= new")
    out: list[Tile] = []
    level = 0
    while level <= MAX_LEVEL and level_width(level, new):
        n_old, n_new = level_width(level, old), level_width(level, new)
        if n_new > n_old:
            for index in range(n_old // TILE_WIDTH, (n_new - 1) // TILE_WIDTH + 1):
                out.append(Tile(level, index, tile_width(level, index, new)))
        level += 1
    return out


def partial_tiles(size: int) -> list[Tile]:
    """The partial tiles of the tree of ``size`` leaves (at most one per level), by level."""
    out: list[Tile] = []
    level = 0
    while level <= MAX_LEVEL and level_width(level, size):
        n = level_width(level, size)
        if n % TILE_WIDTH:
            out.append(Tile(level, n // TILE_WIDTH, n % TILE_WIDTH))
        level += 1
    return out


def split_hashes(data: bytes, tile: Tile) -> list[bytes]:
    """The ``tile.width`` hashes of a tile's data. Raises :class:`FormatError` for a wrong length."""
    if len(data) != tile.data_bytes:
        raise FormatError(f"{tile.path()} holds {tile.width} hashes ({tile.data_bytes} bytes), got {len(data)} bytes")
    return [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)]


def encode_bundle(entries: Sequence[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes.

    Requires 1 to 256 entries, each at most 65,535 bytes (:class:`InvalidInputError` otherwise:
    a larger entry cannot be carried by a bundle; read it over the log's gRPC ``GetEntries``).
    """
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise InvalidInputError(f"an entry bundle holds 1 to {TILE_WIDTH} entries, not {len(entries)}")
    parts: list[bytes] = []
    for i, entry in enumerate(entries):
        if len(entry) > MAX_BUNDLE_ENTRY:
            raise InvalidInputError(f"entry {i} of the bundle is {len(entry)} bytes; a bundle carries entries "
                                    f"of at most {MAX_BUNDLE_ENTRY} bytes")
        parts.append(len(entry).to_bytes(2, "big"))
        parts.append(entry)
    return b"".join(parts)


def decode_bundle(data: bytes, width: int | None = None) -> list[bytes]:
    """The entries of a bundle; with ``width``, exactly that many. Raises :class:`FormatError` otherwise.

    Refuses a truncated length or entry, more than 256 entries, and an empty bundle.
    """
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if len(entries) == TILE_WIDTH:
            raise FormatError(f"entry bundle holds more than {TILE_WIDTH} entries")
        if pos + 2 > len(data):
            raise FormatError(f"entry bundle ends inside the length of entry {len(entries)}")
        n = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + n > len(data):
            raise FormatError(f"entry bundle ends inside entry {len(entries)} ({n} bytes announced)")
        entries.append(data[pos : pos + n])
        pos += n
    if not entries:
        raise FormatError("entry bundle is empty")
    if width is not None and len(entries) != width:
        raise FormatError(f"entry bundle holds {len(entries)} entries, expected {width}")
    return entries
