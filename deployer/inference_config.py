"""inferenceconfig.json / .yml (spec 2.4): what code to run and in which environment.

Azure's keys are camelCase in the file (`entryScript`, `sourceDirectory`, `environment`, legacy `runtime`,
`condaFile`, `extraDockerfileSteps`, `baseImage`, `enableGpu`); the SDK's snake_case names are taken too, so
the SDK's InferenceConfig can hand its arguments over as they are. Paths are relative to the source
directory when there is one (as Azure's), and that to the file's folder.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openscore.deployer.documents import load_document
from openscore.deployer.environments import EnvironmentDefinition, from_conda_file
from openscore.deployer.errors import DeployError, NotFoundError
from openscore.deployer.store import Store

RUNTIMES = ("python", "spark-py", "python-slim")
# the file's key -> the SDK's parameter name (both accepted)
KEYS = {
    "entryScript": "entry_script", "sourceDirectory": "source_directory", "environment": "environment",
    "runtime": "runtime", "condaFile": "conda_file", "extraDockerfileSteps": "extra_docker_file_steps",
    "baseImage": "base_image", "enableGpu": "enable_gpu", "description": "description",
    "baseImageRegistry": "base_image_registry", "cudaVersion": "cuda_version",
}
ALIASES = {"extraDockerFileSteps": "extraDockerfileSteps"}  # the docs table's spelling of the key the code reads


@dataclass(frozen=True)
class InferenceConfigSpec:
    entry_script: str                      # absolute, resolved
    source_directory: Path | None = None
    environment: EnvironmentDefinition | None = None
    environment_ref: tuple[str, str | None] | None = None   # -e NAME --ev VERSION (a registered one)
    runtime: str | None = None
    conda_file: Path | None = None
    extra_docker_steps: str | None = None
    base_image: str | None = None
    enable_gpu: bool = False
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], base_dir: Path, *, where: str = "inference config"
                  ) -> InferenceConfigSpec:
        if not isinstance(doc, Mapping):
            raise DeployError(f"{where} must be an object, not {type(doc).__name__}")
        d: dict[str, Any] = {}
        for key, value in doc.items():
            key = ALIASES.get(key, key)
            camel = next((k for k, snake in KEYS.items() if key in (k, snake)), None)
            if camel is not None and value is not None:
                d[camel] = value
        base_dir = Path(base_dir).absolute()

        source: Path | None = None
        if d.get("sourceDirectory"):
            source = _path(d, "sourceDirectory", base_dir, where)
            if not source.is_dir():
                raise NotFoundError(f"{where}: sourceDirectory {source} does not exist or is not a folder")
        rel_base = source or base_dir

        script = d.get("entryScript")
        if not script or not isinstance(script, str):
            raise DeployError(f"{where}: entryScript is required (the score.py with init() and run())")
        entry = Path(script) if Path(script).is_absolute() else rel_base / script
        if not entry.is_file():
            raise NotFoundError(f"{where}: entry script {script} not found (looked for {entry})")
        if source is not None and not _inside(entry, source):
            raise DeployError(f"{where}: entry script {entry} is outside sourceDirectory {source}: only the source "
                              "directory is deployed")

        runtime = d.get("runtime")
        if runtime is not None and (not isinstance(runtime, str) or runtime.lower() not in RUNTIMES):
            raise DeployError(f"{where}: runtime {runtime!r} is not one of {', '.join(RUNTIMES)}")

        environment, ref = None, None
        env_doc = d.get("environment")
        if env_doc is not None:
            if not isinstance(env_doc, Mapping):
                raise DeployError(f"{where}: environment must be an Environment object (or use -e NAME --ev VERSION)")
            if set(env_doc) <= {"name", "version"} and env_doc.get("name"):  # a reference to a registered one
                version = env_doc.get("version")
                ref = (str(env_doc["name"]), None if version is None else str(version))
            else:
                environment = EnvironmentDefinition.from_azure(env_doc, rel_base)

        conda_file = None
        if d.get("condaFile"):
            conda_file = _path(d, "condaFile", rel_base, where)
            if not conda_file.is_file():
                raise NotFoundError(f"{where}: condaFile {conda_file} not found")
        steps = None
        if d.get("extraDockerfileSteps"):
            steps_path = _path(d, "extraDockerfileSteps", rel_base, where)
            if not steps_path.is_file():
                raise NotFoundError(f"{where}: extraDockerfileSteps {steps_path} not found")
            steps = steps_path.read_text()
        enable_gpu = d.get("enableGpu", False)
        if not isinstance(enable_gpu, bool):
            raise DeployError(f"{where}: enableGpu must be true or false, not {enable_gpu!r}")
        base_image = d.get("baseImage")
        if base_image is not None and not isinstance(base_image, str):
            raise DeployError(f"{where}: baseImage must be an image name")
        return cls(entry_script=str(entry.absolute()), source_directory=source, environment=environment,
                   environment_ref=ref, runtime=runtime, conda_file=conda_file, extra_docker_steps=steps,
                   base_image=base_image, enable_gpu=enable_gpu, description=str(d.get("description") or ""),
                   raw=dict(doc))

    def with_environment_ref(self, name: str, version: str | int | None = None) -> InferenceConfigSpec:
        """The same config using a registered environment (the CLI's -e NAME --ev VERSION)."""
        from dataclasses import replace
        return replace(self, environment=None, environment_ref=(name, None if version is None else str(version)))

    def resolve_environment(self, ws: Store) -> EnvironmentDefinition:
        """The environment to build: the full object, else the registered one named, else the legacy
        condaFile/baseImage/extraDockerfileSteps, else an empty one (this interpreter)."""
        if self.environment is not None:
            return self.environment
        if self.environment_ref is not None:
            from openscore.deployer.environments import EnvironmentRegistry
            return EnvironmentRegistry(ws).get(*self.environment_ref)
        if self.conda_file is not None:
            return from_conda_file(self.conda_file, base_image=self.base_image,
                                   docker_steps=self.extra_docker_steps, enable_gpu=self.enable_gpu)
        return EnvironmentDefinition(base_image=self.base_image, docker_steps=self.extra_docker_steps,
                                     enable_gpu=self.enable_gpu)

    @property
    def app_root(self) -> Path:
        """The folder deployed as the app root: the source directory, else the entry script's folder."""
        return self.source_directory or Path(self.entry_script).parent

    @property
    def entry_script_relative(self) -> str:
        """The entry script's path within app_root (what the deployed copy is run as)."""
        return Path(self.entry_script).relative_to(self.app_root.absolute()).as_posix()


def load_inference_config(path: str | Path) -> InferenceConfigSpec:
    path = Path(path)
    doc = load_document(path, "inference config")
    return InferenceConfigSpec.from_dict(doc, path.absolute().parent, where=f"inference config {path}")


def _path(d: Mapping[str, Any], key: str, base: Path, where: str) -> Path:
    value = d[key]
    if not isinstance(value, str):
        raise DeployError(f"{where}: {key} must be a path, not {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p).absolute()


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False
