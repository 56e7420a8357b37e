"""What `openscore cluster install` puts in a cluster, and `cluster uninstall` takes out.

One namespace holds a compute's services and its router: the Namespace, the ScoringService CRD
(kube/crd.py), the router's ServiceAccount with a least-privilege Role (it reads services, secrets, pods and
deployments and may only scale deployments, write a service's status and keep its coordination Leases: it
never creates or deletes anything else, so a compromised router cannot start pods), the router Deployment
and its ClusterIP Service, and a NetworkPolicy under which replica pods accept traffic only from router pods.
Everything is server-side applied with one field manager, so a second install changes nothing and an edited
object is put back.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from openscore.kube import crd
from openscore.kube.client import ConflictError, KubeClient, KubeError, NotFoundError
from openscore.kube.object_store import KubernetesStateStore

FIELD_MANAGER = "openscore-install"
ROUTER_NAME = "openscore-router"
ROUTER_PORT = 8080
SERVICE_PORT = 80
CPU_POOL_LABEL = "openscore.io/pool"

# Kubernetes 1.20's server-side apply needs `protocol` spelled out in port lists (their merge key).
# (apiGroup, resource, verbs): all the router may do. No create/delete except its own Leases; tests check it.
ROUTER_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (crd.GROUP, crd.PLURAL, ("get", "list", "watch")),
    (crd.GROUP, f"{crd.PLURAL}/status", ("get", "patch", "update")),
    ("", "secrets", ("get", "list", "watch")),
    ("", "pods", ("get", "list", "watch")),
    ("", "pods/log", ("get",)),          # a failed replica's last lines, for its service's status
    ("", "events", ("get", "list", "watch")),  # the scheduler's reasons, for the status
    ("", "endpoints", ("get", "list", "watch")),
    ("apps", "deployments", ("get", "list", "watch")),
    ("apps", "deployments/scale", ("get", "patch", "update")),
    # which router pod coordinates which service, and which router pods are alive (openscore.kube.leases):
    # the only objects a router creates, and they grant nothing
    ("coordination.k8s.io", "leases", ("get", "list", "watch", "create", "update", "delete")),
)


@dataclass(frozen=True)
class InstallOptions:
    namespace: str
    router_image: str
    replicas: int = 1
    pool: str | None = "cpu"  # the router's node pool (openscore.io/pool); None: any untainted node


def _labels(component: str | None = None) -> dict[str, str]:
    out = {crd.LABEL_MANAGED: crd.MANAGED_BY}
    if component:
        out[crd.LABEL_COMPONENT] = component
    return out


def _meta(name: str, namespace: str | None, component: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(component)}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def router_role(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _meta(ROUTER_NAME, namespace, crd.COMPONENT_ROUTER),
            "rules": [{"apiGroups": [g], "resources": [r], "verbs": list(v)} for g, r, v in ROUTER_RULES]}


def router_deployment(opts: InstallOptions) -> dict[str, Any]:
    selector = _labels(crd.COMPONENT_ROUTER)
    pod_spec: dict[str, Any] = {
        "serviceAccountName": ROUTER_NAME,
        # no service-link variables: the Service `openscore-router` would otherwise put OPENSCORE_ROUTER_PORT=
        # tcp://... into the router's own settings namespace
        "enableServiceLinks": False,
        "containers": [{
            "name": "router",
            "image": opts.router_image,
            "command": ["openscore", "router", "--kubernetes", "--namespace", opts.namespace,
                        "--host", "0.0.0.0", "--port", str(ROUTER_PORT)],
            "ports": [{"name": "http", "containerPort": ROUTER_PORT, "protocol": "TCP"}],
            # who this router is and where the other router pods reach it (docs/router-ha.md)
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": ROUTER_PORT},
                               "periodSeconds": 5, "failureThreshold": 3},
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            "terminationMessagePolicy": "FallbackToLogsOnError",
        }],
    }
    if opts.pool:
        pod_spec["nodeSelector"] = {CPU_POOL_LABEL: opts.pool}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _meta(ROUTER_NAME, opts.namespace, crd.COMPONENT_ROUTER),
            "spec": {"replicas": opts.replicas, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": selector}, "spec": pod_spec}}}


def manifests(opts: InstallOptions) -> list[dict[str, Any]]:
    """Every object of an install, in the order they are applied (the namespace and CRD first)."""
    ns = opts.namespace
    router = _labels(crd.COMPONENT_ROUTER)
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, None)},
        crd.crd_manifest(),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(ROUTER_NAME, ns, crd.COMPONENT_ROUTER)},
        router_role(ns),
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": _meta(ROUTER_NAME, ns, crd.COMPONENT_ROUTER),
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROUTER_NAME},
         "subjects": [{"kind": "ServiceAccount", "name": ROUTER_NAME, "namespace": ns}]},
        router_deployment(opts),
        {"apiVersion": "v1", "kind": "Service", "metadata": _meta(ROUTER_NAME, ns, crd.COMPONENT_ROUTER),
         "spec": {"type": "ClusterIP", "selector": router,
                  "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": ROUTER_PORT,
                             "protocol": "TCP"}]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": _meta("openscore-replicas-from-router", ns),
         "spec": {"podSelector": {"matchLabels": {crd.LABEL_COMPONENT: crd.COMPONENT_REPLICA}},
                  "policyTypes": ["Ingress"],
                  "ingress": [{"from": [{"podSelector": {"matchLabels": router}}]}]}},
    ]


def _describe(obj: dict[str, Any]) -> str:
    ns = obj["metadata"].get("namespace")
    return f"{obj['kind']} {ns + '/' if ns else ''}{obj['metadata']['name']}"


async def install(client: KubeClient, opts: InstallOptions,
                  log: Callable[[str], None] = lambda _line: None) -> list[str]:
    """Server-side apply every object; returns what changed ("created X", "updated X"), empty when the
    cluster already had it all as wanted."""
    changed: list[str] = []
    for obj in manifests(opts):
        api, kind, meta = obj["apiVersion"], obj["kind"], obj["metadata"]
        if kind == "Deployment":  # before the router starts: it reads its Secrets and the services at once
            await _crd_established(client)
            for line in await _router_secrets(client, opts.namespace):
                changed.append(line)
                log(line)
        before = await client.get(api, kind, meta["name"], meta.get("namespace"))
        after = await client.apply(obj, field_manager=FIELD_MANAGER, force=True)
        if before is None:
            line = f"created {_describe(obj)}"
        elif before["metadata"].get("resourceVersion") != after["metadata"].get("resourceVersion"):
            line = f"updated {_describe(obj)}"
        else:
            continue
        changed.append(line)
        log(line)
    return changed


async def _crd_established(client: KubeClient, timeout_s: float = 30.0) -> None:
    """A just-created CRD serves its resources only once Established (about a second)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = await client.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.CRD_NAME)
        conditions = ((got or {}).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions):
            return
        if time.monotonic() > deadline:
            raise KubeError(0, "Timeout", f"CustomResourceDefinition {crd.CRD_NAME} is not Established after "
                                          f"{timeout_s:.0f} s")
        await asyncio.sleep(0.2)


async def _router_secrets(client: KubeClient, namespace: str) -> list[str]:
    """The router's admin key and the token signing key: made once, never replaced by a later install (every
    admin client and token would stop working); the router's Role may not create Secrets itself."""
    out = []
    key = base64.b64encode(secrets.token_urlsafe(32).encode()).decode()
    admin = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": _meta(crd.ADMIN_SECRET, namespace, crd.COMPONENT_ROUTER), "data": {crd.ADMIN_SECRET_KEY: key}}
    try:
        await client.create(admin)
        out.append(f"created {_describe(admin)}")
    except ConflictError:
        pass  # already there: kept
    had = await client.get("v1", "Secret", crd.SIGNING_KEYS_SECRET, namespace)
    await KubernetesStateStore(client, namespace).ensure_signing_key()
    if had is None:
        out.append(f"created Secret {namespace}/{crd.SIGNING_KEYS_SECRET}")
    return out


async def uninstall(client: KubeClient, namespace: str, *, keep_crd: bool = False,
                    log: Callable[[str], None] = lambda _line: None) -> list[str]:
    """Delete what install made, the namespaced objects first; returns what was removed. The namespace goes
    only when install made it (it carries the managed-by label) and the CRD only when no ScoringService is
    left in any namespace (another compute may share the cluster), unless keep_crd."""
    removed: list[str] = []
    opts = InstallOptions(namespace=namespace, router_image="-")
    objs = manifests(opts)
    ns_obj, crd_obj, namespaced = objs[0], objs[1], objs[2:]
    for obj in reversed(namespaced):
        if await client.delete(obj["apiVersion"], obj["kind"], obj["metadata"]["name"], namespace):
            removed.append(f"deleted {_describe(obj)}")
            log(removed[-1])
    for name in (crd.ADMIN_SECRET, crd.SIGNING_KEYS_SECRET):
        if await client.delete("v1", "Secret", name, namespace):
            removed.append(f"deleted Secret {namespace}/{name}")
            log(removed[-1])
    if not keep_crd:
        try:
            left, _ = await client.list(crd.API_VERSION, crd.KIND, namespace="*")
        except NotFoundError:
            left = []
        others = sorted({f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in left
                         if o["metadata"].get("namespace") != namespace})
        if others:
            log(f"kept CustomResourceDefinition {crd.CRD_NAME}: ScoringServices remain ({', '.join(others[:5])})")
        elif await client.delete(crd_obj["apiVersion"], crd_obj["kind"], crd.CRD_NAME):
            removed.append(f"deleted {_describe(crd_obj)}")
            log(removed[-1])
    ns = await client.get("v1", "Namespace", namespace)
    if ns is not None and (ns["metadata"].get("labels") or {}).get(crd.LABEL_MANAGED) == crd.MANAGED_BY \
            and not ns["metadata"].get("deletionTimestamp"):
        await client.delete("v1", "Namespace", namespace)
        removed.append(f"deleted {_describe(ns_obj)}")
        log(removed[-1])
    return removed
