"""deploymentconfig files: every computeType the deployer takes, the router's rules and messages (one parser
for both), and the router's pythonInterpreter key the deployer sets for built environments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from openscore.deployer.deployment_config import deployment_config_from_dict, load_deployment_config
from openscore.deployer.errors import DeployError
from openscore.router.config import ConfigError, parse_service
from openscore.router.replica_plan import replica_plan


def write(tmp_path: Path, doc: object, name: str = "deploymentconfig.json") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def test_the_docs_aks_file_is_read_with_its_compute_type_case_insensitively(tmp_path):
    doc = {"computeType": "AKS", "autoScaler": {"autoscaleEnabled": True, "minReplicas": 1, "maxReplicas": 3,
                                                "refreshPeriodInSeconds": 1, "targetUtilization": 70},
           "dataCollection": {"storageEnabled": True}, "authEnabled": True,
           "containerResourceRequirements": {"cpu": 0.5, "memoryInGB": 1.0}}
    spec = load_deployment_config(write(tmp_path, doc))
    assert spec.compute_type == "aks" and spec.port is None and spec.warnings == ()
    assert spec.version_keys()["autoScaler"]["maxReplicas"] == 3
    assert spec.endpoint_keys() == {"authEnabled": True}


def test_yaml_works_as_well_as_json(tmp_path):
    spec = load_deployment_config(write(tmp_path, "computeType: local\nport: 32267\n", "dc.yml"))
    assert spec.compute_type == "local" and spec.port == 32267


def test_conflicting_keys_give_the_routers_own_message():
    doc = {"computeType": "aks", "numReplicas": 2, "autoScaler": {"autoscaleEnabled": True}}
    with pytest.raises(DeployError) as e:
        deployment_config_from_dict(doc, "dc.json")
    with pytest.raises(ConfigError) as router:
        parse_service("svc", {**doc, "entryScript": "/x/score.py"}, None, path="")
    assert str(e.value) == f"dc.json: Invalid configuration, {router.value}"
    assert "autoScaler.autoscaleEnabled: cannot be true together with numReplicas" in str(e.value)


@pytest.mark.parametrize("doc, needle", [
    ({"computeType": "aks", "autoScaler": {"minReplicas": 2}}, "provided without enabling autoscaling"),
    ({"computeType": "aks", "authEnabled": True, "tokenAuthEnabled": True}, "cannot be true together with authEnabled"),
    ({"computeType": "aks", "containerResourceRequirements": {"cpu": 1, "cpuLimit": 0.5}}, "cpuLimit: must be >="),
    ({"computeType": "aks", "scoringTimeoutMs": 400000}, "scoringTimeoutMs: must be <= 300000"),
    ({"computeType": "aksendpoint", "versionName": "Bad_Name"}, "version name 'Bad_Name'"),
    ({"computeType": "aci"}, "computeType: 'aci' is not supported here"),
    ({}, "computeType: is required"),
    ({"computeType": "local", "port": 70000}, "port: must be a port number"),
])
def test_broken_rules_are_refused_naming_the_key(doc, needle):
    with pytest.raises(DeployError) as e:
        deployment_config_from_dict(doc)
    assert needle in str(e.value)


def test_an_aksendpoint_file_holds_its_first_version_and_the_endpoint_keys():
    spec = deployment_config_from_dict({"computeType": "aksendpoint", "versionName": "blue",
                                        "trafficPercentile": 20, "authEnabled": True, "numReplicas": 1})
    assert spec.version_name("ep") == "blue"
    assert spec.version_keys() == {"trafficPercentile": 20, "numReplicas": 1}
    assert spec.endpoint_keys() == {"authEnabled": True}
    assert deployment_config_from_dict({"computeType": "aksendpoint"}).version_name("ep") == "ep"


def test_unknown_keys_are_warnings_naming_the_nearest(tmp_path):
    spec = load_deployment_config(write(tmp_path, {"computeType": "aks", "numReplica": 1}))
    assert len(spec.warnings) == 1 and "numReplica" in spec.warnings[0] and "numReplicas" in spec.warnings[0]


def test_a_file_that_is_neither_json_nor_yaml_is_named(tmp_path):
    with pytest.raises(DeployError) as e:
        load_deployment_config(write(tmp_path, "{computeType: [aks", "broken.json"))
    assert "broken.json is neither JSON nor YAML" in str(e.value)


def test_python_interpreter_runs_the_replicas_and_is_part_of_the_launch(tmp_path):
    script = tmp_path / "score.py"
    script.write_text("def init(): pass\ndef run(d): return d\n")
    base = {"computeType": "aks", "entryScript": str(script)}
    plain = parse_service("svc", base).versions["svc"]
    built = parse_service("svc", {**base, "pythonInterpreter": sys.executable},
                          files_must_exist=True).versions["svc"]
    assert replica_plan(plain, service="svc", python="/usr/bin/python3").argv[0] == "/usr/bin/python3"
    assert replica_plan(built, service="svc", python="/usr/bin/python3").argv[0] == sys.executable
    assert plain.launch_fingerprint() != built.launch_fingerprint()
    with pytest.raises(ConfigError, match="pythonInterpreter: 'python' must be an absolute path"):
        parse_service("svc", {**base, "pythonInterpreter": "python"})
    with pytest.raises(ConfigError, match="is not a file that exists"):
        parse_service("svc", {**base, "pythonInterpreter": str(tmp_path / "nope")}, files_must_exist=True)
