"""Azure states from a real v1.20 cluster: what `service show`, `get-logs` and `wait_for_deployment` tell a
user about a service whose pods cannot be scheduled, whose init() raises, whose image tag does not exist, which
runs out of memory, or which comes up healthy. Deployments are the real ones (kube/manifests.py) on the real
node (node-cpu-0) or the fake GPU pool; the waits are the watch-based wait_for_service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from openscore.images.deployment import build_deployment_layer
from openscore.images.recipe import ImageRef
from openscore.images.registry import Registry
from openscore.kube import crd
from openscore.kube.client import KubeClient, NotFoundError
from openscore.kube.instance_types import DEFAULT_INSTANCE_TYPE, InstanceType
from openscore.kube.logs import service_logs
from openscore.kube.manifests import (
    IMAGE_PYTHON,
    deployment_manifest,
    pod_plan,
    replica_secret_manifest,
    replica_secret_name,
)
from openscore.kube.status import (
    FAILED,
    HEALTHY,
    UNSCHEDULABLE,
    ServiceStatus,
    read_service_status,
    status_document,
    write_status,
)
from openscore.kube.wait import wait_for_service
from openscore.router.config import VersionSpec

LONG_TIMEOUT_S = 600.0  # what a user passes; every failure here arrives in seconds
GPU_X3 = InstanceType(
    name="gpu-x3", requests={"cpu": "1", "memory": "1Gi"}, limits={"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "3"},
    node_selector={"agentpool": "gpu"}, accelerator="cuda",
    tolerations=({"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"},))
SMALL = InstanceType(name="small", requests={"cpu": "100m", "memory": "128Mi"},
                     limits={"cpu": "1", "memory": "128Mi"})

INIT_RAISES = '''
def init():
    print("loading the model")
    raise ValueError("no model file at /var/azureml-app/azureml-models/m/1")

def run(data):
    return data
'''
ECHO = '''
def init():
    print("echo ready")

def run(data):
    return {"echo": data}
'''


def run(coro_fn: Callable[[KubeClient], Awaitable[Any]], cluster: Any, namespace: str) -> Any:
    async def main() -> Any:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig), namespace=namespace) as c:
            return await coro_fn(c)
    return asyncio.run(main())


@pytest.fixture(scope="module")
def crd_installed(cluster: Any) -> None:
    async def install() -> None:
        async with KubeClient.from_kubeconfig(str(cluster.kubeconfig)) as c:
            await c.apply(crd.crd_manifest())
            for _ in range(300):
                got = await c.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd.CRD_NAME)
                if any(x["type"] == "Established" and x["status"] == "True"
                       for x in (got or {}).get("status", {}).get("conditions", [])):
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the ScoringService CRD never became Established")
    asyncio.run(install())


def app_image(runtime_image: str, registry: str, tmp_path: Path, score_py: str) -> str:
    """The runtime image + a layer with /var/azureml-app/score.py (what the deployer pushes)."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "score.py").write_text(score_py)
    name, tag = runtime_image.rsplit(":", 1)
    repo = name.split("/", 1)[1]
    digest = Registry(registry).manifest_digest(repo, tag)
    assert digest, f"{runtime_image} is not in {registry}"
    return build_deployment_layer(ImageRef(name, tag, digest), app, registry=registry).by_digest


async def deploy(c: KubeClient, ns: str, name: str, image: str, it: InstanceType = DEFAULT_INSTANCE_TYPE,
                 command: list[str] | None = None) -> dict[str, Any]:
    """A ScoringService (one `aks` version named like the service) with its replica Secret and Deployment."""
    cr = await c.apply({"apiVersion": crd.API_VERSION, "kind": crd.KIND, "metadata": {"name": name, "namespace": ns},
                        "spec": {"config": {"name": name, "computeType": "aks"}}})
    owner = crd.owner_reference(cr)
    secret = replica_secret_name(name, name)
    await c.apply(replica_secret_manifest(secret, ns, owner, "replica-credential", service=name, version=name))
    plan = pod_plan(VersionSpec(name=name, entry_script="/var/azureml-app/score.py", app_root="/var/azureml-app"),
                    service=name)
    dep = deployment_manifest(plan, it, namespace=ns, image=image, owner=owner, replica_secret_name=secret,
                              replicas=1)
    if command is not None:
        dep["spec"]["template"]["spec"]["containers"][0]["command"] = command
    return await c.apply(dep)


async def timed_wait(c: KubeClient, ns: str, name: str, **kw: Any) -> tuple[ServiceStatus, float, list[str]]:
    lines: list[str] = []
    t0 = time.monotonic()
    st = await wait_for_service(c, ns, name, timeout_s=LONG_TIMEOUT_S, show_output=lines.append, **kw)
    left = {t for t in asyncio.all_tasks() if not t.done()} - {asyncio.current_task()}
    assert not left, f"the wait left tasks running (its watches): {left}"
    return st, time.monotonic() - t0, lines


def detail(st: ServiceStatus) -> dict[str, Any]:
    assert st.error is not None, st
    return st.error["details"][0]


def test_a_gpu_service_larger_than_the_pool_is_unschedulable_with_the_schedulers_text_then_failed(
        cluster: Any, namespace: str, runtime_image: str, crd_installed: None) -> None:
    async def scenario(c: KubeClient) -> None:
        await deploy(c, namespace, "big", runtime_image, GPU_X3)
        st = None
        for _ in range(200):
            st = await read_service_status(c, namespace, "big")
            if st.state == UNSCHEDULABLE:
                break
            await asyncio.sleep(0.1)
        assert st is not None and st.state == UNSCHEDULABLE, st
        (pod,) = (await c.list("v1", "Pod", namespace))[0]
        (cond,) = [x for x in pod["status"]["conditions"] if x["type"] == "PodScheduled"]
        assert st.error == {"code": "PodUnschedulable", "message": cond["message"],
                            "details": [{"code": "PodUnschedulable", "message": cond["message"],
                                         "pod": pod["metadata"]["name"]}]}
        assert "Insufficient nvidia.com/gpu" in cond["message"] and cond["message"].startswith("0/4 nodes")
        # the CR says it too (kubectl get osvc shows State/Reason)
        assert await write_status(c, namespace, "big", st)
        assert not await write_status(c, namespace, "big", st), "an unchanged status is written again"
        got = await c.get(crd.API_VERSION, crd.KIND, "big", namespace)
        assert got is not None and got["status"]["state"] == UNSCHEDULABLE
        assert got["status"]["reason"] == "PodUnschedulable"
        logs = await service_logs(c, namespace, "big")
        assert f"no logs yet: the pod is Pending, not scheduled: {cond['message']}" in logs

        # a wait that times out returns the state then (the caller says it timed out)
        short = await wait_for_service(c, namespace, "big", timeout_s=1)
        assert short.state == UNSCHEDULABLE and short.error == st.error
        with pytest.raises(NotFoundError):
            await wait_for_service(c, namespace, "no-such-service", timeout_s=LONG_TIMEOUT_S)

        final, took, lines = await timed_wait(c, namespace, "big", unschedulable_deadline_s=5)
        assert final.state == FAILED, final
        assert detail(final)["code"] == "PodUnschedulable"
        assert detail(final)["message"] == (
            "Couldn't schedule because the kubernetes cluster didn't have available resources after trying for "
            "00:00:05. You can address this error by either adding more nodes, changing the SKU of your nodes or "
            "changing the resource requirements of your service.")
        assert final.error is not None and final.error["details"][1]["message"] == cond["message"]
        assert took < LONG_TIMEOUT_S / 4, f"the wait took {took:.0f} s of its {LONG_TIMEOUT_S:.0f} s"
        assert f"State: Unschedulable: {cond['message']}" in lines or lines[0].startswith("State: Failed")
    run(scenario, cluster, namespace)


def test_an_init_that_raises_is_failed_with_its_traceback_and_exit_code_and_init_logs_show_the_run(
        cluster: Any, namespace: str, runtime_image: str, crd_installed: None, tmp_path: Path) -> None:
    image = app_image(runtime_image, cluster.registry, tmp_path, INIT_RAISES)

    async def scenario(c: KubeClient) -> None:
        await deploy(c, namespace, "broken", image)
        st, took, lines = await timed_wait(c, namespace, "broken")
        assert st.state == FAILED, (st, lines)
        d = detail(st)
        assert d["code"] == "UserScriptInitFailed" and d["exitCode"] == 3, d
        assert "ValueError: no model file at /var/azureml-app/azureml-models/m/1" in d["message"]
        assert took < LONG_TIMEOUT_S / 4, f"the wait took {took:.0f} s of its {LONG_TIMEOUT_S:.0f} s"
        assert any(line.startswith("State: Failed") for line in lines)
        logs = await service_logs(c, namespace, "broken", init=True)
        assert logs.startswith("=== pod broken-"), logs
        assert "loading the model" in logs and "ValueError: no model file" in logs, logs
        doc = status_document(st)
        assert doc["state"] == FAILED and doc["reason"] == "UserScriptInitFailed"
    run(scenario, cluster, namespace)


def test_a_missing_image_tag_is_failed_with_the_pull_error(
        cluster: Any, namespace: str, runtime_image: str, crd_installed: None) -> None:
    missing = runtime_image.rsplit(":", 1)[0] + ":no-such-tag"

    async def scenario(c: KubeClient) -> None:
        await deploy(c, namespace, "nopull", missing)
        st, took, lines = await timed_wait(c, namespace, "nopull")
        assert st.state == FAILED, (st, lines)
        d = detail(st)
        assert d["code"] == "ImagePullLoopBackOff", d
        assert missing in d["message"] and "not found" in d["message"], d
        assert took < LONG_TIMEOUT_S / 4
        assert any("Pulling" in line for line in lines), lines
    run(scenario, cluster, namespace)


def test_a_container_over_its_memory_limit_is_pod_out_of_memory(
        cluster: Any, namespace: str, runtime_image: str, crd_installed: None) -> None:
    hog = [IMAGE_PYTHON, "-c", "x = b'x' * (1024 * 1024 * 1024); import time; time.sleep(600)"]

    async def scenario(c: KubeClient) -> None:
        await deploy(c, namespace, "hog", runtime_image, SMALL, command=hog)
        st, took, lines = await timed_wait(c, namespace, "hog")
        assert st.state == FAILED, (st, lines)
        d = detail(st)
        assert d["code"] == "PodOutOfMemory" and "OOMKilled" in d["message"], d
        assert d["exitCode"] == 137
        assert took < LONG_TIMEOUT_S / 4
    run(scenario, cluster, namespace)


def test_a_healthy_service_goes_transitioning_then_healthy(
        cluster: Any, namespace: str, runtime_image: str, crd_installed: None, tmp_path: Path) -> None:
    image = app_image(runtime_image, cluster.registry, tmp_path, ECHO)

    async def scenario(c: KubeClient) -> None:
        dep = await deploy(c, namespace, "echo", image)
        first = await read_service_status(c, namespace, "echo")
        assert first.state == "Transitioning", first
        st, _, lines = await timed_wait(c, namespace, "echo")
        assert st.state == HEALTHY, (st, lines)
        said = [line for line in lines if line.startswith("State: ")]
        assert said[0] == "State: Transitioning" and said[-1] == "State: Healthy", lines
        assert st.versions["echo"].ready == 1 and st.versions["echo"].rollout == "complete"
        cr = await c.get(crd.API_VERSION, crd.KIND, "echo", namespace)
        assert cr is not None and st.observed_generation == cr["metadata"]["generation"]
        # a new spec the Deployment controller has not settled: no longer Healthy
        changed: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {
            "name": dep["metadata"]["name"], "namespace": namespace}, "spec": {"template": dep["spec"]["template"]}}
        changed["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": "1"})
        await c.apply(changed, field_manager="a-user")
        again = await read_service_status(c, namespace, "echo")
        assert again.state == "Transitioning", again
        logs = await service_logs(c, namespace, "echo")
        assert "echo ready" in logs
    run(scenario, cluster, namespace)

