"""`openscore azureml run`: Azure's import paths answered by openscore.sdk for one script, only where
azureml-core is absent; the script's arguments, exit status and errors pass through."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sdkkit import Project

MODULES = ("azureml.core", "azureml.core.model", "azureml.core.webservice", "azureml.core.webservice.aks",
           "azureml.core.compute", "azureml.core.environment", "azureml.core.conda_dependencies",
           "azureml.core.workspace", "azureml.core.authentication", "azureml.exceptions")


def _script(project: Project, text: str, name: str = "script.py") -> Path:
    path = project.root / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_azure_import_paths_are_openscore_sdk(project):
    script = _script(project, f"""
        import importlib, sys
        import openscore.sdk as sdk
        from azureml.core import Environment, Model, Workspace
        from azureml.core.compute import AksCompute, ComputeTarget
        from azureml.core.conda_dependencies import CondaDependencies
        from azureml.core.model import InferenceConfig
        from azureml.core.webservice import AksEndpoint, AksWebservice, LocalWebservice, Webservice
        from azureml.exceptions import WebserviceException
        assert Workspace is sdk.Workspace and Model is sdk.Model and Environment is sdk.Environment
        assert InferenceConfig is sdk.InferenceConfig and AksWebservice is sdk.AksWebservice
        assert AksEndpoint is sdk.AksEndpoint and LocalWebservice is sdk.LocalWebservice
        assert Webservice is sdk.Webservice and AksCompute is sdk.AksCompute and ComputeTarget is sdk.ComputeTarget
        assert CondaDependencies is sdk.CondaDependencies and WebserviceException is sdk.WebserviceException
        for m in {MODULES!r}:
            importlib.import_module(m)
        print("name", __name__, "args", sys.argv[1:])
        """)
    r = project.azureml_run(script, "--flag", "value")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "name __main__ args ['--flag', 'value']" in r.stdout


def test_the_script_exit_status_and_traceback_come_back(project):
    exits = _script(project, "import sys\nsys.exit(3)\n", "exits.py")
    assert project.azureml_run(exits).returncode == 3
    raises = _script(project, """
        from azureml.core import Workspace
        Workspace.from_config("no-such-folder")
        """, "raises.py")
    r = project.azureml_run(raises)
    assert r.returncode == 1
    assert "Traceback" in r.stderr and "UserErrorException: We could not find config.json in:" in r.stderr


def test_a_missing_script_is_an_error(project):
    r = project.azureml_run(project.root / "nope.py")
    assert r.returncode == 1
    assert f"openscore azureml run: error: script {project.root / 'nope.py'} does not exist" in r.stderr


def test_refused_where_azureml_core_is_installed(project, tmp_path):
    site = tmp_path / "site"
    dist = site / "azureml_core-1.61.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: azureml-core\nVersion: 1.61.0\n")
    marker = project.root / "ran"
    script = _script(project, f"open({str(marker)!r}, 'w').close()\n")
    r = project.azureml_run(script, PYTHONPATH=str(site))
    assert r.returncode == 1
    assert "azureml-core 1.61.0 is installed in this environment" in r.stderr
    assert "Run the script in an environment without azureml-core" in r.stderr
    assert not marker.exists()  # the script never ran


def test_replicas_keep_the_scoring_runtimes_azureml(project):
    """The opt-in is this process's: a deployed score.py's `azureml.core.model` is the runtime's shim."""
    (project.root / "src" / "score.py").write_text(textwrap.dedent("""
        import azureml.core.model
        from azureml.core.model import Model

        def init():
            global path
            path = Model.get_model_path("mymodel")

        def run(raw):
            return {"module": azureml.core.model.__file__, "path": path}
        """).lstrip())
    script = _script(project, """
        from azureml.core import Workspace
        from azureml.core.model import InferenceConfig, Model
        from azureml.core.webservice import LocalWebservice
        ws = Workspace.from_config()
        model = Model.register(ws, model_path="sklearn_regression_model.pkl", model_name="mymodel")
        service = Model.deploy(ws, "probe", [model], InferenceConfig(entry_script="src/score.py"),
                               LocalWebservice.deploy_configuration())
        service.wait_for_deployment()
        print("answer", service.run("{}"))
        """)
    r = project.azureml_run(script)
    assert r.returncode == 0, r.stdout + r.stderr
    answer = r.stdout.split("answer ", 1)[1]
    assert "runtime/shims/azureml/core/model.py" in answer
    assert "azureml-models/mymodel/1/sklearn_regression_model.pkl" in answer
