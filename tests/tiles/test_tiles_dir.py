"""ledger/http/tiles_dir.py in process: catching up at start, full tiles written once, a foreign DIR rewritten."""

from __future__ import annotations

from pathlib import Path

from client.core.note import Signer
from client.core.tiles import decode_bundle
from ledger.http.tiles_dir import TilesDirWriter
from ledger.log import Log, LogConfig
from ledger.storage.memory import MemoryStorage

ORIGIN = "example.com/tiles-dir"
SIGNER = Signer.from_seed(ORIGIN, b"\x0c" * 32)


def _log(n: int, tag: str = "e") -> Log:
    log = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN))
    for i in range(0, n, 1000):
        log.add([f"{tag} {j}".encode() for j in range(i, min(n, i + 1000))], timeout=10)
    return log


def _write(log: Log, root: Path) -> TilesDirWriter:
    writer = TilesDirWriter(log, root, SIGNER.verifier())
    writer.start()
    assert writer.flush(20)
    writer.stop()
    return writer


def test_a_restart_catches_up_from_the_checkpoint_in_dir(tmp_path: Path) -> None:
    log = _log(600)
    try:
        _write(log, tmp_path)
        assert (tmp_path / "checkpoint").read_bytes() == log.latest().note
        first = (tmp_path / "tile/0/000").stat()
        log.add([f"e {j}".encode() for j in range(600, 1000)], timeout=10)
        writer = _write(log, tmp_path)  # a new writer, as at the next start
        assert writer.written_size == 1000 and (tmp_path / "checkpoint").read_bytes() == log.latest().note
        again = (tmp_path / "tile/0/000").stat()
        assert (again.st_ino, again.st_mtime_ns) == (first.st_ino, first.st_mtime_ns)  # a full tile: written once
        assert decode_bundle((tmp_path / "tile/entries/003.p/232").read_bytes(), 232)[-1] == b"e 999"
        assert (tmp_path / "tile/entries/002").exists() and (tmp_path / "tile/1/000.p/3").exists()
    finally:
        log.close()


def test_a_dir_of_another_tree_is_rewritten(tmp_path: Path) -> None:
    other = _log(600, tag="other")
    try:
        _write(other, tmp_path)  # same key and origin, different entries: not this log's tree
    finally:
        other.close()
    log = _log(600)
    try:
        _write(log, tmp_path)
        assert decode_bundle((tmp_path / "tile/entries/000").read_bytes(), 256)[0] == b"e 0"
        assert (tmp_path / "checkpoint").read_bytes() == log.latest().note
    finally:
        log.close()


def test_an_empty_log_writes_only_its_checkpoint(tmp_path: Path) -> None:
    log = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN))
    try:
        writer = TilesDirWriter(log, tmp_path, SIGNER.verifier())
        writer.write(log.latest())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    finally:
        log.close()
