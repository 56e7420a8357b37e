"""`openscore model deploy --ct <attached cluster>` against the real API server's nodes: the instance type is
resolved and checked against the nodes' allocatable at submit time (Azure's Code 9 naming the largest node;
an unknown type names the known ones). Deploying services to the cluster is not built yet: a deploy that
passes the checks says so, and nothing is recorded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CLI = [sys.executable, "-m", "openscore.deployer.compute_cli"]
OPENSCORE = [sys.executable, "-c", "import sys; from openscore.cli import main; sys.exit(main())"]
TOLERATE_GPU = [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]


def _gpu_type(name: str, gpus: int) -> dict:
    return {"metadata": {"name": name},
            "spec": {"nodeSelector": {"openscore.io/pool": "gpu"}, "tolerations": TOLERATE_GPU,
                     "resources": {"requests": {"cpu": "1", "memory": "2Gi"},
                                   "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": gpus}}}}


@pytest.fixture
def site(cluster, namespace, tmp_path) -> Path:
    """A project folder: a workspace with `myaks` attached (gpu-small: 1 GPU, gpu-quad: 4), an entry script."""
    (tmp_path / "types.yaml").write_text(yaml.safe_dump([_gpu_type("gpu-small", 1), _gpu_type("gpu-quad", 4)]))
    (tmp_path / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return data\n")
    (tmp_path / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    proc = subprocess.run([*CLI, "compute", "attach", "-n", "myaks", "--kubeconfig", str(cluster.kubeconfig),
                           "--namespace", namespace, "--instance-types", str(tmp_path / "types.yaml"),
                           "-w", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc
    return tmp_path


def _deploy(site: Path, dc: dict) -> subprocess.CompletedProcess:
    (site / "dc.json").write_text(json.dumps({"computeType": "aks", **dc}))
    proc = subprocess.run([*OPENSCORE, "model", "deploy", "-n", "svc", "--ic", "inferenceconfig.json",
                           "--dc", "dc.json", "--ct", "myaks", "-w", str(site / "ws")],
                          capture_output=True, text=True, timeout=300, cwd=site)
    assert proc.returncode == 1, proc
    listed = subprocess.run([*OPENSCORE, "service", "list", "-w", str(site / "ws")], capture_output=True,
                            text=True, timeout=120)
    assert json.loads(listed.stdout) == [], listed
    return proc


def test_a_gpu_type_larger_than_every_gpu_node_is_refused_at_submit_with_code_9(site):
    err = _deploy(site, {"instanceType": "gpu-quad"}).stderr
    assert "Code 9" in err and "exceeded the node size" in err and "nvidia.com/gpu 4 > 1" in err, err
    assert "gpu-0" in err or "gpu-1" in err
    adhoc = _deploy(site, {"gpuCores": 2}).stderr
    assert "Code 9" in adhoc and "nvidia.com/gpu 2 > 1" in adhoc, adhoc


def test_an_unknown_instance_type_names_the_known_ones(site):
    err = _deploy(site, {"instanceType": "gpu-huge"}).stderr
    assert "'gpu-huge' is not an instance type" in err and "defaultinstancetype, gpu-quad, gpu-small" in err


def test_a_type_that_fits_passes_the_checks_then_cluster_deploys_are_refused_as_not_built(site):
    proc = _deploy(site, {"instanceType": "gpu-small"})
    assert "instance type gpu-small fits node gpu-" in proc.stdout, proc
    assert "not available in this openscore yet" in proc.stderr
