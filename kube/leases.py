"""Which router pod coordinates which service: one `coordination.k8s.io/v1` Lease per service, and one per
router process to count the live routers (docs/router-ha.md).

Client-go's leader election rules, per Lease: the holder renews it every `renew_s`; the others consider it
expired once its resourceVersion has not changed for `duration_s` *on their own clock* (no clock comparison
between machines), and then one of them takes it with a compare-and-swap replace (a 409 means another was
faster). A holder that could not renew for `duration_s - renew_s` steps down by itself, before anybody else
may take over, so two routers never coordinate a service at once. A router that stops cleanly hands its
Leases back at once (holder cleared), so a deleted pod's services move without waiting.

Services spread over the routers: a router that already coordinates its fair share, ceil(services /
routers), takes an orphaned Lease only after a second `duration_s`, leaving it to one with fewer.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openscore.kube import crd
from openscore.kube.client import ConflictError, KubeClient, KubeError, NotFoundError

log = logging.getLogger("openscore.kube.leases")

API_VERSION, KIND = "coordination.k8s.io/v1", "Lease"
LABEL_ROLE = "openscore.io/router-lease"          # "service" or "member"
ANNOTATION_ADDRESS = "openscore.io/router-address"
SERVICE_PREFIX, MEMBER_PREFIX = "osvc-router-", "openscore-router-member-"


def service_lease_name(service: str) -> str:
    return SERVICE_PREFIX + service


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class _Seen:
    version: str
    since: float  # monotonic: when this resourceVersion was first seen here


HolderCallback = Callable[[str, "str | None", "str | None"], None]  # (service, identity, address)


class RouterLeases:
    """Runs in every router pod; `on_holder` is told each service's coordinator after each round."""

    def __init__(self, client: KubeClient, namespace: str, identity: str, address: str, member_name: str,
                 services: Callable[[], Iterable[str]], on_holder: HolderCallback,
                 on_members: Callable[[int], None], *, duration_s: float = 10.0, renew_s: float | None = None,
                 on_error: Callable[[str | None], None] | None = None):
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.address = address
        self.member_name = member_name
        self.services = services
        self.on_holder = on_holder
        self.on_members = on_members
        self.duration_s = duration_s
        self.renew_s = renew_s or max(0.2, duration_s / 5)
        self._seen: dict[str, _Seen] = {}
        self._held: dict[str, float] = {}   # lease name -> monotonic time of our last successful renew
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.first_round = asyncio.Event()  # set after the first round, whether or not it succeeded
        self.last_error: str | None = None
        self.on_error = on_error or (lambda problem: None)  # a Role without Lease rights, a lost API server

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="router-leases")

    async def stop(self) -> None:
        """Leave, then hand back what we hold: the other routers take over at their next round. Leaving first
        means a round that sees a Lease handed back also counts one router less, so the fair share has grown
        and a router at its share does not wait a period before taking it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self.client.delete(API_VERSION, KIND, self.member_name, self.namespace)
        except KubeError:
            pass
        for name in list(self._held):
            await self._give_back(name)

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.round()
                self.last_error = None
            except KubeError as e:
                self.last_error = f"cannot keep the router Leases: {e.message}"
                log.warning("could not refresh the router Leases: %s", e.message)
            except Exception as e:
                self.last_error = f"cannot keep the router Leases: {e!r}"
                log.exception("router Lease round failed")
            self.on_error(self.last_error)
            self._step_down_stale()
            self.first_round.set()
            await asyncio.sleep(max(0.0, self.renew_s - (time.monotonic() - started)))

    # ------------------------------------------------------------------ one round
    async def round(self) -> None:
        now = time.monotonic()
        items, _ = await self.client.list(API_VERSION, KIND, self.namespace, label_selector=LABEL_ROLE)
        by_name = {i["metadata"]["name"]: i for i in items}
        for name, obj in by_name.items():
            rv = obj["metadata"].get("resourceVersion", "")
            seen = self._seen.get(name)
            if seen is None or seen.version != rv:
                self._seen[name] = _Seen(rv, now)
        for name in list(self._seen):
            if name not in by_name:
                del self._seen[name]
        await self._renew_member(by_name.get(self.member_name))
        members = sum(1 for n, o in by_name.items()
                      if o["metadata"].get("labels", {}).get(LABEL_ROLE) == "member" and
                      (n == self.member_name or self._alive(n, o, now)))
        members = max(1, members + (0 if self.member_name in by_name else 1))
        self.on_members(members)
        wanted = sorted(set(self.services()))
        fair = math.ceil(len(wanted) / members) if wanted else 0
        mine = sum(1 for s in wanted if service_lease_name(s) in self._held)
        for service in wanted:
            name = service_lease_name(service)
            was_mine = name in self._held
            holder, address = await self._settle(name, service, by_name.get(name), now, mine < fair)
            if holder == self.identity and not was_mine:
                mine += 1
            self.on_holder(service, holder, address)
        for name in list(self._held):  # services that went away
            if name.startswith(SERVICE_PREFIX) and name[len(SERVICE_PREFIX):] not in wanted:
                self._held.pop(name, None)
                try:
                    await self.client.delete(API_VERSION, KIND, name, self.namespace)
                except KubeError:
                    pass
        self.rounds += 1

    def _alive(self, name: str, obj: dict[str, Any], now: float) -> bool:
        if not _holder(obj):
            return False
        seen = self._seen.get(name)
        duration = float(obj.get("spec", {}).get("leaseDurationSeconds") or self.duration_s)
        return seen is not None and now - seen.since < duration

    async def _settle(self, name: str, service: str, obj: dict[str, Any] | None, now: float,
                      under_fair_share: bool) -> tuple[str | None, str | None]:
        """Renew ours, take an expired or free one when it is our turn; returns (holder, address)."""
        if obj is None:
            created = await self._take(name, service, None)
            return (self.identity, self.address) if created else (None, None)
        holder = _holder(obj)
        if holder == self.identity:
            if await self._take(name, service, obj):
                return self.identity, self.address
            return None, None
        self._held.pop(name, None)  # somebody else holds it (we stepped down, or lost a race)
        if holder and self._alive(name, obj, now):
            return holder, _address(obj)
        # free (handed back) or expired: ours now if under the fair share; otherwise after a second period
        seen = self._seen.get(name)
        idle_for = now - seen.since if seen is not None else 0.0
        if holder and not under_fair_share and idle_for < 2 * self.duration_s:
            return None, None
        if not holder and not under_fair_share and idle_for < self.duration_s:
            return None, None
        await asyncio.sleep(random.uniform(0, min(0.05, self.renew_s / 4)))  # spread simultaneous takers
        if await self._take(name, service, obj):
            return self.identity, self.address
        return None, None

    async def _take(self, name: str, service: str, obj: dict[str, Any] | None) -> bool:
        """Create, renew or take over (CAS on resourceVersion); False when another router got there first."""
        stamp = _now()
        spec: dict[str, Any] = {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration_s)),
                                "renewTime": stamp}
        meta: dict[str, Any] = {"name": name, "namespace": self.namespace,
                                "labels": {LABEL_ROLE: "service", crd.LABEL_SERVICE: service,
                                           crd.LABEL_MANAGED: crd.MANAGED_BY},
                                "annotations": {ANNOTATION_ADDRESS: self.address}}
        try:
            if obj is None:
                spec.update(acquireTime=stamp, leaseTransitions=0)
                out = await self.client.create({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta,
                                                "spec": spec})
            else:
                old = obj.get("spec", {})
                ours = old.get("holderIdentity") == self.identity
                spec["acquireTime"] = old.get("acquireTime") if ours else stamp
                spec["leaseTransitions"] = int(old.get("leaseTransitions") or 0) + (0 if ours else 1)
                meta["resourceVersion"] = obj["metadata"]["resourceVersion"]
                out = await self.client.replace({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta,
                                                 "spec": spec})
        except (ConflictError, NotFoundError):
            self._held.pop(name, None)
            return False
        if name not in self._held:
            log.info("this router now coordinates %s", name)
        self._held[name] = time.monotonic()
        self._seen[name] = _Seen(out["metadata"].get("resourceVersion", ""), time.monotonic())
        return True

    async def _renew_member(self, obj: dict[str, Any] | None) -> None:
        stamp = _now()
        meta: dict[str, Any] = {"name": self.member_name, "namespace": self.namespace,
                                "labels": {LABEL_ROLE: "member", crd.LABEL_MANAGED: crd.MANAGED_BY},
                                "annotations": {ANNOTATION_ADDRESS: self.address}}
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.duration_s)),
                "renewTime": stamp}
        try:
            if obj is None:
                await self.client.create({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec})
            else:
                meta["resourceVersion"] = obj["metadata"]["resourceVersion"]
                await self.client.replace({"apiVersion": API_VERSION, "kind": KIND, "metadata": meta, "spec": spec})
        except (ConflictError, NotFoundError):
            pass  # next round

    def _step_down_stale(self) -> None:
        """A Lease we could not renew in time is no longer ours, even if the API server never said so:
        others may take it `duration_s` after our last renew, so we stop a round earlier."""
        now = time.monotonic()
        for name, renewed in list(self._held.items()):
            if now - renewed > self.duration_s - self.renew_s:
                del self._held[name]
                log.warning("could not renew %s in time: no longer coordinating it", name)
                if name.startswith(SERVICE_PREFIX):
                    self.on_holder(name[len(SERVICE_PREFIX):], None, None)

    async def _give_back(self, name: str) -> None:
        self._held.pop(name, None)
        try:
            obj = await self.client.get(API_VERSION, KIND, name, self.namespace)
            if obj is None or _holder(obj) != self.identity:
                return
            obj["spec"]["holderIdentity"] = ""
            await self.client.replace(obj)
        except KubeError as e:
            log.info("could not hand back %s: %s", name, e.message)

    def holds(self) -> list[str]:
        return sorted(n[len(SERVICE_PREFIX):] for n in self._held if n.startswith(SERVICE_PREFIX))


def _holder(obj: dict[str, Any]) -> str:
    return str((obj.get("spec") or {}).get("holderIdentity") or "")


def _address(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_ADDRESS)
