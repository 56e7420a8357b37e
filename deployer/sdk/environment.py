"""`Environment` with azureml-core's names: what a service's replicas run in.

The object edits an Azure Environment document (the JSON `environment` of an inferenceconfig); the
deployer (openscore.deployer.environments) reads, hashes, registers and builds it. On the local target an
environment is a virtual environment built once per hash (`build_local`); `build` makes its container image
(openscore.images).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openscore.sdk.conda_dependencies import CondaDependencies
from openscore.sdk.exceptions import UserErrorException, WebserviceException, as_webservice_errors

if TYPE_CHECKING:
    from openscore.deployer.environments import EnvironmentDefinition
    from openscore.sdk.workspace import Workspace


class PythonSection:
    """`env.python`: how the interpreter and its packages are provided."""

    def __init__(self) -> None:
        self.user_managed_dependencies = False
        self.interpreter_path: str | None = None
        self.conda_dependencies_file: str | None = None
        self.base_conda_environment: str | None = None
        self.conda_dependencies: CondaDependencies | None = CondaDependencies()


class DockerSection:
    """`env.docker`: the image a cluster target builds (kept and hashed; the local target runs no container)."""

    def __init__(self) -> None:
        self.enabled = False
        self.base_image: str | None = None
        self.base_dockerfile: str | None = None
        self.shared_volumes = True
        self.shm_size: str | None = None
        self.arguments: list[str] = []
        self.base_image_registry: dict[str, Any] = {}


class Environment:
    """An environment definition; `register(ws)` stores it as the next version of its name."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise UserErrorException("Environment(): name must be a non-empty str")
        self.name = name
        self.version: str | None = None
        self.python = PythonSection()
        self.docker = DockerSection()
        self.environment_variables: dict[str, str] = {}
        self.inferencing_stack_version: str | None = None
        self._base_dir: Path | None = None  # where relative files of a loaded specification live

    # -- constructors
    @staticmethod
    def from_conda_specification(name: str, file_path: str) -> Environment:
        env = Environment(name)
        env.python.conda_dependencies = CondaDependencies(conda_dependencies_file_path=file_path)
        return env

    @staticmethod
    def from_pip_requirements(name: str, file_path: str, pip_version: str | None = None) -> Environment:
        """An environment with the requirements file's packages (comments and blank lines skipped)."""
        try:
            lines = Path(file_path).read_text().splitlines()
        except OSError as e:
            raise UserErrorException(f"pip requirements {file_path} cannot be read: {e.strerror or e}") from None
        env = Environment(name)
        cd = CondaDependencies()
        if pip_version:
            cd.add_conda_package(f"pip={pip_version}")
        for line in lines:
            spec = line.split("#", 1)[0].strip()
            if spec:
                cd.add_pip_package(spec) if not spec.startswith("-") else cd.set_pip_option(spec)
        env.python.conda_dependencies = cd
        return env

    @staticmethod
    def from_existing_conda_environment(name: str, conda_environment_name: str) -> Environment:
        raise UserErrorException(
            "Environment.from_existing_conda_environment: openscore does not read conda installations; export "
            "it (conda env export > env.yml) and use Environment.from_conda_specification")

    @staticmethod
    def get(workspace: Workspace, name: str, version: str | int | None = None) -> Environment:
        """A registered environment (the newest version unless one is given)."""
        with as_webservice_errors():
            defn = workspace.store.environments.get(name, None if version is None else str(version))
        return Environment._from_definition(defn)

    @staticmethod
    def list(workspace: Workspace) -> dict[str, Environment]:
        """The newest version of each registered environment, by name."""
        with as_webservice_errors():
            defns = workspace.store.environments.list()
        out: dict[str, Environment] = {}
        for d in defns:
            out[d.name] = Environment._from_definition(d)  # listed oldest first, so the newest stays
        return out

    def register(self, workspace: Workspace) -> Environment:
        """Store this definition as the next version of its name; returns the registered one."""
        with as_webservice_errors():
            defn = workspace.store.environments.register(self.definition())
        registered = Environment._from_definition(defn)
        self.version = registered.version
        return registered

    def build_local(self, workspace: Workspace, useDocker: bool = False, **kwargs: Any) -> str:
        """Build (once per hash) the virtual environment the local target runs this in; returns its python."""
        from openscore.deployer.env_builder import LocalEnvironmentBuilder
        with as_webservice_errors():
            return LocalEnvironmentBuilder(workspace.store).ensure(self.definition())

    def build(self, workspace: Workspace, image_build_compute: str | None = None) -> Any:
        """Build (once per hash) this environment's container image in local storage, on this machine, and
        return it (`.by_digest`, `.cached`); the build steps are printed as they run. Needs openscore.images
        (the local target needs no image: build_local)."""
        import importlib.util
        if importlib.util.find_spec("openscore.images") is None:
            raise WebserviceException(
                "Environment.build builds a container image, which needs openscore.images (not installed here). "
                "The local target runs environments without images: use env.build_local(ws), or just deploy.",
                status_code=501)
        if image_build_compute is not None:
            raise UserErrorException(f"Environment.build: image_build_compute={image_build_compute!r}: openscore "
                                     "builds images on this machine; leave it out")
        from openscore.deployer.cli import build_environment_image
        with as_webservice_errors():
            return build_environment_image(self.definition())

    def clone(self, new_name: str) -> Environment:
        env = copy.deepcopy(self)
        env.name, env.version = new_name, None
        return env

    # -- the Azure document
    def to_document(self) -> dict[str, Any]:
        """The Azure Environment JSON (an inferenceconfig's `environment`)."""
        p, d = self.python, self.docker
        return {
            "name": self.name, "version": self.version,
            "environmentVariables": dict(self.environment_variables),
            "python": {"userManagedDependencies": p.user_managed_dependencies, "interpreterPath": p.interpreter_path,
                       "condaDependenciesFile": p.conda_dependencies_file,
                       "baseCondaEnvironment": p.base_conda_environment,
                       "condaDependencies": p.conda_dependencies.as_dict() if p.conda_dependencies else None},
            "docker": {"enabled": d.enabled, "baseImage": d.base_image, "baseDockerfile": d.base_dockerfile,
                       "sharedVolumes": d.shared_volumes, "shmSize": d.shm_size, "arguments": list(d.arguments),
                       "baseImageRegistry": dict(d.base_image_registry)},
            "inferencingStackVersion": self.inferencing_stack_version,
        }

    def definition(self) -> EnvironmentDefinition:
        """The deployer's reading of this environment (resolves and checks its packages)."""
        from openscore.deployer.environments import EnvironmentDefinition
        with as_webservice_errors():
            return EnvironmentDefinition.from_azure(self.to_document(), self._base_dir or Path.cwd())

    @staticmethod
    def _from_definition(defn: EnvironmentDefinition) -> Environment:
        return Environment._from_document(defn.to_azure())

    @staticmethod
    def _from_document(doc: dict[str, Any]) -> Environment:
        env = Environment(str(doc.get("name") or "environment"))
        env.version = None if doc.get("version") is None else str(doc["version"])
        env.environment_variables = dict(doc.get("environmentVariables") or {})
        env.inferencing_stack_version = doc.get("inferencingStackVersion")
        py = doc.get("python") or {}
        env.python.user_managed_dependencies = bool(py.get("userManagedDependencies"))
        env.python.interpreter_path = py.get("interpreterPath")
        env.python.base_conda_environment = py.get("baseCondaEnvironment")
        conda = py.get("condaDependencies")
        env.python.conda_dependencies = CondaDependencies(_underlying_structure=conda) if conda else None
        dk = doc.get("docker") or {}
        env.docker.enabled = bool(dk.get("enabled"))
        env.docker.base_image = dk.get("baseImage")
        env.docker.base_dockerfile = dk.get("baseDockerfile")
        env.docker.arguments = list(dk.get("arguments") or [])
        return env

    def __repr__(self) -> str:
        return f"Environment(name={self.name!r}, version={self.version!r})"

