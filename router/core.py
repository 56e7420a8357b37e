"""The router's control side: converge runtime structures and replicas on the desired state, keep each version's
slot pool in step with its replicas, retire replicas safely, and autoscale.

Rules that keep requests from failing during changes (peers' rollout pitfalls):
- a replica takes traffic only once ready; an outdated one keeps serving until enough current ones are ready;
- a replica leaves routing and drains *before* it is stopped (scale-down, update, delete);
- traffic is split only over versions that have a ready replica.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from openscore.router.auth import ServiceAuth, TokenAuthority
from openscore.router.autoscale import Autoscaler
from openscore.router.balancer import BackendState, SlotPool, TrafficSplitter
from openscore.router.config import ServiceSpec, VersionSpec
from openscore.router.coordination import Coordination
from openscore.router.metrics import RouterMetrics
from openscore.router.state import (
    SERVICE,
    SERVICE_KEYS,
    SIGNING_KEYS,
    SIGNING_KEYS_NAME,
    Change,
    DesiredState,
    Expired,
    InvalidObject,
    ServiceKeys,
    ServiceRecord,
    SigningKeys,
    StateStore,
)
from openscore.router.targets import ComputeTarget, ReplicaInfo, VersionKey

log = logging.getLogger("openscore.router")


@dataclass
class VersionRuntime:
    key: VersionKey
    spec: VersionSpec
    pool: SlotPool
    autoscaler: Autoscaler | None = None
    last_decision: float = 0.0
    retired: bool = False          # removed from its service: a request that picked it before picks again


@dataclass
class ServiceRuntime:
    spec: ServiceSpec
    auth: ServiceAuth
    versions: dict[str, VersionRuntime]
    shares: dict[str, float]
    splitter: TrafficSplitter = field(default_factory=TrafficSplitter)
    mirror_credit: dict[str, float] = field(default_factory=dict)
    revision: str = ""             # of the service document it was built from

    def choose_version(self) -> VersionRuntime:
        eligible = [n for n, v in self.versions.items() if v.pool.ready_count]
        name = self.splitter.choose(self.shares, eligible) if eligible else None
        if name is None:  # nothing ready (or only 0 % versions): wait on the default version's queue
            name = self.spec.default_version.name
            if eligible and self.shares.get(name, 0) <= 0:
                name = eligible[0]
        return self.versions[name]

    def choose_mirrors(self) -> list[VersionRuntime]:
        """Versions that get a shadow copy of this request: each mirrored version accrues its percentage per
        request and takes a copy per whole 100 (exact shares, no randomness); one without a ready replica is
        skipped rather than queued, so mirroring never holds anything up."""
        if not self.spec.mirror:
            return []
        out = []
        for name, pct in self.spec.mirror.items():
            credit = self.mirror_credit.get(name, 0.0) + pct
            if credit >= 100.0:
                credit -= 100.0
                vr = self.versions.get(name)
                if vr is not None and vr.pool.ready_count:
                    out.append(vr)
            self.mirror_credit[name] = credit
        return out


class Router:
    def __init__(self, store: StateStore, target: ComputeTarget, *, metrics: RouterMetrics | None = None,
                 tokens: TokenAuthority | None = None, scale_down_window_s: float = 60.0,
                 drain_timeout_s: float = 330.0, resync_delay_s: float = 1.0,
                 on_replicas_changed: Callable[[VersionKey], None] | None = None):
        """`on_replicas_changed`: called (on the loop) for each version whose replicas changed, after the
        router took the change in (the Kubernetes mode writes the service's status from it)."""
        self.store = store
        self.target = target
        self.metrics = metrics or RouterMetrics()
        self.tokens = tokens or TokenAuthority()
        self.scale_down_window_s = scale_down_window_s
        self.drain_timeout_s = drain_timeout_s
        self.resync_delay_s = resync_delay_s
        self.services: dict[str, ServiceRuntime] = {}
        self.keys: dict[str, ServiceKeys] = {}
        self._dirty: set[VersionKey] = set()
        self._sync_scheduled = False
        self._tasks: set[asyncio.Task] = set()
        self._retiring: set[str] = set()
        self._loops: list[asyncio.Task] = []
        self._apply_lock = asyncio.Lock()
        self._applied: collections.OrderedDict[tuple[str, str, str], None] = collections.OrderedDict()
        self._applied_cond = asyncio.Condition()
        self.on_replicas_changed = on_replicas_changed
        # why the desired state may be out of date (its watch failed and no fresh snapshot was read yet);
        # None while it is current. The router keeps serving from the last state meanwhile.
        self.stale_reason: str | None = None
        # set when several routers share the replicas (openscore.router.coordination); None: this one is alone
        self.coordination: Coordination | None = None

    def coordinate(self, coordination: Coordination) -> None:
        """Admit through the services' coordinating routers and autoscale only the services coordinated here."""
        self.coordination = coordination
        coordination.on_role = self._role_changed
        self.target.count_owner = self.coordinates  # only a service's coordinator writes its replica count

    def coordinates(self, service: str) -> bool:
        return self.coordination is None or self.coordination.coordinates(service)

    def _role_changed(self, service: str, here: bool) -> None:
        self.metrics.coordinating.labels(service).set(1 if here else 0)
        svc = self.services.get(service)
        if svc is None or not here:
            return
        now = time.monotonic()  # taking over: a full stable window before any scale-down (no flapping)
        for vr in svc.versions.values():
            current = self.target.wanted(vr.key)
            if vr.autoscaler is not None:
                vr.autoscaler.reset_history(now, current)
                vr.last_decision = now
            # the spec's count where the count found is off it (a fixed count changed, or autoscale bounds
            # moved, while no router coordinated the service): only a coordinator scales
            n = self._replicas_after_update(vr, vr.spec)
            if n != current and not vr.retired:
                self._spawn(self.set_replicas(vr, n), f"converge-{vr.key[0]}-{vr.key[1]}")

    def pool_for(self, key: VersionKey) -> SlotPool | None:
        vr = self._version(key)
        return vr.pool if vr is not None and not vr.retired else None

    def keys_of(self, service: str) -> list[VersionKey]:
        svc = self.services.get(service)
        return [vr.key for vr in svc.versions.values()] if svc else []

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.target.start(self._on_target_change)
        state = await self.store.snapshot()
        await self.apply(state)
        self._loops = [asyncio.create_task(self._watch_store(state.revision), name="router-watch"),
                       asyncio.create_task(self._autoscale_loop(), name="router-autoscale")]

    async def stop(self) -> None:
        for t in self._loops:
            t.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.target.stop()

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        t = asyncio.create_task(coro, name=name)
        self._tasks.add(t)
        t.add_done_callback(self._task_done)

    def _task_done(self, t: asyncio.Task) -> None:
        self._tasks.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.error("background task %s failed", t.get_name(), exc_info=t.exception())

    async def _watch_store(self, since: str) -> None:
        """React to each pushed change; if the watch itself fails, converge on a fresh snapshot and go on."""
        while True:
            try:
                async for change in self.store.watch(since):
                    try:
                        await self.apply_change(change)
                    except InvalidObject as e:
                        log.error("could not apply %s %s at revision %s: %s", change.kind, change.name,
                                  change.revision, e)
                    except Exception:
                        log.exception("could not apply %s %s at revision %s", change.kind, change.name,
                                      change.revision)
                return
            except Expired as e:
                log.info("resynchronising with the desired state: %s", e)
            except Exception as e:
                log.exception("watching the desired state failed; resynchronising")
                self._set_stale(f"watching the desired state failed: {_reason(e)}")
                await asyncio.sleep(self.resync_delay_s)
            try:
                state = await self.store.snapshot()
                await self.apply(state)
                since = state.revision
                self._set_stale(None)
            except Exception as e:
                log.exception("could not read the desired state")
                self._set_stale(f"cannot read the desired state: {_reason(e)}")
                await asyncio.sleep(self.resync_delay_s)

    def _set_stale(self, reason: str | None) -> None:
        if reason is None and self.stale_reason is not None:
            log.info("the desired state is current again")
        self.stale_reason = reason
        self.metrics.state_stale.set(0 if reason is None else 1)

    # ------------------------------------------------------------------ desired state -> runtime
    async def apply(self, state: DesiredState) -> None:
        """Converge on a whole snapshot (at start, and after a lost watch). Idempotent. An object the store
        refused as invalid keeps its last good value here (a service keeps serving, its keys keep working)."""
        if (SIGNING_KEYS, SIGNING_KEYS_NAME) not in state.invalid:
            self.tokens.set_keys(state.signing_keys.keys)
        keys = dict(state.keys)
        for kind, name in state.invalid:
            if kind == SERVICE_KEYS and name in self.keys:
                keys[name] = self.keys[name]
        self.keys = keys
        for name in list(self.services):
            if name not in state.services and (SERVICE, name) not in state.invalid:
                await self._remove_service(name)
        for rec in state.services.values():
            await self._apply_service(rec)
        log.info("applied the desired state at revision %s: %d service(s)", state.revision, len(self.services))

    async def apply_change(self, change: Change) -> None:
        """One pushed change: only the object it names is touched."""
        if change.kind == SERVICE:
            if isinstance(change.value, ServiceRecord):
                await self._apply_service(change.value)
            else:
                await self._remove_service(change.name)
        elif change.kind == SERVICE_KEYS:
            if isinstance(change.value, ServiceKeys):
                self.keys[change.name] = change.value
            else:
                self.keys.pop(change.name, None)
            svc = self.services.get(change.name)
            if svc is not None:
                svc.auth = self._auth(svc.spec, self.keys.get(change.name))
        elif change.kind == SIGNING_KEYS:
            self.tokens.set_keys(change.value.keys if isinstance(change.value, SigningKeys) else ())
        await self._mark_applied(change.kind, change.name, change.revision)

    async def _mark_applied(self, kind: str, name: str, revision: str) -> None:
        self._applied[kind, name, revision] = None
        while len(self._applied) > 10_000:
            self._applied.popitem(last=False)
        async with self._applied_cond:
            self._applied_cond.notify_all()

    async def wait_applied(self, kind: str, name: str, revision: str, timeout_s: float = 10.0) -> bool:
        """Until the watch has brought this write in (so a regenerated key stops working before the admin call
        returns); False if it did not within `timeout_s`."""
        async def seen() -> None:
            async with self._applied_cond:
                await self._applied_cond.wait_for(lambda: (kind, name, revision) in self._applied)
        try:
            await asyncio.wait_for(seen(), timeout_s)
            return True
        except TimeoutError:
            log.warning("%s %s revision %s not applied after %.0f s", kind, name, revision, timeout_s)
            return False

    @staticmethod
    def _auth(spec: ServiceSpec, keys: ServiceKeys | None) -> ServiceAuth:
        mode = "token" if spec.token_auth_enabled else ("key" if spec.auth_enabled else "none")
        return ServiceAuth(mode, (keys.primary, keys.secondary) if keys else ())

    async def _remove_service(self, name: str) -> None:
        async with self._apply_lock:
            old = self.services.pop(name, None)
            if old is not None:
                for vr in old.versions.values():
                    self._retire_later(vr)
                log.info("service %s deleted", name)

    async def _apply_service(self, rec: ServiceRecord) -> None:
        """Converge one service. A version whose spec did not change is left alone (same replicas)."""
        async with self._apply_lock:
            name, spec = rec.name, rec.spec
            keys = self.keys.get(name)
            if keys is None:  # a store whose keys arrive on another stream than the service documents
                try:
                    keys = await self.store.get_keys(name)
                except InvalidObject as e:
                    log.error("service %s: refusing its keys, every key is refused until they are fixed: %s",
                              name, e)
                if keys is not None:
                    self.keys[name] = keys
            old = self.services.get(name)
            versions: dict[str, VersionRuntime] = {}
            for vname, vspec in spec.versions.items():
                key = (name, vname)
                vr = old.versions.get(vname) if old else None
                if vr is not None and vr.spec == vspec:
                    versions[vname] = vr
                    continue
                if vr is None:
                    vr = VersionRuntime(key, vspec, SlotPool(name))
                    if not self.coordinates(name):
                        assert self.coordination is not None
                        vr.pool.set_share(self.coordination.live_routers)
                    replicas = vspec.initial_replicas
                    rescale = True
                else:
                    replicas = self._replicas_after_update(vr, vspec)
                    rescale = (vr.spec.autoscale, vr.spec.slots_per_replica) != (vspec.autoscale,
                                                                                 vspec.slots_per_replica)
                    vr.spec = vspec
                if rescale:
                    vr.autoscaler = (Autoscaler(vspec.autoscale, vspec.slots_per_replica * vspec.workers,
                                                self.scale_down_window_s)
                                     if vspec.autoscale.enabled else None)
                    if vr.autoscaler is not None:
                        vr.autoscaler.reset_history(time.monotonic(), replicas)
                versions[vname] = vr
                current = self.target.wanted(key)
                await self.target.deploy(key, vspec, max(replicas, current))  # never shrink undrained
                if replicas < current and self.coordinates(name):  # a peer follows the coordinator's count
                    self._spawn(self._scale_down(vr, replicas), f"scale-down-{name}-{vname}")
                self._dirty.add(key)
            rt = ServiceRuntime(spec, self._auth(spec, keys), versions, spec.traffic_shares(), revision=rec.revision)
            if old is not None:
                rt.splitter = old.splitter
                rt.mirror_credit = old.mirror_credit
                for vname, vr in old.versions.items():
                    if vname not in versions:
                        self._retire_later(vr)
            self.services[name] = rt
            self._schedule_sync()
            log.info("applied service %s at revision %s", name, rec.revision)

    def _replicas_after_update(self, vr: VersionRuntime, new: VersionSpec) -> int:
        current = self.target.wanted(vr.key)
        if new.num_replicas is not None:
            return new.num_replicas
        a = new.autoscale
        return max(a.min_replicas, min(a.max_replicas, current))

    # ------------------------------------------------------------------ target -> pools
    def _on_target_change(self, key: VersionKey) -> None:
        self._dirty.add(key)
        self._schedule_sync()

    def _schedule_sync(self) -> None:
        if not self._sync_scheduled:
            self._sync_scheduled = True
            asyncio.get_running_loop().call_soon(self._sync_dirty)

    def _sync_dirty(self) -> None:
        self._sync_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for key in dirty:
            vr = self._version(key)
            if vr is not None:
                self._sync_key(vr)
            if self.on_replicas_changed is not None:
                try:
                    self.on_replicas_changed(key)
                except Exception:
                    log.exception("the replica change hook failed for %s/%s", *key)

    def _version(self, key: VersionKey) -> VersionRuntime | None:
        svc = self.services.get(key[0])
        return svc.versions.get(key[1]) if svc else None

    def _sync_key(self, vr: VersionRuntime) -> None:
        infos = self.target.replicas(vr.key)
        default_slots = vr.spec.slots_per_replica * vr.spec.workers
        # a retiring replica keeps its `draining` mark across syncs (Backend objects persist)
        vr.pool.sync(BackendState(i.id, i.address, i.slots or default_slots, i.ready, i.secret) for i in infos)
        self._retire_outdated(vr, infos)
        m, labels = self.metrics, vr.key
        m.replicas_ready.labels(*labels).set(vr.pool.ready_count)
        m.replicas_desired.labels(*labels).set(self.target.wanted(vr.key))

    def _retire_outdated(self, vr: VersionRuntime, infos: list[ReplicaInfo]) -> None:
        """Old-template replicas go only once the new template has `wanted` ready replicas."""
        outdated = [i for i in infos if i.outdated and i.id not in self._retiring]
        if not outdated:
            return
        fresh_ready = sum(1 for i in infos if i.ready and not i.outdated)
        if fresh_ready >= max(1, self.target.wanted(vr.key)):
            for i in outdated:
                self._retiring.add(i.id)
                vr.pool.drain(i.id)  # out of routing now, not when the task first runs
                self._spawn(self._retire(vr, i.id), f"retire-{i.id}")

    async def _retire(self, vr: VersionRuntime, replica_id: str) -> None:
        """Out of routing, drained, then stopped."""
        self._retiring.add(replica_id)
        try:
            b = vr.pool.drain(replica_id)
            if b is not None:
                try:
                    await asyncio.wait_for(b.idle.wait(), self.drain_timeout_s)
                except TimeoutError:
                    log.warning("replica %s still busy after %.0f s of draining; stopping it", replica_id,
                                self.drain_timeout_s)
            await self.target.remove_replica(vr.key, replica_id)
        finally:
            self._retiring.discard(replica_id)

    def _retire_later(self, vr: VersionRuntime) -> None:
        vr.retired = True  # now, before the service's new runtime is in place: no request waits on it in vain
        self._spawn(self._retire_version(vr), f"delete-{vr.key[0]}-{vr.key[1]}")

    async def _retire_version(self, vr: VersionRuntime) -> None:
        # no new requests pick this version any more; let the ones already queued on it be served first
        end = time.monotonic() + vr.spec.max_queue_wait_ms / 1000.0 + 1.0
        while vr.pool.queued and time.monotonic() < end:
            await asyncio.sleep(0.01)
        ids = list(vr.pool.backends)
        waits = []
        for rid in ids:
            b = vr.pool.drain(rid)
            if b is not None:
                waits.append(b.idle.wait())
        if waits:
            try:
                await asyncio.wait_for(asyncio.gather(*waits), self.drain_timeout_s)
            except TimeoutError:  # still busy at the deadline: stop them anyway, never leave them running
                log.warning("version %s/%s still busy after %.0f s of draining; stopping its replicas", *vr.key,
                            self.drain_timeout_s)
        await self.target.delete(vr.key)
        for g in (self.metrics.replicas_ready, self.metrics.replicas_desired, self.metrics.utilization):
            try:
                g.remove(*vr.key)
            except KeyError:
                pass

    # ------------------------------------------------------------------ scaling
    async def set_replicas(self, vr: VersionRuntime, n: int) -> None:
        current = self.target.wanted(vr.key)
        if n > current:
            await self.target.scale(vr.key, n)
        elif n < current:
            await self._scale_down(vr, n)

    async def _scale_down(self, vr: VersionRuntime, n: int) -> None:
        """Pick victims (not-ready first, then the least busy), drain them, then stop them."""
        surplus = self.target.wanted(vr.key) - n
        infos = [i for i in self.target.replicas(vr.key) if not i.outdated and i.id not in self._retiring]
        busy = {b.id: b.busy for b in vr.pool.backends.values()}
        infos.sort(key=lambda i: (i.ready, busy.get(i.id, 0)))
        victims = infos[:max(0, surplus)]
        if len(victims) < surplus:  # replicas not even started yet: lower the count directly
            await self.target.scale(vr.key, self.target.wanted(vr.key) - (surplus - len(victims)))
        await asyncio.gather(*(self._retire(vr, i.id) for i in victims))

    async def _autoscale_loop(self, tick_s: float = 0.1) -> None:
        while True:
            await asyncio.sleep(tick_s)
            now = time.monotonic()
            for svc in list(self.services.values()):
                for vr in svc.versions.values():
                    pool, labels = vr.pool, vr.key
                    u = pool.utilization()
                    self.metrics.utilization.labels(*labels).set(u or 0.0)
                    self.metrics.slots_busy.labels(*labels).set(pool.busy)
                    self.metrics.queue_length.labels(*labels).set(pool.queued)
                    a = vr.autoscaler
                    if a is None or not self.coordinates(svc.spec.name):
                        continue  # another router decides for this service, from every router's requests
                    a.sample(pool.busy, pool.queued)
                    if now - vr.last_decision < vr.spec.autoscale.refresh_seconds:
                        continue
                    vr.last_decision = now
                    current = self.target.wanted(vr.key)
                    n = a.decide(now, current)
                    if n != current:
                        direction = "up" if n > current else "down"
                        log.info("autoscale %s/%s: %d -> %d replicas (utilization %.2f)", *vr.key, current, n,
                                 u if u is not None else -1)
                        self.metrics.autoscale.labels(*labels, direction).inc()
                        self.metrics.replicas_desired.labels(*labels).set(n)
                        self._spawn(self.set_replicas(vr, n), f"autoscale-{vr.key}")

    # ------------------------------------------------------------------ status for the admin API
    def status(self, name: str) -> dict:
        svc = self.services[name]
        versions: dict[str, dict[str, Any]] = {}
        pids = self.target.pids() if hasattr(self.target, "pids") else {}
        for vname, vr in svc.versions.items():
            infos = self.target.replicas(vr.key)
            versions[vname] = {
                "isDefault": vr.spec.is_default, "type": vr.spec.version_type,
                "trafficShare": svc.shares.get(vname, 0.0), "mirrorShare": svc.spec.mirror.get(vname, 0.0),
                "desiredReplicas": self.target.wanted(vr.key), "readyReplicas": vr.pool.ready_count,
                "autoscaleEnabled": vr.spec.autoscale.enabled,
                "slotsBusy": vr.pool.busy, "slotsTotal": vr.pool.routable_slots, "queueLength": vr.pool.queued,
                "replicas": [{"id": i.id, "address": i.address, "phase": i.phase, "outdated": i.outdated,
                              "reason": i.reason, "slots": i.slots, "pid": pids.get(i.id)} for i in infos]}
        ready = all(v["readyReplicas"] > 0 for v in versions.values())
        return {"name": name, "computeType": svc.spec.compute_type.upper(),
                "state": "Healthy" if ready else "Transitioning",
                "authEnabled": svc.auth.mode == "key", "tokenAuthEnabled": svc.auth.mode == "token",
                "revision": svc.revision, "versions": versions}


def _reason(e: BaseException) -> str:
    return str(e) or type(e).__name__
