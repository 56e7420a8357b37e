"""`Webservice`: a deployed service, with azureml-core's methods, over openscore.deployer.lifecycle.

Every call is one ServiceManager call; the object keeps the last ServiceInfo it saw (azureml-core's
objects also hold what the last request returned: `update_deployment_state()` refreshes it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from openscore.sdk.exceptions import WebserviceException, as_webservice_errors

if TYPE_CHECKING:
    from openscore.deployer.deployment_config import DeploymentConfigSpec
    from openscore.deployer.lifecycle import ServiceInfo, ServiceManager
    from openscore.deployer.models import ModelRecord
    from openscore.sdk.deploy_configuration import DeploymentConfiguration
    from openscore.sdk.inference_config import InferenceConfig
    from openscore.sdk.model import Model
    from openscore.sdk.workspace import Workspace


def manager(workspace: Workspace) -> ServiceManager:
    """The workspace's ServiceManager (one per SDK Workspace object)."""
    found = workspace.__dict__.get("_service_manager")
    if found is None:
        from openscore.deployer.lifecycle import ServiceManager
        found = workspace.__dict__["_service_manager"] = ServiceManager(workspace.store)
    return found


def deployment_spec(config: DeploymentConfiguration) -> DeploymentConfigSpec:
    """The deployer's reading of a deploy_configuration(...) object: the same checks as a --dc file."""
    from openscore.deployer.deployment_config import deployment_config_from_dict
    with as_webservice_errors():
        return deployment_config_from_dict(config.to_document(), f"{type(config).__name__}")


def records(models: Sequence[Model] | None) -> list[ModelRecord] | None:
    """The registry records behind a list of Model objects (azureml-core takes only Model objects)."""
    if models is None:
        return None
    from openscore.sdk.model import Model
    if isinstance(models, Model) or not isinstance(models, Sequence):
        raise WebserviceException(f"models must be a list of Model objects, got {type(models).__name__}")
    bad = [m for m in models if not isinstance(m, Model)]
    if bad:
        raise WebserviceException(f"models must be Model objects (Model(ws, name) or Model.register), got {bad[0]!r}")
    return [m._record for m in models]


def deploy(workspace: Workspace, name: str, models: Sequence[Model], inference_config: InferenceConfig | None,
           deployment_config: DeploymentConfiguration | None, deployment_target: Any, *, overwrite: bool,
           show_output: bool) -> Webservice:
    """Model.deploy: create the service through the deployer; returns the new service object (Transitioning)."""
    from openscore.sdk.compute import ComputeTarget
    from openscore.sdk.deploy_configuration import DeploymentConfiguration
    if deployment_config is not None and not isinstance(deployment_config, DeploymentConfiguration):
        raise WebserviceException("deployment_config must come from AksWebservice/AksEndpoint/LocalWebservice"
                                  f".deploy_configuration(), got {type(deployment_config).__name__}")
    if isinstance(deployment_target, ComputeTarget):
        target: str | None = deployment_target.name
    elif deployment_target is None or isinstance(deployment_target, str):
        target = deployment_target
    else:
        raise WebserviceException(f"deployment_target must be a ComputeTarget, got {type(deployment_target).__name__}")
    recs = records(models) or []
    ic = inference_config.spec() if inference_config is not None else None
    dc = deployment_spec(deployment_config) if deployment_config is not None else None
    meta = deployment_config
    with as_webservice_errors():
        info = manager(workspace).deploy(
            name, recs, ic, dc, compute_target=target, overwrite=overwrite,
            description=meta.description if meta else None, tags=meta.tags if meta else None,
            properties=meta.properties if meta else None, log=print)
    return Webservice._make(workspace, info)


def _filters(given: Sequence[Any] | None) -> dict[str, str | None] | None:
    from openscore.sdk.model import _filters as model_filters
    return model_filters(given)


class Webservice:
    """A deployed service: `Webservice(ws, name)` returns the subclass its compute type calls for."""

    _webservice_type: ClassVar[str] = "Webservice"
    _compute_types: ClassVar[tuple[str, ...]] = ()
    _subclasses: ClassVar[list[type[Webservice]]] = []

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Webservice._subclasses.append(cls)

    def __new__(cls, workspace: Workspace, name: str) -> Webservice:
        with as_webservice_errors():
            info = manager(workspace).get(name)
        return cls._make(workspace, info, expect=cls)

    def __init__(self, workspace: Workspace, name: str) -> None:
        pass  # filled in by _make (azureml-core's constructor also only fetches the service)

    @classmethod
    def _make(cls, workspace: Workspace, info: ServiceInfo, expect: type[Webservice] | None = None) -> Webservice:
        sub = next((c for c in Webservice._subclasses if info.compute_type.lower() in c._compute_types), Webservice)
        if expect is not None and expect is not Webservice and not issubclass(sub, expect):
            raise WebserviceException(
                f"WebserviceNotFound: Webservice with name {info.name} of type {expect._webservice_type} not found "
                f"in provided workspace (it is a {sub._webservice_type} service: use Webservice(ws, name))",
                status_code=404)
        obj = object.__new__(sub)
        obj.workspace = workspace
        obj._info = info
        return obj

    # -- what azureml-core's service objects expose
    _info: ServiceInfo
    workspace: Workspace

    @property
    def name(self) -> str:
        return self._info.name

    @property
    def compute_type(self) -> str:
        return self._webservice_type

    @property
    def state(self) -> str:
        return self._info.state

    @property
    def error(self) -> dict[str, Any] | None:
        return self._info.error

    @property
    def scoring_uri(self) -> str | None:
        return self._info.scoring_uri

    @property
    def swagger_uri(self) -> str | None:
        return self._info.swagger_uri

    @property
    def description(self) -> str:
        return self._info.description

    @property
    def tags(self) -> dict[str, str]:
        return dict(self._info.tags)

    @property
    def properties(self) -> dict[str, str]:
        return dict(self._info.properties)

    @property
    def models(self) -> list[Model]:
        from openscore.sdk.model import Model
        with as_webservice_errors():
            return [Model._from_record(self.workspace, self.workspace.store.models.resolve(m))
                    for m in self._info.models]

    @property
    def auth_enabled(self) -> bool:
        return self._info.auth_enabled

    @property
    def token_auth_enabled(self) -> bool:
        return self._info.token_auth_enabled

    @property
    def created_time(self) -> datetime:
        return datetime.fromtimestamp(self._info.created, UTC)

    @property
    def updated_time(self) -> datetime:
        return datetime.fromtimestamp(self._info.updated, UTC)

    def serialize(self) -> dict[str, Any]:
        return self._info.to_json()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(workspace={self.workspace.name!r}, name={self.name}, "
                f"state={self.state}, scoring_uri={self.scoring_uri})")

    # -- listing
    @staticmethod
    def list(workspace: Workspace, compute_type: str | None = None, image_name: str | None = None,
             image_id: str | None = None, model_name: str | None = None, model_id: str | None = None,
             tags: Sequence[Any] | None = None, properties: Sequence[Any] | None = None,
             image_digest: str | None = None) -> list[Webservice]:
        """The workspace's services, filtered as azureml-core filters them (images: openscore has none)."""
        with as_webservice_errors():
            infos = manager(workspace).list(compute_type=compute_type, model_name=model_name, model_id=model_id,
                                            tags=_filters(tags), properties=_filters(properties))
        return [Webservice._make(workspace, i) for i in infos]

    # -- the lifecycle
    def _manager(self) -> ServiceManager:
        return manager(self.workspace)

    def update_deployment_state(self) -> None:
        """Refresh state, error and URIs from the workspace and the router."""
        with as_webservice_errors():
            self._info = self._manager().get(self.name)

    def wait_for_deployment(self, show_output: bool = False, timeout_sec: float | None = None) -> None:
        """Wait until the last operation ends; WebserviceException (with the error and log hint) if it failed."""
        with as_webservice_errors():
            try:
                self._info = self._manager().wait(self.name, timeout_s=timeout_sec, show_output=show_output,
                                                  log=print)
            finally:
                try:
                    self._info = self._manager().get(self.name)
                except Exception:
                    pass  # the wait's own error is the one to report

    def get_logs(self, num_lines: int = 5000, init: bool = False) -> str:
        with as_webservice_errors():
            return self._manager().get_logs(self.name, num_lines=num_lines, init=init)

    def get_keys(self) -> tuple[str, str]:
        with as_webservice_errors():
            return self._manager().get_keys(self.name)

    def regen_key(self, key: str, set_key: str | None = None) -> None:
        """Regenerate the Primary or Secondary key (`set_key`: the value to use); the old one stops working."""
        with as_webservice_errors():
            self._manager().regen_key(self.name, key, set_key)

    def get_access_token(self) -> WebserviceAccessToken:
        with as_webservice_errors():
            doc = self._manager().get_access_token(self.name)
        return WebserviceAccessToken(doc)

    def get_token(self) -> tuple[str, datetime]:
        """(token, refresh_by): azureml-core's older spelling of get_access_token()."""
        token = self.get_access_token()
        return token.access_token, token.refresh_after

    def run(self, input_data: str | bytes) -> Any:
        """POST `input_data` (a JSON string or bytes) to the scoring URI with the key or token; the answer."""
        if not isinstance(input_data, (str, bytes, bytearray)):
            raise WebserviceException(f"input_data must be a JSON string or bytes (json.dumps(...)), got "
                                      f"{type(input_data).__name__}")
        with as_webservice_errors():
            return self._manager().run(self.name, input_data)

    def delete(self) -> None:
        with as_webservice_errors():
            self._manager().delete(self.name)
        self._info.state = "Deleting"

    def _update(self, *, models: Sequence[Model] | None = None, inference_config: InferenceConfig | None = None,
                changes: Mapping[str, Any] | None = None, description: str | None = None,
                tags: Mapping[str, str] | None = None, properties: Mapping[str, str] | None = None,
                add_tags: Mapping[str, str] | None = None, remove_tags: Sequence[str] | None = None) -> None:
        remove = list(remove_tags or [])
        if tags is not None:  # azureml-core's update(tags=) replaces them
            add_tags = {**(add_tags or {}), **tags}
            remove += [k for k in self._info.tags if k not in tags]
        with as_webservice_errors():
            self._info = self._manager().update(
                self.name, models=records(models),
                inference_config=inference_config.spec() if inference_config is not None else None,
                changes=dict(changes) if changes else None, description=description,
                add_tags=add_tags, remove_tags=remove or None, add_properties=properties, log=print)

    def add_tags(self, tags: Mapping[str, str]) -> None:
        self._update(add_tags=tags)

    def remove_tags(self, tags: Sequence[str]) -> None:
        self._update(remove_tags=tags)

    def add_properties(self, properties: Mapping[str, str]) -> None:
        self._update(properties=properties)


class WebserviceAccessToken:
    """What get_access_token() returns: access_token, token_type, refresh_after, expiry_on (UTC datetimes)."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.access_token: str = doc["accessToken"]
        self.token_type: str = doc.get("tokenType", "Bearer")
        self.refresh_after = datetime.fromtimestamp(float(doc["refreshAfter"]), UTC)
        self.expiry_on = datetime.fromtimestamp(float(doc["expiryOn"]), UTC)

    def __repr__(self) -> str:
        return f"WebserviceAccessToken(token_type={self.token_type!r}, refresh_after={self.refresh_after})"
