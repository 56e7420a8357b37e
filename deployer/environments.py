"""Environments: what a service's code needs installed, in Azure's Environment shape, and their registry.

On the local target an environment becomes a virtual environment built with pip (env_builder.py), so a
conda specification is honoured by installing its pip section and the conda packages whose names pip
knows (mapped where the names differ: pytorch -> torch). A conda-only package (cudatoolkit, mkl...) cannot
be had from pip: that is an error naming it, never a silent drop. The Azure packages a scoring container
gets only for its server (azureml-defaults, azureml-core, the monitoring ones) are not installed, because
openscore provides what entry scripts use from them; skipped() lists them for the deploy log.

The hash covers what changes the built result and nothing else (Azure's image-reuse rule): the base image,
the docker steps and the resolved package list; not the name, version or environment variables.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from openscore.deployer.documents import load_document
from openscore.deployer.errors import ConflictError, DeployError, NotFoundError
from openscore.deployer.store import Store

# Provided by openscore itself (its Azure shims and server): installing them would pull azureml-core's
# dependency tree for nothing, or shadow the shims.
PROVIDED = frozenset({
    "azureml-defaults", "azureml-core", "azureml-sdk", "azureml-inference-server-http", "azureml-contrib-services",
    "azureml-monitoring", "azureml-telemetry", "azureml-model-management-sdk", "azureml-dataprep",
})
# conda names -> pip names where they differ
CONDA_TO_PIP = {
    "pytorch": "torch", "pytorch-cpu": "torch", "py-xgboost": "xgboost", "py-opencv": "opencv-python",
    "opencv": "opencv-python", "tensorflow-gpu": "tensorflow", "pillow-simd": "pillow", "pyyaml": "PyYAML",
    "msgpack-python": "msgpack", "matplotlib-base": "matplotlib", "pytables": "tables", "lightgbm": "lightgbm",
    "py-lightgbm": "lightgbm", "onnxruntime-gpu": "onnxruntime-gpu", "protobuf": "protobuf",
}
# conda packages of native libraries and toolchains no pip package stands for
CONDA_ONLY = frozenset({
    "cudatoolkit", "cudnn", "cuda", "cuda-toolkit", "nccl", "mkl", "mkl-service", "mkl_fft", "mkl_random",
    "mkl-include", "intel-openmp", "blas", "openblas", "libblas", "liblapack", "libcblas", "magma",
    "gcc", "gxx", "gcc_linux-64", "gxx_linux-64", "gfortran", "make", "cmake-no-system", "openssl", "zlib",
    "ca-certificates", "certifi-conda", "libffi", "ncurses", "readline", "sqlite", "tk", "xz", "nodejs", "r-base",
    "ffmpeg", "libjpeg-turbo", "cupy-cuda", "faiss-gpu", "pytorch-cuda", "cpuonly", "nomkl",
})
# always part of the interpreter or the venv itself
INTERPRETER = frozenset({"python", "pip", "setuptools", "wheel", "python_abi"})
_CONDA_SPEC = re.compile(r"^\s*(?:(?P<channel>[^:\s]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*?)\s*$")


def normalize(name: str) -> str:
    """PEP 503's normal form (Azure-ML vs azureml_ml vs azureml.ml)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_name(spec: str) -> str:
    """The distribution a pip requirement line names (`scikit-learn>=1.3` -> scikit-learn)."""
    m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9_.\-]*)", spec)
    return normalize(m.group(1)) if m else ""


@dataclass(frozen=True)
class EnvironmentDefinition:
    name: str = "openscore-default"
    version: str | None = None
    environment_variables: dict[str, str] = field(default_factory=dict)
    user_managed_dependencies: bool = False
    interpreter_path: str | None = None
    conda: dict[str, Any] | None = None       # channels, dependencies (conda specs and one {"pip": [...]})
    pip: tuple[str, ...] = ()                 # requirement lines outside any conda spec
    base_image: str | None = None
    base_dockerfile: str | None = None
    docker_steps: str | None = None
    enable_gpu: bool = False
    inferencing_stack_version: str | None = None

    # ------------------------------------------------------------------------------------- Azure's shape
    @classmethod
    def from_azure(cls, doc: Mapping[str, Any], base_dir: Path | None = None) -> EnvironmentDefinition:
        """From Azure's Environment JSON (name, version, environmentVariables, python{...}, docker{...});
        `condaDependenciesFile` and `docker.baseDockerfile` file names are relative to `base_dir`."""
        if not isinstance(doc, Mapping):
            raise DeployError(f"environment must be an object (Azure's Environment JSON), not {type(doc).__name__}")
        name = doc.get("name") or "openscore-default"
        if not isinstance(name, str):
            raise DeployError(f"environment name must be a string, not {name!r}")
        version = doc.get("version")
        python = _obj(doc, "python", "environment")
        docker = _obj(doc, "docker", "environment")
        env_vars = _obj(doc, "environmentVariables", "environment")
        conda: dict[str, Any] | None = None
        if python.get("condaDependencies") is not None:
            conda = dict(_obj(python, "condaDependencies", "environment.python"))
        elif python.get("condaDependenciesFile"):
            conda = load_conda_file(Path(base_dir or ".") / str(python["condaDependenciesFile"]))
        if conda is not None:
            _check_conda(conda, f"environment {name}")
        dockerfile = docker.get("baseDockerfile")
        if isinstance(dockerfile, str) and "\n" not in dockerfile and base_dir is not None \
                and (base_dir / dockerfile).is_file():
            dockerfile = (base_dir / dockerfile).read_text()
        interpreter = python.get("interpreterPath")
        return cls(
            name=name, version=None if version is None else str(version),
            environment_variables={str(k): str(v) for k, v in env_vars.items()},
            user_managed_dependencies=bool(python.get("userManagedDependencies", False)),
            interpreter_path=interpreter if interpreter and interpreter != "python" else None,
            conda=conda, base_image=docker.get("baseImage") or None, base_dockerfile=dockerfile or None,
            enable_gpu=bool(docker.get("gpuSupport", False)),
            inferencing_stack_version=doc.get("inferencingStackVersion"),
        )

    def to_azure(self) -> dict[str, Any]:
        python: dict[str, Any] = {"userManagedDependencies": self.user_managed_dependencies,
                                  "interpreterPath": self.interpreter_path or "python",
                                  "condaDependencies": self._conda_with_pip()}
        return {
            "name": self.name, "version": self.version, "environmentVariables": dict(self.environment_variables),
            "python": python,
            "docker": {"enabled": False, "baseImage": self.base_image, "baseDockerfile": self.base_dockerfile,
                       "gpuSupport": self.enable_gpu},
            "inferencingStackVersion": self.inferencing_stack_version,
        }

    @classmethod
    def from_stored(cls, doc: Mapping[str, Any]) -> EnvironmentDefinition:
        """The inverse of to_azure(), for what the registry stored (docker steps kept apart by Azure)."""
        defn = cls.from_azure(doc)
        return replace(defn, docker_steps=doc.get("dockerSteps"))

    def _conda_with_pip(self) -> dict[str, Any] | None:
        """The conda document with `pip` folded into its pip section (Azure keeps one place for both)."""
        if self.conda is None and not self.pip:
            return None
        conda: dict[str, Any] = json.loads(json.dumps(self.conda or {"name": "project_environment",
                                                                      "dependencies": []}))
        if self.pip:
            deps = conda.setdefault("dependencies", [])
            section = next((d for d in deps if isinstance(d, dict) and "pip" in d), None)
            if section is None:
                section = {"pip": []}
                deps.append(section)
            section["pip"] = [*section["pip"], *self.pip]
        return conda

    # --------------------------------------------------------------------------------------- resolution
    def _resolve(self) -> tuple[list[str], list[str]]:
        packages: list[str] = []
        skipped: list[str] = []
        conda_only: list[str] = []
        conda = self._conda_with_pip() or {}
        for dep in conda.get("dependencies") or []:
            if isinstance(dep, dict):
                for line in dep.get("pip") or []:
                    line = str(line).strip()
                    if not line or line.startswith("#"):
                        continue
                    if pip_name(line) in PROVIDED:
                        skipped.append(line)
                    else:
                        packages.append(line)
                continue
            m = _CONDA_SPEC.match(str(dep))
            if not m:
                raise DeployError(f"environment {self.name}: {dep!r} is not a conda package spec")
            name, rest = m.group("name").lower(), m.group("rest")
            if name in INTERPRETER:
                if name == "python" and rest:
                    skipped.append(f"python{rest} (this machine's python {sys.version_info.major}."
                                   f"{sys.version_info.minor} runs the environment)")
                continue
            if name in CONDA_ONLY or name.startswith(("lib", "_", "cuda-")):
                conda_only.append(str(dep))
                continue
            if normalize(name) in PROVIDED:
                skipped.append(str(dep))
                continue
            packages.append(CONDA_TO_PIP.get(name, name) + _conda_version(rest, str(dep), self.name))
        if conda_only:
            raise DeployError(
                f"environment {self.name}: conda-only package{'s' if len(conda_only) > 1 else ''} "
                f"{', '.join(conda_only)} cannot be installed with pip on the local target: remove "
                f"{'them' if len(conda_only) > 1 else 'it'} from the conda dependencies (pip wheels bundle what "
                "they need, e.g. torch brings its CUDA libraries) or use userManagedDependencies with an "
                "interpreter that has them")
        return packages, skipped

    def resolved_packages(self) -> list[str]:
        """The pip requirement lines that build this environment, in order."""
        return self._resolve()[0]

    def skipped(self) -> list[str]:
        """What the specification names but is not installed, and why (for the deploy log)."""
        return self._resolve()[1]

    @property
    def needs_build(self) -> bool:
        return not self.user_managed_dependencies and bool(self.resolved_packages())

    @property
    def hash(self) -> str:
        """Same for two definitions that build the same thing, whatever their names."""
        basis = {"baseImage": self.base_image, "baseDockerfile": self.base_dockerfile,
                 "dockerSteps": self.docker_steps, "packages": self.resolved_packages(),
                 "userManagedDependencies": self.user_managed_dependencies, "interpreter": self.interpreter_path}
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()


def _conda_version(rest: str, dep: str, env: str) -> str:
    """A conda version constraint as pip's: `=1.2` (prefix) -> `==1.2.*`, `==1.2`, `>=1.2,<2`; a build string
    (`=1.2=py38_0`, `1.2 py38_0`) is dropped."""
    rest = rest.strip()
    if not rest:
        return ""
    if rest[0].isdigit() or rest[0] == "*":  # "numpy 1.21.2 py38_0": version then build
        rest = "=" + rest.split()[0]
    if rest.startswith("=") and not rest.startswith("=="):
        version = rest[1:].split("=")[0].strip()
        if not version or version == "*":
            return ""
        return f"=={version}" if version.endswith(".*") else f"=={version.rstrip('*').rstrip('.')}.*"
    if rest[0] in "<>!~=":
        return rest.replace(" ", "")
    raise DeployError(f"environment {env}: cannot read the version in conda spec {dep!r}")


def _obj(doc: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise DeployError(f"{where}.{key} must be an object, not {type(value).__name__}")
    return value


def _check_conda(conda: Mapping[str, Any], where: str) -> None:
    deps = conda.get("dependencies")
    if deps is not None and not isinstance(deps, list):
        raise DeployError(f"{where}: condaDependencies.dependencies must be a list")
    for d in deps or []:
        if isinstance(d, dict):
            if set(d) != {"pip"} or not isinstance(d["pip"], list):
                raise DeployError(f"{where}: a mapping in the conda dependencies must be {{pip: [...]}}, not {d}")
        elif not isinstance(d, str):
            raise DeployError(f"{where}: conda dependency {d!r} must be a string")


def load_conda_file(path: Path) -> dict[str, Any]:
    """A conda environment file (YAML, or JSON)."""
    doc = load_document(path, "conda specification")
    _check_conda(doc, f"conda specification {path}")
    return doc


def from_conda_file(path: Path, *, name: str = "openscore-default", base_image: str | None = None,
                    docker_steps: str | None = None, enable_gpu: bool = False) -> EnvironmentDefinition:
    """The environment a legacy inferenceconfig (condaFile, baseImage, extraDockerfileSteps) describes."""
    return EnvironmentDefinition(name=name, conda=load_conda_file(path), base_image=base_image,
                                 docker_steps=docker_steps, enable_gpu=enable_gpu)


# ------------------------------------------------------------------------------------------------ registry
class EnvironmentRegistry:
    """`environment register/list/show`: versions are strings, "1", "2"... unless the user names one."""

    def __init__(self, ws: Store) -> None:
        self.ws = ws

    def register(self, defn: EnvironmentDefinition) -> EnvironmentDefinition:
        """Store `defn`. Without a version: the latest version if it is the same definition (as Azure
        reuses it), else the next number. With one: that version; the same name and version with a
        different definition is a conflict."""
        if not defn.name or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$", defn.name):
            raise DeployError(f"environment name {defn.name!r} is not valid: start with a letter or digit, use "
                              "letters, digits, '-', '_' and '.', at most 255 characters")
        defn.resolved_packages()  # a conda-only package is refused now, not at deploy time
        body = _stored(defn)
        with self.ws.transaction() as db:
            rows = db.execute("SELECT version, definition FROM environments WHERE name = ? ORDER BY seq DESC",
                              (defn.name,)).fetchall()
            if defn.version is None:
                if rows and _same(rows[0]["definition"], body):
                    return self.get(defn.name, rows[0]["version"])
                numbers = [int(r["version"]) for r in rows if str(r["version"]).isdigit()]
                version = str(max(numbers, default=0) + 1)
            else:
                version = defn.version
                existing = next((r for r in rows if r["version"] == version), None)
                if existing is not None:
                    if _same(existing["definition"], body):
                        return self.get(defn.name, version)
                    raise ConflictError(f"environment {defn.name} version {version} is registered with a different "
                                        "definition: register without a version (the next number) or pick a new one")
            stored = replace(defn, version=version)
            db.execute("INSERT INTO environments (name, version, seq, definition, hash, created) VALUES "
                       "(?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM environments WHERE name = ?), ?, ?, ?)",
                       (defn.name, version, defn.name, json.dumps(_stored(stored)), stored.hash, time.time()))
        return stored

    def get(self, name: str, version: str | int | None = None) -> EnvironmentDefinition:
        db = self.ws.db()
        if version is None:
            row = db.execute("SELECT definition FROM environments WHERE name = ? ORDER BY seq DESC LIMIT 1",
                             (name,)).fetchone()
        else:
            row = db.execute("SELECT definition FROM environments WHERE name = ? AND version = ?",
                             (name, str(version))).fetchone()
        if row is None:
            versions = [r[0] for r in db.execute("SELECT version FROM environments WHERE name = ? ORDER BY seq",
                                                 (name,))]
            if not versions:
                raise NotFoundError(f"no environment named {name!r} is registered "
                                    "(openscore environment list shows what is)")
            raise NotFoundError(f"environment {name!r} has no version {version} "
                                f"(registered versions: {', '.join(versions)})")
        return EnvironmentDefinition.from_stored(json.loads(row[0]))

    def list(self, name: str | None = None) -> list[EnvironmentDefinition]:
        sql, args = "SELECT definition FROM environments", []
        if name is not None:
            sql, args = sql + " WHERE name = ?", [name]
        return [EnvironmentDefinition.from_stored(json.loads(r[0]))
                for r in self.ws.db().execute(sql + " ORDER BY name, seq", args)]


def _stored(defn: EnvironmentDefinition) -> dict[str, Any]:
    return {**defn.to_azure(), "dockerSteps": defn.docker_steps}


def _same(stored_json: str, body: Mapping[str, Any]) -> bool:
    a = {k: v for k, v in json.loads(stored_json).items() if k != "version"}
    return a == {k: v for k, v in body.items() if k != "version"}
