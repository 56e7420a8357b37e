"""`openscore model deploy --ct <attached cluster>` against the real cluster: the submit-time checks (Azure's
Code 9 naming the largest node; an unknown type names the known ones), then real deploys: an app image on the
runtime image, the ScoringService, Deployments owned by it, Azure's states from the pods, logs, keys, scoring
through the in-cluster router, and delete leaving nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.cluster.servicekit import wait_until_answers

CLI = [sys.executable, "-m", "openscore.deployer.compute_cli"]
OPENSCORE = [sys.executable, "-c", "import sys; from openscore.cli import main; sys.exit(main())"]
TOLERATE_GPU = [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
SCORE = """import json, os
def init():
    global WEIGHT
    WEIGHT = open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weight.txt")).read().strip()
def run(data):
    return {"weight": WEIGHT, "echo": json.loads(data)}
"""
FAILING = "def init():\n    raise RuntimeError('the model file is corrupt')\n\n\ndef run(data):\n    return data\n"


def _gpu_type(name: str, gpus: int) -> dict:
    return {"metadata": {"name": name},
            "spec": {"nodeSelector": {"openscore.io/pool": "gpu"}, "tolerations": TOLERATE_GPU,
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                   "limits": {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": gpus}}}}


CPU_TYPE = {"metadata": {"name": "cpu-small"},
            "spec": {"nodeSelector": {"openscore.io/pool": "cpu"},
                     "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                   "limits": {"cpu": "1", "memory": "1Gi"}}}}


def _os(site: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*OPENSCORE, *args, "-w", str(site / "ws")], capture_output=True, text=True,
                          timeout=timeout, cwd=site)


@pytest.fixture
def site(cluster, namespace, tmp_path, runtime_image) -> Path:
    """A project folder: a workspace with `myaks` attached (cpu-small, gpu-small: 1 GPU, gpu-quad: 4), an entry
    script, a registered model."""
    types = [CPU_TYPE, _gpu_type("gpu-small", 1), _gpu_type("gpu-quad", 4)]
    (tmp_path / "types.yaml").write_text(yaml.safe_dump(types))
    (tmp_path / "score.py").write_text(SCORE)
    (tmp_path / "failing.py").write_text(FAILING)
    (tmp_path / "weight.txt").write_text("42\n")
    (tmp_path / "inferenceconfig.json").write_text(json.dumps({"entryScript": "score.py"}))
    (tmp_path / "failing.json").write_text(json.dumps({"entryScript": "failing.py"}))
    proc = subprocess.run([*CLI, "compute", "attach", "-n", "myaks", "--kubeconfig", str(cluster.kubeconfig),
                           "--namespace", namespace, "--instance-types", str(tmp_path / "types.yaml"),
                           "--registry", cluster.registry, "--runtime-image", runtime_image,
                           "-w", str(tmp_path / "ws")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc
    reg = _os(tmp_path, "model", "register", "-n", "weights", "-p", "weight.txt")
    assert reg.returncode == 0, reg
    return tmp_path


def _refused(site: Path, dc: dict) -> subprocess.CompletedProcess:
    (site / "dc.json").write_text(json.dumps({"computeType": "aks", **dc}))
    proc = _os(site, "model", "deploy", "-n", "svc", "-m", "weights:1", "--ic", "inferenceconfig.json",
               "--dc", "dc.json", "--ct", "myaks")
    assert proc.returncode == 1, proc
    listed = _os(site, "service", "list")
    assert json.loads(listed.stdout) == [], listed
    return proc


def _deploy(site: Path, name: str, dc: dict, ic: str = "inferenceconfig.json") -> subprocess.CompletedProcess:
    (site / f"{name}.dc.json").write_text(json.dumps({"computeType": "aks", **dc}))
    return _os(site, "model", "deploy", "-n", name, "-m", "weights:1", "--ic", ic, "--dc", f"{name}.dc.json",
               "--ct", "myaks", "--no-wait")


def _pods(cluster, namespace: str, service: str) -> list[dict]:
    return cluster.kubectl_json("get", "pods", "-n", namespace, "-l", f"openscore.io/service={service}")["items"]


def _post(url: str, body: bytes, key: str | None, extra: dict | None = None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
               **(extra or {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_gpu_type_larger_than_every_gpu_node_is_refused_at_submit_with_code_9(site):
    err = _refused(site, {"instanceType": "gpu-quad"}).stderr
    assert "Code 9" in err and "exceeded the node size" in err and "nvidia.com/gpu 4 > 1" in err, err
    assert "gpu-0" in err or "gpu-1" in err
    adhoc = _refused(site, {"gpuCores": 2}).stderr
    assert "Code 9" in adhoc and "nvidia.com/gpu 2 > 1" in adhoc, adhoc


def test_an_unknown_instance_type_names_the_known_ones(site):
    err = _refused(site, {"instanceType": "gpu-huge"}).stderr
    assert "'gpu-huge' is not an instance type" in err and "cpu-small, defaultinstancetype, gpu-quad" in err


@pytest.mark.timeout(900)
def _router_diagnosis(cluster, namespace: str) -> str:
    """What a failed router rollout shows: its pods, their events and both runs' last log lines."""
    out = []
    for args in (("get", "pods", "-o", "wide"), ("describe", "pods", "-l", "app.kubernetes.io/component=router"),
                 ("logs", "deployment/openscore-router", "--tail=30"),
                 ("logs", "deployment/openscore-router", "--tail=30", "--previous")):
        r = cluster.kubectl("-n", namespace, *args, check=False)
        out.append(f"$ kubectl {' '.join(args)}\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def test_a_cpu_service_runs_on_the_real_node_scores_through_the_router_and_delete_leaves_nothing(
        site, cluster, namespace, runtime_image):
    install = subprocess.run([*CLI, "cluster", "install", "-n", "myaks", "--router-image", runtime_image,
                              "-w", str(site / "ws")], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install
    dep = _deploy(site, "svc", {"instanceType": "cpu-small", "numReplicas": 1})
    assert dep.returncode == 0, dep
    assert f"App image {cluster.registry}/openscore-app@sha256:" in dep.stdout, dep
    waited = _os(site, "service", "wait", "-n", "svc", "--timeout", "300", timeout=400)
    assert waited.returncode == 0, waited
    shown = json.loads(_os(site, "service", "show", "-n", "svc").stdout)
    assert shown["state"] == "Healthy" and shown["computeTarget"] == "myaks", shown
    listed = json.loads(_os(site, "service", "list").stdout)
    assert [(x["name"], x["state"], x["computeTarget"]) for x in listed] == [("svc", "Healthy", "myaks")]
    pods = _pods(cluster, namespace, "svc")
    assert [p["spec"]["nodeName"] for p in pods] == ["node-cpu-0"]
    assert pods[0]["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"
    dep_obj = cluster.kubectl_json("get", "deployment", "-n", namespace, "-l", "openscore.io/service=svc")
    assert dep_obj["items"][0]["metadata"]["ownerReferences"][0]["kind"] == "ScoringService"

    keys = json.loads(_os(site, "service", "get-keys", "-n", "svc").stdout)
    primary = keys["primaryKey"]
    uri = shown["scoringUri"]
    assert uri.startswith("http://10.96.") and uri.endswith("/api/v1/service/svc/score"), uri
    router_ready = cluster.kubectl("rollout", "status", "deployment/openscore-router", "-n", namespace,
                                   "--timeout=90s", check=False, timeout=150)
    assert router_ready.returncode == 0, _router_diagnosis(cluster, namespace)
    assert wait_until_answers(uri) == 200  # the router's Service through kube-proxy, ready
    assert _post(uri, b'{"x": 1}', None) == 401
    assert _post(uri, b'{"x": 1}', primary) == 200
    ran = _os(site, "service", "run", "-n", "svc", "-d", '{"x": 2}')
    assert ran.returncode == 0 and json.loads(ran.stdout) == {"weight": "42", "echo": {"x": 2}}, ran
    # the replica itself answers only the router: 403 without its credential
    direct = f"http://{pods[0]['status']['podIP']}:5001/score"
    assert _post(direct, b'{"x": 1}', None, {}) == 403

    # an update with a new entry script: a new app image, rolled out; the same Deployment and keys
    (site / "score2.py").write_text(SCORE.replace('"echo"', '"v2"'))
    (site / "ic2.json").write_text(json.dumps({"entryScript": "score2.py"}))
    old_image = dep_obj["items"][0]["spec"]["template"]["spec"]["containers"][0]["image"]
    upd = _os(site, "service", "update", "-n", "svc", "--ic", "ic2.json", timeout=400)
    assert upd.returncode == 0, upd
    assert json.loads(_os(site, "service", "show", "-n", "svc").stdout)["state"] == "Healthy"
    after = cluster.kubectl_json("get", "deployment", "-n", namespace, "-l", "openscore.io/service=svc")["items"]
    new_image = after[0]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert len(after) == 1 and new_image != old_image and "openscore-app@sha256:" in new_image
    assert json.loads(_os(site, "service", "get-keys", "-n", "svc").stdout)["primaryKey"] == primary

    gone = _os(site, "service", "delete", "-n", "svc", timeout=300)
    assert gone.returncode == 0, gone
    assert "still in namespace" not in gone.stdout + gone.stderr, gone
    for kind in ("deployments", "replicasets", "pods", "secrets"):
        left = cluster.kubectl_json("get", kind, "-n", namespace, "-l", "openscore.io/service=svc")["items"]
        assert left == [], (kind, left)
    assert json.loads(_os(site, "service", "list").stdout) == []


@pytest.mark.timeout(300)
def test_a_gpu_service_is_placed_on_a_gpu_node(site, cluster, namespace):
    dep = _deploy(site, "gsvc", {"instanceType": "gpu-small", "numReplicas": 1})
    assert dep.returncode == 0, dep
    pods = cluster.kubectl_json("get", "pods", "-n", namespace, "-l", "openscore.io/service=gsvc",
                                "--field-selector", "spec.nodeName!=")["items"]
    for _ in range(60):
        if pods:
            break
        time.sleep(1)
        pods = [p for p in _pods(cluster, namespace, "gsvc") if p["spec"].get("nodeName")]
    assert pods and pods[0]["spec"]["nodeName"].startswith("gpu-"), pods
    assert pods[0]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.timeout(600)
def test_an_init_that_raises_is_failed_with_its_traceback_and_init_logs_show_it(site, cluster, namespace):
    dep = _deploy(site, "bad", {"instanceType": "cpu-small", "numReplicas": 1}, ic="failing.json")
    assert dep.returncode == 0, dep
    waited = _os(site, "service", "wait", "-n", "bad", "--timeout", "300", timeout=400)
    assert waited.returncode == 1, waited
    assert "Failed" in waited.stderr and "the model file is corrupt" in waited.stderr, waited.stderr
    shown = json.loads(_os(site, "service", "show", "-n", "bad").stdout)
    assert shown["state"] == "Failed", shown
    for _ in range(30):  # right after a restart the kubelet may not serve the previous container's log yet
        logs = _os(site, "service", "get-logs", "-n", "bad", "--init")
        if "unable to retrieve container logs" not in logs.stdout:
            break
        time.sleep(1)
    assert "RuntimeError: the model file is corrupt" in logs.stdout, logs


@pytest.mark.timeout(600)
def test_an_endpoint_version_added_and_removed_gets_and_loses_its_deployment(site, cluster, namespace):
    (site / "ep.dc.json").write_text(json.dumps({"computeType": "aksendpoint", "versionName": "vone",
                                                 "instanceType": "cpu-small", "numReplicas": 1}))
    dep = _os(site, "model", "deploy", "-n", "endp", "-m", "weights:1", "--ic", "inferenceconfig.json",
              "--dc", "ep.dc.json", "--ct", "myaks", "--no-wait")
    assert dep.returncode == 0, dep
    (site / "two.dc.json").write_text(json.dumps({"computeType": "aksendpoint", "instanceType": "cpu-small",
                                                  "numReplicas": 1}))
    add = _os(site, "service", "create-version", "-n", "endp", "--version-name", "vtwo", "-m", "weights:1",
              "--ic", "inferenceconfig.json", "--dc", "two.dc.json", "--timeout", "300", timeout=400)
    assert add.returncode == 0, add
    deps = cluster.kubectl_json("get", "deployments", "-n", namespace, "-l", "openscore.io/service=endp")["items"]
    assert sorted(d["metadata"]["labels"]["openscore.io/version"] for d in deps) == ["vone", "vtwo"]
    removed = _os(site, "service", "delete-version", "-n", "endp", "--version-name", "vtwo")
    assert removed.returncode == 0, removed
    deps = cluster.kubectl_json("get", "deployments", "-n", namespace, "-l", "openscore.io/service=endp")["items"]
    assert [d["metadata"]["labels"]["openscore.io/version"] for d in deps] == ["vone"]
