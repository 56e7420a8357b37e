"""`InferenceConfig`: the entry script, its source folder and environment (spec 2.4).

It is the inferenceconfig.json document the CLI reads, turned into the deployer's InferenceConfigSpec
by the same reader (openscore.deployer.inference_config), relative paths against the working directory
as azureml-core resolves them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from openscore.sdk.exceptions import as_webservice_errors

if TYPE_CHECKING:
    from openscore.deployer.inference_config import InferenceConfigSpec
    from openscore.sdk.environment import Environment


class InferenceConfig:
    """azureml-core's InferenceConfig(entry_script, runtime, conda_file, ..., environment)."""

    def __init__(self, entry_script: str | None = None, runtime: str | None = None,
                 conda_file: str | None = None, extra_docker_file_steps: str | None = None,
                 source_directory: str | None = None, enable_gpu: bool | None = None,
                 description: str | None = None, base_image: str | None = None,
                 base_image_registry: Any = None, cuda_version: str | None = None,
                 environment: Environment | None = None) -> None:
        self.entry_script = entry_script
        self.runtime = runtime
        self.conda_file = conda_file
        self.extra_docker_file_steps = extra_docker_file_steps
        self.source_directory = source_directory
        self.enable_gpu = enable_gpu
        self.description = description
        self.base_image = base_image
        self.base_image_registry = base_image_registry
        self.cuda_version = cuda_version
        self.environment = environment
        self._base_dir = Path.cwd()  # azureml-core resolves relative paths against the cwd of the call
        self.validate_configuration()

    def to_document(self) -> dict[str, Any]:
        """The inferenceconfig.json document with these settings (spec 2.4 keys)."""
        doc: dict[str, Any] = {
            "entryScript": self.entry_script, "runtime": self.runtime, "condaFile": self.conda_file,
            "extraDockerfileSteps": self.extra_docker_file_steps, "sourceDirectory": self.source_directory,
            "enableGpu": self.enable_gpu, "description": self.description, "baseImage": self.base_image,
            "cudaVersion": self.cuda_version,
            "environment": self.environment.to_document() if self.environment is not None else None}
        return {k: v for k, v in doc.items() if v is not None}

    def spec(self) -> InferenceConfigSpec:
        """The deployer's reading of this configuration (files checked); WebserviceException naming a problem."""
        from openscore.deployer.inference_config import InferenceConfigSpec
        with as_webservice_errors():
            return InferenceConfigSpec.from_dict(self.to_document(), self._base_dir, where="InferenceConfig")

    def validate_configuration(self) -> None:
        """azureml-core checks the files when the object is made: a missing entry script fails here."""
        self.spec()

    def __repr__(self) -> str:
        return f"InferenceConfig({self.to_document()!r})"
