"""The hammer: concurrent writers and verifying readers against a real ``provenance serve`` process.

Loopback only, bounded in time and in entries, stops by itself. What it checks:

* writers: every acknowledged entry got the leaf hash of what was sent; an entry sent
  again (a duplicate) comes back at the index it was first given; adds that wait for a
  checkpoint carry an inclusion proof that verifies against that signed checkpoint;
* readers each hold a checkpoint verified with the log's key (read from the data dir with
  ``provenance log-key --data``, and required to equal what GetLogInfo says). Every new
  checkpoint is proved consistent with the held one before it replaces it; every
  inclusion proof read (by index, by leaf hash, many per call) is verified against the
  held checkpoint; older held checkpoints are re-proved against the newest;
* a watcher verifies each streamed checkpoint (WatchCheckpoints) against the previous one;
* at the end: every acknowledged entry is at its index, every checkpoint anyone saw is
  consistent with the final tree, and ``provenance audit`` re-verifies the whole log from
  scratch.

Figures: entries/s, proof verifications/s, latency percentiles per call type.
``python -m bench hammer`` runs the long mode (``--quick``: the short one);
``tests/log/test_hammer.py`` runs the short mode inside ``make test``.
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from client.core import merkle
from client.core.checkpoint import Checkpoint, open_checkpoint
from client.core.note import Verifier
from client.errors import UnavailableError
from client.remote import LogClient
from tests.servers import REPO, ServerProcess, start_server


@dataclass(frozen=True)
class HammerConfig:
    """Bounds of one run. Seconds of load, then the final checks (not counted in ``seconds``)."""

    seconds: float = 10.0
    max_entries: int = 1_000_000  # writers stop at this many acknowledged entries
    writers: int = 4
    readers: int = 3
    max_batch: int = 32  # entries per AddEntries call: uniform in [1, max_batch]
    wait_every: int = 4  # every n-th add of a writer waits for its checkpoint and proofs
    entry_bytes: int = 120
    seed: int = 1


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max of ``values`` in milliseconds (nearest rank)."""
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] * 1000

    return {"p50": at(0.50), "p90": at(0.90), "p99": at(0.99), "max": ordered[-1] * 1000}


@dataclass
class Ledger:
    """What the run learned, shared by every thread (under ``lock``)."""

    verifier: Verifier
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, bytes] = field(default_factory=dict)  # index -> entry, as acknowledged
    acked_list: list[tuple[int, bytes]] = field(default_factory=list)  # (index, leaf hash) to sample from
    checkpoints: dict[int, bytes] = field(default_factory=dict)  # size -> root, of every checkpoint seen
    notes: dict[int, bytes] = field(default_factory=dict)  # size -> one signed note of that size
    latencies: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] = self.counts.get(name, 0) + n

    def timed(self, name: str, began: float) -> None:
        took = time.perf_counter() - began
        with self.lock:
            self.latencies.setdefault(name, []).append(took)

    def fail(self, message: str) -> None:
        with self.lock:
            self.failures.append(message)

    def ack(self, index: int, entry: bytes) -> None:
        """Record an acknowledgement; an index must never be given to two different entries."""
        with self.lock:
            old = self.acked.get(index)
            if old is None:
                self.acked[index] = entry
                self.acked_list.append((index, merkle.leaf_hash(entry)))
            elif old != entry:
                self.failures.append(f"index {index} acknowledged for two different entries")

    def saw(self, cp: Checkpoint, note: bytes) -> None:
        """Record a verified checkpoint; two different roots at one size would be a fork."""
        with self.lock:
            old = self.checkpoints.get(cp.size)
            if old is None:
                self.checkpoints[cp.size] = cp.root
                self.notes[cp.size] = note
            elif old != cp.root:
                self.failures.append(f"two checkpoints of size {cp.size} with different roots (a fork)")


def verifier_key(srv: ServerProcess) -> Verifier:
    """The log's key from the data dir (``provenance log-key --data``), checked against GetLogInfo."""
    out = subprocess.run([sys.executable, "-m", "client.cli", "log-key", "--data", str(srv.data_dir)],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=60)
    local = Verifier.from_text(out.stdout.strip())
    with srv.client() as c:
        served = c.log_info().verifier_key
    if served != local.text():
        raise AssertionError(f"GetLogInfo key {served!r} differs from the data dir's {local.text()!r}")
    return local


def audit(srv: ServerProcess, verifier: Verifier, state: Path) -> dict[str, object]:
    """``provenance audit`` with the key pinned: fetches and re-hashes the whole log. Raises on failure."""
    cmd = [sys.executable, "-m", "client.cli", "audit", "--server", srv.address, "--log-key", verifier.text(),
           "--state", str(state)]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise AssertionError(f"provenance audit failed ({out.returncode}): {out.stdout}{out.stderr}")
    report: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return report


def make_entry(rng: random.Random, tag: str, size: int) -> bytes:
    head = tag.encode() + b" "
    return head + rng.randbytes(max(1, size - len(head)))


# ------------------------------------------------------------------ the threads


def writer(srv: ServerProcess, book: Ledger, n: int, cfg: HammerConfig, stop: threading.Event) -> None:
    rng = random.Random(cfg.seed * 1000 + n)
    with srv.client(timeout=30) as c:
        k = 0
        while not stop.is_set():
            k += 1
            batch = [make_entry(rng, f"w{n}.{k}.{j}", cfg.entry_bytes) for j in range(rng.randint(1, cfg.max_batch))]
            again: list[tuple[int, bytes]] = []
            with book.lock:
                if book.acked_list and rng.random() < 0.1:  # resubmit an acknowledged entry: same index back
                    index, _ = rng.choice(book.acked_list)
                    again.append((index, book.acked[index]))
            wait = cfg.wait_every > 0 and k % cfg.wait_every == 0
            began = time.perf_counter()
            result = c.add_entries(batch + [e for _, e in again], wait_for_checkpoint=wait)
            book.timed("add+wait" if wait else "add", began)
            added = list(result.entries)
            for entry, a in zip(batch, added[: len(batch)], strict=True):
                if a.leaf_hash != merkle.leaf_hash(entry) or a.duplicate:
                    book.fail(f"writer {n}: wrong leaf hash or duplicate flag for a fresh entry at {a.index}")
                book.ack(a.index, entry)
            for (index, _entry), a in zip(again, added[len(batch):], strict=True):
                if a.index != index or not a.duplicate:
                    book.fail(f"resubmitted entry of index {index} came back at {a.index} (duplicate={a.duplicate})")
            book.count("entries", len(batch))
            if not wait and k % 4 == 1:
                # An acknowledgement comes after the checkpoint covering it was signed (same sequencer step).
                cp = open_checkpoint(c.checkpoint(), book.verifier)
                top = max(a.index for a in added)
                if cp.size <= top:
                    book.fail(f"checkpoint of {cp.size} read after an add acknowledged at {top}")
                book.count("acks covered by the next checkpoint read")
            if wait:
                if result.checkpoint is None:
                    book.fail("an add that waited got no checkpoint")
                    continue
                cp = open_checkpoint(result.checkpoint, book.verifier)
                book.saw(cp, result.checkpoint)
                for a in added:
                    merkle.verify_inclusion(a.index, cp.size, a.leaf_hash, a.inclusion_proof, cp.root)
                book.count("inclusion proofs verified", len(added))
            with book.lock:
                if len(book.acked) >= cfg.max_entries:
                    stop.set()


class Reader:
    """Holds a verified checkpoint; only moves to a newer one after proving consistency."""

    def __init__(self, c: LogClient, book: Ledger, rng: random.Random) -> None:
        self.c, self.book, self.rng = c, book, rng
        self.held: list[Checkpoint] = []
        self.cp = self._fetch()
        self.held.append(self.cp)

    def _fetch(self) -> Checkpoint:
        began = time.perf_counter()
        note = self.c.checkpoint()
        self.book.timed("checkpoint", began)
        cp = open_checkpoint(note, self.book.verifier)
        self.book.saw(cp, note)
        return cp

    def consistency(self, old: Checkpoint, new: Checkpoint) -> None:
        if old.size == 0 or old.size == new.size:
            if old.size == new.size and old.root != new.root:
                self.book.fail(f"two roots at size {old.size}")
            return
        began = time.perf_counter()
        proof = self.c.consistency_proof(old.size, new.size)
        self.book.timed("consistency", began)
        merkle.verify_consistency(old.size, new.size, list(proof.hashes), old.root, new.root)
        self.book.count("consistency proofs verified")

    def step(self) -> None:
        op = self.rng.random()
        cp, book = self.cp, self.book
        if op < 0.15 or cp.size == 0:
            new = self._fetch()
            if new.size < cp.size:
                book.fail(f"checkpoint went back from {cp.size} to {new.size}")
                return
            self.consistency(cp, new)
            if new.size > cp.size:
                self.cp = new
                self.held.append(new)
                del self.held[:-20]
        elif op < 0.25:
            self.consistency(self.rng.choice(self.held), cp)
        elif op < 0.55:
            i = self.rng.randrange(cp.size)
            began = time.perf_counter()
            p = self.c.inclusion_proof(index=i, tree_size=cp.size)
            book.timed("inclusion", began)
            entry = self.c.entries(i, i + 1)[0]
            with book.lock:
                known = book.acked.get(i)
            if known is not None and known != entry:
                book.fail(f"entry {i} differs from what its writer was acknowledged")
            merkle.verify_inclusion(i, cp.size, merkle.leaf_hash(entry), p.hashes, cp.root)
            book.count("inclusion proofs verified")
        elif op < 0.8:
            with book.lock:
                pick = [x for x in self.rng.sample(book.acked_list, min(32, len(book.acked_list))) if x[0] < cp.size]
            if not pick:
                return
            index, leaf = pick[0]
            began = time.perf_counter()
            p = self.c.inclusion_proof(leaf_hash=leaf, tree_size=cp.size)
            book.timed("inclusion by hash", began)
            if p.index != index:
                book.fail(f"leaf hash acknowledged at {index} is served at {p.index}")
            merkle.verify_inclusion(index, cp.size, leaf, p.hashes, cp.root)
            book.count("inclusion proofs verified")
        else:
            with book.lock:
                pick = [x for x in self.rng.sample(book.acked_list, min(64, len(book.acked_list))) if x[0] < cp.size]
            if not pick:
                return
            began = time.perf_counter()
            proofs = self.c.inclusion_proofs([i for i, _ in pick], cp.size)
            book.timed("inclusion x64", began)
            for (index, leaf), p in zip(pick, proofs, strict=True):
                merkle.verify_inclusion(index, cp.size, leaf, p.hashes, cp.root)
            book.count("inclusion proofs verified", len(pick))


def reader(srv: ServerProcess, book: Ledger, n: int, cfg: HammerConfig, stop: threading.Event) -> None:
    with srv.client(timeout=30) as c:
        r = Reader(c, book, random.Random(cfg.seed * 2000 + n))
        while not stop.is_set():
            r.step()


def watcher(srv: ServerProcess, book: Ledger, seconds: float) -> None:
    """Each streamed checkpoint must be consistent with the one before it."""
    prev: Checkpoint | None = None
    with srv.client(timeout=30) as c:
        try:
            for note in c.watch_checkpoints(timeout=seconds):
                cp = open_checkpoint(note, book.verifier)
                book.saw(cp, note)
                if prev is not None:
                    if cp.size <= prev.size:
                        book.fail(f"watch stream went from {prev.size} to {cp.size}")
                    elif prev.size:
                        proof = c.consistency_proof(prev.size, cp.size)
                        merkle.verify_consistency(prev.size, cp.size, list(proof.hashes), prev.root, cp.root)
                        book.count("consistency proofs verified")
                book.count("streamed checkpoints")
                prev = cp
        except UnavailableError:
            pass  # the stream's deadline: the run is over


def guarded(book: Ledger, stop: threading.Event, fn: Callable[[], None], name: str) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception as err:  # every exception is a finding; stop the run
            book.fail(f"{name}: {type(err).__name__}: {err}")
            stop.set()

    return run


# ------------------------------------------------------------------ the final checks


def check_final(srv: ServerProcess, book: Ledger) -> Checkpoint:
    """Every acked entry at its index; every checkpoint seen consistent with the final one."""
    with srv.client(timeout=60) as c:
        final = open_checkpoint(c.checkpoint(), book.verifier)
        if book.acked and final.size < max(book.acked) + 1:
            raise AssertionError(f"final tree of {final.size} is smaller than acknowledged index {max(book.acked)}")
        stored = list(c.iter_entries(0, final.size)) if final.size else []
        for index, entry in book.acked.items():
            if stored[index] != entry:
                raise AssertionError(f"acknowledged entry at {index} is missing or moved")
        if merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in stored]) != final.root:
            raise AssertionError("the final checkpoint's root is not the root of the stored entries")
        for size, root in sorted(book.checkpoints.items()):
            if size == 0 or size == final.size:
                if size == final.size and root != final.root:
                    raise AssertionError(f"a checkpoint of size {size} has another root than the final one")
                continue
            proof = c.consistency_proof(size, final.size)
            merkle.verify_consistency(size, final.size, list(proof.hashes), root, final.root)
    book.count("entries checked", len(book.acked))
    book.count("checkpoints checked against the final tree", len(book.checkpoints))
    return final


@dataclass
class HammerResult:
    seconds: float
    entries: int
    final_size: int
    counts: dict[str, int]
    latencies: dict[str, dict[str, float]]
    audit: dict[str, object]
    audit_seconds: float
    failures: list[str]

    @property
    def proofs_verified(self) -> int:
        return self.counts.get("inclusion proofs verified", 0) + self.counts.get("consistency proofs verified", 0)

    def lines(self) -> Iterator[str]:
        s = self.seconds
        yield (f"{self.entries} entries acknowledged in {s:.1f} s: {self.entries / s:,.0f} entries/s; "
               f"{self.proofs_verified} proofs verified: {self.proofs_verified / s:,.0f} proofs/s")
        for name, n in sorted(self.counts.items()):
            yield f"  {name}: {n}"
        for name, p in sorted(self.latencies.items()):
            n = self.counts.get(f"calls {name}", 0)
            figures = "  ".join(f"{k} {v:7.2f} ms" for k, v in p.items())
            yield f"  latency {name:18s} {figures} ({n} calls)"
        yield f"  audit: {self.audit} in {self.audit_seconds:.1f} s"
        yield f"  failures: {len(self.failures)}" + "".join(f"\n    {f}" for f in self.failures[:20])


def run_hammer(data_dir: Path, cfg: HammerConfig, server_args: tuple[str, ...] = ()) -> HammerResult:
    """Start a server on ``data_dir``, hammer it for ``cfg.seconds``, check everything, stop it."""
    srv = start_server(data_dir, server_args)
    try:
        book = Ledger(verifier_key(srv))
        stop = threading.Event()
        jobs: list[tuple[str, Callable[[], None]]] = []
        for n in range(cfg.writers):
            jobs.append((f"writer {n}", functools.partial(writer, srv, book, n, cfg, stop)))
        for n in range(cfg.readers):
            jobs.append((f"reader {n}", functools.partial(reader, srv, book, n, cfg, stop)))
        jobs.append(("watcher", functools.partial(watcher, srv, book, cfg.seconds)))
        threads = [threading.Thread(target=guarded(book, stop, fn, name), name=name) for name, fn in jobs]
        began = time.monotonic()
        for t in threads:
            t.start()
        stop.wait(cfg.seconds)
        stop.set()
        for t in threads:
            t.join(60)
        seconds = time.monotonic() - began
        if any(t.is_alive() for t in threads):
            book.fail("a worker thread did not stop within 60 s")
        final = check_final(srv, book)
        a0 = time.monotonic()
        report = audit(srv, book.verifier, data_dir.parent / "audit-state.json")
        audit_seconds = time.monotonic() - a0
        if report.get("ok") is not True or report.get("tree_size") != final.size:
            book.fail(f"audit report {report} does not cover the final tree of {final.size}")
        code = srv.stop()
        if code != 0:
            book.fail(f"server exited {code} after SIGTERM")
        counts = dict(book.counts)
        for name, values in book.latencies.items():
            counts[f"calls {name}"] = len(values)
        return HammerResult(seconds, len(book.acked), final.size, counts,
                            {k: percentiles(v) for k, v in book.latencies.items()}, report, audit_seconds,
                            list(book.failures))
    finally:
        srv.kill()


@contextmanager
def scratch_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="hammer-") as tmp:
        yield Path(tmp)


LONG = HammerConfig(seconds=float(os.environ.get("HAMMER_SECONDS", "120")), writers=6, readers=4)
SHORT = HammerConfig(seconds=8.0, writers=3, readers=2)


def run(quick: bool) -> None:
    """``python -m bench hammer``: the long mode (``--quick``: the short one)."""
    cfg = SHORT if quick else LONG
    print(f"hammer: {cfg}", flush=True)
    with scratch_dir() as tmp:
        result = run_hammer(tmp / "data", cfg)
    for line in result.lines():
        print(line, flush=True)
    if result.failures:
        raise SystemExit(1)
