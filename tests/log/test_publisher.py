"""The checkpoint publisher: signing stays on the sequencer's path, slow work (followers, expiry) off it."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from client.core.checkpoint import SignedCheckpoint, open_checkpoint
from client.core.note import Signer
from client.errors import UnavailableError
from ledger.errors import StorageError, WaitTimeoutError
from ledger.log import Log, LogConfig
from ledger.storage.memory import MemoryStorage

ORIGIN = "example.com/test-publisher"
SIGNER = Signer.from_seed(ORIGIN, b"\x09" * 32)


@pytest.fixture
def mem_log() -> Iterator[Log]:
    lg = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN))
    yield lg
    lg.close()


def test_writer_future_resolves_after_its_checkpoint_is_signed(mem_log: Log) -> None:
    """When add returns, the latest checkpoint already covers every entry it added."""
    for n in range(1, 30):
        got = mem_log.add([f"e{n}".encode()])
        assert mem_log.latest().checkpoint.size > max(r.index for r in got)  # type: ignore[union-attr]


def test_listeners_run_on_the_sequencer_thread_followers_never(mem_log: Log) -> None:
    listener_threads: list[str] = []
    follower_sizes: list[int] = []
    follower_threads: list[str] = []
    seen = threading.Event()

    def follower(signed: SignedCheckpoint) -> None:
        follower_threads.append(threading.current_thread().name)
        follower_sizes.append(signed.checkpoint.size)
        time.sleep(0.01)  # slow work (a witness round trip) must not hold up the writers
        if signed.checkpoint.size == 20:
            seen.set()

    mem_log.add_listener(lambda _: listener_threads.append(threading.current_thread().name))
    mem_log.add_follower(follower)
    for n in range(20):
        mem_log.add([f"f{n}".encode()])
    assert seen.wait(5)
    assert set(listener_threads) == {f"sequencer[{ORIGIN}]"}
    assert set(follower_threads) == {f"publisher[{ORIGIN}]"}
    assert follower_sizes == sorted(set(follower_sizes)) and follower_sizes[-1] == 20


def test_follower_failure_is_logged_and_following_goes_on(mem_log: Log) -> None:
    sizes: list[int] = []
    done = threading.Event()

    def bad(_: SignedCheckpoint) -> None:
        raise RuntimeError("witness unreachable")

    def good(signed: SignedCheckpoint) -> None:
        sizes.append(signed.checkpoint.size)
        if signed.checkpoint.size == 2:
            done.set()

    mem_log.add_follower(bad)
    mem_log.add_follower(good)
    mem_log.add([b"a"])
    mem_log.add([b"b"])
    assert done.wait(5) and sizes[-1] == 2


def test_waits_expire_on_the_publisher_thread_while_the_sequencer_is_idle(mem_log: Log) -> None:
    began = time.monotonic()
    with pytest.raises(WaitTimeoutError):
        mem_log.wait_for_size(5, timeout=0.1).result(5)
    assert time.monotonic() - began < 2
    longer = mem_log.wait_for_size(1, timeout=30)
    mem_log.add([b"x"])
    assert longer.result(5).checkpoint.size == 1


def test_close_fails_waiters_and_refuses_new_waits() -> None:
    lg = Log.open(MemoryStorage(), SIGNER, LogConfig(ORIGIN))
    waiting = lg.wait_for_size(3)
    lg.close()
    with pytest.raises(UnavailableError):
        waiting.result(5)
    with pytest.raises(UnavailableError):
        lg.wait_for_size(3).result(5)


class _NoRecord(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.refuse = False

    def record_signed(self, size: int, root: bytes) -> None:
        if self.refuse:
            raise StorageError("injected: cannot record the signed head")
        super().record_signed(size, root)


def test_head_that_cannot_be_recorded_is_not_signed() -> None:
    """publish records before it signs: when recording fails, no checkpoint of that head exists."""
    storage = _NoRecord()
    lg = Log.open(storage, SIGNER, LogConfig(ORIGIN))
    try:
        lg.add([b"a"])
        before = lg.latest()
        storage.refuse = True
        with pytest.raises(UnavailableError):
            lg.add([b"b"])
        assert lg.latest() is before
        saved = storage.read_meta("checkpoint")
        assert saved is not None and open_checkpoint(saved, SIGNER.verifier(), ORIGIN).size == 1
    finally:
        storage.refuse = False
        lg.close()
