"""Reading every stored byte back with RocksDB's checksums verified: the scrub (background) and ``fsck`` (offline).

RocksDB checks a block's checksum only when the block is read, and a log mostly reads
its newest entries, so a flipped byte in an old SST file can sit unnoticed until a
client asks for a proof that needs it. :func:`scrub_pass` reads every key and value of
every column family, in chunks of :attr:`ScrubPace.chunk_keys` keys, each chunk on a
fresh iterator of the store's current instance (so a reopen in place is never held up
by a scrub) with checksums verified and the block cache left alone, and sleeps between
chunks to stay under :attr:`ScrubPace.bytes_per_second`. :class:`Scrubber` runs one pass
at start and then every ``interval`` seconds on its own thread, and reports what it finds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rocksdict import ReadOptions

from client.errors import InvalidInputError
from ledger.errors import CorruptStorageError, StorageError
from ledger.storage.rocks_codec import FAMILIES
from ledger.storage.rocks_reopen import Handle, read_failure

log = logging.getLogger(__name__)

_READAHEAD = 1 << 20  # bytes the scrub's iterators read ahead (sequential reads of whole files)


@dataclass(frozen=True)
class ScrubPace:
    """How fast a pass reads: at most ``bytes_per_second`` (0: as fast as it can), ``chunk_keys`` per iterator."""

    bytes_per_second: int = 8 << 20
    chunk_keys: int = 4096

    def __post_init__(self) -> None:
        if self.bytes_per_second < 0 or self.chunk_keys <= 0:
            raise InvalidInputError(f"scrub pace needs bytes_per_second >= 0 and chunk_keys > 0, got {self}")


def _read_options() -> ReadOptions:
    opts = ReadOptions()
    opts.set_verify_checksums(True)
    opts.fill_cache(False)  # type: ignore[call-arg]  # the .pyi omits the argument
    opts.set_total_order_seek(True)  # the aux family's prefix blooms must not skip any file
    opts.set_readahead_size(_READAHEAD)
    return opts


def _chunk(h: Handle, family: str, start: bytes | None, keys: int) -> tuple[int, bytes | None, int]:
    """Read up to ``keys`` pairs of ``family`` from ``start`` (None: the first key).

    Returns (pairs read, the last key read, bytes read). Raises what the iterator's status says
    (RocksDB ends an iterator early, silently, at a block that fails its checksum).
    """
    it = h.cf[family].iter(_read_options())
    if start is None:
        it.seek_to_first()
    else:
        it.seek(start)
    n = nbytes = 0
    last: bytes | None = None
    while n < keys and it.valid():
        key, value = it.key(), it.value()
        nbytes += len(key) + len(value)
        last = key
        n += 1
        it.next()
    it.status()  # raises on corruption or an I/O error met while iterating
    return n, last, nbytes


def scrub_pass(handle: Callable[[], Handle | None], pace: ScrubPace,
               stop: threading.Event | None = None) -> list[str]:
    """Read every key and value of the store through ``handle()`` (its current instance); return the damage found.

    Each finding names the column family and RocksDB's message (which may name a file:
    for the operator's log, never for clients). A family is left at its first damaged
    block. Returns early (with what it found so far) once ``stop`` is set. Raises
    :class:`StorageError` when the store is closed or fails other than by corruption.
    """
    findings: list[str] = []
    for family in FAMILIES:
        start: bytes | None = None
        while True:
            if stop is not None and stop.is_set():
                return findings
            h = handle()
            if h is None:
                raise StorageError("the store is closed or being reopened")
            began = time.monotonic()
            try:
                n, last, nbytes = _chunk(h, family, start, pace.chunk_keys)
            except Exception as e:
                err = read_failure(f"scrub of {family}", e)
                if not isinstance(err, CorruptStorageError):
                    raise err from e
                findings.append(f"{family}: {e}")
                break
            if n < pace.chunk_keys or last is None:
                break
            start = last + b"\x00"  # the smallest key after ``last``
            if pace.bytes_per_second:
                delay = nbytes / pace.bytes_per_second - (time.monotonic() - began)
                if delay > 0 and stop is not None and stop.wait(delay):
                    return findings
                if delay > 0 and stop is None:
                    time.sleep(delay)
    return findings


class Scrubber:
    """A thread that runs ``run_pass`` now and then every ``interval`` seconds, until :meth:`stop`.

    ``run_pass(stop)`` returns the damage found (see :func:`scrub_pass`); the first
    non-empty result goes to ``on_damage`` (one line for clients' sake, the detail logged
    here at ERROR) and the scrubber stops: the store is damaged and stays reported so.
    A pass that fails otherwise (the store closed, an I/O error) is logged and tried
    again at the next interval.
    """

    def __init__(self, run_pass: Callable[[threading.Event], list[str]], interval: float,
                 on_damage: Callable[[str], None]) -> None:
        if not interval > 0:
            raise InvalidInputError(f"scrub interval must be positive, got {interval}")
        self._run_pass = run_pass
        self._interval = interval
        self._on_damage = on_damage
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-scrub", daemon=True)
        self.passes = 0  # passes completed (for tests and logs)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop (a pass under way ends at its next chunk) and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                findings = self._run_pass(self._stop)
            except Exception as e:
                log.warning("store scrub could not finish: %s", e)
                findings = []
            else:
                if not self._stop.is_set():
                    self.passes += 1
                    log.info("store scrub pass done", extra={"seconds": round(time.monotonic() - began, 3),
                                                             "damaged": len(findings)})
            if findings:
                for finding in findings:
                    log.error("store scrub found damage: %s", finding)
                self._on_damage(f"the scrub found damage in {len(findings)} column families")
                return
            self._stop.wait(self._interval)
