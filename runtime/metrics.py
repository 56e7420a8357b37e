"""Prometheus metrics, correct across worker processes.

prometheus_client's multiprocess mode is used (each process writes its own mmap files); the supervisor
sets PROMETHEUS_MULTIPROC_DIR before this module is imported. Slot occupancy is read from the shared
worker table at scrape time instead of being written on every request.

Every family is in /metrics from the first scrape: the known label values of the reason counters are
created at zero, and a family that has no sample yet is still exported with its HELP and TYPE, so that
dashboards and alerts find it before its first event.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from openscore.runtime.worker_state import WorkerTable

# prometheus_client picks its value storage once, when first imported. Another package imported before the
# supervisor set PROMETHEUS_MULTIPROC_DIR (e.g. by the CLI while building its parser) would leave it on
# in-process values, which MultiProcessCollector never sees: /metrics would then miss every counter.
#
# Its multiprocess values also ask the OS for the process id on every update, to notice a fork: a getpid()
# syscall per value written, 2-3 µs each where syscalls are dear (sandboxes), ~20 CPU-µs of a trivial request.
# The server forks its workers itself, so the id is cached and refreshed after each fork instead, through
# prometheus_client's documented `process_identifier` hook (the fork check itself stays).
_pid = [os.getpid()]


def _process_id() -> int:
    return _pid[0]


def _refresh_pid() -> None:
    _pid[0] = os.getpid()


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.register_at_fork(after_in_child=_refresh_pid)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_id)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0, 300.0)

REQUESTS = Counter("openscore_requests", "HTTP requests answered, by route and status", ["route", "status"])
REQUEST_SECONDS = Histogram("openscore_request_duration_seconds",
                            "Time from request received to response ready", ["route"], buckets=LATENCY_BUCKETS)
QUEUE_WAIT_SECONDS = Histogram("openscore_queue_wait_seconds",
                               "Time a scoring request waited for a concurrency slot", buckets=LATENCY_BUCKETS)
RUN_SECONDS = Histogram("openscore_run_duration_seconds", "Time spent in the entry script's run()",
                        buckets=LATENCY_BUCKETS)
REJECTED = Counter("openscore_rejected_requests", "Scoring requests refused with 503, by reason", ["reason"])
SCORING_TIMEOUTS = Counter("openscore_scoring_timeouts", "run() calls that exceeded the scoring timeout")
ABANDONED_THREADS = Counter("openscore_run_threads_abandoned",
                            "run() threads abandoned because run() never returned in time")
INIT_SECONDS = Histogram("openscore_init_duration_seconds", "Duration of init() in each worker start",
                         buckets=(0.01, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600))
WORKER_RESTARTS = Counter("openscore_worker_restarts", "Worker processes replaced after they died", ["reason"])

# Every label value the code records; a new reason belongs here, so that it is exported at zero from the start.
REJECT_REASONS = ("initializing", "overloaded")    # data_plane.py
RESTART_REASONS = ("exit", "signal", "recycled")   # supervisor.py
for _reason in REJECT_REASONS:
    REJECTED.labels(_reason)
for _reason in RESTART_REASONS:
    WORKER_RESTARTS.labels(_reason)

_request_children: dict[tuple[str, int], object] = {}
_duration_children: dict[str, object] = {}


def observe_request(route: str, status: int, seconds: float) -> None:
    key = (route, status)
    child = _request_children.get(key)
    if child is None:
        child = _request_children[key] = REQUESTS.labels(route, str(status))
    child.inc()  # type: ignore[attr-defined]
    hist = _duration_children.get(route)
    if hist is None:
        hist = _duration_children[route] = REQUEST_SECONDS.labels(route)
    hist.observe(seconds)  # type: ignore[attr-defined]


class OccupancyCollector:
    """Slots, queue and readiness of all workers, read from shared memory when scraped."""

    def __init__(self, table: WorkerTable):
        self._table = table

    def collect(self) -> Iterable[GaugeMetricFamily]:
        o = self._table.occupancy()
        for name, doc, value in (
            ("openscore_slots_busy", "Concurrency slots executing run() now", o.busy),
            ("openscore_slots_total", "Concurrency slots in all ready workers", o.total),
            ("openscore_queue_length", "Scoring requests waiting for a slot", o.queued),
            ("openscore_requests_in_flight", "Scoring requests being handled", o.in_flight),
            ("openscore_workers_ready", "Worker processes whose init() succeeded", o.workers_ready),
            ("openscore_workers", "Configured worker processes", o.workers),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class _EveryFamily:
    """The families of all processes (MultiProcessCollector), plus an empty one, HELP and TYPE only, for each
    openscore metric declared in this process that no process has a sample of yet (e.g. requests by route
    before the first request): prometheus_client leaves a family with no samples out altogether."""

    def __init__(self) -> None:
        self._processes = MultiProcessCollector(None) if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else REGISTRY

    def collect(self) -> Iterable[Metric]:
        seen = set()
        for family in self._processes.collect():
            seen.add(family.name)
            yield family
        for family in REGISTRY.collect():
            if family.name.startswith("openscore_") and family.name not in seen:
                yield Metric(family.name, family.documentation, family.type)


def exposition(table: WorkerTable) -> bytes:
    registry = CollectorRegistry()
    registry.register(_EveryFamily())
    registry.register(OccupancyCollector(table))
    return generate_latest(registry)


def worker_died(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters and histograms stay in the totals)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        mark_process_dead(pid)
