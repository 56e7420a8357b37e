"""The SDK's AksCompute against the real cluster: attach by kubeconfig (the API server's version recorded),
ComputeTarget(ws, name) returning the AksCompute with its instance types, the same record the CLI lists,
detach forgetting it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from openscore.sdk import AksCompute, ComputeTarget
from openscore.sdk.workspace import Workspace
from tests.cluster.servicekit import wait_until_answers

GPU_TYPE = {"metadata": {"name": "gpu-small"},
            "spec": {"nodeSelector": {"openscore.io/pool": "gpu"},
                     "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}],
                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                                   "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": 1}}}}


def test_attach_lookup_list_and_detach(cluster, namespace, tmp_path):
    ws = Workspace(workspace_name="w", _folder=tmp_path / "ws")
    types = tmp_path / "types.yaml"
    types.write_text(yaml.safe_dump([GPU_TYPE]))
    try:
        config = AksCompute.attach_configuration(kubeconfig=str(cluster.kubeconfig), namespace=namespace,
                                                 registry=cluster.registry, instance_types_file=str(types))
        attached = ComputeTarget.attach(ws, "myaks", config)
        attached.wait_for_completion(show_output=True)
        assert isinstance(attached, AksCompute) and attached.get_status() == "Succeeded"

        found = ComputeTarget(ws, "myaks")
        assert type(found) is AksCompute and found.type == "AKS" and found.namespace == namespace
        assert set(found.instance_types) == {"defaultinstancetype", "gpu-small"}
        assert found.instance_types["gpu-small"]["spec"]["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1)
        assert found.serialize()["serverVersion"].startswith("v1.20")
        assert [c.name for c in ComputeTarget.list(ws)] == ["local", "myaks"]

        listed = subprocess.run([sys.executable, "-m", "openscore.deployer.compute_cli", "compute", "list",
                                 "-w", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
        assert [c["name"] for c in json.loads(listed.stdout)] == ["myaks"], listed

        found.detach()
        assert [c.name for c in ComputeTarget.list(ws)] == ["local"]
    finally:
        ws.store.close()


SCORE = """import json, os
def init():
    global WEIGHT
    WEIGHT = open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weight.txt")).read().strip()
def run(data):
    return {"weight": WEIGHT, "echo": json.loads(data)}
"""


@pytest.mark.timeout(900)
def test_model_deploy_to_the_attached_cluster_waits_healthy_and_scores(cluster, namespace, tmp_path, runtime_image):
    from openscore.sdk import AksWebservice, InferenceConfig, Model
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "weight.txt").write_text("7\n")
    ws = Workspace(workspace_name="w", _folder=tmp_path / "ws")
    try:
        ComputeTarget.attach(ws, "myaks", AksCompute.attach_configuration(
            kubeconfig=str(cluster.kubeconfig), namespace=namespace, registry=cluster.registry,
            runtime_image=runtime_image))
        install = subprocess.run([sys.executable, "-m", "openscore.deployer.compute_cli", "cluster", "install",
                                  "-n", "myaks", "--router-image", runtime_image, "-w", str(tmp_path / "ws")],
                                 capture_output=True, text=True, timeout=300)
        assert install.returncode == 0, install
        model = Model.register(ws, model_path=str(tmp_path / "weight.txt"), model_name="weights")
        service = Model.deploy(ws, "sdksvc", [model],
                               InferenceConfig(entry_script="score.py", source_directory=str(tmp_path)),
                               deployment_config=AksWebservice.deploy_configuration(
                                   cpu_cores=0.1, memory_gb=0.25, num_replicas=1),
                               deployment_target=ComputeTarget(ws, "myaks"))
        service.wait_for_deployment(show_output=True)
        assert service.state == "Healthy", service.error
        pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "openscore.io/service=sdksvc")["items"]
        assert [p["spec"]["nodeName"] for p in pods] == ["node-cpu-0"]
        ready = cluster.kubectl("rollout", "status", "deployment/openscore-router", "-n", namespace,
                                "--timeout=90s", check=False, timeout=150)
        assert ready.returncode == 0, ready
        assert wait_until_answers(service.scoring_uri) == 200  # the router's Service through kube-proxy, ready
        assert service.run('{"x": 3}') == {"weight": "7", "echo": {"x": 3}}  # through the in-cluster router
        service.delete()
        left = cluster.kubectl_json("get", "deployments", "-n", namespace, "-l", "openscore.io/service=sdksvc")
        assert left["items"] == []
    finally:
        ws.store.close()
