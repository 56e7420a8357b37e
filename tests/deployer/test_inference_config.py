"""inferenceconfig.json / YAML with Azure's keys, and the environment it resolves to; plus the document
reader every config file goes through."""

from __future__ import annotations

import json

import pytest

from openscore.deployer.documents import load_document
from openscore.deployer.environments import EnvironmentDefinition
from openscore.deployer.errors import DeployError, NotFoundError
from openscore.deployer.inference_config import InferenceConfigSpec, load_inference_config


@pytest.fixture
def project(tmp_path, write):
    write(tmp_path / "source" / "score.py", "def init(): pass\ndef run(d): return d\n")
    write(tmp_path / "source" / "env.yml", "dependencies:\n  - numpy=1.26\n  - pip:\n    - azureml-defaults\n")
    write(tmp_path / "source" / "steps.txt", "RUN echo hi\n")
    return tmp_path


def test_azures_json_file(project, write):
    path = write(project / "inferenceconfig.json", json.dumps({
        "entryScript": "score.py", "sourceDirectory": "source",
        "environment": {"name": "sk", "python": {"condaDependencies": {"dependencies": [{"pip": ["six"]}]}},
                        "environmentVariables": {"A": "1"}},
        "schemaFile": "ignored.json"}))
    spec = load_inference_config(path)
    assert spec.entry_script == str(project / "source" / "score.py")
    assert spec.source_directory == project / "source"
    assert spec.entry_script_relative == "score.py" and spec.app_root == project / "source"
    assert spec.environment is not None and spec.environment.resolved_packages() == ["six"]
    assert spec.environment.environment_variables == {"A": "1"}


def test_yaml_with_the_legacy_keys(ws, project, write):
    path = write(project / "inferenceconfig.yml", "entryScript: score.py\nsourceDirectory: source\nruntime: python\n"
                 "condaFile: env.yml\nextraDockerfileSteps: steps.txt\nbaseImage: myimage:1\nenableGpu: true\n")
    spec = load_inference_config(path)
    defn = spec.resolve_environment(ws)
    assert defn.resolved_packages() == ["numpy==1.26.*"] and defn.skipped() == ["azureml-defaults"]
    assert (defn.base_image, defn.docker_steps, defn.enable_gpu) == ("myimage:1", "RUN echo hi\n", True)


def test_without_an_environment_the_interpreter_is_used(ws, project):
    spec = InferenceConfigSpec.from_dict({"entry_script": "source/score.py"}, project)  # the SDK's name too
    defn = spec.resolve_environment(ws)
    assert defn.resolved_packages() == [] and not defn.needs_build
    assert spec.app_root == project / "source"


def test_a_registered_environment_by_name_and_version(ws, project):
    ws.environments.register(EnvironmentDefinition.from_azure(
        {"name": "reg", "python": {"condaDependencies": {"dependencies": [{"pip": ["six"]}]}}}))
    ws.environments.register(EnvironmentDefinition.from_azure(
        {"name": "reg", "python": {"condaDependencies": {"dependencies": [{"pip": ["idna"]}]}}}))
    spec = InferenceConfigSpec.from_dict({"entryScript": "score.py", "sourceDirectory": "source",
                                          "environment": {"name": "reg", "version": "1"}}, project)
    assert spec.environment_ref == ("reg", "1")
    assert spec.resolve_environment(ws).resolved_packages() == ["six"]
    assert spec.with_environment_ref("reg").resolve_environment(ws).resolved_packages() == ["idna"]
    with pytest.raises(NotFoundError, match="no version 3"):
        spec.with_environment_ref("reg", 3).resolve_environment(ws)


@pytest.mark.parametrize("doc, error, message", [
    ({}, DeployError, "entryScript is required"),
    ({"entryScript": "missing.py", "sourceDirectory": "source"}, NotFoundError, "entry script missing.py not found"),
    ({"entryScript": "score.py", "sourceDirectory": "nope"}, NotFoundError, "sourceDirectory .* does not exist"),
    ({"entryScript": "../outside.py", "sourceDirectory": "source"}, DeployError, "outside sourceDirectory"),
    ({"entryScript": "score.py", "sourceDirectory": "source", "runtime": "java"}, DeployError, "runtime 'java'"),
    ({"entryScript": "score.py", "sourceDirectory": "source", "enableGpu": "yes"}, DeployError, "enableGpu must be"),
    ({"entryScript": "score.py", "sourceDirectory": "source", "condaFile": "no.yml"}, NotFoundError,
     "condaFile .* not found"),
    ({"entryScript": "score.py", "sourceDirectory": "source", "environment": "myenv"}, DeployError,
     "environment must be an Environment object"),
])
def test_bad_inference_configs_are_named(project, write, doc, error, message):
    write(project / "outside.py", "")
    with pytest.raises(error, match=message):
        InferenceConfigSpec.from_dict(doc, project)


def test_a_conda_only_package_in_the_inference_config_is_named(ws, project, write):
    write(project / "source" / "env.yml", "dependencies:\n  - cudatoolkit=11.8\n")
    spec = InferenceConfigSpec.from_dict({"entryScript": "score.py", "sourceDirectory": "source",
                                          "condaFile": "env.yml"}, project)
    with pytest.raises(DeployError, match="cudatoolkit"):
        spec.resolve_environment(ws).resolved_packages()


# ------------------------------------------------------------------------------------------- documents
def test_a_file_that_is_neither_json_nor_yaml_is_named(tmp_path, write):
    for name, text in [("a.json", "just some words"), ("b.json", "{not: [valid"), ("c.json", "")]:
        path = write(tmp_path / name, text)
        with pytest.raises(DeployError, match=f"inference config {path} is neither JSON nor YAML"):
            load_document(path, "inference config")
    path = write(tmp_path / "bin.json", b"\xff\xfe\x00garbage")
    with pytest.raises(DeployError, match="neither JSON nor YAML"):
        load_document(path, "inference config")
    path = write(tmp_path / "list.json", "[1, 2]")
    with pytest.raises(DeployError, match="must hold a JSON object"):
        load_document(path, "deployment config")
    with pytest.raises(NotFoundError, match="does not exist"):
        load_document(tmp_path / "missing.json", "deployment config")
    with pytest.raises(DeployError, match="is a folder"):
        load_document(tmp_path, "deployment config")
