"""The test cluster itself: the node pools the other cluster tests rely on, the real scheduler's reasons, and
(with the real node) pods that really run."""

from __future__ import annotations

import json
import os
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
    assert "Insufficient nvidia.com/gpu" in msg
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


API_PROBE = """
import json, os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
ctx = ssl.create_default_context(cafile=sa + "ca.crt")
url = "https://%s:%s/api/v1/namespaces/%s/pods" % (os.environ["KUBERNETES_SERVICE_HOST"],
      os.environ["KUBERNETES_SERVICE_PORT"], open(sa + "namespace").read())
req = urllib.request.Request(url, headers={"Authorization": "Bearer " + open(sa + "token").read()})
try:
    urllib.request.urlopen(req, context=ctx)
    print("allowed")
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["message"])
"""


def real_node(cluster: ClusterInfo) -> str:
    if not cluster.real_node:
        pytest.skip("this cluster has no real node")
    return cluster.real_node


def test_a_runtime_image_pod_runs_on_the_real_node_and_answers_on_its_ip_and_its_service(
        cluster: ClusterInfo, namespace: str, runtime_image: str) -> None:
    import requests
    node = real_node(cluster)
    apply(cluster, namespace, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": runtime_image, "command": ["python3", "-m", "http.server", "8080"],
            "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}]}})
    apply(cluster, namespace, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})

    def endpoint() -> Any:
        subsets = cluster.kubectl_json("-n", namespace, "get", "endpoints", "web").get("subsets") or []
        return [a["ip"] for s in subsets for a in s.get("addresses", [])]
    ips = wait_for(endpoint, "the pod Ready in the service's Endpoints", timeout=180)
    p = cluster.kubectl_json("-n", namespace, "get", "pod", "web")
    assert p["spec"]["nodeName"] == node
    assert ips == [p["status"]["podIP"]] and ips[0].startswith("10.244.0.")
    assert requests.get(f"http://{ips[0]}:8080/", timeout=10).status_code == 200
    cluster_ip = cluster.kubectl_json("-n", namespace, "get", "service", "web")["spec"]["clusterIP"]

    def through_service() -> bool:  # kube-proxy programs the rules shortly after the Endpoints change
        try:
            return requests.get(f"http://{cluster_ip}/", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    assert wait_for(through_service, "the ClusterIP answering")


def test_a_pod_reaches_the_api_server_with_its_service_account_token(
        cluster: ClusterInfo, namespace: str, runtime_image: str) -> None:
    real_node(cluster)
    apply(cluster, namespace, pod("probe", runtime_image, restartPolicy="Never",
                                  container={"command": ["python3", "-c", API_PROBE]}))

    def finished() -> Any:
        phase = cluster.kubectl_json("-n", namespace, "get", "pod", "probe")["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None
    assert wait_for(finished, "the probe pod to finish", timeout=180) == "Succeeded"
    out = cluster.kubectl("-n", namespace, "logs", "probe").stdout.strip()
    # TLS verified with the service-account CA through 10.96.0.1, and the token authenticated: RBAC answers
    # for the namespace's default ServiceAccount by name
    assert out.startswith("403 ")
    assert f"system:serviceaccount:{namespace}:default" in out


@pytest.mark.slow
def test_a_second_control_plane_starts_beside_and_stops_leaving_nothing(cluster: ClusterInfo, tmp_path: Any) -> None:
    """A throwaway cluster (control plane + fake nodes; the real node's bridge is the running cluster's): its
    stop leaves no process behind. The session cluster's own teardown checks the real node's leftovers."""
    from tests.cluster.clusterkit import Cluster
    with Cluster(tmp_path / "second") as second:
        nodes = second.kubectl("get", "nodes", "-o", "name").stdout.split()
        assert sorted(nodes) == ["node/fpga-0", "node/gpu-0", "node/gpu-1"]
        pids = [p.pid for p in second.processes]
    assert second.leftovers() == []
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


PACKAGE_DIGESTS = """
import hashlib, json, os, openscore
root = os.path.dirname(openscore.__file__)
print(json.dumps({os.path.relpath(os.path.join(d, f), root): hashlib.sha256(open(os.path.join(d, f), "rb").read())
                  .hexdigest() for d, _, files in os.walk(root) for f in files if "__pycache__" not in d}))
"""


def test_the_runtime_image_runs_this_checkouts_package(cluster: ClusterInfo, namespace: str, runtime_image: str,
                                                       tmp_path: Any) -> None:
    import hashlib

    from tests.cluster.imagekit import SITE_PACKAGES, stage_checkout
    real_node(cluster)
    apply(cluster, namespace, pod("digests", runtime_image, restartPolicy="Never",
                                  container={"command": ["python3", "-c", PACKAGE_DIGESTS]}))

    def finished() -> Any:
        phase = cluster.kubectl_json("-n", namespace, "get", "pod", "digests")["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None
    assert wait_for(finished, "the digests pod to finish", timeout=180) == "Succeeded"
    in_image = json.loads(cluster.kubectl("-n", namespace, "logs", "digests").stdout)
    package = stage_checkout(tmp_path) / SITE_PACKAGES / "openscore"
    here = {str(p.relative_to(package)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in package.rglob("*") if p.is_file()}
    assert here and {k: in_image.get(k) for k in here} == here
