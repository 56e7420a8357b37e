"""The test cluster itself: the node pools the other cluster tests rely on, the real scheduler's reasons, and
(with the real node) pods that really run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.cluster.conftest import ClusterInfo

GPU_TOLERATION = {"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}


def pod(name: str, image: str = "localhost/none:1", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": [{"name": "main", "image": image, **spec.pop("container", {})}], **spec}}


def apply(cluster: ClusterInfo, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(obj))


def wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_node_pools_have_their_labels_taints_and_capacity(cluster: ClusterInfo) -> None:
    nodes = {n["metadata"]["name"]: n for n in cluster.kubectl_json("get", "nodes")["items"]}
    for name in ("gpu-0", "gpu-1"):
        node = nodes[name]
        labels = node["metadata"]["labels"]
        assert (labels["openscore.io/pool"], labels["agentpool"], labels["accelerator"]) == ("gpu", "gpu", "nvidia")
        assert node["spec"]["taints"] == [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}]
        alloc = node["status"]["allocatable"]
        assert (alloc["cpu"], alloc["memory"], alloc["pods"], alloc["nvidia.com/gpu"]) == ("8", "32Gi", "110", "1")
    fpga = nodes["fpga-0"]
    assert fpga["metadata"]["labels"]["openscore.io/pool"] == "fpga"
    assert fpga["spec"]["taints"] == [{"key": "sku", "value": "fpga", "effect": "NoSchedule"}]
    assert fpga["status"]["allocatable"]["xilinx.com/fpga-u250"] == "1"
    if cluster.real_node:
        real = nodes[cluster.real_node]
        assert real["metadata"]["labels"]["openscore.io/pool"] == "cpu"
        assert not real["spec"].get("taints")
    for node in nodes.values():
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]


def test_a_gpu_pod_runs_on_a_gpu_node_and_its_delete_finishes(cluster: ClusterInfo, namespace: str) -> None:
    apply(cluster, namespace, pod("g", tolerations=[GPU_TOLERATION], nodeSelector={"openscore.io/pool": "gpu"},
                                  container={"resources": {"limits": {"nvidia.com/gpu": "1"}}}))

    def running() -> Any:
        p = cluster.kubectl_json("-n", namespace, "get", "pod", "g")
        ready = [c for c in p["status"].get("conditions", []) if c["type"] == "Ready" and c["status"] == "True"]
        return p if ready and p["status"]["phase"] == "Running" else None
    p = wait_for(running, "the gpu pod Running+Ready")
    assert p["spec"]["nodeName"] in ("gpu-0", "gpu-1")
    assert p["status"]["podIP"].startswith("10.244.1.")
    cluster.kubectl("-n", namespace, "delete", "pod", "g", "--timeout=60s")
    assert cluster.kubectl("-n", namespace, "get", "pods", "-o", "name").stdout.strip() == ""


def test_a_pod_asking_for_three_gpus_is_unschedulable_with_the_schedulers_reasons(
        cluster: ClusterInfo, namespace: str) -> None:
    apply(cluster, namespace, pod("big", tolerations=[GPU_TOLERATION],
                                  container={"resources": {"limits": {"nvidia.com/gpu": "3"}}}))

    def message() -> str | None:
        events = cluster.kubectl_json("-n", namespace, "get", "events",
                                      "--field-selector", "reason=FailedScheduling")["items"]
        return events[-1]["message"] if events else None
    msg = wait_for(message, "a FailedScheduling event")
    assert msg.startswith("0/")
    assert "2 Insufficient nvidia.com/gpu" in msg
    assert "had taint {sku: fpga}, that the pod didn't tolerate" in msg
    p = cluster.kubectl_json("-n", namespace, "get", "pod", "big")
    assert p["status"]["phase"] == "Pending"
    assert [c["reason"] for c in p["status"]["conditions"] if c["type"] == "PodScheduled"] == ["Unschedulable"]


@pytest.mark.parametrize("pool", ["fpga"])
def test_an_fpga_pod_lands_on_the_fpga_node(cluster: ClusterInfo, namespace: str, pool: str) -> None:
    apply(cluster, namespace, pod("f", tolerations=[{"key": "sku", "operator": "Equal", "value": pool,
                                                     "effect": "NoSchedule"}],
                                  container={"resources": {"limits": {"xilinx.com/fpga-u250": "1"}}}))
    node = wait_for(lambda: cluster.kubectl_json("-n", namespace, "get", "pod", "f")["spec"].get("nodeName"),
                    "the fpga pod scheduled")
    assert node == "fpga-0"
