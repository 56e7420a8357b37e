"""`Model` with azureml-core's names, over the workspace's model registry (openscore.deployer.models).

`Model.get_model_path` behaves as it does inside a scoring container (spec 1.10): the newest (or given)
version under `$AML_APP_ROOT/azureml-models/<name>/`, else `./<name>`; with `_workspace` it falls back to
the registry, laying the model out as `azureml-models/<name>/<version>/` under the working directory, as
azureml-core downloads it outside a container.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openscore.sdk.exceptions import ModelNotFoundException, WebserviceException, as_webservice_errors
from openscore.sdk.workspace import Workspace

if TYPE_CHECKING:
    from openscore.deployer.models import ModelRecord
    from openscore.sdk.inference_config import InferenceConfig
    from openscore.sdk.webservice import Webservice

MODELS_DIR = "azureml-models"


class Model:
    """A registered model: `Model(ws, name, version=None)` (newest when no version) or `Model(ws, id="name:3")`."""

    def __init__(self, workspace: Workspace, name: str | None = None, id: str | None = None,
                 tags: Sequence[Any] | None = None, properties: Sequence[Any] | None = None,
                 version: int | None = None, run_id: str | None = None, model_framework: str | None = None,
                 *, _record: ModelRecord | None = None) -> None:
        self.workspace = workspace
        if _record is None:
            if id is not None:
                ref_name, _, ref_version = id.partition(":")
                name = name or ref_name
                version = int(ref_version) if ref_version.isdigit() else version
            if not name:
                raise WebserviceException("Model(): a name or an id is required")
            if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
                raise WebserviceException(f"version should be an int, got {version!r}")
            with as_webservice_errors(ModelNotFoundException):
                _record = workspace.store.models.get(name, version)
        self._record = _record

    @classmethod
    def _from_record(cls, workspace: Workspace, record: ModelRecord) -> Model:
        return cls(workspace, _record=record)

    # -- azureml-core's attributes
    @property
    def name(self) -> str:
        return self._record.name

    @property
    def version(self) -> int:
        return self._record.version

    @property
    def id(self) -> str:
        return self._record.id

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._record.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._record.properties)

    @property
    def description(self) -> str:
        return self._record.description

    @property
    def model_framework(self) -> str | None:
        return self._record.model_framework

    @property
    def model_framework_version(self) -> str | None:
        return self._record.model_framework_version

    @property
    def created_time(self) -> float:
        return self._record.created

    def serialize(self) -> dict[str, Any]:
        return self._record.to_json()

    def __repr__(self) -> str:
        return f"Model(workspace={self.workspace.name!r}, name={self.name}, id={self.id}, version={self.version})"

    # -- registry
    @staticmethod
    def register(workspace: Workspace, model_path: str, model_name: str, tags: Mapping[str, str] | None = None,
                 properties: Mapping[str, str] | None = None, description: str | None = None,
                 datasets: Any = None, model_framework: str | None = None,
                 model_framework_version: str | None = None, child_paths: Any = None,
                 sample_input_dataset: Any = None, sample_output_dataset: Any = None,
                 resource_configuration: Any = None) -> Model:
        """Register a file or folder as the next version of `model_name`."""
        with as_webservice_errors():
            rec = workspace.store.models.register(
                model_name, Path(model_path), tags=dict(tags or {}), properties=dict(properties or {}),
                description=description or "", model_framework=model_framework,
                model_framework_version=model_framework_version)
        return Model._from_record(workspace, rec)

    @staticmethod
    def list(workspace: Workspace, name: str | None = None, tags: Sequence[Any] | None = None,
             properties: Sequence[Any] | None = None, run_id: str | None = None, latest: bool = False,
             dataset_id: str | None = None, expand: bool = True, page_count: int = 255,
             model_framework: str | None = None) -> list[Model]:
        """Registered models; `tags`/`properties` as azureml-core takes them: names, or [name, value] pairs."""
        with as_webservice_errors():
            records = workspace.store.models.list(name, tags=_filters(tags), properties=_filters(properties),
                                                  latest=latest)
        return [Model._from_record(workspace, r) for r in records
                if model_framework is None or r.model_framework == model_framework]

    def download(self, target_dir: str = ".", exist_ok: bool = False, exists_ok: bool | None = None) -> str:
        """Copy the model's file or folder into `target_dir`; returns its path."""
        with as_webservice_errors():
            path = self.workspace.store.models.download(self.name, self.version, Path(target_dir),
                                                        exist_ok=exist_ok if exists_ok is None else exists_ok)
        return str(path)

    def update(self, tags: Mapping[str, str] | None = None, description: str | None = None,
               sample_input_dataset: Any = None, sample_output_dataset: Any = None,
               resource_configuration: Any = None) -> None:
        """Replace the tags (azureml-core's update sets them) and/or the description."""
        remove = sorted(set(self.tags) - set(tags)) if tags is not None else None
        self._update(add_tags=dict(tags) if tags is not None else None, remove_tags=remove, description=description)

    def add_tags(self, tags: Mapping[str, str]) -> None:
        self._update(add_tags=dict(tags))

    def remove_tags(self, tags: Sequence[str]) -> None:
        self._update(remove_tags=list(tags))

    def add_properties(self, properties: Mapping[str, str]) -> None:
        self._update(add_properties=dict(properties))

    def _update(self, **changes: Any) -> None:
        with as_webservice_errors():
            self._record = self.workspace.store.models.update(self.name, self.version, **changes)

    def delete(self) -> None:
        """Delete this version; refused (naming the services) while a service uses it."""
        with as_webservice_errors():
            self.workspace.store.models.delete(self.name, self.version)

    # -- deploying
    @staticmethod
    def deploy(workspace: Workspace, name: str, models: Sequence[Model],
               inference_config: InferenceConfig | None = None, deployment_config: Any = None,
               deployment_target: Any = None, overwrite: bool = False, show_output: bool = False) -> Webservice:
        """Create the service `name`; returns once it is accepted: call `wait_for_deployment()` next."""
        from openscore.sdk.webservice import deploy
        return deploy(workspace, name, models, inference_config, deployment_config, deployment_target,
                      overwrite=overwrite, show_output=show_output)

    # -- inside a container
    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: Workspace | None = None) -> str:
        """The path of the model's file or folder, looked up as in a scoring container (spec 1.10)."""
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise WebserviceException(f"version should be an int, got {version!r} ({type(version).__name__})")
        if not isinstance(model_name, str) or not model_name:
            raise WebserviceException(f"model_name should be a non-empty str, got {model_name!r}")
        models_dir = os.path.join(os.environ.get("AML_APP_ROOT", ""), MODELS_DIR)
        found = _laid_out(models_dir, model_name, version)
        if found is not None:
            return found
        if os.path.exists(model_name) and _workspace is None:
            return model_name
        if _workspace is not None:
            with as_webservice_errors(ModelNotFoundException):
                rec = _workspace.store.models.get(model_name, version)
                dest = Path(MODELS_DIR) / rec.name / str(rec.version)
                target = dest / rec.file_name
                if not target.exists():
                    _workspace.store.models.materialize(rec, dest)
            return str(target)
        wanted = model_name if version is None else f"{model_name} version {version}"
        raise ModelNotFoundException(
            f"Model {wanted} not found in cache at {os.path.abspath(models_dir)} or in current working directory "
            f"{os.getcwd()}. Expected the layout azureml-models/<model_name>/<version>/<model file or folder>, "
            "or pass _workspace= to take it from the workspace's registry.")


def _laid_out(models_dir: str, model_name: str, version: int | None) -> str | None:
    """`<models_dir>/<name>/<version>/<its one entry>`, the newest version when none is given; None if absent."""
    model_dir = os.path.join(models_dir, model_name)
    if not os.path.isdir(model_dir):
        return None
    if version is None:
        versions = [int(v) for v in os.listdir(model_dir) if v.isdigit()]
        if not versions:
            raise WebserviceException(f"Model folder {model_dir} holds no integer version folders")
        version = max(versions)
    version_dir = os.path.join(model_dir, str(version))
    if not os.path.isdir(version_dir):
        return None
    entries = sorted(os.listdir(version_dir))
    if len(entries) != 1:
        raise WebserviceException(f"Dir {version_dir} can contain only 1 file or folder. Found {entries}")
    return os.path.join(version_dir, entries[0])


def _filters(given: Sequence[Any] | None) -> dict[str, str | None] | None:
    """azureml-core's tag filters (["key", ["key", "value"]]) as {key: value or None}."""
    if not given:
        return None
    out: dict[str, str | None] = {}
    for item in given:
        if isinstance(item, str):
            out[item] = None
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out[str(item[0])] = str(item[1])
        else:
            raise WebserviceException(f"tag/property filters are names or [name, value] pairs, got {item!r}")
    return out
