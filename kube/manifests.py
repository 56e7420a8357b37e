"""What a version becomes in a cluster: a Deployment of replica pods and the Secret with their credential.

Pure functions (no I/O), from the router's one `ReplicaPlan` (router/replica_plan.py) and the version's
`InstanceType`, so a test can check every field and the deployer, the in-cluster router and `status` agree
on names. Choices that matter to users:
- a slow `init()` is never killed: a startupProbe on /healthz gives the replica `startup_timeout_s` (600 s by
  default; Azure users raised liveness delays to 500 s) before liveness (livenessProbeRequirements) begins;
- readiness is /readyz (503 until init() is done in every worker, and while draining): the kubelet reads only
  the status code, and /slots answers 200 even when not ready;
- accelerator types roll with maxSurge 0 / maxUnavailable 1 (a surge pod would wait forever for the device
  the old pod holds), CPU types with maxSurge 25 % / maxUnavailable 0; the Deployment's `openscore.io/rollout`
  annotation says which, for the status;
- `FallbackToLogsOnError`, so an init() traceback reaches the pod's termination message;
- no service links in the environment (a Service named `worker` would inject WORKER_* variables, which
  configure the runtime) and no API token in the pod.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from openscore.kube.crd import (
    COMPONENT_REPLICA,
    LABEL_COMPONENT,
    LABEL_MANAGED,
    LABEL_SERVICE,
    LABEL_VERSION,
    MANAGED_BY,
    REPLICA_SECRET_ENV,
)
from openscore.kube.instance_types import InstanceType
from openscore.router.config import VersionSpec
from openscore.router.replica_plan import DEFAULT_PORT, Probe, ReplicaPlan, replica_plan

IMAGE_PYTHON = "/opt/openscore/venv/bin/python"  # the runtime image's venv (images/Dockerfile)
POD_HOST = "0.0.0.0"
CONTAINER_NAME = "replica"
REPLICA_SECRET_KEY = "secret"
MAX_NAME = 50  # leaves room for the ReplicaSet and pod suffixes within a 63-character pod hostname
ANNOTATION_TEMPLATE_HASH = "openscore.io/template-hash"  # on the pod template: which launch a pod runs
ANNOTATION_ROLLOUT = "openscore.io/rollout"              # on the Deployment: how it rolls
ANNOTATION_INSTANCE_TYPE = "openscore.io/instance-type"
ROLLOUT_SURGE = "maxSurge=25%,maxUnavailable=0"
ROLLOUT_NO_SURGE = "maxSurge=0,maxUnavailable=1"  # accelerator pools: never wait for a device the old pod holds
DEFAULT_STARTUP_TIMEOUT_S = 600.0
STARTUP_PERIOD_S = 2
READINESS_PATH = "/readyz"  # the kubelet reads the status code; /slots is 200 even when not ready
GRACE_MARGIN_S = 5  # past the drain time: the supervisor's own shutdown after its workers drained
_LABEL_RE = re.compile(r"[^a-z0-9-]+")


def deployment_name(service: str, version: str) -> str:
    """`<service>-<version>`, a DNS-1123 label of at most 50 characters. A hash of the pair is appended when
    the name had to be cut, or when the service's own name has a '-' (so that "a-b"/"c" and "a"/"b-c" never
    name one Deployment)."""
    base = _LABEL_RE.sub("-", f"{service}-{version}".lower()).strip("-")
    if len(base) <= MAX_NAME and "-" not in service:
        return base
    digest = hashlib.sha256(f"{service}/{version}".encode()).hexdigest()[:8]
    return f"{base[:MAX_NAME - 9].rstrip('-')}-{digest}"


def replica_secret_name(service: str, version: str) -> str:
    """The version's replica credential Secret: `<deployment>-replica` (crd.replica_secret)."""
    return f"{deployment_name(service, version)}-replica"


def labels(service: str, version: str) -> dict[str, str]:
    """What selects a version's pods (the Deployment's immutable selector, and the target's watch)."""
    return {LABEL_SERVICE: service, LABEL_VERSION: version, LABEL_COMPONENT: COMPONENT_REPLICA,
            LABEL_MANAGED: MANAGED_BY}


def pod_plan(spec: VersionSpec, *, service: str, graceful_s: float = 10.0,
             readiness_period_s: float = 2.0, readiness_timeout_s: float = 2.0) -> ReplicaPlan:
    """The replica plan for a pod: listening on 0.0.0.0:5001 (Azure's port), run by the image's interpreter
    (a host's `pythonInterpreter` means nothing in the image). The spec's paths must be the image's
    (/var/azureml-app, its azureml-models folder)."""
    return replica_plan(replace(spec, python=None), service=service, port=DEFAULT_PORT, host=POD_HOST,
                        python=IMAGE_PYTHON, graceful_s=graceful_s, readiness_period_s=readiness_period_s,
                        readiness_timeout_s=readiness_timeout_s)


def _secs(v: float) -> int:
    return max(1, math.ceil(v))


def _http_probe(path: str, p: Probe, *, failure_threshold: int, success_threshold: int = 1,
                period_s: float | None = None) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": p.port, "scheme": "HTTP"},
            "periodSeconds": _secs(period_s if period_s is not None else p.period_s),
            "timeoutSeconds": _secs(p.timeout_s), "failureThreshold": max(1, failure_threshold),
            "successThreshold": success_threshold}


def _command(plan: ReplicaPlan, device: str) -> list[str]:
    argv = list(plan.argv)
    if argv[1:3] != ["-m", "openscore"]:
        raise ValueError(f"the plan's command must be `<python> -m openscore serve ...`, got {argv[:4]}")
    if plan.host != POD_HOST or plan.port != DEFAULT_PORT:
        raise ValueError(f"a pod's replica listens on {POD_HOST}:{DEFAULT_PORT} (make the plan with pod_plan()), "
                         f"this plan says {plan.host}:{plan.port}")
    argv[0] = IMAGE_PYTHON
    if not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv += ["--device", device]
    return argv


def template_hash(template: Mapping[str, Any]) -> str:
    """A digest of a pod template (what a replica runs): pods whose annotation differs from their
    Deployment's current template are outdated."""
    canon = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def deployment_manifest(plan: ReplicaPlan, it: InstanceType, *, namespace: str, image: str,
                        owner: Mapping[str, Any] | None, replica_secret_name: str, device: str | None = None,
                        replicas: int | None = None, startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
                        revision_history_limit: int = 3, progress_deadline_s: int | None = None,
                        image_pull_policy: str = "IfNotPresent") -> dict[str, Any]:
    """The apps/v1 Deployment of one version. `device` defaults to the instance type's. `replicas` None leaves
    the count out, so a server-side apply never takes it back from whoever scales (the router's autoscaler).
    `startup_timeout_s`: how long init() may take before the pod counts as stuck (at least what the user's
    liveness initialDelaySeconds asked for)."""
    name = deployment_name(plan.service, plan.version)
    device = device or it.device
    sel = labels(plan.service, plan.version)
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in plan.environment.items()
                                 if k != REPLICA_SECRET_ENV]
    env.append({"name": REPLICA_SECRET_ENV, "valueFrom": {"secretKeyRef": {
        "name": replica_secret_name, "key": REPLICA_SECRET_KEY}}})  # last: a service's environment cannot set it
    live = plan.liveness
    startup_budget = max(startup_timeout_s, live.initial_delay_s + live.period_s * live.failure_threshold)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME, "image": image, "imagePullPolicy": image_pull_policy,
        "command": _command(plan, device), "workingDir": plan.working_dir,
        "ports": [{"name": "http", "containerPort": plan.port, "protocol": "TCP"}],
        "env": env, "resources": it.resources(),
        "startupProbe": _http_probe(plan.liveness.path, live, period_s=STARTUP_PERIOD_S,
                                    failure_threshold=math.ceil(startup_budget / STARTUP_PERIOD_S)),
        # after the startup probe succeeded: its initial delay is the startup probe's job
        "livenessProbe": _http_probe(plan.liveness.path, live, failure_threshold=live.failure_threshold),
        # three misses, not one: a /readyz slow under load must not flap the pod out of routing (a stopping
        # pod leaves routing at once through its deletionTimestamp, not through this probe)
        "readinessProbe": _http_probe(READINESS_PATH, plan.readiness,
                                      failure_threshold=max(3, plan.readiness.failure_threshold),
                                      success_threshold=max(1, plan.readiness.success_threshold)),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": _secs(plan.graceful_s) + GRACE_MARGIN_S,
        "enableServiceLinks": False, "automountServiceAccountToken": False,
    }
    if it.node_selector:
        pod_spec["nodeSelector"] = dict(it.node_selector)
    if it.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in it.tolerations]
    template: dict[str, Any] = {"metadata": {"labels": dict(sel)}, "spec": pod_spec}
    template["metadata"]["annotations"] = {ANNOTATION_TEMPLATE_HASH: template_hash(template)}
    accelerator = it.is_accelerator or device not in ("cpu", "auto")
    strategy = ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}} if accelerator
                else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}})
    meta: dict[str, Any] = {
        "name": name, "namespace": namespace, "labels": dict(sel),
        "annotations": {ANNOTATION_ROLLOUT: ROLLOUT_NO_SURGE if accelerator else ROLLOUT_SURGE,
                        ANNOTATION_INSTANCE_TYPE: it.name}}
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    spec: dict[str, Any] = {
        "selector": {"matchLabels": dict(sel)}, "template": template, "strategy": strategy,
        "revisionHistoryLimit": revision_history_limit,
        "progressDeadlineSeconds": progress_deadline_s if progress_deadline_s is not None
        else _secs(startup_budget) + 60,
    }
    if replicas is not None:
        spec = {"replicas": replicas, **spec}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta, "spec": spec}


def replica_secret_manifest(name: str, namespace: str, owner: Mapping[str, Any] | None, value: str, *,
                            service: str | None = None, version: str | None = None) -> dict[str, Any]:
    """The Secret holding a version's replica credential (data `secret`), owned by the service."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {LABEL_MANAGED: MANAGED_BY}}
    if service is not None:
        meta["labels"][LABEL_SERVICE] = service
    if version is not None:
        meta["labels"][LABEL_VERSION] = version
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {REPLICA_SECRET_KEY: base64.b64encode(value.encode()).decode()}}


def secret_value(secret: Mapping[str, Any]) -> str:
    """The credential held by a replica Secret as read from the server ('' if absent)."""
    raw = (secret.get("data") or {}).get(REPLICA_SECRET_KEY)
    return base64.b64decode(raw).decode() if raw else ""
