"""Prometheus metrics of ``provenance serve``, exposed over HTTP on ``--metrics-listen``.

One :class:`ServerMetrics` per server, on its own ``CollectorRegistry`` (tests can
run several servers in one process). The per-call cost on the gRPC hot path is one
``perf_counter`` pair and one :meth:`FastHistogram.observe` -- a ``bisect`` and two
additions, no lock -- because RPC latency histograms are written only from the
event loop's thread (one writer). Scrapes read them from the HTTP thread; a scrape
racing an observe may see the sum and the count one call apart, which Prometheus
tolerates.

Metric names (all prefixed ``provenance_``) are listed in ``docs/operations.md``.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

_log = logging.getLogger(__name__)

# Fine around 0.1-5 ms, where a proof or checkpoint read lands, so a benchmark can read a server-side p99.
RPC_BUCKETS: tuple[float, ...] = (
    0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.00075,
    0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)
# A batch commit is one synced RocksDB write: ~0.1 ms on tmpfs, a few ms on SSD, more on network disks.
BATCH_BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(1 << i) for i in range(15))  # 1 .. 16384 entries


class FastHistogram:
    """A cumulative histogram for ONE writer thread; read by :class:`_HistogramCollector`.

    Requires ``buckets`` sorted ascending and finite (``+Inf`` is implicit).
    """

    __slots__ = ("labels", "_bounds", "_counts", "sum")

    def __init__(self, buckets: Sequence[float], labels: tuple[str, ...] = ()) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("histogram buckets must be non-empty and ascending")
        self.labels = labels
        self._bounds = tuple(buckets)
        self._counts = [0] * (len(buckets) + 1)  # the last slot is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le = "less or equal").
        self._counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        counts, total = list(self._counts), self.sum
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip((*map(_le, self._bounds), "+Inf"), counts, strict=True):
            running += n
            out.append((bound, float(running)))
        return out, total

    @property
    def count(self) -> int:
        return sum(self._counts)


def _le(bound: float) -> str:
    return repr(float(bound))


class _HistogramCollector(Collector):
    """Exposes a family of :class:`FastHistogram` children (one per label set)."""

    def __init__(self, name: str, documentation: str, label_names: Sequence[str], buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.label_names = list(label_names)
        self.buckets = tuple(buckets)
        self._children: dict[tuple[str, ...], FastHistogram] = {}
        self._lock = threading.Lock()

    def child(self, *labels: str) -> FastHistogram:
        if len(labels) != len(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}")
        with self._lock:
            found = self._children.get(labels)
            if found is None:
                found = self._children[labels] = FastHistogram(self.buckets, labels)
            return found

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)
        with self._lock:
            children = list(self._children.values())
        for h in children:
            buckets, total = h.snapshot()
            family.add_metric(list(h.labels), buckets, total)
        yield family

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.documentation, labels=self.label_names)


@dataclass(slots=True)
class CallMetrics:
    """What the gRPC wrapper of one method records: its latency histogram and its error counter."""

    seconds: FastHistogram
    _errors: Any  # prometheus Counter with labels (service, method, code), bound to service and method below
    service: str
    method: str

    def error(self, code_name: str) -> None:
        self._errors.labels(self.service, self.method, code_name).inc()


class ServerMetrics:
    """Every metric of one server. Call :meth:`watch_log` once the log exists, :meth:`serve` to expose them."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._clock = clock
        self._rpc = _HistogramCollector(
            "provenance_rpc_duration_seconds",
            "Server-side handling time of each gRPC call, from request bytes to response bytes",
            ("service", "method"), RPC_BUCKETS,
        )
        r.register(self._rpc)
        self._rpc_errors = Counter("provenance_rpc_errors", "gRPC calls that ended with a non-OK status",
                                   ("service", "method", "code"), registry=r)
        self._batch = _HistogramCollector(
            "provenance_batch_commit_seconds",
            "Time to make one sequencer batch durable (one synced storage commit)", (), BATCH_BUCKETS,
        )
        r.register(self._batch)
        self.batch_seconds = self._batch.child()
        self._batch_sizes = _HistogramCollector(
            "provenance_batch_entries", "Entries per committed sequencer batch", (), BATCH_SIZE_BUCKETS,
        )
        r.register(self._batch_sizes)
        self.batch_entries = self._batch_sizes.child()
        self.commit_failures = Counter("provenance_batch_commit_failures", "Storage commits that raised",
                                       registry=r)
        self.entries_ingested = Counter("provenance_entries_ingested",
                                        "New entries made durable and signed (rate() of this is the ingest rate)",
                                        registry=r)
        self.checkpoints_signed = Counter("provenance_checkpoints_signed", "Checkpoints signed", registry=r)
        self.tree_size = Gauge("provenance_tree_size", "Size of the latest signed checkpoint", registry=r)
        self.last_checkpoint = Gauge("provenance_last_checkpoint_timestamp_seconds",
                                     "Unix time the latest checkpoint was signed (or the server started)",
                                     registry=r)
        self.since_checkpoint = Gauge("provenance_seconds_since_last_checkpoint",
                                      "Seconds since the latest checkpoint was signed (or the server started)",
                                      registry=r)
        self.healthy = Gauge("provenance_healthy", "1 when the health service reports SERVING, else 0",
                             registry=r)
        self.writes_in_flight = Gauge("provenance_writes_in_flight",
                                      "Submitted write batches not yet integrated", registry=r)
        self.rate_limited = Counter("provenance_rate_limited", "Calls refused by the per-peer rate limit",
                                    registry=r)
        self._last_checkpoint_at = clock()
        self.last_checkpoint.set(self._last_checkpoint_at)
        self.since_checkpoint.set_function(lambda: max(0.0, self._clock() - self._last_checkpoint_at))
        self._size = 0

    def call(self, service: str, method: str) -> CallMetrics:
        """The metrics of one RPC method; bind once at registration, not per call."""
        short = service.rsplit(".", 1)[-1]
        return CallMetrics(self._rpc.child(short, method), self._rpc_errors, short, method)

    # -- the log ------------------------------------------------------------------------------------

    def watch_log(self, size: int,
                  add_listener: Callable[[Callable[[Any], None]], Callable[[], None]]) -> Callable[[], None]:
        """Start from tree ``size`` and follow each new signed checkpoint; returns the unsubscribe function."""
        self._size = size
        self.tree_size.set(size)
        return add_listener(self.on_checkpoint)

    def on_checkpoint(self, signed: Any) -> None:
        size = int(signed.checkpoint.size)
        now = self._clock()
        if size > self._size:
            self.entries_ingested.inc(size - self._size)
        self._size = max(self._size, size)
        self.tree_size.set(self._size)
        self.checkpoints_signed.inc()
        self._last_checkpoint_at = now
        self.last_checkpoint.set(now)

    # -- exposition ---------------------------------------------------------------------------------

    def serve(self, listen: str) -> MetricsEndpoint:
        """Serve ``/metrics`` on ``listen`` (``HOST:PORT``; port 0 picks one) from a daemon thread."""
        host, _, port = listen.rpartition(":")
        try:
            server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=self.registry)
        except OSError as err:
            from client.errors import UnavailableError

            raise UnavailableError(f"cannot serve metrics on {listen}: {err.strerror or err}") from err
        return MetricsEndpoint(server, thread, host)


class MetricsEndpoint:
    """The running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, server: Any, thread: threading.Thread, host: str) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port: int = server.server_port

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def parse_exposition(text: str) -> dict[str, float]:
    """``{"name{labels}": value}`` of a text exposition (for tests and ``bench``; not a full parser)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile``: linear interpolation inside the bucket holding rank ``q``.

    ``buckets`` are cumulative ``(upper_bound, count)`` pairs, ``+Inf`` last.
    """
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] == 0:
        return float("nan")
    rank = q * pairs[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return pairs[-1][0]


class TimedStorage:
    """A :class:`~ledger.storage.Storage` whose commits are timed into ``provenance_batch_commit_seconds``.

    Only ``commit`` is wrapped (once per sequencer batch, on the sequencer thread: one
    writer); every read is the wrapped store's own bound method, so reads cost nothing extra.
    """

    def __init__(self, inner: Any, metrics: ServerMetrics) -> None:
        self.inner = inner
        self._metrics = metrics
        for name in ("read_head", "read_meta", "write_meta", "read_entries", "read_entries_at",
                     "read_hash_groups", "leaf_candidates", "read_aux", "close"):
            setattr(self, name, getattr(inner, name))

    def commit(self, batch: Any) -> None:
        began = time.perf_counter()
        try:
            self.inner.commit(batch)
        except BaseException:
            self._metrics.commit_failures.inc()
            raise
        if batch.entries:  # empty recovery barriers are not batches
            self._metrics.batch_seconds.observe(time.perf_counter() - began)
            self._metrics.batch_entries.observe(len(batch.entries))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
