"""A service's Azure state (Transitioning, Healthy, Unhealthy, Unschedulable, Failed) from what the cluster
reports: its ScoringService, the versions' Deployments, their pods and the events about them.

`service_status` is pure (objects in, `ServiceStatus` out) so every rule is testable on captured objects; the
I/O around it is thin: `read_service_status` gathers the objects by label, `write_status` patches the CR's
status subresource. The error shape follows deployer/service_state.py (Azure's): a failure is
`{"code": "KubernetesDeploymentFailed", "statusCode": 400, "message": ..., "details": [{"code", "message"}]}`
where the detail names what happened (DeploymentCrashLoopBackOff, UserScriptInitFailed, ImagePullLoopBackOff,
PodOutOfMemory, PodUnschedulable, DeploymentTimedOut). The scheduler's and kubelet's own texts are kept
verbatim: they are what tells a user which node pool or which image tag is wrong.

Only the pods of a version's current template count (a replaced pod's crash is not this rollout's), and a
version is Healthy only when its Deployment observed its latest spec, every wanted replica is updated and
Ready, and the CR's generation is the one the Deployments were written for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from openscore.kube import crd
from openscore.kube.client import KubeClient, KubeError, NotFoundError
from openscore.kube.manifests import ANNOTATION_ROLLOUT, ANNOTATION_TEMPLATE_HASH, CONTAINER_NAME

TRANSITIONING, HEALTHY, UNHEALTHY, FAILED, UNSCHEDULABLE = (
    "Transitioning", "Healthy", "Unhealthy", "Failed", "Unschedulable")
TERMINAL = (HEALTHY, FAILED)
DEFAULT_UNSCHEDULABLE_DEADLINE_S = 300.0  # Azure's 5 minutes
EXIT_INIT_FAILED = 3  # openscore.runtime.worker.EXIT_INIT_FAILED (the runtime never imports kube, nor kube it)
LOG_TAIL_LINES = 30
IMAGE_PULL_FAILURES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
# an ErrImagePull that retrying cannot fix (a transient one, "connection refused", waits for ImagePullBackOff)
_PERMANENT_PULL = ("not found", "notfound", "manifest unknown", "denied", "unauthorized", "forbidden")
FAILED_CODE = "KubernetesDeploymentFailed"
ANNOTATION_GENERATION = "openscore.io/service-generation"  # optional, on a Deployment: the CR generation it is for


@dataclass(frozen=True)
class VersionStatus:
    ready: int
    desired: int
    rollout: str  # a sentence: "complete", "2 of 3 replicas ready", "rolling out with maxSurge 0 ..."


@dataclass(frozen=True)
class ServiceStatus:
    state: str
    error: dict[str, Any] | None = None
    versions: dict[str, VersionStatus] = field(default_factory=dict)
    observed_generation: int | None = None
    scoring_uri: str | None = None

    @property
    def terminal(self) -> bool:
        """Healthy or Failed: what a wait ends on (Unschedulable may still resolve before its deadline)."""
        return self.state in TERMINAL


# ---------------------------------------------------------------------------------------------- helpers
def parse_time(stamp: str | None) -> float | None:
    """Epoch seconds of an RFC 3339 timestamp as the API server writes them ("2026-12-02T19:44:20Z")."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def hms(seconds: float) -> str:
    """00:05:00 for 300 s: Azure's way of writing the scheduling deadline."""
    s = max(0, round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def unschedulable_text(deadline_s: float) -> str:
    return (f"Couldn't schedule because the kubernetes cluster didn't have available resources after trying for "
            f"{hms(deadline_s)}. You can address this error by either adding more nodes, changing the SKU of your "
            "nodes or changing the resource requirements of your service.")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _name(obj: Mapping[str, Any]) -> str:
    return str(_meta(obj).get("name") or "")


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c
    return None


def replica_container(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for cs in statuses:
        if cs.get("name") == CONTAINER_NAME:
            return cs
    return statuses[0] if statuses else None


def wanted_versions(cr: Mapping[str, Any]) -> list[str]:
    """The version names the CR's config asks for (an `aks` service is one version: versionName or its name)."""
    config = ((cr.get("spec") or {}).get("config")) or {}
    if str(config.get("computeType", "")).lower() == "aks" or "versions" not in config:
        return [str(config.get("versionName") or config.get("name") or _name(cr))]
    return [str(v) for v in (config.get("versions") or {})]


def _tail(text: str | None, lines: int = LOG_TAIL_LINES) -> list[str]:
    return [ln for ln in (text or "").splitlines() if ln.strip()][-lines:]


def _last_exception(lines: list[str]) -> str | None:
    """The traceback's last line ("ValueError: no model"), which is what a user needs first."""
    for ln in reversed(lines):
        s = ln.strip()
        head = s.split(":", 1)[0]
        if ":" in s and head and " " not in head and (head.endswith(("Error", "Exception", "Exit", "Interrupt"))):
            return s
    return None


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"code": FAILED_CODE, "statusCode": 400, "message": "Kubernetes Deployment failed",
            "details": [{"code": code, "message": message}]}


# ---------------------------------------------------------------------------------------------- pod rules
def _terminated(cs: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The container's latest terminated run: now (before its restart) or the previous one."""
    state = cs.get("state") or {}
    return state.get("terminated") or (cs.get("lastState") or {}).get("terminated")


def pod_failure(pod: Mapping[str, Any], log: str | None = None) -> dict[str, Any] | None:
    """The terminal failure a pod shows, as a `details` entry {code, message, exitCode?, pod}, or None.

    exit code 3 is the runtime's init() failure: Failed at its first occurrence (init() fails the same way
    every time, so waiting for CrashLoopBackOff only delays the answer); OOMKilled likewise; another crash
    only once the kubelet backs off (CrashLoopBackOff): a single restart can be a transient fault."""
    cs = replica_container(pod)
    if cs is None:
        return None
    pod_name = _name(pod)
    waiting = (cs.get("state") or {}).get("waiting") or {}
    reason = waiting.get("reason") or ""
    log_lines = _tail(log)
    if reason in IMAGE_PULL_FAILURES:
        msg = waiting.get("message") or reason
        if reason == "ErrImagePull" and not any(w in msg.lower() for w in _PERMANENT_PULL):
            return None
        return {"code": "ImagePullLoopBackOff", "pod": pod_name,
                "message": f"Pod {pod_name} cannot pull its image {cs.get('image', '')!r} ({reason}): {msg}"}
    term = _terminated(cs)
    if term is None:
        return None
    exit_code = term.get("exitCode")
    term_lines = _tail(term.get("message")) or log_lines
    shown = "\n".join(term_lines)
    if term.get("reason") == "OOMKilled":
        return {"code": "PodOutOfMemory", "pod": pod_name, "exitCode": exit_code,
                "message": f"Pod {pod_name} was killed for using more memory than its limit (OOMKilled, exit code "
                           f"{exit_code}); raise memoryInGB or lower the model's memory use."
                           + (f" The replica's last log lines:\n{shown}" if shown else "")}
    if exit_code == EXIT_INIT_FAILED:
        exc = _last_exception(term_lines)
        return {"code": "UserScriptInitFailed", "pod": pod_name, "exitCode": exit_code,
                "message": f"The entry script's init() failed in pod {pod_name} (exit code {exit_code})"
                           + (f": {exc}" if exc else "") + (f". The replica's last log lines:\n{shown}" if shown
                                                          else ".")}
    if reason == "CrashLoopBackOff":
        exc = _last_exception(term_lines)
        return {"code": "DeploymentCrashLoopBackOff", "pod": pod_name, "exitCode": exit_code,
                "message": f"Your container application crashed (CrashLoopBackOff, exit code {exit_code}, "
                           f"{cs.get('restartCount', 0)} restarts, {term.get('reason') or 'Error'})"
                           + (f": {exc}" if exc else "") + (f". The replica's last log lines:\n{shown}" if shown
                                                          else ".")}
    return None


def unschedulable_since(pod: Mapping[str, Any], events: list[dict[str, Any]]) -> tuple[str, float] | None:
    """(the scheduler's message verbatim, since when) for a pod the scheduler could not place, else None."""
    if _meta(pod).get("deletionTimestamp") or (pod.get("spec") or {}).get("nodeName"):
        return None
    cond = condition(pod, "PodScheduled")
    if cond is None or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    msg = cond.get("message") or ""
    if not msg:  # an older scheduler leaves only the event
        for e in reversed(events):
            if e.get("reason") == "FailedScheduling" and (e.get("involvedObject") or {}).get("name") == _name(pod):
                msg = e.get("message") or ""
                break
    times = [t for t in (parse_time(cond.get("lastTransitionTime")),
                         parse_time(_meta(pod).get("creationTimestamp"))) if t is not None]
    return msg or "the scheduler found no node for the pod", min(times) if times else 0.0


# ---------------------------------------------------------------------------------------------- the state
def _current_pods(dep: Mapping[str, Any], pods: list[dict[str, Any]], version: str) -> list[dict[str, Any]]:
    """The version's pods that run its Deployment's current template and are not stopping."""
    tmpl_hash = ((((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations")
                 or {}).get(ANNOTATION_TEMPLATE_HASH)
    out = []
    for p in pods:
        m = _meta(p)
        if (m.get("labels") or {}).get(crd.LABEL_VERSION) != version or m.get("deletionTimestamp"):
            continue
        if tmpl_hash and (m.get("annotations") or {}).get(ANNOTATION_TEMPLATE_HASH) not in (None, tmpl_hash):
            continue
        out.append(p)
    return out


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def _deployment_progress(dep: Mapping[str, Any], generation: int | None) -> tuple[int, int, bool, str]:
    """(ready, desired, settled, sentence) of one Deployment; settled = it observed its spec and every
    wanted replica is updated, available and Ready, with no old replica left."""
    spec = dep.get("spec") or {}
    st = dep.get("status") or {}
    desired = int(spec.get("replicas", 1))
    ready = int(st.get("readyReplicas") or 0)
    updated = int(st.get("updatedReplicas") or 0)
    total = int(st.get("replicas") or 0)
    observed = st.get("observedGeneration") == _meta(dep).get("generation")
    for_gen = (_meta(dep).get("annotations") or {}).get(ANNOTATION_GENERATION)
    stale_cr = for_gen is not None and generation is not None and int(for_gen) < generation
    settled = observed and not stale_cr and updated >= desired and total == desired and ready >= desired
    rollout = str((_meta(dep).get("annotations") or {}).get(ANNOTATION_ROLLOUT) or "")
    no_surge = rollout.replace(" ", "").lower().startswith(("maxsurge=0", "max-surge-0"))
    if settled:
        sentence = "complete"
    elif not observed or stale_cr:
        sentence = "waiting for the Deployment controller to observe the new spec"
    elif updated < desired or total > desired:
        sentence = (f"rolling out{' with maxSurge 0 (accelerator pool)' if no_surge else ''}: {updated} of "
                    f"{desired} replicas updated, {ready} ready")
    else:
        sentence = f"{ready} of {desired} replicas ready"
    return ready, desired, settled, sentence


def service_status(cr: Mapping[str, Any], deployments: list[dict[str, Any]], pods: list[dict[str, Any]],
                   events: list[dict[str, Any]], *, now: float,
                   unschedulable_deadline_s: float = DEFAULT_UNSCHEDULABLE_DEADLINE_S,
                   logs: Mapping[str, str] | None = None,
                   unreachable: Mapping[str, str] | None = None) -> ServiceStatus:
    """The service's state now. `logs`: pod name -> its replica's last log (added to a failure's message when
    the termination message has none); `unreachable`: pod name -> why the router cannot reach it although it
    is Ready (the router's knowledge; such a pod does not count as ready)."""
    logs = logs or {}
    unreachable = unreachable or {}
    generation = _meta(cr).get("generation")
    prev = cr.get("status") or {}
    scoring_uri = prev.get("scoringUri")
    by_version = {(_meta(d).get("labels") or {}).get(crd.LABEL_VERSION): d for d in deployments
                  if not _meta(d).get("deletionTimestamp")}
    wanted = wanted_versions(cr)
    versions: dict[str, VersionStatus] = {}
    failures: list[dict[str, Any]] = []
    unschedulable: list[tuple[str, float, str]] = []
    not_reached: list[str] = []
    settled_all = True
    for v in wanted:
        dep = by_version.get(v)
        if dep is None:
            versions[v] = VersionStatus(0, 0, "its Deployment is not created yet")
            settled_all = False
            continue
        ready, desired, settled, sentence = _deployment_progress(dep, generation)
        current = _current_pods(dep, pods, v)
        for p in current:
            f = pod_failure(p, logs.get(_name(p)))
            if f is not None:
                failures.append(f)
            u = unschedulable_since(p, events)
            if u is not None:
                unschedulable.append((u[0], u[1], _name(p)))
            if _pod_ready(p) and _name(p) in unreachable:
                not_reached.append(f"pod {_name(p)} is Ready but the router cannot reach it: {unreachable[_name(p)]}")
                ready, settled = max(0, ready - 1), False
        prog = condition(dep, "Progressing")
        if prog and prog.get("status") == "False" and prog.get("reason") == "ProgressDeadlineExceeded":
            failures.append({"code": "DeploymentTimedOut", "message": f"version {v}: {prog.get('message', '')}"})
        versions[v] = VersionStatus(ready, desired, sentence)
        settled_all = settled_all and settled
    leftover = [v for v in by_version if v not in wanted]
    observed_generation = generation if all(v in by_version for v in wanted) else prev.get("observedGeneration")
    status = ServiceStatus(TRANSITIONING, None, versions, observed_generation, scoring_uri)
    if failures:
        first = failures[0]
        err = _failure(first["code"], first["message"])
        err["details"] = [{k: f[k] for k in ("code", "message", "exitCode", "pod") if k in f} for f in failures]
        return dataclasses.replace(status, state=FAILED, error=err)
    if unschedulable:
        msg, since, _ = min(unschedulable, key=lambda u: u[1])
        details = [{"code": "PodUnschedulable", "message": m, "pod": p} for m, _, p in unschedulable]
        if now - since >= unschedulable_deadline_s:
            err = _failure("PodUnschedulable", unschedulable_text(unschedulable_deadline_s))
            err["details"] += details
            return dataclasses.replace(status, state=FAILED, error=err)
        return dataclasses.replace(status, state=UNSCHEDULABLE,
                                   error={"code": "PodUnschedulable", "message": msg, "details": details})
    if settled_all and not leftover and observed_generation == generation:
        return dataclasses.replace(status, state=HEALTHY)
    was_up = prev.get("state") in (HEALTHY, UNHEALTHY) and prev.get("observedGeneration") == generation
    rolling = any(not s.rollout.endswith("ready") and s.rollout != "complete" for s in versions.values())
    if not_reached or (was_up and not leftover and not rolling):
        why = not_reached or [f"version {v}: {s.rollout}" for v, s in versions.items() if s.ready < s.desired]
        return dataclasses.replace(status, state=UNHEALTHY, error={
            "code": "ReplicasNotReady", "message": "; ".join(why) or "no replica is ready"})
    return status


# ---------------------------------------------------------------------------------------------- I/O
def status_document(status: ServiceStatus) -> dict[str, Any]:
    """The ScoringService's `status` as written to the status subresource (crd.py's shape)."""
    doc: dict[str, Any] = {
        "state": status.state,
        "reason": (status.error or {}).get("details", [{}])[0].get("code") if status.error and
        status.error.get("details") else (status.error or {}).get("code"),
        "error": status.error,
        "versions": {n: {"readyReplicas": v.ready, "desiredReplicas": v.desired, "rollout": v.rollout}
                     for n, v in status.versions.items()},
        "observedGeneration": status.observed_generation,
    }
    if status.scoring_uri is not None:
        doc["scoringUri"] = status.scoring_uri
    return doc


async def write_status(client: KubeClient, namespace: str, name: str, status: ServiceStatus,
                       current: Mapping[str, Any] | None = None) -> bool:
    """Patch the CR's status subresource; skipped (False) when it already says this. `current`: the CR's
    status as read, saving a GET when the caller has it."""
    doc = status_document(status)
    if current is None:
        cr = await client.get(crd.API_VERSION, crd.KIND, name, namespace)
        if cr is None:
            raise NotFoundError(404, "NotFound", f"scoringservices {name!r} not found in {namespace}")
        current = cr.get("status") or {}
    if all(current.get(k) == v for k, v in doc.items()):
        return False
    # a merge patch: "error": null clears an old error; versions gone from the config are nulled out too
    patch = dict(doc)
    patch["versions"] = {**{v: None for v in current.get("versions") or {}}, **doc["versions"]}
    await client.patch(crd.API_VERSION, crd.KIND, name, {"status": patch}, namespace=namespace,
                       subresource="status", merge="merge")
    return True


async def gather(client: KubeClient, namespace: str, name: str) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                             list[dict[str, Any]],
                                                                             list[dict[str, Any]]]:
    """(cr, deployments, pods, events) of one service, by its label."""
    cr = await client.get(crd.API_VERSION, crd.KIND, name, namespace)
    if cr is None:
        raise NotFoundError(404, "NotFound", f"no service {name!r} in namespace {namespace}")
    sel = {crd.LABEL_SERVICE: name, crd.LABEL_COMPONENT: crd.COMPONENT_REPLICA}
    deps, _ = await client.list("apps/v1", "Deployment", namespace, label_selector=sel)
    pods, _ = await client.list("v1", "Pod", namespace, label_selector=sel)
    events: list[dict[str, Any]] = []
    for p in pods:
        cond = condition(p, "PodScheduled")
        if cond is not None and cond.get("status") == "False" and not cond.get("message"):
            events += await client.events_for(namespace, "Pod", _name(p))
    return cr, deps, pods, events


async def read_service_status(client: KubeClient, namespace: str, name: str, *, now: float | None = None,
                              unschedulable_deadline_s: float = DEFAULT_UNSCHEDULABLE_DEADLINE_S,
                              with_logs: bool = True) -> ServiceStatus:
    """The service's state from the cluster now; with_logs reads the last lines of failed replicas' logs."""
    cr, deps, pods, events = await gather(client, namespace, name)
    return await status_from(client, namespace, cr, deps, pods, events, now=now,
                             unschedulable_deadline_s=unschedulable_deadline_s, with_logs=with_logs)


async def status_from(client: KubeClient, namespace: str, cr: dict[str, Any], deps: list[dict[str, Any]],
                      pods: list[dict[str, Any]], events: list[dict[str, Any]], *, now: float | None = None,
                      unschedulable_deadline_s: float = DEFAULT_UNSCHEDULABLE_DEADLINE_S,
                      with_logs: bool = True) -> ServiceStatus:
    """service_status over objects already read, fetching the crashed replicas' previous logs it needs."""
    t = now if now is not None else time.time()
    st = service_status(cr, deps, pods, events, now=t, unschedulable_deadline_s=unschedulable_deadline_s)
    if not with_logs or st.state != FAILED:
        return st
    logs: dict[str, str] = {}
    for d in (st.error or {}).get("details", []):
        pod = d.get("pod")
        if pod and d.get("code") in ("DeploymentCrashLoopBackOff", "UserScriptInitFailed", "PodOutOfMemory"):
            logs[pod] = await _crashed_log(client, namespace, pod)
    if not logs:
        return st
    return service_status(cr, deps, pods, events, now=t, unschedulable_deadline_s=unschedulable_deadline_s,
                          logs=logs)


async def _crashed_log(client: KubeClient, namespace: str, pod: str) -> str:
    """The crashed run's last lines: the previous container when it restarted, else the current one's."""
    for previous in (True, False):
        try:
            return await client.pod_logs(pod, namespace, container=CONTAINER_NAME, previous=previous,
                                         tail_lines=LOG_TAIL_LINES)
        except KubeError:  # no previous run (400), the pod gone (404): only the extra lines are lost
            continue
    return ""
