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


# ------------------------------------------------------------------------------------------ deployment fields
def test_the_spec_carries_every_deploymentconfig_field():
    from openscore.router.config import LivenessSpec, ResourceSpec
    v = parse_service("svc-a", cfg(
        containerResourceRequirements={"cpu": 2, "memoryInGB": 4, "cpuLimit": 3, "memoryInGBLimit": 8},
        gpuCores=1, namespace="team-a", image="reg/img:1", instanceType="gpu-small",
        environment={"environmentVariables": {"A": "1", "B": "2"}}, environmentVariables={"B": "3"},
        livenessProbeRequirements={"periodSeconds": 5, "initialDelaySeconds": 30, "timeoutSeconds": 4,
                                   "failureThreshold": 6, "successThreshold": 2}), "/app").versions["svc-a"]
    assert v.resources == ResourceSpec(cpu=2.0, memory_gb=4.0, cpu_limit=3.0, memory_gb_limit=8.0, gpu=0)
    assert (v.gpu_cores, v.gpus) == (1, 1)
    assert v.liveness == LivenessSpec(period_s=5, initial_delay_s=30, timeout_s=4, failure_threshold=6,
                                      success_threshold=2)
    assert (v.namespace, v.image, v.instance_type) == ("team-a", "reg/img:1", "gpu-small")
    assert dict(v.environment) == {"A": "1", "B": "3"}
    d = parse_service("svc-a", dict(BASE), "/app").versions["svc-a"]
    assert d.resources == ResourceSpec(cpu=0.1, memory_gb=0.5) and d.gpus == 0  # Azure's defaults
    assert d.liveness == LivenessSpec(period_s=10, initial_delay_s=310, timeout_s=2, failure_threshold=3,
                                      success_threshold=1)
    assert d.launch_fingerprint() != v.launch_fingerprint()
    bigger = parse_service("svc-a", cfg(containerResourceRequirements={"cpu": 1}), "/app").versions["svc-a"]
    assert bigger.launch_fingerprint() != d.launch_fingerprint()  # new resources need new replicas


@pytest.mark.parametrize("doc,key,rule", [
    (cfg(instanceType=3), "instanceType", "string"),
    (cfg(instanceType=" "), "instanceType", "empty"),
    (cfg(image=["a"]), "image", "string"),
    (cfg(gpuCores=1, containerResourceRequirements={"gpu": 2}), "gpuCores", "one of the two"),
])
def test_new_keys_are_validated(doc, key, rule):
    e = err(doc)
    assert e.key == f"services.svc-a.{key}" and rule in e.rule, str(e)


# ------------------------------------------------------------------------------------------ paths
@pytest.mark.parametrize("doc,key", [
    ({"entryScript": "score.py"}, "entryScript"),
    ({"sourceDirectory": "app", "entryScript": "score.py"}, "sourceDirectory"),
    ({"entryScript": "/srv/score.py", "modelDir": "models"}, "modelDir"),
    ({"inferenceConfig": {"entryScript": "score.py"}}, "entryScript"),
])
def test_without_a_folder_relative_paths_are_refused(doc, key):
    with pytest.raises(ConfigError) as e:
        parse_service("svc-a", {"computeType": "aks", **doc})  # base_dir=None: the admin API
    assert e.value.key == f"services.svc-a.{key}" and "relative" in e.value.rule


def test_relative_paths_resolve_against_the_base_and_entry_against_source():
    v = parse_service("svc-a", cfg(sourceDirectory="src", modelDir="../models"), "/cfg").versions["svc-a"]
    assert (v.app_root, v.entry_script, v.model_dir) == ("/cfg/src", "/cfg/src/score.py", "/models")
    v = parse_service("svc-a", {"computeType": "aks", "entryScript": "/srv/x/score.py"}).versions["svc-a"]
    assert (v.app_root, v.entry_script) == ("/srv/x", "/srv/x/score.py")  # absolute: accepted without a base


def test_a_missing_script_or_folder_is_refused_when_asked(tmp_path):
    (tmp_path / "score.py").write_text("")
    ok = {"computeType": "aks", "entryScript": str(tmp_path / "score.py")}
    assert parse_service("svc-a", ok, files_must_exist=True).versions["svc-a"].app_root == str(tmp_path)
    with pytest.raises(ConfigError) as e:
        parse_service("svc-a", {**ok, "entryScript": "nope.py"}, tmp_path, files_must_exist=True)
    assert e.value.key == "services.svc-a.entryScript" and str(tmp_path / "nope.py") in e.value.rule
    with pytest.raises(ConfigError) as e:
        parse_service("ep-a", {"computeType": "aksendpoint", "versions": {"blue": {
            "sourceDirectory": "gone", "entryScript": "score.py"}}}, tmp_path, files_must_exist=True)
    assert e.value.key == "services.ep-a.versions.blue.sourceDirectory" and str(tmp_path / "gone") in e.value.rule
    # a stored document is re-read without the check: a script removed later does not break the store
    assert parse_service("svc-a", {**ok, "entryScript": str(tmp_path / "gone.py")})


def test_a_stored_file_document_parses_to_the_same_spec(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "score.py").write_text("")
    f = tmp_path / "services.yml"
    f.write_text("services:\n  my-svc:\n    computeType: aks\n    entryScript: score.py\n    modelDir: models\n")
    raw, specs = load_services_file(f)
    v = specs["my-svc"].versions["my-svc"]
    assert (v.entry_script, v.app_root, v.model_dir) == (str(tmp_path / "score.py"), str(tmp_path),
                                                           str(tmp_path / "models"))
    assert parse_service("my-svc", raw["my-svc"]) == specs["my-svc"]  # absolute: no base needed


# ------------------------------------------------------------------------------------------ keys and schema
def test_unknown_keys_are_warned_with_the_nearest_known():
    from openscore.router.config import config_warnings
    lines = config_warnings({"services": {"svc-a": cfg(numReplicaz=2, sslEnabled=True, zzzqqq=1,
                                                       containerResourceRequirements={"memoryInGb": 1},
                                                       environment={"environmentVariables": {"ANY": "x"}})}},
                            "f.yml")
    assert lines == ["f.yml: ignoring unknown key services.svc-a.numReplicaz (did you mean numReplicas?)",
                     "f.yml: ignoring unknown key services.svc-a.zzzqqq",
                     "f.yml: ignoring unknown key services.svc-a.containerResourceRequirements.memoryInGb "
                     "(did you mean memoryInGB?)"]  # sslEnabled is an Azure (aci) key: known, no warning


def test_deploymentconfig_schema_names_azures_keys():
    from openscore.router.config_schema import deploymentconfig_schema
    schema = deploymentconfig_schema()
    props = schema["properties"]
    for key in ("computeType", "entryScript", "sourceDirectory", "numReplicas", "autoScaler",
                "containerResourceRequirements", "gpuCores", "livenessProbeRequirements", "scoringTimeoutMs",
                "maxConcurrentRequestsPerContainer", "maxQueueWaitMs", "authEnabled", "tokenAuthEnabled", "keys",
                "namespace", "versions", "trafficPercentile", "instanceType", "image"):
        assert key in props, key
    assert props["scoringTimeoutMs"]["default"] == 60000 and props["scoringTimeoutMs"]["maximum"] == 300000
    liveness = schema["$defs"]["LivenessProbeRequirements"]["properties"]
    assert liveness["initialDelaySeconds"]["default"] == 310
    assert "services" in deploymentconfig_schema(services_file=True)["properties"]


def test_openscore_extension_keys_are_known_and_checked():
    """pythonInterpreter and retryAfterSend are openscore's own keys: in the schema, never warned about, and
    typed (retryAfterSend is off unless it is literally true)."""
    from openscore.router.config import config_warnings
    from openscore.router.config_schema import deploymentconfig_schema
    doc = cfg(pythonInterpreter="/opt/env/bin/python", retryAfterSend=True)
    assert config_warnings({"services": {"svc-a": doc}}, "f.yml") == []
    ep = {"computeType": "aksendpoint",
          "versions": {"v1": {"entryScript": "s.py", "retryAfterSend": True, "pythonInterpreter": "/x/py"}}}
    assert config_warnings({"services": {"svc-a": ep}}, "f.yml") == []
    props = deploymentconfig_schema()["properties"]
    assert props["retryAfterSend"]["default"] is False and "idempotent" in props["retryAfterSend"]["description"]
    assert "python" in props["pythonInterpreter"]["description"]
    spec = parse_service("svc-a", doc, "/app")
    assert spec.versions["svc-a"].retry_after_send is True and spec.versions["svc-a"].python == "/opt/env/bin/python"
    assert parse_service("svc-a", cfg(), "/app").versions["svc-a"].retry_after_send is False
    for bad in ("true", 1, "yes"):
        assert err(cfg(retryAfterSend=bad)).key == "services.svc-a.retryAfterSend"
    assert err(cfg(pythonInterpreter="bin/python")).key == "services.svc-a.pythonInterpreter"
