"""`KubernetesTarget`: the router's compute target over a cluster. Replicas are pods, found through the API.

Each version is a Deployment (kube/manifests.py). The target lists and then watches, in its namespace, the pods
and Deployments openscore manages, and reports one `ReplicaInfo` per pod: routable (`ready`) only while the
pod's Ready condition is True and it is not being deleted; `stopping` from the moment it is (its
deletionTimestamp: it leaves routing before the kubelet even sends SIGTERM); `crashed` with the kubelet's
reason (CrashLoopBackOff with the last exit code, image pull errors, a non-zero exit); `outdated` when its
template hash is not its Deployment's current one. The address is the pod IP (the router never goes through
a ClusterIP), the credential is read from the version's replica Secret.

`manage_deployments=True` (the deployer, or a router that owns its versions) applies the replica Secret (its
value kept across updates) and the Deployment with server-side apply. `False` is the in-cluster router's
least-privilege mode: it never creates or deletes anything; it reads pods, Deployments and Secrets and
changes only the replica count, through the scale subresource.

A watch that fails is retried with back-off and a fresh list (410 Gone included); it never ends the target.
`stop()` ends the watches only: pods belong to the cluster, and a router that stops must not take its
services down with it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openscore.kube import crd
from openscore.kube.client import ConflictError, ForbiddenError, GoneError, KubeClient, KubeError
from openscore.kube.instance_types import InstanceType, resolve
from openscore.kube.manifests import (
    ANNOTATION_TEMPLATE_HASH,
    deployment_manifest,
    deployment_name,
    pod_plan,
    replica_secret_manifest,
    secret_value,
)
from openscore.router.config import VersionSpec
from openscore.router.replica_plan import DEFAULT_PORT
from openscore.router.targets import (
    CRASHED,
    READY,
    STARTING,
    STOPPING,
    UNREADY,
    ChangeCallback,
    ComputeTarget,
    ReplicaInfo,
    VersionKey,
)

log = logging.getLogger("openscore.kube.target")
FIELD_MANAGER = "openscore-deployer"
SELECTOR = {crd.LABEL_MANAGED: crd.MANAGED_BY, crd.LABEL_COMPONENT: crd.COMPONENT_REPLICA}
# a container waiting for one of these will not get better by itself (CreateContainerConfigError and
# CreateContainerError are often the kubelet's own transient trouble, e.g. "failed to sync secret cache": starting)
_STUCK = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "RunContainerError")
INIT_FAILED_EXIT = 3  # what `openscore serve` exits with when init() raised

ImageFor = Callable[[VersionKey, VersionSpec], str]
InstanceTypeFor = Callable[[VersionKey, VersionSpec], InstanceType]
OwnerFor = Callable[[VersionKey], Awaitable[Mapping[str, Any] | None]]


def replica_id(pod: Mapping[str, Any]) -> str:
    """Pod name plus a piece of its uid: a pod re-created under the same name is another replica."""
    meta = pod.get("metadata") or {}
    return f"{meta.get('name', '')}.{(meta.get('uid') or '')[:8]}"


def pod_key(pod: Mapping[str, Any]) -> VersionKey | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    service, version = labels.get(crd.LABEL_SERVICE), labels.get(crd.LABEL_VERSION)
    return (service, version) if service and version else None


def _exit_text(term: Mapping[str, Any]) -> str:
    code = term.get("exitCode")
    text = f"exited with code {code}"
    if code == INIT_FAILED_EXIT:
        text += " (init() failed)"
    elif term.get("reason") and term.get("reason") not in ("Error", "Completed"):
        text += f" ({term['reason']})"  # OOMKilled, ...
    line = _telling_line(term.get("message") or "")
    return f"{text}: {line[:300]}" if line else text


def _telling_line(message: str) -> str:
    """The line of a termination message (FallbackToLogsOnError: the log's tail) that says what went wrong:
    the last traceback's exception line, else the last line."""
    lines = [ln for ln in message.splitlines() if ln.strip()]
    starts = [n for n, ln in enumerate(lines) if ln.startswith("Traceback (most recent call last):")]
    if starts:
        for ln in lines[starts[-1] + 1:]:
            if not ln[:1].isspace():
                return ln.strip()
    return lines[-1].strip() if lines else ""


def pod_phase(pod: Mapping[str, Any], previous: str | None = None) -> tuple[str, str]:
    """(phase, reason) of one pod, as the router's ReplicaInfo says it; `previous` is the phase reported last
    time (a pod that was ready and is not any more is `unready`, not `starting`)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp"):
        return STOPPING, "being deleted"
    statuses = status.get("containerStatuses") or []
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in _STUCK:
            last = (cs.get("lastState") or {}).get("terminated")
            why = f"{waiting['reason']}: " + (_exit_text(last) if last else (waiting.get("message") or "").strip())
            return CRASHED, why.rstrip(": ")
        term = (cs.get("state") or {}).get("terminated")
        if term and term.get("exitCode", 0) != 0:
            return CRASHED, _exit_text(term)
    if status.get("phase") in ("Failed", "Succeeded"):
        detail = f"{status.get('reason') or ''} {status.get('message') or ''}".strip()
        return CRASHED, f"pod {status['phase'].lower()}" + (f": {detail}" if detail else "")
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    if conditions.get("Ready", {}).get("status") == "True":
        return READY, ""
    sched = conditions.get("PodScheduled")
    if sched is not None and sched.get("status") == "False":
        return STARTING, f"{sched.get('reason') or 'Unschedulable'}: {sched.get('message') or ''}".strip()
    if previous in (READY, UNREADY):
        return UNREADY, "readiness probe failed"
    for cs in statuses:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            message = (waiting.get("message") or "").strip()
            return STARTING, f"{waiting['reason']}: {message}" if message else waiting["reason"]
    return STARTING, ""


def _created(pod: Mapping[str, Any]) -> str:
    return str((pod.get("metadata") or {}).get("creationTimestamp") or "")


@dataclass
class _Version:
    spec: VersionSpec
    wanted: int
    secret: str = ""
    secret_task: asyncio.Task | None = None


@dataclass
class _Pods:
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)       # uid -> pod
    infos: dict[str, ReplicaInfo] = field(default_factory=dict)         # uid -> what we report


class KubernetesTarget(ComputeTarget):
    def __init__(self, client: KubeClient, namespace: str, *, manage_deployments: bool,
                 image_for: ImageFor | None = None, instance_type_for: InstanceTypeFor | None = None,
                 owner_for: OwnerFor | None = None, delete_pods: bool | None = None, graceful_s: float = 10.0,
                 startup_timeout_s: float = 600.0, max_backoff_s: float = 10.0):
        """`image_for(key, spec)`: the version's image (default: the spec's `image`). `instance_type_for`: its
        instance type (default: `resolve(spec)` with Azure's default type). `owner_for(key)`: the
        ownerReference of its objects (default: the service's ScoringService, if there is one).
        `delete_pods`: whether `remove_replica` deletes the drained pod itself (needs `delete` on pods;
        default: with manage_deployments)."""
        self.client = client
        self.namespace = namespace
        self.manage = manage_deployments
        self.image_for = image_for or _spec_image
        self.instance_type_for = instance_type_for or (lambda key, spec: resolve(spec))
        self.owner_for = owner_for or self._service_owner
        self.delete_pods = manage_deployments if delete_pods is None else delete_pods
        self.graceful_s = graceful_s
        self.startup_timeout_s = startup_timeout_s
        self.max_backoff_s = max_backoff_s
        self._versions: dict[VersionKey, _Version] = {}
        self._pods: dict[VersionKey, _Pods] = {}
        self._deployments: dict[VersionKey, dict[str, Any]] = {}
        self._by_id: dict[str, tuple[VersionKey, str]] = {}  # replica id -> (key, pod uid)
        self._locks: dict[VersionKey, asyncio.Lock] = {}
        self._on_change: ChangeCallback = lambda key: None
        self._tasks: list[asyncio.Task] = []
        self._side: set[asyncio.Task] = set()
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    async def start(self, on_change: ChangeCallback) -> None:
        """Lists pods and Deployments (so `wanted` knows existing counts at once), then watches both."""
        self._on_change = on_change
        deps, drv = await self.client.list("apps/v1", "Deployment", self.namespace, label_selector=SELECTOR)
        pods, prv = await self.client.list("v1", "Pod", self.namespace, label_selector=SELECTOR)
        self._reset_deployments(deps)
        self._reset_pods(pods)
        self._tasks = [
            asyncio.create_task(self._follow("apps/v1", "Deployment", drv, self._reset_deployments,
                                             self._deployment_event), name="kube-target-deployments"),
            asyncio.create_task(self._follow("v1", "Pod", prv, self._reset_pods, self._pod_event),
                                name="kube-target-pods")]

    async def stop(self) -> None:
        """Ends the watches and background reads; the pods keep running (they are the cluster's)."""
        self._stopped = True
        tasks = [*self._tasks, *self._side, *(v.secret_task for v in self._versions.values() if v.secret_task)]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._side.clear()

    # ------------------------------------------------------------------ interface
    async def deploy(self, key: VersionKey, spec: VersionSpec, replicas: int) -> None:
        v = self._versions.get(key)
        if v is None:
            v = self._versions[key] = _Version(spec, replicas)
        else:
            v.spec, v.wanted = spec, replicas
        dep = self._deployments.get(key)
        if dep is not None and not self.owns_count(key[0]):  # the service's coordinator sets the count
            v.wanted = int((dep.get("spec") or {}).get("replicas") or 0)
        async with self._lock(key):
            if self.manage:
                await self._apply(key, v)
            elif key in self._deployments:
                await self._sync_count(key)
        if not v.secret and v.secret_task is None:
            v.secret_task = asyncio.create_task(self._read_secret(key), name=f"kube-target-secret-{key[0]}-{key[1]}")
        self._refresh(key)

    async def scale(self, key: VersionKey, replicas: int) -> None:
        v = self._versions.get(key)
        if v is None or v.wanted == replicas:
            return
        v.wanted = replicas
        async with self._lock(key):
            await self._sync_count(key)

    async def remove_replica(self, key: VersionKey, replica_id: str) -> None:
        """Lower the count by one, and delete this (drained) pod where allowed. Kubernetes v1.20 cannot be told
        which pod a scale-down removes (the controller.kubernetes.io/pod-deletion-cost annotation is 1.21+):
        so the drained pod is deleted first and the count lowered after; the ReplicaSet may briefly start a
        replacement, which, not ready, is the first a scale-down removes. Without pod deletion (the
        router's least-privilege Role) only the count is lowered and the ReplicaSet picks the pod (not-ready
        ones first, then the most recently ready). An outdated pod is left to the Deployment's rollout,
        which removes old-template pods itself: deleting one early would make its old ReplicaSet replace it."""
        v = self._versions.get(key)
        found = self._by_id.get(replica_id)
        if v is None or found is None:
            return
        info = self._pods.get(key, _Pods()).infos.get(found[1])
        pod = self._pods.get(key, _Pods()).pods.get(found[1])
        if info is None or pod is None or info.outdated:
            return
        async with self._lock(key):
            if self.delete_pods:
                try:
                    await self.client.delete("v1", "Pod", pod["metadata"]["name"], self.namespace)
                except ForbiddenError as e:
                    log.warning("cannot delete pod %s (%s): lowering the count only from now on",
                                pod["metadata"]["name"], e.message)
                    self.delete_pods = False
            if v.wanted > 0:
                v.wanted -= 1
            await self._sync_count(key)

    async def delete(self, key: VersionKey) -> None:
        v = self._versions.pop(key, None)
        if v is not None and v.secret_task is not None:
            v.secret_task.cancel()
        if self.manage:
            name = deployment_name(*key)
            async with self._lock(key):
                await self.client.delete("apps/v1", "Deployment", name, self.namespace)
                await self.client.delete("v1", "Secret", crd.replica_secret(name), self.namespace)
        self._on_change(key)

    def replicas(self, key: VersionKey) -> list[ReplicaInfo]:
        p = self._pods.get(key)
        if p is None:
            return []
        return [p.infos[uid] for uid in sorted(p.infos, key=lambda u: (_created(p.pods[u]), u))]

    def wanted(self, key: VersionKey) -> int:
        """The count asked for; before this target deployed the key, the count its Deployment has (so a
        restarted router never shrinks a version it finds scaled up)."""
        v = self._versions.get(key)
        if v is not None:
            return v.wanted
        dep = self._deployments.get(key)
        return int((dep or {}).get("spec", {}).get("replicas") or 0)

    def keys(self) -> set[VersionKey]:
        return set(self._versions)

    def report_unreachable(self, replica_id: str) -> None:
        found = self._by_id.get(replica_id)
        if found is None or self._stopped:
            return
        pod = self._pods.get(found[0], _Pods()).pods.get(found[1])
        if pod is not None:
            self._spawn(self._reread_pod(pod["metadata"]["name"]), f"kube-target-reread-{replica_id}")

    # ------------------------------------------------------------------ writes
    def _lock(self, key: VersionKey) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _apply(self, key: VersionKey, v: _Version) -> None:
        """The replica Secret (created once, its value kept) and the Deployment, server-side applied."""
        name = deployment_name(*key)
        secret_name = crd.replica_secret(name)
        owner = await self.owner_for(key)
        existing = await self.client.get("v1", "Secret", secret_name, self.namespace)
        if existing is None:
            manifest = replica_secret_manifest(secret_name, self.namespace, owner, secrets.token_urlsafe(32),
                                               service=key[0], version=key[1])
            try:  # create, not apply: of two deployers racing, the first one's value stays
                existing = await self.client.create(manifest)
            except ConflictError:
                existing = await self.client.get("v1", "Secret", secret_name, self.namespace)
            if existing is None:
                raise KubeError(409, "Conflict", f"Secret {secret_name} was deleted while it was being created")
        v.secret = secret_value(existing)
        it = self.instance_type_for(key, v.spec)
        plan = pod_plan(v.spec, service=key[0], graceful_s=self.graceful_s)
        manifest = deployment_manifest(plan, it, namespace=self.namespace, image=self.image_for(key, v.spec),
                                       owner=owner, replica_secret_name=secret_name, replicas=v.wanted,
                                       startup_timeout_s=self.startup_timeout_s)
        stored = await self.client.apply(manifest, field_manager=FIELD_MANAGER)
        self._set_deployment(key, stored)

    async def _sync_count(self, key: VersionKey) -> None:
        """Make the Deployment's count the wanted one (through the scale subresource: the only write the
        router's Role has). Call with the key's lock held."""
        v, dep = self._versions.get(key), self._deployments.get(key)
        if v is None or dep is None or (dep.get("spec") or {}).get("replicas") == v.wanted:
            return
        try:
            await self.client.scale("Deployment", name=dep["metadata"]["name"], namespace=self.namespace,
                                    replicas=v.wanted)
        except KubeError as e:
            if e.status == 404:  # deleted meanwhile: its watch event follows
                return
            raise
        dep.setdefault("spec", {})["replicas"] = v.wanted

    async def _service_owner(self, key: VersionKey) -> Mapping[str, Any] | None:
        cr = await self.client.get(crd.API_VERSION, crd.KIND, key[0], self.namespace)
        return crd.owner_reference(cr) if cr is not None else None

    async def _read_secret(self, key: VersionKey) -> None:
        """Read the version's credential until it exists (the deployer may create it after we are told)."""
        delay = 0.25
        try:
            while not self._stopped:
                v = self._versions.get(key)
                if v is None or v.secret:
                    return
                try:
                    s = await self.client.get("v1", "Secret", crd.replica_secret(deployment_name(*key)),
                                              self.namespace)
                except KubeError as e:
                    log.warning("cannot read the replica credential of %s/%s: %s", *key, e)
                    s = None
                if s is not None and secret_value(s):
                    v.secret = secret_value(s)
                    self._refresh(key)
                    return
                await asyncio.sleep(delay)
                delay = min(self.max_backoff_s, delay * 2)
        finally:
            v = self._versions.get(key)
            if v is not None and v.secret_task is asyncio.current_task():
                v.secret_task = None

    # ------------------------------------------------------------------ watches
    async def _follow(self, api_version: str, kind: str, rv: str,
                      reset: Callable[[list[dict[str, Any]]], None],
                      handle: Callable[[str, dict[str, Any]], None]) -> None:
        """Watch from `rv`; on any failure list again (after a back-off unless it was 410 Gone) and go on."""
        delay = 0.0
        while not self._stopped:
            try:
                if delay:
                    await asyncio.sleep(delay)
                if not rv:
                    items, rv = await self.client.list(api_version, kind, self.namespace, label_selector=SELECTOR)
                    reset(items)
                async for event, obj in self.client.watch(api_version, kind, self.namespace, label_selector=SELECTOR,
                                                          resource_version=rv):
                    handle(event, obj)
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    delay = 0.0
                return  # the client was closed
            except asyncio.CancelledError:
                raise
            except GoneError:
                log.info("%s watch expired (410): listing again", kind)
                rv, delay = "", 0.0
            except Exception as e:  # a watch must never end the target
                delay = min(self.max_backoff_s, max(0.5, delay * 2))
                log.warning("%s watch failed (%s); listing again in %.1f s", kind, e, delay)
                rv = ""

    def _reset_deployments(self, items: list[dict[str, Any]]) -> None:
        seen = {k for k in (pod_key(d) for d in items) if k}
        for key in [k for k in self._deployments if k not in seen]:
            del self._deployments[key]
            self._refresh(key)
        for d in items:
            k = pod_key(d)
            if k is not None:
                self._set_deployment(k, d)

    def _deployment_event(self, event: str, dep: dict[str, Any]) -> None:
        key = pod_key(dep)
        if key is None:
            return
        if event == "DELETED":
            self._deployments.pop(key, None)
            self._refresh(key)
        else:
            self._set_deployment(key, dep)
            v = self._versions.get(key)
            count = (dep.get("spec") or {}).get("replicas")
            if v is None or count == v.wanted or self._stopped:
                return
            if self.owns_count(key[0]):  # a hand edit, or a stale write: put ours back
                self._spawn(self._locked_sync(key), f"kube-target-scale-{key[0]}-{key[1]}")
            else:  # the coordinating router's decision: follow it, never fight it
                v.wanted = int(count or 0)
                self._on_change(key)

    async def _locked_sync(self, key: VersionKey) -> None:
        async with self._lock(key):
            await self._sync_count(key)

    def _set_deployment(self, key: VersionKey, dep: dict[str, Any]) -> None:
        old = self._deployments.get(key)
        # the watch may bring an older version than one an apply just returned
        if old is not None and _rv(old) > _rv(dep):
            return
        self._deployments[key] = dep
        self._refresh(key)

    def _reset_pods(self, items: list[dict[str, Any]]) -> None:
        fresh: dict[VersionKey, dict[str, dict[str, Any]]] = {}
        for pod in items:
            key = pod_key(pod)
            if key is not None:
                fresh.setdefault(key, {})[pod["metadata"]["uid"]] = pod
        for key in set(self._pods) | set(fresh):
            p = self._pods.setdefault(key, _Pods())
            p.pods = fresh.get(key, {})
            self._refresh(key)

    def _pod_event(self, event: str, pod: dict[str, Any]) -> None:
        key = pod_key(pod)
        if key is None:
            return
        p = self._pods.setdefault(key, _Pods())
        uid = pod["metadata"]["uid"]
        if event == "DELETED":
            p.pods.pop(uid, None)
        else:
            p.pods[uid] = pod
        self._refresh(key)

    async def _reread_pod(self, name: str) -> None:
        try:
            pod = await self.client.get("v1", "Pod", name, self.namespace)
        except KubeError as e:
            log.debug("re-reading pod %s: %s", name, e)
            return
        if pod is not None:
            self._pod_event("MODIFIED", pod)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        async def run() -> None:
            try:
                await coro
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a background write is retried by the next event
                log.warning("%s failed: %s", name, e)
        t = asyncio.create_task(run(), name=name)
        self._side.add(t)
        t.add_done_callback(self._side.discard)

    # ------------------------------------------------------------------ pods -> ReplicaInfo
    def _refresh(self, key: VersionKey) -> None:
        """Recompute the key's ReplicaInfos; `on_change(key)` when any changed."""
        p = self._pods.get(key)
        if p is None:
            return
        v = self._versions.get(key)
        secret = v.secret if v is not None else ""
        dep = self._deployments.get(key)
        current = ((((dep or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations", {}).get(ANNOTATION_TEMPLATE_HASH)
        infos: dict[str, ReplicaInfo] = {}
        for uid, pod in p.pods.items():
            old = p.infos.get(uid)
            phase, reason = pod_phase(pod, old.phase if old else None)
            ip = (pod.get("status") or {}).get("podIP") or ""
            if phase == READY and not (ip and secret):  # never routable without an address and its credential
                phase, reason = STARTING, "no pod IP yet" if not ip else "waiting for the replica credential"
            mine = ((pod.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH)
            info = ReplicaInfo(id=replica_id(pod), key=key, address=f"http://{ip}:{DEFAULT_PORT}" if ip else "",
                               phase=phase, slots=old.slots if old else None,
                               outdated=bool(current) and mine != current, reason=reason, secret=secret)
            infos[uid] = info if old is None or old != info else old
        changed = infos != p.infos
        for uid in set(p.infos) - set(infos):
            self._by_id.pop(p.infos[uid].id, None)
        p.infos = infos
        for uid, info in infos.items():
            self._by_id[info.id] = (key, uid)
        if not p.pods and key not in self._versions:
            self._pods.pop(key, None)
        if changed:
            self._on_change(key)


def _rv(obj: Mapping[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque by contract; etcd's are integers, and equal ones are never "older"
        return 0


def _spec_image(key: VersionKey, spec: VersionSpec) -> str:
    if not spec.image:
        raise ValueError(f"version {key[0]}/{key[1]} has no image to run in the cluster (set its image, or give "
                         "KubernetesTarget an image_for)")
    return spec.image


__all__ = ["FIELD_MANAGER", "KubernetesTarget", "pod_phase", "replica_id"]
