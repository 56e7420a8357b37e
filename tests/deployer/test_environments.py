"""Environments: Azure's Environment JSON, the conda-to-pip resolution, the hash, the registry, and the
local builder making a real venv once per hash."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from openscore.deployer.env_builder import MARKER, LocalEnvironmentBuilder
from openscore.deployer.environments import EnvironmentDefinition
from openscore.deployer.errors import ConflictError, DeployError, NotFoundError


def env(deps=None, *, name="myenv", version=None, **extra):
    doc = {"name": name, "version": version, "python": {"condaDependencies": {"dependencies": deps or []}}}
    doc.update(extra)
    return EnvironmentDefinition.from_azure(doc)


# ------------------------------------------------------------------------------------------ resolution
def test_conda_names_pip_knows_are_mapped_and_the_pip_section_installed():
    defn = env(["python=3.8", "pip", "numpy=1.26", "scikit-learn==1.3.2", "conda-forge::pandas>=2.0",
                "pytorch", "scipy 1.11.4 py311h64a7726_0", {"pip": ["joblib", "six==1.16.0"]}])
    assert defn.resolved_packages() == ["numpy==1.26.*", "scikit-learn==1.3.2", "pandas>=2.0", "torch",
                                        "scipy==1.11.4.*", "joblib", "six==1.16.0"]


def test_a_conda_only_package_is_an_error_naming_it():
    with pytest.raises(DeployError, match=r"conda-only package cudatoolkit=11\.8 cannot be installed with pip"):
        env(["numpy", "cudatoolkit=11.8"]).resolved_packages()
    with pytest.raises(DeployError, match="conda-only packages mkl, libgcc-ng"):
        env(["mkl", "libgcc-ng"]).resolved_packages()


def test_azureml_server_packages_are_skipped_and_reported():
    defn = env(["python=3.11", "azureml-core", {"pip": ["azureml-defaults>=1.50", "azureml_monitoring", "requests"]}])
    assert defn.resolved_packages() == ["requests"]
    skipped = defn.skipped()
    assert "azureml-defaults>=1.50" in skipped and "azureml_monitoring" in skipped and "azureml-core" in skipped
    assert any(s.startswith("python=3.11") for s in skipped)


def test_the_hash_ignores_name_version_and_variables_and_follows_what_is_built():
    base = env(["numpy"], name="a", version="1")
    assert env(["numpy"], name="b", version="7", environmentVariables={"X": "1"}).hash == base.hash
    assert env(["numpy", "pandas"]).hash != base.hash
    assert env(["numpy==1.26"]).hash != base.hash
    assert env(["numpy"], docker={"baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04"}).hash != base.hash
    assert env(["numpy", "azureml-defaults"]).hash == base.hash  # what is not installed does not count


def test_azure_environment_json_is_read(tmp_path, write):
    write(tmp_path / "conda.yml", "name: project\ndependencies:\n  - python=3.11\n  - pip:\n    - six\n")
    defn = EnvironmentDefinition.from_azure({
        "name": "sk", "version": "3", "environmentVariables": {"MODE": "fast"},
        "python": {"userManagedDependencies": False, "interpreterPath": "python",
                   "condaDependenciesFile": "conda.yml"},
        "docker": {"enabled": True, "baseImage": "img:1", "gpuSupport": True},
    }, tmp_path)
    assert defn.resolved_packages() == ["six"]
    assert (defn.name, defn.version, defn.environment_variables) == ("sk", "3", {"MODE": "fast"})
    assert defn.base_image == "img:1" and defn.enable_gpu and defn.interpreter_path is None
    again = EnvironmentDefinition.from_stored(defn.to_azure())
    assert again.resolved_packages() == ["six"] and again.hash == defn.hash


@pytest.mark.parametrize("doc, message", [
    ({"python": {"condaDependencies": {"dependencies": "numpy"}}}, "must be a list"),
    ({"python": {"condaDependencies": {"dependencies": [{"conda": ["x"]}]}}}, r"must be \{pip: \[...\]\}"),
    ({"python": []}, "environment.python must be an object"),
    ({"python": {"condaDependenciesFile": "missing.yml"}}, "does not exist"),
])
def test_bad_environment_documents_are_named(tmp_path, doc, message):
    with pytest.raises(DeployError, match=message):
        EnvironmentDefinition.from_azure(doc, tmp_path)


# -------------------------------------------------------------------------------------------- registry
def test_registry_versions(ws):
    one = ws.environments.register(env(["numpy"]))
    assert one.version == "1"
    assert ws.environments.register(env(["numpy"])).version == "1"  # unchanged: the same version
    assert ws.environments.register(env(["numpy", "pandas"])).version == "2"
    assert ws.environments.get("myenv").resolved_packages() == ["numpy", "pandas"]
    assert ws.environments.get("myenv", 1).resolved_packages() == ["numpy"]
    assert ws.environments.register(env(["six"], version="prod")).version == "prod"
    with pytest.raises(ConflictError, match="different definition"):
        ws.environments.register(env(["idna"], version="prod"))
    assert [e.version for e in ws.environments.list()] == ["1", "2", "prod"]
    with pytest.raises(NotFoundError, match=r"has no version 9 \(registered versions: 1, 2, prod\)"):
        ws.environments.get("myenv", 9)
    with pytest.raises(NotFoundError, match="no environment named 'nope'"):
        ws.environments.get("nope")


def test_registering_a_conda_only_environment_is_refused(ws):
    with pytest.raises(DeployError, match="cudatoolkit"):
        ws.environments.register(env(["cudatoolkit"]))
    assert ws.environments.list() == []


# --------------------------------------------------------------------------------------------- builder
def test_no_packages_or_user_managed_use_an_existing_interpreter(ws):
    builder = LocalEnvironmentBuilder(ws)
    assert builder.ensure(env(["python=3.11", {"pip": ["azureml-defaults"]}]), log=lambda _: None) == sys.executable
    managed = EnvironmentDefinition.from_azure({"name": "m", "python": {"userManagedDependencies": True,
                                                                         "interpreterPath": sys.executable}})
    assert builder.ensure(managed, log=lambda _: None) == sys.executable
    bad = EnvironmentDefinition.from_azure({"name": "m", "python": {"userManagedDependencies": True,
                                                                     "interpreterPath": "/no/such/python"}})
    with pytest.raises(DeployError, match="interpreterPath /no/such/python is not an executable"):
        builder.ensure(bad, log=lambda _: None)
    assert not ws.envs_dir.exists()


@pytest.mark.slow
def test_a_venv_is_built_once_per_hash_reused_and_rebuilt_on_request(ws):
    builder = LocalEnvironmentBuilder(ws)
    defn = env(["python=3.11", {"pip": ["six", "azureml-defaults"]}])
    lines: list[str] = []
    t0 = time.monotonic()
    python = builder.ensure(defn, log=lines.append)
    cold = time.monotonic() - t0
    assert python.startswith(str(ws.envs_dir / defn.hash))
    assert any("building" in line for line in lines)
    assert any("azureml-defaults" in line and "not installed" in line for line in lines)
    probe = subprocess.run([python, "-c", "import six, openscore.runtime, sys; print(six.__file__)"],
                           capture_output=True, text=True, check=True)
    assert probe.stdout.startswith(str(ws.envs_dir / defn.hash))  # the env's own copy, openscore from outside

    lines.clear()
    t0 = time.monotonic()
    renamed = env(["six"], name="another-name", version="5")  # same packages: same hash, same venv
    assert builder.ensure(renamed, log=lines.append) == python
    cached = time.monotonic() - t0
    assert not any("building" in line for line in lines)

    marker = (ws.envs_dir / defn.hash / MARKER).read_text()
    t0 = time.monotonic()
    assert builder.ensure(defn, rebuild=True, log=lines.append) == python
    rebuilt = time.monotonic() - t0
    assert (ws.envs_dir / defn.hash / MARKER).read_text() != marker
    print(f"environment build: cold {cold:.2f} s, cached {cached * 1000:.2f} ms, --rebuild {rebuilt:.2f} s")


@pytest.mark.slow
def test_a_half_built_env_is_built_again(ws, write):
    defn = env([{"pip": ["six"]}])
    write(ws.envs_dir / defn.hash / "bin" / "python", "")  # what a killed build leaves: no marker
    python = LocalEnvironmentBuilder(ws).ensure(defn, log=lambda _: None)
    subprocess.run([python, "-c", "import six"], check=True)


@pytest.mark.slow
def test_a_failed_pip_install_leaves_nothing_and_says_why(ws):
    defn = env([{"pip": ["openscore-no-such-package-anywhere==0.0.1"]}])
    with pytest.raises(DeployError) as info:
        LocalEnvironmentBuilder(ws).ensure(defn, log=lambda _: None)
    text = str(info.value)
    assert "pip install failed" in text and "openscore-no-such-package-anywhere" in text
    assert "No matching distribution" in text or "Could not find a version" in text  # pip's own last lines
    assert not (ws.envs_dir / defn.hash).exists()


@pytest.mark.slow
def test_two_builders_of_one_hash_build_it_once(ws):
    import threading
    defn = env([{"pip": ["six"]}])
    lines: list[str] = []
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(
        LocalEnvironmentBuilder(ws).ensure(defn, log=lines.append))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert sum("building" in line for line in lines) == 1, lines
