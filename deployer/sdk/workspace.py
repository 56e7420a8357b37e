"""`Workspace` with azureml-core's constructors, over an openscore workspace folder.

`Workspace.from_config()` finds config.json exactly where azureml-core looks and uses the workspace folder
it names (`openscoreWorkspace`, else `.openscore` beside it). The Azure coordinates (subscription, resource
group, name) are kept for display only: the workspace is a local folder, there is nothing to sign in to.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openscore.deployer import workspace as store
from openscore.sdk.exceptions import UserErrorException, as_webservice_errors


class Workspace:
    """An openscore workspace, reachable by azureml-core's names; `.store` is the deployer's Workspace."""

    def __init__(self, subscription_id: str | None = None, resource_group: str | None = None,
                 workspace_name: str | None = None, auth: Any = None, _location: str | None = None,
                 _disable_service_check: bool = False, _workspace_id: str | None = None, sku: str = "basic",
                 tags: dict[str, str] | None = None, _cloud: str = "AzureCloud", *,
                 _folder: str | Path | None = None) -> None:
        # auth (an azureml.core.authentication object) is accepted and unused: a local folder needs no sign-in
        with as_webservice_errors():
            self.store = store.Workspace(_folder) if _folder is not None else store.Workspace.find()
        self.subscription_id = subscription_id
        self.resource_group = resource_group
        self.name = workspace_name or self.store.root.name
        self.location = _location
        self.sku = sku
        self.tags = tags or {}

    @classmethod
    def from_config(cls, path: str | Path | None = None, auth: Any = None, _logger: Any = None,
                    _file_name: str | None = None) -> Workspace:
        """The workspace a config.json names: `path` is that file or a folder to search from (default cwd)."""
        given = Path(path).expanduser() if path is not None else None
        if given is not None and not given.exists():  # a typo must not fall back to some parent's config.json
            raise UserErrorException(f"We could not find config.json in: {given.absolute()}: no such file or "
                                     "directory.")
        if given is not None and given.is_file():
            config: Path | None = given
        elif _file_name is not None:
            base = given or Path.cwd()
            config = next((c for f in (base.absolute(), *base.absolute().parents)
                           for c in (f / ".azureml" / _file_name, f / _file_name) if c.is_file()), None)
        else:
            config = store.find_config(given)
        if config is None:
            where = given or Path.cwd()
            raise UserErrorException(
                f"We could not find config.json in: {where.absolute()} or in its parent directories. Please "
                "provide the full path to the config file or ensure that config.json exists in the parent "
                "directories (an openscore config.json may hold just {\"workspace_name\": \"...\"}, and "
                "\"openscoreWorkspace\": the workspace folder).")
        try:
            doc = json.loads(config.read_text(encoding="utf-8-sig"))
        except (OSError, ValueError) as e:
            raise UserErrorException(f"{config} is not a readable JSON file: {e}") from None
        if not isinstance(doc, dict):
            raise UserErrorException(f"{config} must hold a JSON object")
        with as_webservice_errors():
            folder = store.config_workspace(config)
        # azureml-core accepts both spellings: workspace_name / workspaceName, subscription_id / subscriptionId
        return cls(doc.get("subscription_id", doc.get("subscriptionId")),
                   doc.get("resource_group", doc.get("resourceGroup")),
                   doc.get("workspace_name", doc.get("workspaceName")), auth, _folder=folder)

    @staticmethod
    def get(name: str, auth: Any = None, subscription_id: str | None = None, resource_group: str | None = None,
            location: str | None = None, cloud: str = "AzureCloud", id: str | None = None) -> Workspace:
        """The workspace found as the CLI finds it ($OPENSCORE_WORKSPACE, a config.json, ~/.openscore), named `name`."""
        return Workspace(subscription_id, resource_group, name, auth, location)

    @staticmethod
    def create(name: str, *args: Any, **kwargs: Any) -> Workspace:
        """An openscore workspace is created on first use: this is `Workspace.get(name)`."""
        return Workspace.get(name, subscription_id=kwargs.get("subscription_id"),
                             resource_group=kwargs.get("resource_group"))

    def write_config(self, path: str | None = None, file_name: str | None = None) -> None:
        """Write `<path>/.azureml/config.json` naming this workspace folder, as azureml-core does."""
        folder = Path(path or ".") / ".azureml"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (file_name or "config.json")
        doc = {"subscription_id": self.subscription_id, "resource_group": self.resource_group,
               "workspace_name": self.name, store.CONFIG_KEY: str(self.store.root)}
        target.write_text(json.dumps(doc, indent=4) + "\n")

    def get_details(self) -> dict[str, Any]:
        return {"name": self.name, "subscriptionId": self.subscription_id, "resourceGroup": self.resource_group,
                "location": self.location, "folder": str(self.store.root)}

    # -- azureml-core's dictionary views of what the workspace holds
    @property
    def models(self) -> dict[str, Any]:
        from openscore.sdk.model import Model
        return {m.name: m for m in Model.list(self, latest=True)}

    @property
    def webservices(self) -> dict[str, Any]:
        from openscore.sdk.webservice import Webservice
        return {s.name: s for s in Webservice.list(self)}

    @property
    def environments(self) -> dict[str, Any]:
        from openscore.sdk.environment import Environment
        return Environment.list(self)

    @property
    def compute_targets(self) -> dict[str, Any]:
        from openscore.sdk.compute import ComputeTarget
        return {c.name: c for c in ComputeTarget.list(self)}

    def __repr__(self) -> str:
        return f"Workspace.create(name={self.name!r}, folder={str(self.store.root)!r})"
