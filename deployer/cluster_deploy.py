"""Deploying a service to an attached Kubernetes compute (`--ct <compute>`), and reading it back.

A deploy: the version's packaged folder (packaging.build_package: app + azureml-models) becomes one layer on
the compute's runtime image (images/deployment.py), pushed to the compute's registry; the router document
names the in-image paths and the layer image by digest; it is written as the ScoringService CR through the
router's own StateStore (so the in-cluster router reads exactly what it would have been given), the CR's
`spec.deployment` is recorded with the deployer's own field manager, and each version's Deployment and
replica Secret are applied by KubernetesTarget, owned by the CR. Deleting the CR deletes everything (GC).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from openscore.deployer.computes import Compute, run_async, with_client
from openscore.deployer.errors import DeployError

if TYPE_CHECKING:
    from openscore.deployer.environments import EnvironmentDefinition
    from openscore.deployer.packaging import Package
    from openscore.images.recipe import ImageRef
    from openscore.kube.client import KubeClient
    from openscore.kube.status import ServiceStatus
    from openscore.router.config import VersionSpec

APP_ROOT = "/var/azureml-app"
RECORD_MANAGER = "openscore-deployer-record"
DELETE_WAIT_S = 120.0
# what the runtime image has (openscore[cpu,router,kubernetes] stands in for Azure's serving packages)
RUNTIME_PACKAGES = frozenset({"azureml-defaults", "azureml-inference-server-http", "inference-schema",
                              "openscore"})
Log = Callable[[str], None]


def runtime_image(compute: Compute) -> str:
    if compute.runtime_image:
        return compute.runtime_image
    if compute.registry:
        return f"{compute.registry}/openscore:cpu"
    raise DeployError(f"compute {compute.name} has neither a runtime image nor a registry (attach it with "
                      "--registry or --runtime-image)")


def check_environment(environment: EnvironmentDefinition | None, compute: Compute) -> None:
    """Refused before anything is written: pip packages the runtime image lacks (an environment image for a
    cluster is not built yet)."""
    if environment is None or environment.user_managed_dependencies:
        return
    from openscore.images.recipe import canonical_name
    extra = [p for p in environment.resolved_packages() if canonical_name(p) not in RUNTIME_PACKAGES]
    if extra:
        raise DeployError(f"environment {environment.name or '(unnamed)'} needs pip packages the runtime image "
                          f"{runtime_image(compute)} lacks ({', '.join(extra)}): building environment images "
                          "for a cluster compute is not available yet; use a runtime image that has them "
                          "(`compute attach --runtime-image`) and an environment without them")


def _image_ref(reference: str) -> ImageRef:
    """`host/repo:tag` or `host/repo@sha256:...` with its manifest digest from the registry."""
    from openscore.images.errors import ImageError
    from openscore.images.recipe import ImageRef
    from openscore.images.registry import Registry
    if "@" in reference:
        name, digest = reference.split("@", 1)
        tag = digest.removeprefix("sha256:")[:20]
    else:
        slash = reference.rfind("/")
        name, _, tag = reference.rpartition(":") if reference.rfind(":") > slash else (reference, "", "latest")
        digest = ""
    if "/" not in name:
        raise DeployError(f"runtime image {reference} must name its registry (HOST[:PORT]/NAME:TAG)")
    try:
        found = Registry(name.split("/", 1)[0]).manifest_digest(name.split("/", 1)[1], digest or tag)
    except ImageError as e:
        raise DeployError(f"runtime image {reference}: {e}") from None
    if not found:
        raise DeployError(f"runtime image {reference} is not in its registry")
    return ImageRef(name, tag, found)


def build_app_image(compute: Compute, package: Package, log: Log) -> str:
    """The packaged folder as one layer on the runtime image, pushed to the compute's registry; by digest."""
    from openscore.images.deployment import build_deployment_layer
    from openscore.images.errors import ImageError
    base = _image_ref(runtime_image(compute))
    registry = compute.registry or base.registry
    try:
        image = build_deployment_layer(base, app_dir=package.app_root, registry=registry)
    except ImageError as e:
        raise DeployError(f"building the app image on {base.by_digest}: {e}") from None
    log(f"App image {image.by_digest}{' (cached)' if image.cached else ''}")
    return image.by_digest


def cluster_keys(package: Package, image: str) -> dict[str, Any]:
    """The inference half of the router's version document, with the image's paths (not the host's)."""
    rel = package.entry_script.relative_to(package.app_root).as_posix()
    doc: dict[str, Any] = {"entryScript": f"{APP_ROOT}/{rel}", "sourceDirectory": APP_ROOT,
                           "environmentVariables": dict(package.environment_variables), "image": image}
    if package.model_dir:
        doc["replicaArgs"] = ["--model-dir", package.model_dir]
    return doc


def publish(compute: Compute, name: str, doc: Mapping[str, Any], deployment: Mapping[str, Any]) -> None:
    """The router document as the ScoringService, its deployment record, then each version's Deployment."""
    from openscore.router.config import ConfigError

    async def work(client: KubeClient) -> None:
        from openscore.kube import crd
        from openscore.kube import instance_types as it
        from openscore.kube.manifests import deployment_name
        from openscore.kube.object_store import KubernetesStateStore
        from openscore.kube.target import KubernetesTarget
        ns = compute.namespace
        store = KubernetesStateStore(client, ns)
        try:
            record = await store.put_service(name, doc)
        except ConfigError as e:
            raise DeployError(f"Invalid configuration, {e}") from None
        cr = await client.apply({"apiVersion": crd.API_VERSION, "kind": crd.KIND,
                                 "metadata": {"name": name, "namespace": ns},
                                 "spec": {"deployment": dict(deployment)}}, field_manager=RECORD_MANAGER)
        owner = crd.owner_reference(cr)
        types = compute.instance_types()
        fpga = compute.fpga_resource or it.DEFAULT_FPGA_RESOURCE

        async def owner_for(key: Any) -> Mapping[str, Any]:
            return owner

        target = KubernetesTarget(client, ns, manage_deployments=True, owner_for=owner_for,
                                  instance_type_for=lambda key, spec: it.resolve(spec, types, fpga_resource=fpga))
        try:
            for vname, vspec in record.spec.versions.items():
                current = await client.get("apps/v1", "Deployment", deployment_name(name, vname), ns)
                count = (current or {}).get("spec", {}).get("replicas")
                await target.deploy((name, vname), vspec, replica_count(vspec, count))
        finally:
            await target.stop()
        deps, _ = await client.list("apps/v1", "Deployment", ns, label_selector={crd.LABEL_SERVICE: name})
        for d in deps:  # versions the service no longer has
            if (d["metadata"].get("labels") or {}).get(crd.LABEL_VERSION) not in record.spec.versions:
                await client.delete("apps/v1", "Deployment", d["metadata"]["name"], ns)
                await client.delete("v1", "Secret", crd.replica_secret(d["metadata"]["name"]), ns)

    run_async(with_client(compute, work))


def replica_count(spec: VersionSpec, current: int | None) -> int:
    """A fixed numReplicas is applied; an autoscaled version keeps the count its Deployment has now (the
    autoscaler's), within the new min..max."""
    if spec.num_replicas is not None or current is None:
        return spec.initial_replicas
    return max(spec.autoscale.min_replicas, min(spec.autoscale.max_replicas, int(current)))


def status(compute: Compute, name: str) -> ServiceStatus | None:
    """Azure's state of the service in the cluster now; None when its ScoringService is gone."""
    async def work(client: KubeClient) -> ServiceStatus | None:
        from openscore.kube import crd
        from openscore.kube.status import read_service_status
        if await client.get(crd.API_VERSION, crd.KIND, name, compute.namespace) is None:
            return None
        return await read_service_status(client, compute.namespace, name)
    result: ServiceStatus | None = run_async(with_client(compute, work))
    return result


def wait(compute: Compute, name: str, timeout_s: float, say: Log | None) -> ServiceStatus:
    async def work(client: KubeClient) -> ServiceStatus:
        from openscore.kube.wait import wait_for_service
        return await wait_for_service(client, compute.namespace, name, timeout_s=timeout_s, show_output=say)
    result: ServiceStatus = run_async(with_client(compute, work))
    return result


def logs(compute: Compute, name: str, *, init: bool, num_lines: int) -> str:
    async def work(client: KubeClient) -> str:
        from openscore.kube.logs import service_logs
        return await service_logs(client, compute.namespace, name, init=init, num_lines=num_lines)
    text: str = run_async(with_client(compute, work))
    return text


def base_url(compute: Compute) -> str | None:
    """`http://<ClusterIP of the router's Service>`; None before `openscore cluster install`."""
    async def work(client: KubeClient) -> str | None:
        from openscore.kube.install import ROUTER_NAME, SERVICE_PORT
        svc = await client.get("v1", "Service", ROUTER_NAME, compute.namespace)
        ip = ((svc or {}).get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            return None
        return f"http://{ip}" if SERVICE_PORT == 80 else f"http://{ip}:{SERVICE_PORT}"
    url: str | None = run_async(with_client(compute, work))
    return url


def get_keys(compute: Compute, name: str) -> tuple[str, str]:
    async def work(client: KubeClient) -> tuple[str, str]:
        from openscore.kube.object_store import KubernetesStateStore
        keys = await KubernetesStateStore(client, compute.namespace).get_keys(name)
        if keys is None:
            raise DeployError(f"service {name} has no keys Secret in namespace {compute.namespace}")
        return keys.primary, keys.secondary
    result: tuple[str, str] = run_async(with_client(compute, work))
    return result


def regen_key(compute: Compute, name: str, key: str, value: str | None) -> tuple[str, str]:
    async def work(client: KubeClient) -> tuple[str, str]:
        from openscore.kube.object_store import KubernetesStateStore
        keys = await KubernetesStateStore(client, compute.namespace).set_key(name, key, value)
        return keys.primary, keys.secondary
    result: tuple[str, str] = run_async(with_client(compute, work))
    return result


def score(url: str, data: bytes, key: str | None, timeout_s: float = 60.0) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        raise DeployError(f"the scoring URI {url} cannot be reached: {e}") from None


def delete(compute: Compute, name: str, log: Log, wait_s: float = DELETE_WAIT_S) -> None:
    """Delete the ScoringService (its Deployments, Secrets and pods go with the GC), then wait until nothing
    labelled with the service is left; past `wait_s`, say what remains."""
    async def work(client: KubeClient) -> list[str]:
        from openscore.kube import crd
        ns = compute.namespace
        await client.delete(crd.API_VERSION, crd.KIND, name, ns, propagation="Background")
        sel = {crd.LABEL_SERVICE: name}
        end = time.monotonic() + wait_s
        while True:
            left = []
            for api, kind in (("apps/v1", "Deployment"), ("apps/v1", "ReplicaSet"), ("v1", "Pod"),
                              ("v1", "Secret")):
                items, _ = await client.list(api, kind, ns, label_selector=sel)
                left += [f"{kind}/{o['metadata']['name']}" for o in items]
            if await client.get(crd.API_VERSION, crd.KIND, name, ns) is not None:
                left.append(f"{crd.KIND}/{name}")
            if not left or time.monotonic() > end:
                return left
            import asyncio
            await asyncio.sleep(0.5)

    left: list[str] = run_async(with_client(compute, work))
    if left:
        log(f"Warning: after {wait_s:g} s these objects of service {name} are still in namespace "
            f"{compute.namespace}: {', '.join(left)}")


def deployment_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """`spec.deployment`: what was deployed (models, image, inference) per version."""
    return {"versions": {n: {"models": list(v.get("models", [])), "image": v["package"].get("image"),
                             "inference": v.get("inference", {})}
                         for n, v in record["versions"].items()},
            "models": sorted({m for v in record["versions"].values() for m in v.get("models", [])})}


def error_json(st: ServiceStatus) -> str:
    return json.dumps(st.error, indent=2)


__all__ = ["APP_ROOT", "build_app_image", "check_environment", "cluster_keys", "delete", "publish",
           "status", "wait"]
