"""openscore.sdk in this process, on a real workspace (SQLite, artifact store) from a local config.json:
Azure's names and arguments, and bad input refused with azureml-core's exceptions and a message naming the
problem, leaving the workspace as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from openscore.sdk import (
    AksCompute,
    AksEndpoint,
    AksWebservice,
    ComputeTarget,
    ComputeTargetException,
    CondaDependencies,
    Environment,
    InferenceConfig,
    LocalWebservice,
    Model,
    ModelNotFoundException,
    UserErrorException,
    Webservice,
    WebserviceException,
    Workspace,
)
from tests.deployer.deploykit import dump


def _model(ws: Workspace) -> Model:
    return Model.register(ws, model_path="sklearn_regression_model.pkl", model_name="mymodel",
                          tags={"area": "diabetes"}, description="Ridge regression")


# ---------------------------------------------------------------------------------------------- workspace
def test_from_config_uses_the_folder_beside_config_json(sdk_ws, project):
    assert sdk_ws.store.root == project.workspace
    assert (sdk_ws.name, sdk_ws.subscription_id, sdk_ws.resource_group) == \
        ("myworkspace", "00000000-0000-0000-0000-000000000000", "myresourcegroup")
    sub = project.root / "a" / "b"
    sub.mkdir(parents=True)
    assert Workspace.from_config(str(sub)).store.root == project.workspace      # found in a parent folder
    assert Workspace.from_config(project.root / "config.json").store.root == project.workspace


def test_from_config_names_its_workspace_folder(tmp_path):
    (tmp_path / ".azureml").mkdir()
    (tmp_path / ".azureml" / "config.json").write_text(json.dumps({"workspace_name": "w",
                                                                   "openscoreWorkspace": "elsewhere"}))
    assert Workspace.from_config(str(tmp_path)).store.root == tmp_path / "elsewhere"


def test_from_config_without_config_json_is_azures_error(tmp_path):
    with pytest.raises(UserErrorException, match=r"We could not find config.json in: .*or in its parent"):
        Workspace.from_config(str(tmp_path))


def test_a_read_only_workspace_folder_is_named(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    (tmp_path / "config.json").write_text(json.dumps({"workspace_name": "w", "openscoreWorkspace": "ro"}))
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(WebserviceException, match=f"workspace {folder} is not writable"):
            Workspace.from_config(str(tmp_path))
    finally:
        folder.chmod(0o755)


# ----------------------------------------------------------------------------------------------- models
def test_model_register_get_list_update_delete(sdk_ws):
    m = _model(sdk_ws)
    assert (m.name, m.version, m.id, m.tags, m.description) == \
        ("mymodel", 1, "mymodel:1", {"area": "diabetes"}, "Ridge regression")
    m2 = Model.register(sdk_ws, model_path="sklearn_regression_model.pkl", model_name="mymodel")
    assert m2.version == 2
    assert Model(sdk_ws, "mymodel").version == 2                       # newest
    assert Model(sdk_ws, "mymodel", version=1).tags == {"area": "diabetes"}
    assert Model(sdk_ws, id="mymodel:1").version == 1
    assert [x.id for x in Model.list(sdk_ws, tags=[["area", "diabetes"]])] == ["mymodel:1"]
    assert [x.id for x in Model.list(sdk_ws, latest=True)] == ["mymodel:2"]
    m.add_tags({"stage": "prod"})
    assert Model(sdk_ws, "mymodel", version=1).tags == {"area": "diabetes", "stage": "prod"}
    m.update(tags={"stage": "dev"})
    assert Model(sdk_ws, "mymodel", version=1).tags == {"stage": "dev"}
    path = Path(m.download(target_dir="out"))
    assert path.read_bytes() == Path("sklearn_regression_model.pkl").read_bytes()
    m2.delete()
    with pytest.raises(ModelNotFoundException, match="mymodel"):
        Model(sdk_ws, "mymodel", version=2)


def test_unknown_models_and_bad_versions(sdk_ws):
    with pytest.raises(ModelNotFoundException, match="nope"):
        Model(sdk_ws, "nope")
    _model(sdk_ws)
    with pytest.raises(ModelNotFoundException, match="7"):
        Model(sdk_ws, "mymodel", version=7)
    with pytest.raises(WebserviceException, match="version should be an int"):
        Model(sdk_ws, "mymodel", version="1")
    before = dump(sdk_ws.store.root)
    with pytest.raises(WebserviceException, match=r"does not exist|not found|No such"):
        Model.register(sdk_ws, model_path="missing.pkl", model_name="other")
    with pytest.raises(WebserviceException, match="model names"):
        Model.register(sdk_ws, model_path="sklearn_regression_model.pkl", model_name="-bad name")
    assert dump(sdk_ws.store.root) == before


def test_get_model_path_as_in_a_container(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("AML_APP_ROOT", raising=False)
    for v in (1, 2):
        d = tmp_path / "azureml-models" / "m" / str(v)
        d.mkdir(parents=True)
        (d / "model.pkl").write_text(str(v))
    assert Model.get_model_path("m") == os.path.join("azureml-models", "m", "2", "model.pkl")
    assert Model.get_model_path("m", version=1) == os.path.join("azureml-models", "m", "1", "model.pkl")
    (tmp_path / "azureml-models" / "m" / "2" / "extra").write_text("")
    with pytest.raises(WebserviceException, match="can contain only 1 file or folder"):
        Model.get_model_path("m")
    with pytest.raises(ModelNotFoundException, match="Model other not found"):
        Model.get_model_path("other")
    with pytest.raises(WebserviceException, match="version should be an int"):
        Model.get_model_path("m", version="1")


def test_get_model_path_from_the_workspace(sdk_ws, project):
    _model(sdk_ws)
    path = Model.get_model_path("mymodel", _workspace=sdk_ws)
    assert path == os.path.join("azureml-models", "mymodel", "1", "sklearn_regression_model.pkl")
    assert (project.root / path).read_bytes() == (project.root / "sklearn_regression_model.pkl").read_bytes()


# ------------------------------------------------------------------------------------------ environments
def test_conda_dependencies_edit_and_round_trip(tmp_path):
    cd = CondaDependencies.create(pip_packages=["scikit-learn==1.5.0", "joblib"], conda_packages=["numpy=1.26"])
    cd.add_pip_package("scikit-learn>=1.3")           # replaces the same package
    cd.add_conda_package("pandas")
    cd.remove_pip_package("joblib")
    assert cd.pip_packages == ["scikit-learn>=1.3"]
    assert cd.conda_packages == ["python=3.11", "numpy=1.26", "pandas"]
    saved = cd.save(str(tmp_path / "env.yml"))
    again = CondaDependencies(saved)
    assert again.as_dict() == cd.as_dict()
    assert again.get_python_version() == "3.11"


def test_environment_register_get_and_deployer_reading(sdk_ws, project):
    env = Environment("sklearn-env")
    env.python.conda_dependencies = CondaDependencies.create(pip_packages=["azureml-defaults", "joblib"])
    env.environment_variables = {"MY_SETTING": "1"}
    registered = env.register(sdk_ws)
    assert registered.version == "1" and env.version == "1"
    got = Environment.get(sdk_ws, "sklearn-env")
    assert got.environment_variables == {"MY_SETTING": "1"}
    assert got.python.conda_dependencies is not None
    assert "joblib" in got.python.conda_dependencies.pip_packages
    defn = got.definition()
    assert defn.resolved_packages() == ["joblib"]          # azureml-defaults is openscore's to provide
    assert set(Environment.list(sdk_ws)) == {"sklearn-env"}
    req = project.root / "requirements.txt"
    req.write_text("# pinned\nnumpy>=1.24\n\nrequests\n")
    assert Environment.from_pip_requirements("pipenv", str(req)).python.conda_dependencies.pip_packages == \
        ["numpy>=1.24", "requests"]


def test_environment_build_needs_the_image_library(sdk_ws):
    try:
        import openscore.images  # noqa: F401
        pytest.skip("openscore.images is installed here")
    except ImportError:
        pass
    with pytest.raises(WebserviceException, match=r"needs openscore.images .*build_local"):
        Environment("e").build(sdk_ws)


# ---------------------------------------------------------------------------------- deploy configurations
def test_aks_deploy_configuration_is_the_deploymentconfig_document():
    config = AksWebservice.deploy_configuration(
        cpu_cores=1, memory_gb=1, cpu_cores_limit=2, memory_gb_limit=2, num_replicas=2, gpu_cores=0,
        auth_enabled=True, scoring_timeout_ms=30000, replica_max_concurrent_requests=2,
        max_request_wait_time=300, primary_key="k" * 16, secondary_key="s" * 16, period_seconds=5,
        initial_delay_seconds=10, timeout_seconds=2, success_threshold=1, failure_threshold=3,
        namespace="team-a", collect_model_data=True, enable_app_insights=False, tags={"a": "b"},
        description="d", blobfuse_enabled=True)
    assert config.to_document() == {
        "computeType": "aks",
        "containerResourceRequirements": {"cpu": 1, "memoryInGB": 1, "cpuLimit": 2, "memoryInGBLimit": 2},
        "numReplicas": 2, "gpuCores": 0, "authEnabled": True, "scoringTimeoutMs": 30000,
        "maxConcurrentRequestsPerContainer": 2, "maxQueueWaitMs": 300,
        "keys": {"primaryKey": "k" * 16, "secondaryKey": "s" * 16},
        "livenessProbeRequirements": {"periodSeconds": 5, "initialDelaySeconds": 10, "timeoutSeconds": 2,
                                      "successThreshold": 1, "failureThreshold": 3},
        "namespace": "team-a", "dataCollection": {"storageEnabled": True}, "appInsightsEnabled": False}
    assert (config.cpu_cores, config.num_replicas, config.tags, config.description) == (1, 2, {"a": "b"}, "d")
    ep = AksEndpoint.deploy_configuration(version_name="blue", traffic_percentile=20, token_auth_enabled=True)
    assert ep.to_document() == {"computeType": "aksendpoint", "versionName": "blue", "trafficPercentile": 20,
                                "tokenAuthEnabled": True}
    assert LocalWebservice.deploy_configuration(port=6789).to_document() == {"computeType": "local", "port": 6789}


@pytest.mark.parametrize("kwargs, message", [
    ({"autoscale_enabled": True, "num_replicas": 2}, "Invalid configuration"),
    ({"autoscale_min_replicas": 2}, "autoscal"),
    ({"auth_enabled": True, "token_auth_enabled": True}, "token"),
    ({"cpu_cores": -1}, "cpu"),
    ({"autoscale_enabled": True, "autoscale_min_replicas": 5, "autoscale_max_replicas": 2}, "maxReplicas"),
    ({"scoring_timeout_ms": 400000}, "scoringTimeoutMs"),
    ({"namespace": "Not_A_Namespace"}, "namespace"),
])
def test_aks_deploy_configuration_refuses_azures_invalid_combinations(kwargs, message):
    with pytest.raises(WebserviceException, match=message):
        AksWebservice.deploy_configuration(**kwargs)


def test_deploy_configuration_refuses_unknown_parameters_and_bad_ports():
    with pytest.raises(TypeError):
        AksWebservice.deploy_configuration(cpu_core=1)
    with pytest.raises(WebserviceException, match=r"traffic|Percentile"):
        AksEndpoint.deploy_configuration(traffic_percentile=120)
    with pytest.raises(WebserviceException, match="port"):
        LocalWebservice.deploy_configuration(port=70000)


# ------------------------------------------------------------------------------------------ compute targets
def test_compute_targets_only_local_is_attached(sdk_ws):
    assert ComputeTarget(sdk_ws, "local").name == "local"
    assert AksCompute(sdk_ws, "local").type == "AKS"
    assert list(sdk_ws.compute_targets) == ["local"]
    with pytest.raises(ComputeTargetException, match=r"'myaks' not found.*Attached compute targets: local"):
        AksCompute(sdk_ws, "myaks")
    with pytest.raises(ComputeTargetException, match="Kubernetes target"):
        AksCompute.attach_configuration(resource_group="rg", cluster_name="c")


# ----------------------------------------------------------------------------------- refused deployments
def test_bad_deployments_are_refused_before_anything_is_written(sdk_ws, project):
    model = _model(sdk_ws)
    with pytest.raises(WebserviceException, match=r"entry script missing.py not found"):
        InferenceConfig(entry_script="missing.py")
    ic = InferenceConfig(entry_script="score.py", source_directory="src")
    before = dump(sdk_ws.store.root)
    with pytest.raises(WebserviceException, match="My_Service"):
        Model.deploy(sdk_ws, "My_Service", [model], ic, AksWebservice.deploy_configuration())
    env = Environment("gpu")
    assert env.python.conda_dependencies is not None
    env.python.conda_dependencies.add_conda_package("cudatoolkit=11.8")
    with pytest.raises(WebserviceException, match=r"conda-only package cudatoolkit=11.8"):
        Model.deploy(sdk_ws, "gpuservice", [model], InferenceConfig(entry_script="src/score.py", environment=env))
    with pytest.raises(WebserviceException, match=r"'myaks' is not attached.*local"):
        Model.deploy(sdk_ws, "elsewhere", [model], ic, AksWebservice.deploy_configuration(), "myaks")
    with pytest.raises(WebserviceException, match="models must be"):
        Model.deploy(sdk_ws, "nomodels", model, ic)
    assert dump(sdk_ws.store.root) == before
    with pytest.raises(WebserviceException, match="nosuch"):
        Webservice(sdk_ws, "nosuch")
    assert Webservice.list(sdk_ws) == []


# ------------------------------------------------------------------------------------ a service's methods
@pytest.mark.slow
def test_service_methods_on_a_running_service(sdk_ws, project):
    import requests

    model = _model(sdk_ws)
    ic = InferenceConfig(entry_script="score.py", source_directory="src")
    service = Model.deploy(sdk_ws, "svc", [model], ic, AksWebservice.deploy_configuration(num_replicas=1))
    assert isinstance(service, AksWebservice) and service.state == "Transitioning"
    service.wait_for_deployment(show_output=False)
    assert service.state == "Healthy" and service.error is None
    assert service.swagger_uri == service.scoring_uri[: -len("score")] + "swagger.json"
    body = json.dumps({"data": [[0.038, 0.051, 0.062, 0.022, -0.044, -0.035, -0.043, -0.003, 0.020, -0.018]]})
    assert service.run(body)[0] > 180
    with pytest.raises(WebserviceException, match="input_data must be a JSON string"):
        service.run({"data": []})
    old, _ = service.get_keys()
    service.regen_key("Primary")
    new, _ = service.get_keys()
    assert new != old
    headers = {"Content-Type": "application/json"}
    assert requests.post(service.scoring_uri, data=body, timeout=30,
                         headers={**headers, "Authorization": f"Bearer {old}"}).status_code == 401
    assert requests.post(service.scoring_uri, data=body, timeout=30,
                         headers={**headers, "Authorization": f"Bearer {new}"}).status_code == 200
    with pytest.raises(WebserviceException, match="Primary or Secondary"):
        service.regen_key("Tertiary")
    with pytest.raises(WebserviceException, match="Token auth is not enabled"):
        service.get_token()
    assert "model loaded from" in service.get_logs(init=True)
    with pytest.raises(WebserviceException, match="No parameters provided to update"):
        service.update()
    service.update(num_replicas=2, description="two replicas")
    service.wait_for_deployment()
    assert service.state == "Healthy" and service.description == "two replicas"
    assert [s.name for s in Webservice.list(sdk_ws, compute_type="AKS")] == ["svc"]
    assert [s.name for s in Webservice.list(sdk_ws, model_name="mymodel")] == ["svc"]
    assert Webservice.list(sdk_ws, compute_type="AKSENDPOINT") == []
    assert [m.id for m in Webservice(sdk_ws, "svc").models] == ["mymodel:1"]
    with pytest.raises(WebserviceException, match="svc"):
        LocalWebservice(sdk_ws, "svc")  # it is an AKS service
    service.delete()
    with pytest.raises(WebserviceException, match="svc"):
        Webservice(sdk_ws, "svc")


@pytest.mark.slow
def test_a_failing_init_fails_wait_for_deployment_with_the_exception(sdk_ws, project):
    (project.root / "src" / "score.py").write_text(
        'def init():\n    raise ValueError("fault_init_error: model could not be loaded")\n\n'
        'def run(data):\n    return data\n')
    model = _model(sdk_ws)
    service = Model.deploy(sdk_ws, "broken", [model], InferenceConfig(entry_script="score.py",
                                                                    source_directory="src"))
    with pytest.raises(WebserviceException, match="non-successful terminal state, current service state: Failed"):
        service.wait_for_deployment()
    assert service.state == "Failed"
    assert "fault_init_error" in json.dumps(service.error)
    assert "fault_init_error" in service.get_logs()
