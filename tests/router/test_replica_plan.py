"""replica_plan(): the one translation from a version spec to what its replicas run (every field)."""

from __future__ import annotations

from openscore.router.config import parse_service
from openscore.router.replica_plan import ReplicaPlan, replica_plan

FULL = {
    "computeType": "aks", "sourceDirectory": "/srv/app", "entryScript": "score.py", "modelDir": "/models/m",
    "numReplicas": 2, "maxConcurrentRequestsPerContainer": 4, "scoringTimeoutMs": 5000, "workers": 2,
    "replicaArgs": ["--max-queue-size", "8"],
    "environment": {"environmentVariables": {"A": "from-environment", "B": "b"}},
    "environmentVariables": {"A": "top-level-wins"},
    "containerResourceRequirements": {"cpu": 1.5, "memoryInGB": 2, "cpuLimit": 3, "memoryInGBLimit": 4},
    "gpuCores": 1,
    "livenessProbeRequirements": {"periodSeconds": 7, "initialDelaySeconds": 20, "timeoutSeconds": 3,
                                  "failureThreshold": 5, "successThreshold": 2},
    "namespace": "team-a", "image": "registry.local/scorer:1", "instanceType": "gpu-small",
}


def plan_of(doc, **kw) -> ReplicaPlan:
    spec = parse_service("svc-a", doc, "/base").versions["svc-a"]
    return replica_plan(spec, service="svc-a", **kw)


def test_every_field_of_a_full_spec():
    p = plan_of(FULL, port=41000, host="127.0.0.1", python="/usr/bin/python3", graceful_s=12,
                readiness_period_s=0.5, readiness_timeout_s=1.5)
    assert (p.service, p.version) == ("svc-a", "svc-a")
    assert p.argv == ("/usr/bin/python3", "-m", "openscore", "serve", "--entry-script", "/srv/app/score.py",
                      "--app-root", "/srv/app", "--model-dir", "/models/m", "--host", "127.0.0.1",
                      "--port", "41000", "--max-concurrent-requests", "4", "--workers", "2",
                      "--scoring-timeout-ms", "5000", "--graceful-timeout-s", "12", "--max-queue-size", "8")
    assert dict(p.environment) == {"PYTHONUNBUFFERED": "1", "SERVICE_NAME": "svc-a", "SERVICE_VERSION": "svc-a",
                                   "A": "top-level-wins", "B": "b"}
    assert (p.working_dir, p.host, p.port, p.graceful_s) == ("/srv/app", "127.0.0.1", 41000, 12)
    r = p.readiness
    assert (r.path, r.port, r.period_s, r.timeout_s, r.failure_threshold, r.success_threshold) == \
        ("/slots", 41000, 0.5, 1.5, 1, 1)
    lv = p.liveness
    assert (lv.path, lv.port, lv.period_s, lv.timeout_s, lv.initial_delay_s, lv.failure_threshold,
            lv.success_threshold) == ("/healthz", 41000, 7, 3, 20, 5, 2)
    res = p.resources
    assert (res.cpu_request, res.cpu_limit, res.gpus) == (1.5, 3.0, 1)
    assert (res.memory_request_bytes, res.memory_limit_bytes) == (2 * 1024 ** 3, 4 * 1024 ** 3)
    assert (p.instance_type, p.image, p.namespace) == ("gpu-small", "registry.local/scorer:1", "team-a")


def test_azure_defaults_for_a_minimal_spec():
    p = plan_of({"computeType": "aks", "entryScript": "/srv/app/score.py"})
    assert p.working_dir == "/srv/app"  # no sourceDirectory: the script's folder is the app root
    assert p.port == 5001 and p.host == "127.0.0.1" and p.argv[-2:] == ("--graceful-timeout-s", "10")
    lv = p.liveness
    assert (lv.period_s, lv.initial_delay_s, lv.timeout_s, lv.failure_threshold, lv.success_threshold) == \
        (10, 310, 2, 3, 1)
    res = p.resources
    assert (res.cpu_request, res.memory_request_bytes, res.cpu_limit, res.memory_limit_bytes, res.gpus) == \
        (0.1, round(0.5 * 1024 ** 3), None, None, 0)
    assert (p.instance_type, p.image, p.namespace) == (None, None, None)
    assert dict(p.environment) == {"PYTHONUNBUFFERED": "1", "SERVICE_NAME": "svc-a", "SERVICE_VERSION": "svc-a"}


def test_gpu_from_the_rest_spelling_and_endpoint_namespace():
    assert plan_of({"computeType": "aks", "entryScript": "/a/s.py",
                    "containerResourceRequirements": {"gpu": 2}}).resources.gpus == 2
    ep = parse_service("ep-a", {"computeType": "aksendpoint", "namespace": "team-b",
                                "versions": {"blue": {"entryScript": "/a/s.py", "instanceType": "cpu-large"}}})
    p = replica_plan(ep.versions["blue"], service="ep-a")
    assert (p.service, p.version, p.namespace, p.instance_type) == ("ep-a", "blue", "team-b", "cpu-large")
    assert p.environment["SERVICE_VERSION"] == "blue"
