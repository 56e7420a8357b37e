"""`service get-logs` for a service in the cluster: the replica pods' logs with a header per pod.

`init=True` reads the previous container's log, i.e. the run that crashed (Azure's `get_logs(init=True)`:
what init() printed before it failed), which a restarted or backing-off pod no longer shows by default. A pod
that has no log yet says why (Pending: the scheduler's reason; waiting: ContainerCreating, ImagePullBackOff...)
instead of an empty section or an API error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openscore.kube import crd
from openscore.kube.client import KubeClient, KubeError
from openscore.kube.manifests import CONTAINER_NAME
from openscore.kube.status import condition, replica_container

DEFAULT_LINES = 5000  # Azure's get_logs(num_lines=5000)


def _pod_line(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    st = pod.get("status") or {}
    cs = replica_container(pod) or {}
    version = (meta.get("labels") or {}).get(crd.LABEL_VERSION, "?")
    node = (pod.get("spec") or {}).get("nodeName") or "no node"
    return (f"=== pod {meta.get('name')} (version {version}, {node}, {st.get('phase', 'Unknown')}, "
            f"{cs.get('restartCount', 0)} restarts) ===")


def no_log_reason(pod: Mapping[str, Any], *, init: bool) -> str | None:
    """Why the pod has no log to show (None when it should have one)."""
    cs = replica_container(pod)
    sched = condition(pod, "PodScheduled")
    if sched is not None and sched.get("status") == "False":
        return f"no logs yet: the pod is Pending, not scheduled: {sched.get('message') or sched.get('reason')}"
    if cs is None:
        return f"no logs yet: the pod is {(pod.get('status') or {}).get('phase', 'Pending')}, no container started"
    if init and not (cs.get("lastState") or {}).get("terminated"):
        if (cs.get("state") or {}).get("terminated"):
            return None  # exited but not restarted yet: its only run is the crashed one, read it as current
        return "no previous run: the container has not restarted (init() has not failed in this pod)"
    waiting = (cs.get("state") or {}).get("waiting") or {}
    if waiting and not (cs.get("lastState") or {}).get("terminated"):
        return f"no logs yet: the container is waiting: {waiting.get('reason')}" + (
            f": {waiting['message']}" if waiting.get("message") else "")
    return None


async def service_logs(client: KubeClient, namespace: str, service: str, *, version: str | None = None,
                       init: bool = False, num_lines: int = DEFAULT_LINES) -> str:
    """Every replica pod's log of the service (or of one version), oldest version and pod first."""
    sel = {crd.LABEL_SERVICE: service, crd.LABEL_COMPONENT: crd.COMPONENT_REPLICA}
    if version is not None:
        sel[crd.LABEL_VERSION] = version
    pods, _ = await client.list("v1", "Pod", namespace, label_selector=sel)
    if not pods:
        what = f"version {version} of service {service}" if version else f"service {service}"
        return f"no replica pods of {what} in namespace {namespace}\n"
    pods.sort(key=lambda p: ((p["metadata"].get("labels") or {}).get(crd.LABEL_VERSION, ""),
                             p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))
    out: list[str] = []
    for pod in pods:
        out.append(_pod_line(pod))
        why = no_log_reason(pod, init=init)
        if why is not None:
            out.append(f"({why})")
            continue
        cs = replica_container(pod) or {}
        previous = init and bool((cs.get("lastState") or {}).get("terminated"))
        try:
            text = await client.pod_logs(pod["metadata"]["name"], namespace, container=CONTAINER_NAME,
                                         previous=previous, tail_lines=num_lines)
        except KubeError as e:
            out.append(f"(the log cannot be read: {e.message or e.reason})")
            continue
        out.append(text.rstrip("\n") if text.strip() else "(the log is empty)")
    return "\n".join(out) + "\n"
