"""``provenance serve --tiles-dir DIR``: the tlog-tiles files written into a directory as the log grows.

DIR then holds what the HTTP routes of ``ledger/http/tiles.py`` serve (the same bytes, from
:class:`~ledger.http.tiles.TileSource`), under the same names: ``DIR/checkpoint``,
``DIR/tile/<L>/<N>[.p/<W>]``, ``DIR/tile/entries/<N>[.p/<W>]``; any web server or CDN can
serve it (docs/operations.md, "Tiles", has an nginx configuration).

How it is written, and the promises a reader of DIR can rely on:

* a log follower (``Log.add_follower``, on the publisher's thread, never the sequencer's)
  only hands the newest checkpoint to this writer's own thread, so slow disk work delays
  neither the log nor other followers (witness cosigning);
* every file is written to a temporary name in its directory and renamed into place, so a
  reader sees a whole file or none; full tiles and bundles are synced before the rename and
  written once (an existing one is kept: they never change);
* the tiles and bundles of a checkpoint are in place before ``DIR/checkpoint`` names it
  (written last), so a reader who fetched the checkpoint finds everything it covers;
* a partial tile is replaced by its wider successor; the one it replaced is removed one
  checkpoint later (a reader holding the previous checkpoint still finds its tiles);
* at start, the writer catches up from the size that ``DIR/checkpoint`` names (when that note
  is this log's, for a tree no larger than the log's), or from scratch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from client.core.checkpoint import SignedCheckpoint, open_checkpoint
from client.core.note import Verifier
from client.core.tiles import Tile, partial_tiles, tiles_between
from client.errors import ProvenanceError
from ledger.http.tiles import TileSource

_log = logging.getLogger(__name__)


def write_atomic(path: Path, data: bytes, sync: bool) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


class TilesDirWriter:
    """Keeps ``root`` in step with ``log``'s signed checkpoints; :meth:`start`, then :meth:`stop`.

    ``verifier`` is the log's key: a ``DIR/checkpoint`` it does not verify is not trusted for
    catching up (the directory is then rewritten from scratch).
    """

    def __init__(self, log: Any, root: Path, verifier: Verifier) -> None:
        self._log = log
        self._source = TileSource(log)
        self._root = Path(root)
        self._verifier = verifier
        self._cond = threading.Condition()
        self._pending: SignedCheckpoint | None = None
        self._stopping = False
        self._written = 0  # size of the checkpoint DIR/checkpoint holds
        self._stale: list[Path] = []  # partial tiles replaced by the last update, removed after the next
        self._thread: threading.Thread | None = None
        self._unfollow: Callable[[], None] | None = None

    @property
    def written_size(self) -> int:
        """The tree size ``DIR/checkpoint`` names (0 before the first write)."""
        return self._written

    def start(self) -> None:
        """Follow the log and start the writer's thread, which first catches up with the latest checkpoint."""
        self._root.mkdir(parents=True, exist_ok=True)
        self._written = self._size_on_disk()
        with self._cond:
            self._pending = self._source.checkpoint()
        self._thread = threading.Thread(target=self._run, name="tiles-dir", daemon=True)
        self._thread.start()
        self._unfollow = self._log.add_follower(self._offer)

    def stop(self) -> None:
        """Stop following; the writer finishes the checkpoint it is writing (and the newest one offered)."""
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until DIR holds the log's latest signed checkpoint; False after ``timeout`` seconds."""
        target = self._source.checkpoint().checkpoint.size
        self._offer(self._source.checkpoint())
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= target or self._thread is None, timeout)

    def _offer(self, signed: SignedCheckpoint) -> None:
        """The follower: hand ``signed`` to the writer's thread (quick; runs on the publisher's thread)."""
        with self._cond:
            if self._pending is None or signed.checkpoint.size > self._pending.checkpoint.size:
                self._pending = signed
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._stopping)
                signed, self._pending = self._pending, None
                if signed is None:
                    return
            if signed.checkpoint.size > self._written or not (self._root / "checkpoint").exists():
                try:
                    self.write(signed)
                except (ProvenanceError, OSError) as err:
                    _log.error("could not write tiles for the checkpoint of size %d into %s: %s",
                               signed.checkpoint.size, self._root, err,
                               extra={"tree_size": signed.checkpoint.size})
            with self._cond:
                self._cond.notify_all()

    def write(self, signed: SignedCheckpoint) -> None:
        """Write the tiles and bundles the tree of ``signed`` adds to DIR, then ``DIR/checkpoint``.

        Runs on the writer's thread (tests may call it directly on a writer not started)."""
        size = signed.checkpoint.size
        fresh: list[Path] = []
        for tile in tiles_between(self._written, size):
            fresh += self._write_tile(tile, size)
        write_atomic(self._root / "checkpoint", signed.note, sync=True)
        for path in self._stale:
            path.unlink(missing_ok=True)
        current = set(self._partials(size))
        self._stale = [p for p in self._partials(self._written) if p not in current]
        with self._cond:
            self._written = size
        _log.debug("tiles written", extra={"tree_size": size, "files": len(fresh)})

    def _write_tile(self, tile: Tile, size: int) -> list[Path]:
        written = []
        names = [(tile.path(), False), *([(tile.entries_path(), True)] if tile.level == 0 else [])]
        for name, entries in names:
            path = self._root / name
            if tile.full and self._written and path.exists():
                continue  # written once; from scratch (nothing trusted on disk), everything is rewritten
            try:
                data = self._source.bundle(tile, size) if entries else self._source.tile(tile, size)
            except ProvenanceError as err:
                if not entries:
                    raise
                _log.warning("entry bundle not written: %s", err, extra={"tree_size": size})
                continue
            write_atomic(path, data, sync=tile.full)
            written.append(path)
        return written

    def _partials(self, size: int) -> list[Path]:
        """Paths of the partial tiles and bundles of the tree of ``size``."""
        out = []
        for tile in partial_tiles(size):
            out.append(self._root / tile.path())
            if tile.level == 0:
                out.append(self._root / tile.entries_path())
        return out

    def _size_on_disk(self) -> int:
        """The size ``DIR/checkpoint`` names if it is this log's and no larger than the log's tree, else 0."""
        path = self._root / "checkpoint"
        try:
            note = path.read_bytes()
            cp = open_checkpoint(note, self._verifier)
        except (OSError, ProvenanceError):
            return 0
        if cp.size > self._source.checkpoint().checkpoint.size or (
                cp.size and self._log.root_at(cp.size) != cp.root):
            _log.warning("the checkpoint in %s is not one of this log's tree; rewriting the directory", self._root)
            return 0
        return cp.size
