"""Prometheus metrics of the router, per service and version (its own registry: one process, no multiproc).

The request path uses `RouterMetrics.version(key)`: the labelled children of one version, looked up once and
kept, since `labels()` costs a lock and a few dictionary lookups per call.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class RouterMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("openscore_router_requests", "Scoring requests by final status",
                                ["service", "version", "status"], registry=r)
        self.rejected = Counter("openscore_router_rejected", "Requests the router answered itself, by reason "
                                "(overloaded, no_ready_replica, scoring_timeout, upstream_error, payload_limit, "
                                "replica_unreachable)",
                                ["service", "version", "reason"], registry=r)
        self.auth_failures = Counter("openscore_router_auth_failures", "401s by service and reason",
                                     ["service", "reason"], registry=r)
        self.queue_wait = Histogram("openscore_router_queue_wait_seconds", "Time waiting for a free slot",
                                    ["service", "version"], buckets=_BUCKETS, registry=r)
        self.upstream = Histogram("openscore_router_upstream_seconds", "Time from sending to the replica until "
                                  "its full response", ["service", "version"], buckets=_BUCKETS, registry=r)
        self.retries = Counter("openscore_router_retries", "Requests retried on another replica after a "
                               "connection failure", ["service", "version"], registry=r)
        self.utilization = Gauge("openscore_router_utilization", "(busy + queued) / ready slots",
                                 ["service", "version"], registry=r)
        self.slots_busy = Gauge("openscore_router_slots_busy", "Slots in use", ["service", "version"], registry=r)
        self.queue_length = Gauge("openscore_router_queue_length", "Requests waiting for a slot",
                                  ["service", "version"], registry=r)
        self.replicas_desired = Gauge("openscore_router_replicas_desired", "Wanted replicas",
                                      ["service", "version"], registry=r)
        self.replicas_ready = Gauge("openscore_router_replicas_ready", "Routable replicas",
                                    ["service", "version"], registry=r)
        self.autoscale = Counter("openscore_router_autoscale_decisions", "Replica count changes by direction",
                                 ["service", "version", "direction"], registry=r)
        self.mirrored = Counter("openscore_router_mirrored", "Shadow copies sent to a mirrored version, by outcome "
                                "(the replica's status, overloaded, no_ready_replica, scoring_timeout, streamed, "
                                "error)", ["service", "version", "status"], registry=r)
        self.state_stale = Gauge("openscore_router_state_stale", "1 while the desired state may be out of date "
                                 "(its store is unreachable); the router serves from the last state it read",
                                 registry=r)
        self.coordinating = Gauge("openscore_router_coordinating", "1 where this router coordinates the service "
                                  "(admits for every router and autoscales it)", ["service"], registry=r)
        self.admitted = Counter("openscore_router_admitted", "Slots taken, by who admitted them: local (this "
                                "router coordinates), remote (asked the coordinator), kept (a slot the coordinator "
                                "granted for an earlier request, kept for a moment), fallback (coordinator "
                                "unreachable: admitted on this router's share)", ["how"], registry=r)
        self.coordination_problem = Gauge("openscore_router_coordination_problem", "1 while this router cannot "
                                          "keep its coordination Leases (see /readyz)", registry=r)
        self.live_routers = Gauge("openscore_router_live_routers", "Router processes seen alive", registry=r)
        self.admin_auth_failures = Counter("openscore_router_admin_auth_failures", "Admin API 401s", registry=r)

        self._versions: dict[tuple[str, str], VersionMetrics] = {}

    def version(self, key: tuple[str, str]) -> VersionMetrics:
        vm = self._versions.get(key)
        if vm is None:
            vm = self._versions[key] = VersionMetrics(self, key)
        return vm

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class VersionMetrics:
    """One version's children of the per-request metrics (same series as `labels(service, version, ...)`)."""

    __slots__ = ("_key", "_m", "_rejected", "_requests", "queue_wait", "upstream")

    def __init__(self, m: RouterMetrics, key: tuple[str, str]):
        self._m, self._key = m, key
        self.queue_wait = m.queue_wait.labels(*key)
        self.upstream = m.upstream.labels(*key)
        self._requests: dict[int, Any] = {}
        self._rejected: dict[str, Any] = {}

    def request(self, status: int) -> None:
        c = self._requests.get(status)
        if c is None:
            c = self._requests[status] = self._m.requests.labels(*self._key, str(status))
        c.inc()

    def rejected(self, reason: str) -> None:
        c = self._rejected.get(reason)
        if c is None:
            c = self._rejected[reason] = self._m.rejected.labels(*self._key, reason)
        c.inc()
