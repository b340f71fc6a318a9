"""The health service reports NOT_SERVING when the sequencer is stuck, and SERVING once it moves again.

A real ``ledger.log.Log`` runs over a memory store whose ``commit`` blocks until the
test releases it: writes queue up, nothing is integrated, and after ``stuck_seconds``
the server's health (and the ``provenance_healthy`` gauge) turns NOT_SERVING, although
``Log.health()`` (whose own limit is 30 s) still says true.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from grpc_health.v1 import health_pb2

from client.core.note import Signer
from client.remote import LogClient
from ledger.log import Log, LogConfig
from ledger.log.progress import ProgressWatch, WatchedLog
from ledger.storage import Batch
from ledger.storage.memory import MemoryStorage
from tests.inproc import serving
from tests.servers import health_status

ORIGIN = "test.example/stuck"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class BlockingStorage(MemoryStorage):
    """Commits wait while ``gate`` is clear (a hung disk or a stuck network volume)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.blocked = threading.Event()

    def commit(self, batch: Batch) -> None:
        if not self.gate.is_set():
            self.blocked.set()
            self.gate.wait(30)
        super().commit(batch)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def stuck_server() -> Iterator[tuple[BlockingStorage, Log, str, object]]:
    storage = BlockingStorage()
    signer = Signer.generate(ORIGIN)
    log = Log.open(storage, signer, LogConfig(origin=ORIGIN))
    try:
        with serving(log, signer.verifier().text(), origin=ORIGIN, stuck_seconds=0.4,
                     health_poll_seconds=0.05) as (address, server):
            yield storage, log, address, server
    finally:
        storage.gate.set()
        log.close()


def test_idle_log_is_serving(stuck_server: tuple[BlockingStorage, Log, str, object]) -> None:
    _, _, address, _ = stuck_server
    time.sleep(0.6)  # longer than stuck_seconds: idleness is not being stuck
    assert health_status(address) == SERVING


def test_stuck_sequencer_is_not_serving_then_recovers(stuck_server: tuple[BlockingStorage, Log, str, object]) -> None:
    storage, log, address, server = stuck_server
    with LogClient(address, timeout=20) as client:
        client.add_entries([b"before"])
        storage.gate.clear()
        with ThreadPoolExecutor(2) as pool:
            pending = pool.submit(client.add_entries, [b"stuck 1"])
            assert storage.blocked.wait(5), "the sequencer never reached the blocked commit"
            assert log.health(), "the log's own 30 s limit has not fired: the server's watch must"
            assert _wait_for(lambda: health_status(address) == NOT_SERVING)
            assert health_status(address, service="provenance.ledger.v1.LogService") == NOT_SERVING
            registry = server.metrics.registry  # type: ignore[attr-defined]
            assert registry.get_sample_value("provenance_healthy") == 0
            assert registry.get_sample_value("provenance_writes_in_flight") >= 1
            storage.gate.set()
            assert pending.result(10).entries[0].index == 1
        assert _wait_for(lambda: health_status(address) == SERVING)


def test_watched_log_counts_registry_style_writes() -> None:
    storage = BlockingStorage()
    signer = Signer.generate(ORIGIN)
    log = Log.open(storage, signer, LogConfig(origin=ORIGIN))
    try:
        watched = WatchedLog(log)
        storage.gate.clear()
        fut = watched.submit([b"via the registry"])
        assert storage.blocked.wait(5)
        assert watched.watch.outstanding == 1 and watched.size == 0
        storage.gate.set()
        fut.result(5)
        assert _wait_for(lambda: watched.watch.outstanding == 0)
        assert watched.size == 1  # everything else passes through
    finally:
        storage.gate.set()
        log.close()


def test_progress_watch_rules() -> None:
    clock = FakeClock()
    watch = ProgressWatch(clock)
    clock.now += 100
    assert watch.stalled_for() == 0.0, "nothing waiting: not stalled however long it was idle"
    watch.started()
    clock.now += 3
    assert watch.stalled_for() == 3
    watch.progressed()  # a checkpoint was signed: the sequencer is moving
    clock.now += 1
    assert watch.stalled_for() == 1
    watch.started()
    watch.finished()
    assert watch.stalled_for() == 0 and watch.outstanding == 1
    watch.finished()
    clock.now += 50
    assert watch.stalled_for() == 0.0


def test_submit_that_raises_is_not_left_outstanding() -> None:
    storage = MemoryStorage()
    signer = Signer.generate(ORIGIN)
    log = Log.open(storage, signer, LogConfig(origin=ORIGIN))
    try:
        watched = WatchedLog(log)
        with pytest.raises(Exception, match="no entries"):
            watched.submit([])
        assert watched.watch.outstanding == 0
    finally:
        log.close()


class FailingStorage(MemoryStorage):
    """Commits raise while ``failing`` is set (a full disk): the log refuses to sign and reports unhealthy."""

    def __init__(self) -> None:
        super().__init__()
        self.failing = False

    def commit(self, batch: Batch) -> None:
        if self.failing:
            from ledger.errors import StorageError

            raise StorageError("no space left on device")
        super().commit(batch)


def test_failing_storage_is_not_serving_until_it_recovers() -> None:
    from client.errors import UnavailableError

    storage = FailingStorage()
    signer = Signer.generate(ORIGIN)
    log = Log.open(storage, signer, LogConfig(origin=ORIGIN))
    try:
        with (serving(log, signer.verifier().text(), origin=ORIGIN, health_poll_seconds=0.05) as (address, _),
              LogClient(address, timeout=10) as client):
            client.add_entries([b"ok"])
            storage.failing = True
            with pytest.raises(UnavailableError):
                client.add_entries([b"refused"])
            assert _wait_for(lambda: health_status(address) == NOT_SERVING)
            storage.failing = False
            assert _wait_for(lambda: health_status(address) == SERVING)
            assert client.add_entries([b"refused"]).entries[0].index == 1
    finally:
        log.close()
