"""Batch signature checks on worker processes (ledger/registry/verifier.py) answer exactly as in-thread checks."""

from __future__ import annotations

import os
import signal
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import pytest

from client.core.records import ModelCheckpoint, Record, RecordSigner, sign_record
from client.core.records.signing import signatures_valid
from client.errors import SignatureError
from ledger.registry.registry import Submission
from ledger.registry.verifier import CHUNK, Item, SignatureChecker
from tests.registry_kit import Lab, open_env


def _items(n: int, bad: set[int]) -> list[Item]:
    signer = RecordSigner.generate()
    out: list[Item] = []
    for i in range(n):
        s = sign_record(Record(ModelCheckpoint("m", "", i, bytes(32)), signer.public_key, i + 1), signer)
        sig = s.signature
        if i in bad:
            sig = bytes([sig[0] ^ 1]) + sig[1:]
        out.append((s.record.signer, s.body, sig))
    return out


def test_small_batches_never_start_a_process() -> None:
    checker = SignatureChecker(2)
    try:
        assert checker.check(_items(checker.min_batch - 1, {3})) == [i != 3 for i in range(checker.min_batch - 1)]
        assert checker._pool is None
    finally:
        checker.close()


def test_workers_answer_as_the_calling_thread_does() -> None:
    items = _items(3 * CHUNK + 5, {0, CHUNK, 2 * CHUNK + 7, 3 * CHUNK + 4})
    # A wrong-length key and a wrong-length signature are refusals too, never a worker's exception.
    items.append((b"\x01" * 31, b"body", b"\x00" * 64))
    items.append((items[1][0], items[1][1], items[1][2][:63]))
    checker = SignatureChecker(2)
    try:
        got = checker.check(items)
        assert checker._pool is not None  # the batch really went to worker processes
    finally:
        checker.close()
    assert got == signatures_valid(items)
    assert got.count(False) == 6 and len(got) == len(items)


def test_a_broken_pool_is_replaced_and_the_batch_still_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(2 * CHUNK, {5})
    checker = SignatureChecker(1)
    try:
        assert checker.check(items) == [i != 5 for i in range(len(items))]
        pool = checker._pool
        assert pool is not None
        for pid in list(pool._processes):  # a worker killed from outside (the OOM killer, an operator)
            os.kill(pid, signal.SIGKILL)
        assert checker.check(items) == [i != 5 for i in range(len(items))]
        # The next large batch gets a fresh pool.
        assert checker.check(items) == [i != 5 for i in range(len(items))]
        assert checker._pool is not None and checker._pool is not pool
    finally:
        checker.close()


def test_a_pool_failing_at_submit_falls_back_in_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    items = _items(2 * CHUNK, {1})
    checker = SignatureChecker(1)

    class Broken:
        def submit(self, *args: Any) -> Any:
            raise BrokenProcessPool("worker died")

        def shutdown(self, **kwargs: Any) -> None:
            pass

    monkeypatch.setattr(checker, "_ensure_pool", lambda: Broken())
    try:
        assert checker.check(items) == [i != 1 for i in range(len(items))]
    finally:
        checker.close()


def test_after_close_checks_run_in_thread() -> None:
    checker = SignatureChecker(2)
    checker.close()
    items = _items(2 * CHUNK, {2})
    assert checker.check(items) == [i != 2 for i in range(len(items))]
    assert checker._pool is None


def test_negative_process_count_is_refused() -> None:
    with pytest.raises(ValueError, match="processes"):
        SignatureChecker(-1)


def test_registry_with_workers_refuses_bad_signatures_alone() -> None:
    """A large batch through a registry whose signatures are checked on workers: the bad ones are refused
    with the same error an in-thread check gives, the rest are logged at consecutive indices."""
    env = open_env(verify_processes=2)
    try:
        lab = Lab("lab")
        (ok,) = env.registry.register([lab.register()])
        assert not isinstance(ok, Exception), ok
        subs = []
        for i in range(3 * CHUNK):
            sub, _ = lab.checkpoint("m", i)
            if i in (7, 100):
                sub = Submission(sub.entry[:-1] + bytes([sub.entry[-1] ^ 1]), sub.manifest)
            subs.append(sub)
        size = env.log.size
        results = env.registry.register(subs)
        assert env.registry._signatures._pool is not None  # checked on worker processes
        refused = [i for i, r in enumerate(results) if isinstance(r, Exception)]
        assert refused == [7, 100]
        for i in refused:
            assert isinstance(results[i], SignatureError)
            assert "record signature does not verify with signer key ed25519:" in str(results[i])
        assert env.log.size == size + len(subs) - 2
        assert [r.index for r in results if not isinstance(r, Exception)] == list(range(size, env.log.size))
    finally:
        env.close()
