"""The router Lease elector (openscore.kube.leases) against the real API server: one holder per service,
services spread over the routers, a clean stop hands over at once, a silent death after one lease period."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from openscore.kube.client import KubeClient
from openscore.kube.leases import API_VERSION, KIND, MEMBER_PREFIX, RouterLeases, service_lease_name
from tests.cluster.conftest import ClusterInfo

DURATION_S = 2.0


class Elector:
    def __init__(self, client: KubeClient, namespace: str, name: str, services: list[str]):
        self.holders: dict[str, str | None] = {}
        self.members = 0
        self.leases = RouterLeases(client, namespace, f"{name}_id", f"10.0.0.1:{len(name)}", MEMBER_PREFIX + name,
                                   lambda: services, self._holder, self._members, duration_s=DURATION_S)

    def _holder(self, service: str, identity: str | None, address: str | None) -> None:
        self.holders[service] = identity

    def _members(self, n: int) -> None:
        self.members = n


async def until(check: Any, what: str, timeout_s: float = 20.0) -> float:
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout_s:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


def test_one_holder_per_service_spread_handed_over_on_stop_and_taken_after_a_silent_death(
        cluster: ClusterInfo, namespace: str) -> None:
    services = ["alpha", "bravo", "charlie", "delta"]

    async def main() -> None:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace) as client:
            a, b = Elector(client, namespace, "a", services), Elector(client, namespace, "b", services)
            a.leases.start()
            await until(lambda: len(a.holders) == 4 and all(a.holders.values()), "a holding the services")
            b.leases.start()
            await until(lambda: b.members == 2 and a.members == 2, "both counting two routers")
            # every service has exactly one holder, and both routers agree who it is
            await until(lambda: all(b.holders.get(s) == a.holders.get(s) for s in services), "agreement")
            assert all(a.holders[s] == "a_id" for s in services)  # a took them all while alone (no churn after)
            for s in services:
                lease = await client.get(API_VERSION, KIND, service_lease_name(s), namespace)
                assert lease is not None and lease["spec"]["holderIdentity"] == "a_id"

            # a stops cleanly: its Leases are handed back, b takes them at its next round (no lease period)
            t0 = time.monotonic()
            await a.leases.stop()
            await until(lambda: all(b.holders.get(s) == "b_id" for s in services), "b taking over")
            assert time.monotonic() - t0 < DURATION_S, "a clean stop must not wait for expiry"
            assert await client.get(API_VERSION, KIND, MEMBER_PREFIX + "a", namespace) is None

            # a new router joins: with b over its fair share, the free Leases would go to it; none are free,
            # so nothing moves (no churn when a router joins)
            c = Elector(client, namespace, "c", services)
            c.leases.start()
            await until(lambda: c.members == 2 and len(c.holders) == 4, "c seeing b")
            await asyncio.sleep(DURATION_S)
            assert all(c.holders[s] == "b_id" for s in services)

            # b dies silently (its loop stops, nothing handed back): c takes over after the lease expires
            assert b.leases._task is not None
            b.leases._task.cancel()
            await asyncio.gather(b.leases._task, return_exceptions=True)
            t1 = time.monotonic()
            await until(lambda: all(c.holders.get(s) == "c_id" for s in services), "c taking over after expiry")
            took = time.monotonic() - t1
            assert took >= DURATION_S * 0.5, f"took over after {took:.2f} s, before the Lease could expire"
            await c.leases.stop()
    asyncio.run(main())
