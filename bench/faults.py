"""SIGKILL the server at many random points of a write-heavy run, restart it each time, and check the promises.

Each cycle: (re)start ``provenance serve`` on the same data dir, check the log against
everything learned so far, start writers (some adds wait for a checkpoint) and a
checkpoint reader, and SIGKILL the server after a random time. Every few cycles the kill
lands during start-up instead (while the store is opened and recovered), before or after
the server reports SERVING. After every restart, and again at the end:

* every acknowledged entry is at the index it was given (an index is never reused and an
  entry never moves; resubmitting an acknowledged entry returns its old index);
* every checkpoint ever handed out (by GetCheckpoint or with a waited add) is consistent
  with the tree served after the restart (``client.core.merkle.verify_consistency``);
* the served checkpoint never goes back in size.

At the end the whole log is re-hashed (root of every entry) and ``provenance audit``
re-verifies it from scratch. ``python -m bench faults`` runs the long mode (50 kills);
``tests/log/test_fault_kills.py`` runs 5.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.hammer import audit, make_entry, scratch_dir, verifier_key
from client.core import merkle
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Verifier
from client.errors import ProvenanceError
from tests.servers import ServerProcess, start_server


@dataclass(frozen=True)
class FaultConfig:
    kills: int = 50
    writers: int = 3
    max_batch: int = 64
    min_run: float = 0.1  # seconds of writing before a kill, uniform in [min_run, max_run]
    max_run: float = 0.8
    startup_kill_every: int = 7  # every n-th kill lands during start-up instead (0: never)
    entry_bytes: int = 200
    seed: int = 1


@dataclass
class Book:
    verifier: Verifier
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, bytes] = field(default_factory=dict)
    recent: list[int] = field(default_factory=list)  # acknowledged indices, in order, to resubmit from
    index_of: dict[bytes, int] = field(default_factory=dict)
    unacked: list[bytes] = field(default_factory=list)  # sent, no answer (the kill): may or may not be logged
    notes: dict[int, bytes] = field(default_factory=dict)  # size -> signed note handed out
    roots: dict[int, bytes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    proofs_verified: int = 0

    def ack(self, entry: bytes, index: int) -> None:
        with self.lock:
            old_entry = self.acked.get(index)
            old_index = self.index_of.get(entry)
            if old_entry is not None and old_entry != entry:
                self.failures.append(f"index {index} given to two different entries")
            if old_index is not None and old_index != index:
                self.failures.append(f"an entry acknowledged at {old_index} came back at {index}")
            if old_entry is None:
                self.recent.append(index)
            self.acked[index] = entry
            self.index_of[entry] = index

    def handed_out(self, note: bytes) -> Checkpoint:
        cp = open_checkpoint(note, self.verifier)
        with self.lock:
            old = self.roots.get(cp.size)
            if old is not None and old != cp.root:
                self.failures.append(f"two roots handed out at size {cp.size} (a fork)")
            self.roots[cp.size] = cp.root
            self.notes[cp.size] = note
        return cp


def _writer(srv: ServerProcess, book: Book, cfg: FaultConfig, n: int, cycle: int, stop: threading.Event) -> None:
    rng = random.Random(cfg.seed * 100_000 + cycle * 100 + n)
    with srv.client(timeout=5) as c:
        k = 0
        while not stop.is_set():
            k += 1
            batch = [make_entry(rng, f"c{cycle}.w{n}.{k}.{j}", cfg.entry_bytes)
                     for j in range(rng.randint(1, cfg.max_batch))]
            with book.lock:  # retry what a kill left unanswered, and resubmit acknowledged entries
                if book.unacked and rng.random() < 0.3:
                    batch.append(book.unacked.pop(rng.randrange(len(book.unacked))))
                if book.recent and rng.random() < 0.2:
                    batch.append(book.acked[rng.choice(book.recent[-1000:])])
                batch = list(dict.fromkeys(batch))
            wait = k % 3 == 0
            try:
                result = c.add_entries(batch, wait_for_checkpoint=wait)
            except ProvenanceError:  # killed under us
                with book.lock:
                    book.unacked.extend(batch)
                return
            for entry, a in zip(batch, result.entries, strict=True):
                if a.leaf_hash != merkle.leaf_hash(entry):
                    with book.lock:
                        book.failures.append(f"wrong leaf hash acknowledged at {a.index}")
                book.ack(entry, a.index)
            if result.checkpoint is not None:
                cp = book.handed_out(result.checkpoint)
                for a in result.entries:
                    merkle.verify_inclusion(a.index, cp.size, a.leaf_hash, a.inclusion_proof, cp.root)
                with book.lock:
                    book.proofs_verified += len(result.entries)


def _checkpoints(srv: ServerProcess, book: Book, stop: threading.Event) -> None:
    with srv.client(timeout=5) as c:
        while not stop.is_set():
            try:
                note = c.checkpoint()
            except ProvenanceError:
                return
            book.handed_out(note)
            time.sleep(0.01)


def check_against(srv: ServerProcess, book: Book, since: int, full: bool = False) -> Checkpoint:
    """The served log holds every acked entry at its index and extends every checkpoint handed out.

    ``since``: only entries at indices >= ``since`` are read back (all of them when ``full``).
    """
    with srv.client(timeout=60) as c:
        cp = book.handed_out(c.checkpoint())
        with book.lock:
            acked = dict(book.acked)
            roots = dict(book.roots)
        top = max(acked, default=-1)
        if cp.size < top + 1:
            raise AssertionError(f"served tree of {cp.size} lost acknowledged index {top}")
        if max(roots, default=0) > cp.size:
            raise AssertionError(f"served tree of {cp.size} is behind a checkpoint of {max(roots)} handed out")
        start = 0 if full else min(since, cp.size)
        stored = list(c.iter_entries(start, cp.size)) if start < cp.size else []
        for index, entry in acked.items():
            if index >= start and stored[index - start] != entry:
                raise AssertionError(f"acknowledged entry at {index} lost or moved")
        if full and merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in stored]) != cp.root:
            raise AssertionError("the served root is not the root of the stored entries")
        verified = 0
        for size, root in sorted(roots.items()):
            if 0 < size < cp.size:
                proof = c.consistency_proof(size, cp.size)
                merkle.verify_consistency(size, cp.size, list(proof.hashes), root, cp.root)
                verified += 1
            elif size == cp.size and root != cp.root:
                raise AssertionError(f"the served root at size {size} differs from one handed out before")
        with book.lock:
            book.proofs_verified += verified
        return cp


@dataclass
class FaultResult:
    kills: int
    startup_kills: int
    entries_acked: int
    final_size: int
    checkpoints_handed_out: int
    proofs_verified: int
    restart_seconds: list[float]
    seconds: float
    audit: dict[str, object]
    failures: list[str]

    def lines(self) -> Iterator[str]:
        restarts = sorted(self.restart_seconds)
        worst = restarts[-1] if restarts else 0.0
        yield (f"{self.kills} SIGKILLs survived ({self.startup_kills} during start-up) in {self.seconds:.0f} s; "
               f"{self.entries_acked} acknowledged entries all at their index in the final tree of "
               f"{self.final_size}; {self.checkpoints_handed_out} checkpoints handed out, all consistent with it; "
               f"{self.proofs_verified} proofs verified")
        if restarts:
            yield f"  restart to SERVING: median {restarts[len(restarts) // 2]:.2f} s, max {worst:.2f} s"
        yield f"  audit: {self.audit}"
        yield f"  failures: {len(self.failures)}" + "".join(f"\n    {f}" for f in self.failures[:20])


def run_kills(data_dir: Path, cfg: FaultConfig, progress: Callable[[str], None] | None = None) -> FaultResult:
    """Kill and restart ``cfg.kills`` times; raise AssertionError (or record a failure) on any broken promise.

    ``progress`` (if given) gets a line every 10 kills.
    """
    rng = random.Random(cfg.seed)
    began = time.monotonic()
    srv = start_server(data_dir)
    restarts: list[float] = []
    startup_kills = 0
    try:
        book = Book(verifier_key(srv))
        checked = 0
        for kill in range(1, cfg.kills + 1):
            if cfg.startup_kill_every and kill % cfg.startup_kill_every == 0:
                # Kill while the store is being opened and recovered (or just after SERVING).
                startup_kills += 1
                timer = threading.Timer(rng.uniform(0.0, 1.0), srv.kill)
                timer.start()
                with contextlib.suppress(RuntimeError):  # killed before it was SERVING
                    srv.restart()
                timer.join()
                srv.kill()
                restarts.append(srv.restart())
                checked = check_against(srv, book, checked).size
                continue
            stop = threading.Event()
            threads = [threading.Thread(target=_writer, args=(srv, book, cfg, n, kill, stop))
                       for n in range(cfg.writers)]
            threads.append(threading.Thread(target=_checkpoints, args=(srv, book, stop)))
            for t in threads:
                t.start()
            time.sleep(rng.uniform(cfg.min_run, cfg.max_run))
            srv.kill()  # SIGKILL while the writers are still going
            stop.set()
            for t in threads:
                t.join(30)
            restarts.append(srv.restart())
            checked = check_against(srv, book, checked).size
            if book.failures:
                break
            if progress is not None and kill % 10 == 0:
                progress(f"  {kill} kills, {len(book.acked)} entries acknowledged, tree {checked}, "
                         f"{time.monotonic() - began:.0f} s")
        final = check_against(srv, book, 0, full=True)
        # Entries acknowledged before the kills are duplicates at their old index.
        with srv.client() as c:
            sample = random.Random(cfg.seed).sample(sorted(book.acked.items()), min(200, len(book.acked)))
            again = c.add_entries([e for _, e in sample])
            for (index, _), a in zip(sample, again.entries, strict=True):
                if a.index != index or not a.duplicate:
                    book.failures.append(f"resubmitted entry of index {index} came back at {a.index}")
        report = audit(srv, book.verifier, data_dir.parent / "audit-state.json")
        if report.get("tree_size") != final.size:
            book.failures.append(f"audit saw {report.get('tree_size')} entries, the final checkpoint {final.size}")
        if srv.stop() != 0:
            book.failures.append("server did not exit 0 after SIGTERM")
        return FaultResult(cfg.kills, startup_kills, len(book.acked), final.size, len(book.roots),
                           book.proofs_verified, restarts, time.monotonic() - began, report, list(book.failures))
    finally:
        srv.kill()


LONG = FaultConfig(kills=int(os.environ.get("FAULT_KILLS", "50")))
SHORT = FaultConfig(kills=5, startup_kill_every=4, min_run=0.2, max_run=0.6)


def run(quick: bool) -> None:
    """``python -m bench faults``: 50 SIGKILLs (``--quick``: 5)."""
    cfg = SHORT if quick else LONG
    print(f"faults: {cfg}", flush=True)
    with scratch_dir() as tmp:
        result = run_kills(tmp / "data", cfg, progress=lambda line: print(line, flush=True))
    for line in result.lines():
        print(line, flush=True)
    if result.failures:
        raise SystemExit(1)
