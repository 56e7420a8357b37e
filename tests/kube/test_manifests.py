"""A version's Deployment and replica Secret, field by field (what a user of the cluster would notice)."""

from __future__ import annotations

import base64
import re
from dataclasses import replace
from typing import Any

import pytest

from openscore.kube.instance_types import DEFAULT_INSTANCE_TYPE, parse_instance_type, resolve
from openscore.kube.manifests import (
    ANNOTATION_INSTANCE_TYPE,
    ANNOTATION_ROLLOUT,
    ANNOTATION_TEMPLATE_HASH,
    IMAGE_PYTHON,
    ROLLOUT_NO_SURGE,
    ROLLOUT_SURGE,
    deployment_manifest,
    deployment_name,
    pod_plan,
    replica_secret_manifest,
    replica_secret_name,
    secret_value,
)
from openscore.router.config import LivenessSpec, ResourceSpec, VersionSpec
from openscore.router.replica_plan import replica_plan

OWNER = {"apiVersion": "openscore.io/v1", "kind": "ScoringService", "name": "echo", "uid": "1234-5678",
         "controller": True, "blockOwnerDeletion": True}
GPU_TYPE = parse_instance_type({"metadata": {"name": "gpu-small"}, "spec": {
    "nodeSelector": {"agentpool": "gpu"},
    "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi",
                                                                       "nvidia.com/gpu": 1}},
    "tolerations": [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}})


def spec(**kw: Any) -> VersionSpec:
    base: dict[str, Any] = dict(name="blue", entry_script="/var/azureml-app/score.py", app_root="/var/azureml-app",
                                model_dir="/var/azureml-app/azureml-models/m/1", environment={"GREETING": "hi"},
                                slots_per_replica=2, workers=2)
    base.update(kw)
    return VersionSpec(**base)


def manifest(s: VersionSpec | None = None, it=DEFAULT_INSTANCE_TYPE, **kw: Any) -> dict[str, Any]:
    s = s or spec()
    kw.setdefault("owner", OWNER)
    return deployment_manifest(pod_plan(s, service="echo", graceful_s=kw.pop("graceful_s", 10.0)), it,
                               namespace="scoring", image="127.0.0.1:5000/echo:1",
                               replica_secret_name="echo-blue-replica", **kw)


def container(m: dict[str, Any]) -> dict[str, Any]:
    (c,) = m["spec"]["template"]["spec"]["containers"]
    return c


# ------------------------------------------------------------------------------------------------ names
def test_deployment_names_are_readable_dns_labels():
    assert deployment_name("echo", "blue") == "echo-blue"
    for service, version in [("echo", "blue"), ("a" * 32, "b" * 32), ("my-svc", "v1"), ("x--y", "z")]:
        name = deployment_name(service, version)
        assert len(name) <= 50 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        assert deployment_name(service, version) == name  # stable


def test_names_that_could_collide_get_a_hash():
    assert deployment_name("a-b", "c") != deployment_name("a", "b-c")
    long1, long2 = deployment_name("s" * 32, "v" * 31 + "1"), deployment_name("s" * 32, "v" * 31 + "2")
    assert long1 != long2 and long1.startswith("s" * 32 + "-v")
    assert replica_secret_name("echo", "blue") == "echo-blue-replica"


# ------------------------------------------------------------------------------------------------ the pod
def test_the_command_is_the_images_openscore_serve_with_the_device():
    c = container(manifest())
    cmd = c["command"]
    assert cmd[:4] == [IMAGE_PYTHON, "-m", "openscore", "serve"]
    args = dict(zip(cmd[4::2], cmd[5::2]))
    assert args["--entry-script"] == "/var/azureml-app/score.py"
    assert args["--model-dir"] == "/var/azureml-app/azureml-models/m/1"
    assert args["--host"] == "0.0.0.0" and args["--port"] == "5001"
    assert args["--max-concurrent-requests"] == "2" and args["--workers"] == "2"
    assert args["--device"] == "cpu"
    assert c["workingDir"] == "/var/azureml-app"
    assert c["ports"] == [{"name": "http", "containerPort": 5001, "protocol": "TCP"}]
    assert c["image"] == "127.0.0.1:5000/echo:1"


def test_a_host_interpreter_never_reaches_the_pod():
    c = container(manifest(spec(python="/home/me/envs/abc/bin/python")))
    assert c["command"][0] == IMAGE_PYTHON and "/home/me" not in str(c)


def test_a_gpu_type_runs_on_cuda_and_an_explicit_device_flag_is_kept():
    cmd = container(manifest(it=GPU_TYPE))["command"]
    assert cmd[cmd.index("--device") + 1] == "cuda"
    own = container(manifest(spec(replica_args=("--device", "cuda:1")), it=GPU_TYPE))["command"]
    assert own.count("--device") == 1 and own[own.index("--device") + 1] == "cuda:1"
    assert container(manifest(device="fpga"))["command"][-1] == "fpga"


def test_a_plan_for_a_local_process_is_refused():
    local = replica_plan(spec(), service="echo", port=41234)  # 127.0.0.1, a free port: not a pod
    with pytest.raises(ValueError, match="pod_plan"):
        deployment_manifest(local, DEFAULT_INSTANCE_TYPE, namespace="n", image="i", owner=None,
                            replica_secret_name="s")


def test_the_environment_has_the_plans_variables_and_the_secret_only_from_the_secret():
    env = container(manifest(spec(environment={"GREETING": "hi", "OPENSCORE_REPLICA_SECRET": "guessable"})))["env"]
    plain = {e["name"]: e["value"] for e in env if "value" in e}
    assert plain["GREETING"] == "hi" and plain["SERVICE_NAME"] == "echo" and plain["SERVICE_VERSION"] == "blue"
    secret_vars = [e for e in env if e["name"] == "OPENSCORE_REPLICA_SECRET"]
    assert secret_vars == [{"name": "OPENSCORE_REPLICA_SECRET",
                            "valueFrom": {"secretKeyRef": {"name": "echo-blue-replica", "key": "secret"}}}]
    assert "guessable" not in str(env)


def test_resources_node_selector_and_tolerations_come_from_the_instance_type():
    m = manifest(it=GPU_TYPE)
    pod = m["spec"]["template"]["spec"]
    assert container(m)["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"},
                                         "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}
    assert pod["nodeSelector"] == {"agentpool": "gpu"}
    assert pod["tolerations"] == [{"key": "sku", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]
    assert m["metadata"]["annotations"][ANNOTATION_INSTANCE_TYPE] == "gpu-small"
    cpu_pod = manifest()["spec"]["template"]["spec"]
    assert "nodeSelector" not in cpu_pod and "tolerations" not in cpu_pod
    assert container(manifest())["resources"] == {"requests": {"cpu": "100m", "memory": "2Gi"},
                                                  "limits": {"cpu": "2", "memory": "2Gi"}}


def test_an_adhoc_type_without_limits_has_only_requests():
    it = resolve(spec(resources=ResourceSpec(cpu=0.5, memory_gb=1)))
    assert container(manifest(it=it))["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}}


def test_a_slow_init_gets_ten_minutes_before_liveness_begins():
    c = container(manifest())
    start = c["startupProbe"]
    assert start["httpGet"] == {"path": "/healthz", "port": 5001, "scheme": "HTTP"}
    assert start["periodSeconds"] * start["failureThreshold"] >= 600
    longer = container(manifest(startup_timeout_s=1200))["startupProbe"]
    assert longer["periodSeconds"] * longer["failureThreshold"] >= 1200
    # a user who raised the liveness delay past ten minutes (Azure's workaround) keeps that much
    patient = container(manifest(spec(liveness=LivenessSpec(initial_delay_s=900, period_s=10, failure_threshold=3))))
    assert patient["startupProbe"]["periodSeconds"] * patient["startupProbe"]["failureThreshold"] >= 930


def test_liveness_follows_liveness_probe_requirements_and_readiness_is_readyz():
    c = container(manifest(spec(liveness=LivenessSpec(period_s=7, initial_delay_s=20, timeout_s=4,
                                                      failure_threshold=5, success_threshold=2))))
    live = c["livenessProbe"]
    assert live["httpGet"]["path"] == "/healthz"
    assert (live["periodSeconds"], live["timeoutSeconds"], live["failureThreshold"]) == (7, 4, 5)
    assert live["successThreshold"] == 1  # the API server refuses anything else on a liveness probe
    assert "initialDelaySeconds" not in live  # the startup probe holds liveness back
    ready = c["readinessProbe"]
    assert ready["httpGet"] == {"path": "/readyz", "port": 5001, "scheme": "HTTP"}
    assert ready["failureThreshold"] >= 1 and ready["periodSeconds"] >= 1


def test_termination_message_grace_and_hardening():
    m = manifest(graceful_s=30)
    c, pod = container(m), m["spec"]["template"]["spec"]
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert pod["terminationGracePeriodSeconds"] > 30
    assert manifest(graceful_s=10)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 10
    assert pod["enableServiceLinks"] is False  # a Service named `worker` would set WORKER_* in the replica
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "runAsNonRoot": True}


# ------------------------------------------------------------------------------------------------ the Deployment
def test_cpu_rolls_with_a_surge_and_accelerators_with_max_surge_0_saying_so():
    cpu = manifest()
    assert cpu["spec"]["strategy"] == {"type": "RollingUpdate",
                                       "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    assert cpu["metadata"]["annotations"][ANNOTATION_ROLLOUT] == ROLLOUT_SURGE
    gpu = manifest(it=GPU_TYPE)
    assert gpu["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    assert gpu["metadata"]["annotations"][ANNOTATION_ROLLOUT] == ROLLOUT_NO_SURGE == "maxSurge=0,maxUnavailable=1"


def test_labels_selector_owner_and_history():
    m = manifest(replicas=3)
    want = {"openscore.io/service": "echo", "openscore.io/version": "blue",
            "app.kubernetes.io/component": "replica", "app.kubernetes.io/managed-by": "openscore"}
    assert m["apiVersion"] == "apps/v1" and m["kind"] == "Deployment"
    assert m["metadata"]["name"] == "echo-blue" and m["metadata"]["namespace"] == "scoring"
    assert m["metadata"]["labels"] == want
    assert m["spec"]["selector"] == {"matchLabels": want}
    assert m["spec"]["template"]["metadata"]["labels"] == want
    assert m["metadata"]["ownerReferences"] == [OWNER]
    assert m["spec"]["replicas"] == 3
    assert m["spec"]["revisionHistoryLimit"] >= 1
    assert m["spec"]["progressDeadlineSeconds"] > 600  # past the startup budget: a slow init() is progress
    assert "replicas" not in manifest()["spec"]  # leaves the count to whoever scales
    assert "ownerReferences" not in manifest(owner=None)["metadata"]


def test_the_template_hash_changes_with_what_a_replica_runs_and_only_then():
    def h(m: dict[str, Any]) -> str:
        return m["spec"]["template"]["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH]
    base = h(manifest())
    assert h(manifest()) == base
    assert h(manifest(replicas=5)) == base  # scaling is no new launch
    assert h(manifest(spec(traffic_percentile=30.0))) == base  # router-only settings are no new launch
    assert h(manifest(spec(environment={"GREETING": "hello"}))) != base
    assert h(manifest(spec(workers=3))) != base
    assert h(manifest(it=GPU_TYPE)) != base
    assert h(manifest(spec(image="other"))) == base  # the plan does not carry the image...
    changed = deployment_manifest(pod_plan(spec(), service="echo"), DEFAULT_INSTANCE_TYPE, namespace="scoring",
                                  image="127.0.0.1:5000/echo:2", owner=OWNER, replica_secret_name="echo-blue-replica")
    assert h(changed) != base  # ...the manifest's image does


def test_every_value_in_the_manifest_is_json_and_strings_where_kubernetes_wants_strings():
    m = manifest(spec(replica_args=("--max-batch-size", "8"), num_replicas=2), it=GPU_TYPE)
    assert all(isinstance(a, str) for a in container(m)["command"])
    assert all(isinstance(e["value"], str) for e in container(m)["env"] if "value" in e)
    assert all(isinstance(v, str) for block in container(m)["resources"].values() for v in block.values())


# ------------------------------------------------------------------------------------------------ the Secret
def test_the_replica_secret_holds_the_value_base64_owned_and_labelled():
    s = replica_secret_manifest("echo-blue-replica", "scoring", OWNER, "s3cr3t-value", service="echo",
                                version="blue")
    assert s["apiVersion"] == "v1" and s["kind"] == "Secret" and s["type"] == "Opaque"
    assert s["metadata"]["name"] == "echo-blue-replica" and s["metadata"]["namespace"] == "scoring"
    assert base64.b64decode(s["data"]["secret"]).decode() == "s3cr3t-value"
    assert "s3cr3t-value" not in str(s)
    assert s["metadata"]["ownerReferences"] == [OWNER]
    assert s["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "openscore",
                                       "openscore.io/service": "echo", "openscore.io/version": "blue"}
    assert secret_value(s) == "s3cr3t-value"
    assert secret_value({"data": {}}) == ""


def test_pod_plan_uses_azures_port_and_the_spec_drain_time():
    plan = pod_plan(replace(spec(), python="/host/python"), service="echo", graceful_s=25)
    assert (plan.host, plan.port, plan.graceful_s) == ("0.0.0.0", 5001, 25)
    assert plan.argv[0] == IMAGE_PYTHON
