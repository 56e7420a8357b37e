"""Azure deploymentconfig keys, spec 2.1/2.2 validation rules, and the sizing formula."""

import pytest

from openscore.router.config import ConfigError, load_services_file, parse_service, replicas_for

BASE = {"computeType": "AKS", "entryScript": "score.py"}


def cfg(**kw):
    return {**BASE, **kw}


def err(doc, name="svc-a"):
    with pytest.raises(ConfigError) as e:
        parse_service(name, doc, "/app")
    return e.value


def test_defaults_are_azures():
    s = parse_service("svc-a", dict(BASE), "/app")
    v = s.versions["svc-a"]
    assert s.auth_enabled and not s.token_auth_enabled
    assert v.autoscale.enabled and (v.autoscale.min_replicas, v.autoscale.max_replicas) == (1, 10)
    assert v.autoscale.target_utilization == 70 and v.autoscale.refresh_seconds == 1
    assert (v.max_queue_wait_ms, v.scoring_timeout_ms, v.slots_per_replica) == (500, 60000, 1)
    assert v.entry_script == "/app/score.py" and s.max_body_bytes == 100 * 1024 * 1024


def test_fixed_replicas_disable_autoscale():
    v = parse_service("svc-a", cfg(numReplicas=3), "/app").versions["svc-a"]
    assert not v.autoscale.enabled and v.initial_replicas == 3


@pytest.mark.parametrize("doc,key,rule", [
    (cfg(numReplicas=2, autoScaler={"autoscaleEnabled": True}), "autoScaler.autoscaleEnabled", "numReplicas"),
    (cfg(autoScaler={"autoscaleEnabled": False}), "autoScaler.autoscaleEnabled", "numReplicas must be given"),
    (cfg(numReplicas=2, autoScaler={"maxReplicas": 4}), "autoScaler.maxReplicas", "without enabling"),
    (cfg(autoScaler={"autoscaleEnabled": True, "minReplicas": 5, "maxReplicas": 2}), "autoScaler.maxReplicas",
     ">= autoScaler.minReplicas"),
    (cfg(authEnabled=True, tokenAuthEnabled=True), "tokenAuthEnabled", "exclusive"),
    (cfg(scoringTimeoutMs=300001), "scoringTimeoutMs", "<= 300000"),
    (cfg(scoringTimeoutMs=0), "scoringTimeoutMs", "> 0"),
    (cfg(maxConcurrentRequestsPerContainer=0), "maxConcurrentRequestsPerContainer", "> 0"),
    (cfg(maxQueueWaitMs=-1), "maxQueueWaitMs", "> 0"),
    (cfg(numReplicas="two"), "numReplicas", "number"),
    (cfg(containerResourceRequirements={"cpu": 1, "cpuLimit": 0.5}), "containerResourceRequirements.cpuLimit",
     ">= containerResourceRequirements.cpu"),
    (cfg(gpuCores=-1), "gpuCores", ">= 0"),
    (cfg(namespace="Bad_NS"), "namespace", "must match"),
    (cfg(livenessProbeRequirements={"periodSeconds": 0}), "livenessProbeRequirements.periodSeconds", "> 0"),
    ({"entryScript": "s.py"}, "computeType", "required"),
    (cfg(computeType="aci"), "computeType", "not served"),
    ({"computeType": "aks"}, "entryScript", "required"),
])
def test_rules_name_the_key(doc, key, rule):
    e = err(doc)
    assert e.key == f"services.svc-a.{key}", str(e)
    assert rule in e.rule, str(e)


@pytest.mark.parametrize("name", ["ab", "1abc", "abc-", "ABC", "a" * 33, "a_b_c"])
def test_service_name_rule(name):
    assert "3-32 characters" in err(dict(BASE), name).rule


def endpoint(**versions):
    return {"computeType": "aksendpoint", "versions": versions}


def test_endpoint_traffic_default_and_control():
    s = parse_service("ep-a", endpoint(blue={"entryScript": "a.py", "trafficPercentile": 20},
                                       green={"entryScript": "b.py", "trafficPercentile": 10}), "/app")
    assert s.default_version.name == "blue"  # the first version is the default
    assert s.versions["blue"].version_type == "Control"
    assert s.traffic_shares() == {"blue": 90.0, "green": 10.0}  # unassigned traffic -> default (docs example)


def test_endpoint_rules():
    assert "at most 6" in err(endpoint(**{f"v{i}x": {"entryScript": "a.py"} for i in range(7)}), "ep-a").rule
    e = err(endpoint(blue={"entryScript": "a.py", "trafficPercentile": 70},
                     green={"entryScript": "a.py", "trafficPercentile": 40}), "ep-a")
    assert "add up to 110" in e.rule
    e = err(endpoint(blue={"entryScript": "a.py", "type": "Control"},
                     green={"entryScript": "a.py", "type": "control"}), "ep-a")
    assert e.key == "services.ep-a.versions.green.type" and "one Control" in e.rule
    e = err(endpoint(blue={"entryScript": "a.py", "authEnabled": False}), "ep-a")
    assert e.key == "services.ep-a.versions.blue.authEnabled"
    e = err(endpoint(blue={"entryScript": "a.py", "trafficPercentile": 101}), "ep-a")
    assert e.key.endswith("trafficPercentile") and "<= 100" in e.rule


def test_yaml_file_with_relative_paths(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "score.py").write_text("def init(): pass\ndef run(d): return d\n")
    f = tmp_path / "services.yml"
    f.write_text("services:\n  my-svc:\n    computeType: aks\n    sourceDirectory: app\n"
                 "    entryScript: score.py\n    numReplicas: 2\n    sslEnabled: true  # unknown: ignored\n")
    raw, specs = load_services_file(f)
    assert specs["my-svc"].versions["my-svc"].entry_script == str(tmp_path / "app" / "score.py")
    assert raw["my-svc"]["sourceDirectory"] == str(tmp_path / "app")
    # the stored (absolute) document parses to the same spec from anywhere
    assert parse_service("my-svc", raw["my-svc"], "/elsewhere") == specs["my-svc"]


def test_replicas_formula():
    assert replicas_for(20, 10, 70, 1) == 286  # Azure's docs example
    assert replicas_for(100, 0.1, 70, 2) == 8
    with pytest.raises(ValueError):
        replicas_for(1, 1, 0)
