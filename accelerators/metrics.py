"""Per-model Prometheus metrics (Triton-style): inference vs execution counts (their ratio is the average
batch size), batch sizes, queue vs compute time, failures by reason, queue depth and device memory.

The server runs prometheus_client in multiprocess mode, so gauges carry an explicit `multiprocess_mode`, and
every value update there is a getpid() plus an mmap write (~2 CPU-µs): a fast model's request made nine of them.
So updates add to plain numbers under a lock (they come from dispatcher threads and the event loop alike) and
reach prometheus in one `flush`. By default that is at once (a library user sees every update); once a server
calls `defer_writes()`, they wait for `flush_all()`, which it runs once per event-loop turn, when nothing else is
in flight and before it answers /metrics (runtime/metric_batch.py), and which a collect of these metrics in this
process runs too. Updates never wait longer than MAX_DEFER_S (work that no request follows, say).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from openscore.pending_histogram import PendingHistogram, upper_bounds

LABELS = ("model", "device")
_TIME_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
MAX_DEFER_S = 1.0
_families: dict[int, dict] = {}
_deferred = False
_dirty: deque[ModelMetrics] = deque()  # metrics with pending updates (deque: appends from any thread)


def defer_writes(on: bool = True) -> None:
    """Hold updates until `flush_all()` (the caller promises to run it soon after requests finish)."""
    global _deferred
    _deferred = on
    if not on:
        flush_all()


def flush_all() -> None:
    """Write every model's pending updates to prometheus."""
    while _dirty:
        try:
            m = _dirty.popleft()
        except IndexError:  # another thread took the last one
            return
        m.flush()


class _Flushing:
    """A metric family that writes pending updates before it is collected (a scrape in this process)."""

    def collect(self) -> Any:
        flush_all()
        return super().collect()  # type: ignore[misc]


class _Counter(_Flushing, Counter):
    pass


class _Histogram(_Flushing, Histogram):
    pass


class _Gauge(_Flushing, Gauge):
    pass


def _make(registry: CollectorRegistry) -> dict:
    r = registry
    return {
        "inferences": _Counter("openscore_model_inference_count", "Rows (batch items) inferred successfully",
                               LABELS, registry=r),
        "executions": _Counter("openscore_model_execution_count", "Device calls (batches) executed", LABELS,
                               registry=r),
        "success": _Counter("openscore_model_request_success", "Requests answered successfully", LABELS,
                            registry=r),
        "failure": _Counter("openscore_model_request_failure", "Requests failed, by reason (invalid_input, "
                            "queue_full, queue_timeout, execution, shutdown)", (*LABELS, "reason"), registry=r),
        "batch": _Histogram("openscore_model_batch_size", "Rows per device call", LABELS, buckets=_BATCH_BUCKETS,
                            registry=r),
        "queue": _Histogram("openscore_model_queue_duration_seconds", "Time a request waited before its batch ran",
                            LABELS, buckets=_TIME_BUCKETS, registry=r),
        "compute": _Histogram("openscore_model_compute_duration_seconds", "Time of one device call", LABELS,
                              buckets=_TIME_BUCKETS, registry=r),
        "depth": _Gauge("openscore_model_queue_depth", "Requests waiting for a model instance", LABELS,
                        multiprocess_mode="livesum", registry=r),
        "mem_used": _Gauge("openscore_model_device_memory_used_bytes", "Device memory the model's backend uses "
                           "(where the backend can tell)", LABELS, multiprocess_mode="livesum", registry=r),
        "mem_total": _Gauge("openscore_model_device_memory_total_bytes", "Total memory of the model's device",
                            LABELS, multiprocess_mode="livemax", registry=r),
    }


def families(registry: CollectorRegistry | None = None) -> dict:
    """The metric objects for `registry` (created once per registry)."""
    registry = registry or REGISTRY
    if id(registry) not in _families:
        _families[id(registry)] = _make(registry)
    return _families[id(registry)]


class _Pending:
    """Updates not yet written: swapped out whole by a flush."""

    __slots__ = ("batch", "compute", "depth", "executions", "failures", "inferences", "queue", "success")

    def __init__(self, bounds: tuple[list[float], list[float]]):
        self.queue = PendingHistogram(bounds[0])
        self.compute = PendingHistogram(bounds[0])
        self.batch = PendingHistogram(bounds[1])
        self.executions = self.inferences = self.success = self.depth = 0
        self.failures: dict[str, int] = {}


class ModelMetrics:
    """The metrics of one model on one device, with label values bound once. Thread-safe."""

    def __init__(self, model: str, device: str, registry: CollectorRegistry | None = None):
        f = families(registry)
        lv = (model, device)
        self.inferences, self.executions = f["inferences"].labels(*lv), f["executions"].labels(*lv)
        self.success, self._failure, self._lv = f["success"].labels(*lv), f["failure"], lv
        self.batch, self.queue, self.compute = f["batch"].labels(*lv), f["queue"].labels(*lv), f["compute"].labels(*lv)
        self.depth = f["depth"].labels(*lv)
        self.mem_used, self.mem_total = f["mem_used"].labels(*lv), f["mem_total"].labels(*lv)
        self._mem_at = 0.0
        self._bounds = (upper_bounds(self.queue), upper_bounds(self.batch))
        self._lock = threading.Lock()
        self._pending = _Pending(self._bounds)
        self._dirty = False
        self._flushed_at = time.monotonic()

    # ------------------------------------------------------------ updates (from any thread)
    def queued(self, n: int) -> None:
        """`n` requests joined (n > 0) or left (n < 0) the queue."""
        with self._lock:
            self._pending.depth += n
        self._written()

    def batch_done(self, waits: Iterable[float], seconds: float, rows: int, ok: int, ok_rows: int) -> None:
        """One device call that answered: its requests' queue waits, its time and rows, the requests (and their
        rows) that succeeded."""
        with self._lock:
            p = self._pending
            for w in waits:
                p.queue.observe(w)
            p.compute.observe(seconds)
            p.batch.observe(rows)
            p.executions += 1
            p.inferences += ok_rows
            p.success += ok
        self._written()

    def batch_failed(self, waits: Iterable[float]) -> None:
        """One device call that raised (its requests' failures are counted with `failure`)."""
        with self._lock:
            p = self._pending
            for w in waits:
                p.queue.observe(w)
            p.executions += 1
        self._written()

    def failure(self, reason: str, n: int = 1) -> None:
        with self._lock:
            f = self._pending.failures
            f[reason] = f.get(reason, 0) + n
        self._written()

    def memory_due(self, every_s: float = 1.0) -> bool:
        """Whether `memory` would record now."""
        return time.monotonic() - self._mem_at >= every_s

    def memory(self, used: int | None, total: int | None, every_s: float = 1.0) -> None:
        """Record device memory at most once per `every_s` (some backends pay a driver call for it)."""
        now = time.monotonic()
        if now - self._mem_at < every_s:
            return
        self._mem_at = now
        if used is not None:
            self.mem_used.set(used)
        if total is not None:
            self.mem_total.set(total)

    def _written(self) -> None:
        if not _deferred:
            self.flush()
            return
        if not self._dirty:
            with self._lock:
                if not self._dirty:
                    self._dirty = True
                    _dirty.append(self)
        if time.monotonic() - self._flushed_at > MAX_DEFER_S:
            self.flush()

    # ------------------------------------------------------------ writing
    def flush(self) -> None:
        """Write the pending updates to prometheus (one value write per metric that changed)."""
        with self._lock:
            p, self._pending = self._pending, _Pending(self._bounds)
            self._dirty = False
            self._flushed_at = time.monotonic()
        if p.depth:
            self.depth.inc(p.depth)
        p.queue.write(self.queue)
        p.compute.write(self.compute)
        p.batch.write(self.batch)
        if p.executions:
            self.executions.inc(p.executions)
        if p.inferences:
            self.inferences.inc(p.inferences)
        if p.success:
            self.success.inc(p.success)
        for reason, n in p.failures.items():
            self._failure.labels(*self._lv, reason).inc(n)

