"""Issue 15, points 1-3: a damaged data directory, attacked on a real store through ``provenance serve``.

1. A missing (or emptied) store next to the old key files is refused, not served as a new log
   signed by the old key; ``--new-log`` starts over, and only with a new key.
2. A lost, empty or zeroed ``SIGNED-HEAD`` on a store with a tree is damage: refused, naming it,
   also after the write-ahead log was cut; ``provenance fsck --restore-signed-head`` is the way
   back, and it refuses a checkpoint the store no longer holds.
3. A flipped byte in an SST: the read that hits it answers DATA_LOSS (not UNAVAILABLE) with no
   server path in its text, health goes NOT_SERVING; the background scrub finds it without any
   read; ``provenance fsck`` reports it (exit 1) and passes a clean copy (exit 0).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from client.core.checkpoint import Checkpoint
from client.errors import DataLossError, ProvenanceError, UnavailableError
from client.exit_codes import EXIT_FAILED, EXIT_OK
from ledger.errors import CorruptStorageError
from ledger.storage import Batch, TreeHead
from ledger.storage.rocks import SIGNED_HEAD_FILE, RocksStorage
from tests.servers import REPO, ServerProcess, health_status, running_server

ENTRIES = 3000
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
NO_SCRUB = ("--scrub-interval", "0")


def _store(data: Path) -> Path:
    return data / "log.rocksdb"


def _fill(srv: ServerProcess, batches: int, tag: str) -> bytes:
    """Add ``batches`` x 500 entries, each batch waited for; the last checkpoint note handed out."""
    note = b""
    with srv.client() as c:
        for k in range(batches):
            waited = c.add_entries([f"{tag}{k}.{i}".encode() * 8 for i in range(500)], wait_for_checkpoint=True)
            assert waited.checkpoint is not None
            note = waited.checkpoint
    return note


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after a clean stop: the store is flushed into SST files."""
    data = tmp_path_factory.mktemp("clean") / "data"
    with running_server(data, NO_SCRUB) as srv:
        (data.parent / "last.note").write_bytes(_fill(srv, ENTRIES // 500, "e"))
        assert srv.stop() == 0
    return data


@pytest.fixture(scope="module")
def crashed_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir after SIGKILL: the acknowledged batches live in the write-ahead log only."""
    data = tmp_path_factory.mktemp("crashed") / "data"
    with running_server(data, NO_SCRUB) as srv:
        (data.parent / "last.note").write_bytes(_fill(srv, 5, "c"))
        srv.kill()
    assert any(_store(data).glob("*.log"))
    return data


def _copy(source: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    shutil.copytree(source, data)
    return data


def _refused(data: Path, args: tuple[str, ...] = NO_SCRUB) -> tuple[int, str]:
    """Start ``provenance serve``: it must exit non-zero before ever reporting SERVING; (exit code, its log)."""
    srv = ServerProcess(data, args)
    try:
        with pytest.raises(RuntimeError, match=r"server exited with [1-9]") as info:
            srv.start(timeout=20)
    finally:
        srv.kill()
    assert srv.proc is not None
    log = str(info.value)
    assert "cannot serve" in log, log
    return srv.proc.returncode, log


def _provenance(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "client.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


# ------------------------------------------------------------------ 1. a missing store, the old key


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_missing_store_next_to_the_old_key_is_refused_not_served_as_a_new_log(clean_dir: Path, tmp_path: Path,
                                                                               how: str) -> None:
    data = _copy(clean_dir, tmp_path)
    shutil.rmtree(_store(data))
    if how == "emptied":
        _store(data).mkdir()
    code, log = _refused(data)
    assert code == EXIT_FAILED
    assert "log.rocksdb" in log and "log.pub" in log and "--new-log" in log, log
    assert not _store(data).exists() or not any(_store(data).iterdir()), "the refusal created a store"
    # The store opened but holding no log (a fresh RocksDB directory) is refused the same way.
    RocksStorage.open(_store(data)).close()
    code, log = _refused(data)
    assert code == EXIT_FAILED and "holds no log" in log, log


def test_new_log_requires_a_new_key_and_sets_the_old_key_files_aside(clean_dir: Path, tmp_path: Path) -> None:
    data = _copy(clean_dir, tmp_path)
    old_pub = (data / "log.pub").read_text()
    shutil.rmtree(_store(data))
    code, log = _refused(data, (*NO_SCRUB, "--new-log"))
    assert code != EXIT_OK and "needs a new signing key" in log and "log.key" in log, log
    (data / "log.key").rename(tmp_path / "old-log.key")
    with running_server(data, (*NO_SCRUB, "--new-log")) as srv, srv.client() as c:
        assert Checkpoint.from_text(c.checkpoint().decode().split("\n\n")[0] + "\n").size == 0
        assert c.log_info().verifier_key != old_pub.strip()
        assert srv.stop() == 0
    assert (data / "log.pub").read_text() != old_pub
    assert [p.read_text() for p in data.glob("log.pub.retired-*")] == [old_pub]
    # From now on it is the new log: it serves without the flag, and --new-log is refused over its store.
    with running_server(data, NO_SCRUB) as srv:
        assert srv.stop() == 0
    _refused(data, (*NO_SCRUB, "--new-log"))


# ------------------------------------------------------------------ 2. a lost signed-head record


def _lose_signed_head(data: Path, how: str) -> None:
    path = _store(data) / SIGNED_HEAD_FILE
    assert path.stat().st_size > 0
    if how == "deleted":
        path.unlink()
    elif how == "emptied":
        path.write_bytes(b"")
    else:
        path.write_bytes(bytes(path.stat().st_size))


def _cut_wal(data: Path) -> None:
    wal = max(_store(data).glob("*.log"), key=lambda p: p.stat().st_size)
    wal.write_bytes(wal.read_bytes()[: wal.stat().st_size // 2])


@pytest.mark.parametrize("how", ["deleted", "emptied", "zeroed"])
def test_cut_wal_and_lost_signed_head_is_refused_naming_the_record(crashed_dir: Path, tmp_path: Path,
                                                                    how: str) -> None:
    data = _copy(crashed_dir, tmp_path)
    _cut_wal(data)
    _lose_signed_head(data, how)
    code, log = _refused(data)
    assert code == EXIT_FAILED
    assert "no record of the last signed tree head" in log and "--restore-signed-head" in log, log
    # The way back refuses the newest checkpoint handed out: the cut store no longer holds it.
    out = _provenance("fsck", "--data", str(data), "--restore-signed-head", str(crashed_dir.parent / "last.note"))
    assert out.returncode == EXIT_FAILED and "signed entries are lost" in out.stderr, out
    assert _provenance("fsck", "--data", str(data)).returncode == EXIT_FAILED
    _refused(data)


def test_lost_signed_head_is_restored_from_the_last_checkpoint_and_serves_it(crashed_dir: Path,
                                                                             tmp_path: Path) -> None:
    data = _copy(crashed_dir, tmp_path)
    _lose_signed_head(data, "zeroed")
    _refused(data)
    note = crashed_dir.parent / "last.note"
    out = _provenance("fsck", "--data", str(data), "--restore-signed-head", str(note))
    assert out.returncode == EXIT_OK and "restored: size 2500" in out.stdout, out
    out = _provenance("fsck", "--data", str(data), "--restore-signed-head", str(note))
    assert out.returncode != EXIT_OK and "intact" in out.stderr, out
    with running_server(data, NO_SCRUB) as srv, srv.client() as c:
        assert c.consistency_proof(2500, 0).new_size == 2500


def test_store_with_a_head_but_no_signed_record_is_refused_by_the_log(tmp_path: Path) -> None:
    """The check is the log's, not only the server's: a tree head committed without a record."""
    from client.core.note import Signer
    from ledger.log import Log, LogConfig

    storage = RocksStorage.open(tmp_path / "store")
    storage.commit(Batch(0, (), (), {}, TreeHead(0, bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")), meta={"origin": b"t/log"}))
    with pytest.raises(CorruptStorageError, match="no record of the last signed tree head"):
        Log.open(storage, Signer.generate("t/log"), LogConfig(origin="t/log"))
    storage.close()


# ------------------------------------------------------------------ 3. a corrupt SST


def _flip_entries_sst(data: Path) -> Path:
    """Flip one byte in the middle of the SST holding entry 0 (the entries family); returns the file."""
    storage = RocksStorage.open(_store(data))
    try:
        files = [f for f in storage._live.writable().db.live_files() if f["start_key"] == bytes(8)]
    finally:
        storage.close()
    assert files, "no SST holds the entries"
    path = _store(data) / str(files[0]["name"]).lstrip("/")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


def _wait_not_serving(srv: ServerProcess, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if health_status(srv.address) == NOT_SERVING:
            return True
        time.sleep(0.1)
    return False


def test_read_of_a_corrupt_sst_is_data_loss_without_paths_and_not_serving(clean_dir: Path, tmp_path: Path) -> None:
    data = _copy(clean_dir, tmp_path)
    _flip_entries_sst(data)
    with running_server(data, NO_SCRUB) as srv, srv.client() as c:
        err: ProvenanceError | None = None
        for start in range(0, ENTRIES, 500):
            try:
                c.entries(start, start + 500)
            except ProvenanceError as e:
                err = e
                break
        assert isinstance(err, DataLossError) and not isinstance(err, UnavailableError), repr(err)
        for leak in (str(tmp_path), ".sst", "Corruption", "log.rocksdb"):
            assert leak not in str(err), str(err)
        assert _wait_not_serving(srv)
        assert "store damaged" in srv.log_text() and ".sst" in srv.log_text()  # the detail, server-side


def test_background_scrub_finds_a_corrupt_sst_without_any_read(clean_dir: Path, tmp_path: Path) -> None:
    data = _copy(clean_dir, tmp_path)
    _flip_entries_sst(data)
    srv = ServerProcess(data, ("--scrub-interval", "3600", "--scrub-rate", str(64 << 20)))
    with open(srv.log_path, "ab") as log:  # started by hand: the scrub may report the damage before SERVING is
        srv.proc = subprocess.Popen([sys.executable, "-m", "client.cli", "serve", "--data", str(data), "--listen",
                                     srv.address, *srv.args], cwd=REPO, stdout=log, stderr=log)
    try:
        assert _wait_not_serving(srv), srv.log_text()
        assert "scrub found damage" in srv.log_text()
        with srv.client() as c:
            c.checkpoint()  # reads of undamaged data still answer
    finally:
        srv.kill()


def test_fsck_passes_a_clean_copy_and_reports_each_damage(clean_dir: Path, tmp_path: Path) -> None:
    out = _provenance("fsck", "--data", str(_copy(clean_dir, tmp_path / "clean")))
    summary = f"clean: tree size {ENTRIES}, signed head {ENTRIES}, {ENTRIES} entries checked"
    assert out.returncode == EXIT_OK and summary in out.stdout, out
    flipped = _copy(clean_dir, tmp_path / "flipped")
    _flip_entries_sst(flipped)
    out = _provenance("fsck", "--data", str(flipped))
    assert out.returncode == EXIT_FAILED and "checksum failed in entries" in out.stdout, out
    lost = _copy(clean_dir, tmp_path / "lost")
    _lose_signed_head(lost, "deleted")
    out = _provenance("fsck", "--data", str(lost))
    assert out.returncode == EXIT_FAILED and "no record of the last signed tree head" in out.stdout, out
    assert not (_store(lost) / SIGNED_HEAD_FILE).exists(), "fsck wrote to the store"
    gone = _copy(clean_dir, tmp_path / "gone")
    shutil.rmtree(_store(gone))
    out = _provenance("fsck", "--data", str(gone))
    assert out.returncode == EXIT_FAILED and "missing or empty" in out.stdout, out


def test_fsck_finds_an_entry_that_disagrees_with_the_tree(clean_dir: Path, tmp_path: Path) -> None:
    data = _copy(clean_dir, tmp_path)
    storage = RocksStorage.open(_store(data))
    try:
        storage._cf["entries"][(7).to_bytes(8, "big")] = b"forged"  # checksums intact: only the tree can tell
    finally:
        storage.close()
    out = _provenance("fsck", "--data", str(data))
    assert out.returncode == EXIT_FAILED and "node (1, 3) disagrees" in out.stdout, out


def test_scan_over_a_corrupt_block_raises_instead_of_ending_early(tmp_path: Path) -> None:
    """rocksdict's items() ends silently at a bad block: a posting list would have been served cut short."""
    storage = RocksStorage.open(tmp_path / "store")
    aux = [(b"pl" + i.to_bytes(8, "big"), bytes([i % 251]) * 64) for i in range(20_000)]
    storage.commit(Batch(0, (), (), {}, TreeHead(0, bytes(32)), aux=aux))
    storage.close()
    sst = max((tmp_path / "store").glob("*.sst"), key=lambda p: p.stat().st_size)
    raw = bytearray(sst.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    sst.write_bytes(bytes(raw))
    storage = RocksStorage.open(tmp_path / "store")
    try:
        with pytest.raises(CorruptStorageError):
            storage.scan_aux(b"pl")
    finally:
        storage.close()
