"""Per-model Prometheus metrics (Triton-style): inference vs execution counts (their ratio is the average
batch size), batch sizes, queue vs compute time, failures by reason, queue depth and device memory.

The server runs prometheus_client in multiprocess mode, so gauges carry an explicit `multiprocess_mode`.
"""

from __future__ import annotations

import time

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

LABELS = ("model", "device")
_TIME_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
_families: dict[int, dict] = {}


def _make(registry: CollectorRegistry) -> dict:
    r = registry
    return {
        "inferences": Counter("openscore_model_inference_count", "Rows (batch items) inferred successfully",
                              LABELS, registry=r),
        "executions": Counter("openscore_model_execution_count", "Device calls (batches) executed", LABELS,
                              registry=r),
        "success": Counter("openscore_model_request_success", "Requests answered successfully", LABELS,
                           registry=r),
        "failure": Counter("openscore_model_request_failure", "Requests failed, by reason (invalid_input, "
                           "queue_full, queue_timeout, execution, shutdown)", (*LABELS, "reason"), registry=r),
        "batch": Histogram("openscore_model_batch_size", "Rows per device call", LABELS, buckets=_BATCH_BUCKETS,
                           registry=r),
        "queue": Histogram("openscore_model_queue_duration_seconds", "Time a request waited before its batch ran",
                           LABELS, buckets=_TIME_BUCKETS, registry=r),
        "compute": Histogram("openscore_model_compute_duration_seconds", "Time of one device call", LABELS,
                             buckets=_TIME_BUCKETS, registry=r),
        "depth": Gauge("openscore_model_queue_depth", "Requests waiting for a model instance", LABELS,
                       multiprocess_mode="livesum", registry=r),
        "mem_used": Gauge("openscore_model_device_memory_used_bytes", "Device memory the model's backend uses "
                          "(where the backend can tell)", LABELS, multiprocess_mode="livesum", registry=r),
        "mem_total": Gauge("openscore_model_device_memory_total_bytes", "Total memory of the model's device",
                           LABELS, multiprocess_mode="livemax", registry=r),
    }


def families(registry: CollectorRegistry | None = None) -> dict:
    """The metric objects for `registry` (created once per registry)."""
    registry = registry or REGISTRY
    if id(registry) not in _families:
        _families[id(registry)] = _make(registry)
    return _families[id(registry)]


class ModelMetrics:
    """The metrics of one model on one device, with label values bound once."""

    def __init__(self, model: str, device: str, registry: CollectorRegistry | None = None):
        f = families(registry)
        lv = (model, device)
        self.inferences, self.executions = f["inferences"].labels(*lv), f["executions"].labels(*lv)
        self.success, self._failure, self._lv = f["success"].labels(*lv), f["failure"], lv
        self.batch, self.queue, self.compute = f["batch"].labels(*lv), f["queue"].labels(*lv), f["compute"].labels(*lv)
        self.depth = f["depth"].labels(*lv)
        self.mem_used, self.mem_total = f["mem_used"].labels(*lv), f["mem_total"].labels(*lv)
        self._mem_at = 0.0

    def failure(self, reason: str, n: int = 1) -> None:
        self._failure.labels(*self._lv, reason).inc(n)

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
