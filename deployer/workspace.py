"""A workspace: the folder that holds everything the deployer registers and deploys.

    <root>/workspace.db        SQLite (WAL): models, environments, services, operations (schema.py)
    <root>/artifacts/sha256/   content-addressed blobs (artifacts.py)
    <root>/envs/<hash>/        built virtual environments (env_builder.py)
    <root>/deployments/, router/, router.json   the lifecycle's (lifecycle.py, local_router.py)

The database and folders are store.Store's; this module adds how a workspace is found (as azureml's
Workspace.from_config finds config.json) and the registries.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path

from openscore.deployer.artifacts import ArtifactStore
from openscore.deployer.environments import EnvironmentRegistry
from openscore.deployer.errors import DeployError
from openscore.deployer.models import ModelRegistry
from openscore.deployer.store import ENV_VAR, Store

CONFIG_KEY = "openscoreWorkspace"        # in config.json: where the workspace folder is (relative to it)
DEFAULT_FOLDER = ".openscore"            # beside a config.json without that key, and in the home folder
# keys of Azure's config.json (Workspace.write_config): a config.json without any is some other tool's
AZURE_CONFIG_KEYS = ("subscription_id", "resource_group", "workspace_name", CONFIG_KEY)

__all__ = ["ENV_VAR", "Workspace", "config_workspace", "find_config"]


class Workspace(Store):
    """One workspace folder; opens (and migrates) its database when constructed."""

    # ---------------------------------------------------------------------------------------- finding one
    @classmethod
    def find(cls, explicit: str | Path | None = None, *, start: Path | None = None,
             create: bool = True) -> Workspace:
        """The workspace to use: `explicit` (--workspace), else $OPENSCORE_WORKSPACE, else the one a
        config.json names (found as azureml's Workspace.from_config finds it: in `start` (cwd) and each
        parent, `.azureml/config.json` or `config.json`), else ~/.openscore."""
        if explicit is not None and str(explicit) != "":
            return cls(explicit, create=create)
        env = os.environ.get(ENV_VAR)
        if env:
            return cls(env, create=create)
        config = find_config(start)
        if config is not None:
            return cls(config_workspace(config), create=create)
        return cls(Path.home() / DEFAULT_FOLDER, create=create)

    # ----------------------------------------------------------------------------------------- registries
    @cached_property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self)

    @cached_property
    def models(self) -> ModelRegistry:
        return ModelRegistry(self)

    @cached_property
    def environments(self) -> EnvironmentRegistry:
        return EnvironmentRegistry(self)


# --------------------------------------------------------------------------------------------- config.json
def find_config(start: Path | None = None) -> Path | None:
    """The Azure config.json nearest `start` (default cwd): in each folder up to the root, first
    `.azureml/config.json`, then `config.json`, as azureml's Workspace.from_config looks. A config.json that
    is not Azure's (not a JSON object with any of its keys) is some other tool's and is passed over."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        for candidate in (folder / ".azureml" / "config.json", folder / "config.json"):
            if candidate.is_file() and _is_azure_config(candidate):
                return candidate
    return None


def _is_azure_config(path: Path) -> bool:
    try:
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and any(k in doc for k in AZURE_CONFIG_KEYS)


def config_workspace(config: Path) -> Path:
    """The workspace folder a config.json names: its `openscoreWorkspace` (relative to the project folder),
    else `<project folder>/.openscore`. The project folder is the config's, or the one above `.azureml/`."""
    project = config.parent.parent if config.parent.name == ".azureml" else config.parent
    doc = json.loads(config.read_text(encoding="utf-8-sig"))
    named = doc.get(CONFIG_KEY)
    if named is not None:
        if not isinstance(named, str) or not named.strip():
            raise DeployError(f"{config}: {CONFIG_KEY} must be a folder path (a non-empty string)")
        return (project / Path(named).expanduser()).absolute()
    return project / DEFAULT_FOLDER
