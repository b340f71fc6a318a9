"""SIGKILL the server in the middle of concurrent writes; after a restart nothing acknowledged is lost.

Every entry the server acknowledged (an index was returned) must be at that index,
and every checkpoint it handed out before the crash must be consistent with the
one it serves afterwards (``client.core.merkle.verify_consistency``).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from client.core import merkle
from client.core.checkpoint import open_checkpoint
from client.core.note import Verifier
from tests.servers import running_server

WRITERS = 4
RESTART_SECONDS = 5.0


def test_sigkill_mid_write_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        with srv.client() as c:
            verifier = Verifier.from_text(c.log_info().verifier_key)
        acked: dict[int, bytes] = {}
        notes: list[bytes] = []
        lock = threading.Lock()
        stop = threading.Event()

        def writer(n: int) -> None:
            with srv.client(timeout=5) as c:
                i = 0
                while not stop.is_set():
                    batch = [f"crash {n} {i + k}".encode() for k in range(1 + i % 4)]
                    i += len(batch)
                    try:
                        result = c.add_entries(batch, wait_for_checkpoint=(n == 0))
                    except Exception:  # the server died under us
                        return
                    with lock:
                        for entry, added in zip(batch, result.entries, strict=True):
                            acked[added.index] = entry
                        if result.checkpoint is not None:
                            notes.append(result.checkpoint)

        def reader() -> None:
            with srv.client(timeout=5) as c:
                while not stop.is_set():
                    try:
                        note = c.checkpoint()
                    except Exception:
                        return
                    with lock:
                        notes.append(note)
                    time.sleep(0.005)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        threads.append(threading.Thread(target=reader))
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(acked) < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.kill()  # SIGKILL while the writers are still going
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) >= 1000, "writers were too slow to make the test meaningful"

        took = srv.restart()
        assert took < RESTART_SECONDS, f"restart took {took:.1f}s"

        with srv.client() as c:
            assert c.log_info().verifier_key == verifier.text()
            after = open_checkpoint(c.checkpoint(), verifier)
            assert after.size >= max(acked) + 1
            stored = list(c.iter_entries(0, after.size))
            for index, entry in acked.items():
                assert stored[index] == entry, f"acknowledged entry lost or moved at index {index}"
            assert merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in stored]) == after.root

            before = sorted({open_checkpoint(n, verifier) for n in notes}, key=lambda cp: cp.size)
            assert before, "no checkpoints were handed out before the crash"
            for old in before:
                if old.size:  # nothing to prove about the empty tree
                    proof = c.consistency_proof(old.size, after.size).hashes
                    merkle.verify_consistency(old.size, after.size, list(proof), old.root, after.root)

            # The log keeps working, and an acknowledged entry is a duplicate at its old index.
            index, entry = next(iter(acked.items()))
            again = c.add_entries([entry, b"after the crash"], wait_for_checkpoint=True)
            assert again.entries[0].duplicate and again.entries[0].index == index
            assert again.entries[1].index == after.size

