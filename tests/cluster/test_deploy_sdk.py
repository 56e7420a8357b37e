"""The SDK's AksCompute against the real cluster: attach by kubeconfig (the API server's version recorded),
ComputeTarget(ws, name) returning the AksCompute with its instance types, the same record the CLI lists,
detach forgetting it."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from openscore.sdk import AksCompute, ComputeTarget
from openscore.sdk.workspace import Workspace

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
