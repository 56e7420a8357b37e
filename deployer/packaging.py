"""Lay out what one deployment's replicas run: `<ws>/deployments/<service>/<deployment id>/`.

The folder is Azure's container app root (`/var/azureml-app`): the source snapshot extracted, the entry
script in it, and each model at `azureml-models/<name>/<version>/<registered file or folder>` (spec 1.10).
AZUREML_MODEL_DIR is Azure's *relative* value with cwd = the app root: `azureml-models/<name>/<version>` for
one model, `azureml-models` for several, so scripts that split it (`.split('/')[1]`, `[-2]`) keep working.

The folder is built beside its final name and renamed into place, so a failure leaves nothing half-made.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from openscore.deployer.errors import DeployError

if TYPE_CHECKING:
    from openscore.deployer.environments import EnvironmentDefinition
    from openscore.deployer.inference_config import InferenceConfigSpec
    from openscore.deployer.models import ModelRecord
    from openscore.deployer.workspace import Workspace

MAX_MODELS = 1000  # Azure's limit per deployment
MODELS_DIR = "azureml-models"


@dataclass(frozen=True)
class Package:
    deployment_id: str
    app_root: Path
    entry_script: Path                      # absolute, inside app_root
    model_dir: str                          # AZUREML_MODEL_DIR, relative to app_root ("" without models)
    environment_variables: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable

    def router_keys(self) -> dict[str, object]:
        """The inference half of the router's version document."""
        doc: dict[str, object] = {"entryScript": str(self.entry_script), "sourceDirectory": str(self.app_root),
                                  "environmentVariables": dict(self.environment_variables)}
        if self.model_dir:
            # the router makes `modelDir` absolute; the replica's own flag keeps Azure's relative value
            doc["replicaArgs"] = ["--model-dir", self.model_dir]
        doc["pythonInterpreter"] = self.python
        return doc


def model_dir_for(models: Sequence[ModelRecord]) -> str:
    if not models:
        return ""
    if len(models) == 1:
        return f"{MODELS_DIR}/{models[0].name}/{models[0].version}"
    return MODELS_DIR


def check_models(models: Sequence[ModelRecord]) -> None:
    if len(models) > MAX_MODELS:
        raise DeployError(f"{len(models)} models given: a deployment holds at most {MAX_MODELS} models "
                          "(Azure's limit); split them over several services")
    seen: set[str] = set()
    for m in models:
        if m.id in seen:
            raise DeployError(f"model {m.id} is given twice")
        seen.add(m.id)


def entry_relative(ic: InferenceConfigSpec) -> Path:
    """The entry script's path inside the app root (Azure: relative to sourceDirectory)."""
    entry = Path(ic.entry_script)
    if ic.source_directory is None:
        return Path(entry.name)
    if entry.is_absolute():
        try:
            return entry.resolve().relative_to(Path(ic.source_directory).resolve())
        except ValueError:
            raise DeployError(f"entryScript {entry} is not inside sourceDirectory {ic.source_directory}") from None
    return entry


def check_source(ic: InferenceConfigSpec) -> Path:
    """The entry script as a file that exists now (before anything is written)."""
    if ic.source_directory is not None:
        src = Path(ic.source_directory)
        if not src.is_dir():
            raise DeployError(f"sourceDirectory {src} is not a folder that exists")
        path = src / entry_relative(ic)
    else:
        path = Path(ic.entry_script)
    if not path.is_file():
        raise DeployError(f"entryScript {path} does not exist (it is relative to sourceDirectory, when one is "
                          "given)")
    return path


def build_package(ws: Workspace, service: str, models: Sequence[ModelRecord], ic: InferenceConfigSpec,
                  environment: EnvironmentDefinition | None, python: str) -> Package:
    """Write a new deployment folder; everything checkable was checked before (check_models, check_source)."""
    from openscore.deployer.snapshot import extract_snapshot, snapshot_source

    deployment_id = f"{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}"
    final = ws.deployments_dir / service / deployment_id
    work = final.with_name(f".{deployment_id}.tmp")
    work.mkdir(parents=True)
    try:
        rel = entry_relative(ic)
        if ic.source_directory is not None:
            snap = snapshot_source(ws, Path(ic.source_directory))
            extract_snapshot(ws, snap.digest, work)
            if not (work / rel).is_file():
                raise DeployError(f"entryScript {rel} is not in the source snapshot of {ic.source_directory} "
                                  "(is it named in .amlignore or .gitignore?)")
        else:
            shutil.copy2(ic.entry_script, work / rel)
        for m in models:
            dest = work / MODELS_DIR / m.name / str(m.version)
            dest.mkdir(parents=True, exist_ok=True)
            ws.models.materialize(m, dest)
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    env_vars = dict(environment.environment_variables) if environment is not None else {}
    return Package(deployment_id=deployment_id, app_root=final, entry_script=final / rel,
                   model_dir=model_dir_for(models), environment_variables={str(k): str(v) for k, v in
                                                                           env_vars.items()}, python=python)


def remove_deployments(ws: Workspace, service: str, keep: set[str] | None = None) -> None:
    """Delete a service's deployment folders, except those in `keep` (the ones still in use)."""
    base = ws.deployments_dir / service
    if not base.is_dir():
        return
    for d in base.iterdir():
        if keep is None or d.name not in keep:
            shutil.rmtree(d, ignore_errors=True)
    if keep is None:
        shutil.rmtree(base, ignore_errors=True)


def environment_python(ws: Workspace, environment: EnvironmentDefinition | None, *, rebuild: bool,
                       log: Callable[[str], None]) -> str:
    """The interpreter the replicas run: the current one, or the environment's built venv."""
    if environment is None:
        return sys.executable
    from openscore.deployer.env_builder import LocalEnvironmentBuilder
    return LocalEnvironmentBuilder(ws).ensure(environment, rebuild=rebuild, log=log)
