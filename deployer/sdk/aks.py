"""`AksWebservice` and `AksEndpoint` (spec 2.1, 2.2): Azure's AKS service classes.

Without a cluster attached they run on the embedded local target behind the workspace's router, with every
deploymentconfig setting taking effect there (replicas, autoscaling, slots, queue wait, timeouts, auth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from openscore.sdk.deploy_configuration import (
    AKS_KEYS,
    AksEndpointDeploymentConfiguration,
    AksServiceDeploymentConfiguration,
    to_document,
)
from openscore.sdk.exceptions import WebserviceException, as_webservice_errors
from openscore.sdk.webservice import Webservice, records

if TYPE_CHECKING:
    from openscore.sdk.inference_config import InferenceConfig
    from openscore.sdk.model import Model


class AksWebservice(Webservice):
    """A service of computeType aks (one version)."""

    _webservice_type: ClassVar[str] = "AKS"
    _compute_types: ClassVar[tuple[str, ...]] = ("aks",)

    @staticmethod
    def deploy_configuration(autoscale_enabled: bool | None = None, autoscale_min_replicas: int | None = None,
                             autoscale_max_replicas: int | None = None,
                             autoscale_refresh_seconds: int | None = None,
                             autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
                             auth_enabled: bool | None = None, cpu_cores: float | None = None,
                             memory_gb: float | None = None, enable_app_insights: bool | None = None,
                             scoring_timeout_ms: int | None = None,
                             replica_max_concurrent_requests: int | None = None,
                             max_request_wait_time: int | None = None, num_replicas: int | None = None,
                             primary_key: str | None = None, secondary_key: str | None = None,
                             tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                             description: str | None = None, gpu_cores: int | None = None,
                             period_seconds: int | None = None, initial_delay_seconds: int | None = None,
                             timeout_seconds: int | None = None, success_threshold: int | None = None,
                             failure_threshold: int | None = None, namespace: str | None = None,
                             token_auth_enabled: bool | None = None, compute_target_name: str | None = None,
                             cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None,
                             blobfuse_enabled: bool | None = None) -> AksServiceDeploymentConfiguration:
        """Azure's parameters (spec 2.1); checked at once with Azure's cross-field rules (WebserviceException)."""
        params = dict(locals())
        params.pop("blobfuse_enabled")  # Azure's blob-fuse model mount: the local target reads models from disk
        config = AksServiceDeploymentConfiguration(**params)
        config.validate_configuration()
        return config

    def update(self, image: Any = None, autoscale_enabled: bool | None = None,
               autoscale_min_replicas: int | None = None, autoscale_max_replicas: int | None = None,
               autoscale_refresh_seconds: int | None = None, autoscale_target_utilization: int | None = None,
               collect_model_data: bool | None = None, auth_enabled: bool | None = None,
               cpu_cores: float | None = None, memory_gb: float | None = None,
               enable_app_insights: bool | None = None, scoring_timeout_ms: int | None = None,
               replica_max_concurrent_requests: int | None = None, max_request_wait_time: int | None = None,
               num_replicas: int | None = None, tags: dict[str, str] | None = None,
               properties: dict[str, str] | None = None, description: str | None = None,
               models: Sequence[Model] | None = None, inference_config: InferenceConfig | None = None,
               gpu_cores: int | None = None, period_seconds: int | None = None,
               initial_delay_seconds: int | None = None, timeout_seconds: int | None = None,
               success_threshold: int | None = None, failure_threshold: int | None = None,
               namespace: str | None = None, token_auth_enabled: bool | None = None,
               cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None,
               **kwargs: Any) -> None:
        """Change the given settings (None = unchanged); call wait_for_deployment() next."""
        if image is not None:
            raise WebserviceException("update(image=...): openscore deploys models and an inference_config, "
                                      "not images; pass models= and/or inference_config=")
        changes = to_document(locals(), AKS_KEYS)
        self._update(models=models, inference_config=inference_config, changes=changes, description=description,
                     tags=tags, properties=properties)


class AksEndpointVersion:
    """One version of an AksEndpoint (what `endpoint.versions[name]` holds)."""

    def __init__(self, endpoint: AksEndpoint, name: str, doc: Mapping[str, Any]) -> None:
        self.endpoint = endpoint
        self.name = name
        self.is_default = bool(doc.get("isDefault"))
        self.traffic_percentile = doc.get("trafficPercentile", 0)
        self.version_type = doc.get("type", "Treatment")
        self.scoring_uri = doc.get("scoringUri")
        self.model_ids = list(doc.get("models", []))

    @property
    def state(self) -> str:
        return self.endpoint.state

    def __repr__(self) -> str:
        return (f"AksEndpointVersion(name={self.name}, traffic_percentile={self.traffic_percentile}, "
                f"is_default={self.is_default}, version_type={self.version_type})")


class AksEndpoint(AksWebservice):
    """A service of computeType aksendpoint: up to six versions splitting the traffic (spec 2.2)."""

    _webservice_type: ClassVar[str] = "AKSENDPOINT"
    _compute_types: ClassVar[tuple[str, ...]] = ("aksendpoint",)

    class VersionType:
        control = "Control"
        treatment = "Treatment"

    @staticmethod
    def deploy_configuration(  # type: ignore[override]
            autoscale_enabled: bool | None = None, autoscale_min_replicas: int | None = None,
            autoscale_max_replicas: int | None = None, autoscale_refresh_seconds: int | None = None,
            autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
            auth_enabled: bool | None = None, cpu_cores: float | None = None, memory_gb: float | None = None,
            enable_app_insights: bool | None = None, scoring_timeout_ms: int | None = None,
            replica_max_concurrent_requests: int | None = None, max_request_wait_time: int | None = None,
            num_replicas: int | None = None, primary_key: str | None = None, secondary_key: str | None = None,
            tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
            description: str | None = None, gpu_cores: int | None = None, period_seconds: int | None = None,
            initial_delay_seconds: int | None = None, timeout_seconds: int | None = None,
            success_threshold: int | None = None, failure_threshold: int | None = None,
            namespace: str | None = None, token_auth_enabled: bool | None = None,
            version_name: str | None = None, traffic_percentile: float | None = None,
            compute_target_name: str | None = None, cpu_cores_limit: float | None = None,
            memory_gb_limit: float | None = None) -> AksEndpointDeploymentConfiguration:
        """The AKS parameters plus version_name (default: the endpoint's name) and traffic_percentile (0-100)."""
        config = AksEndpointDeploymentConfiguration(**locals())
        config.validate_configuration()
        return config

    @property
    def versions(self) -> dict[str, AksEndpointVersion]:
        return {n: AksEndpointVersion(self, n, v) for n, v in self._info.versions.items()}

    def create_version(self, version_name: str, autoscale_enabled: bool | None = None,
                       autoscale_min_replicas: int | None = None, autoscale_max_replicas: int | None = None,
                       autoscale_refresh_seconds: int | None = None,
                       autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
                       cpu_cores: float | None = None, memory_gb: float | None = None,
                       scoring_timeout_ms: int | None = None, replica_max_concurrent_requests: int | None = None,
                       max_request_wait_time: int | None = None, num_replicas: int | None = None,
                       tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                       description: str | None = None, models: Sequence[Model] | None = None,
                       inference_config: InferenceConfig | None = None, gpu_cores: int | None = None,
                       period_seconds: int | None = None, initial_delay_seconds: int | None = None,
                       timeout_seconds: int | None = None, success_threshold: int | None = None,
                       failure_threshold: int | None = None, traffic_percentile: float | None = None,
                       is_default: bool | None = None, is_control_version_type: bool | None = None,
                       cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None) -> None:
        """Add a version (its own models, inference config and replica settings); then wait_for_deployment().

        A version's tags and description are accepted, as Azure's are, and not kept: openscore keeps them
        on the endpoint only."""
        if not models:
            raise WebserviceException("create_version: models= is required (the version's registered models)")
        if inference_config is None:
            raise WebserviceException("create_version: inference_config= is required (its entry script)")
        changes = to_document(locals(), AKS_KEYS)
        with as_webservice_errors():
            self._info = self._manager().create_version(
                self.name, version_name, records(models) or [], inference_config.spec(), changes=changes,
                traffic_percentile=traffic_percentile, is_default=is_default,
                is_control_version_type=is_control_version_type, log=print)

    def update_version(self, version_name: str, autoscale_enabled: bool | None = None,
                       autoscale_min_replicas: int | None = None, autoscale_max_replicas: int | None = None,
                       autoscale_refresh_seconds: int | None = None,
                       autoscale_target_utilization: int | None = None, collect_model_data: bool | None = None,
                       cpu_cores: float | None = None, memory_gb: float | None = None,
                       scoring_timeout_ms: int | None = None, replica_max_concurrent_requests: int | None = None,
                       max_request_wait_time: int | None = None, num_replicas: int | None = None,
                       tags: dict[str, str] | None = None, properties: dict[str, str] | None = None,
                       description: str | None = None, models: Sequence[Model] | None = None,
                       inference_config: InferenceConfig | None = None, gpu_cores: int | None = None,
                       period_seconds: int | None = None, initial_delay_seconds: int | None = None,
                       timeout_seconds: int | None = None, success_threshold: int | None = None,
                       failure_threshold: int | None = None, traffic_percentile: float | None = None,
                       is_default: bool | None = None, is_control_version_type: bool | None = None,
                       cpu_cores_limit: float | None = None, memory_gb_limit: float | None = None) -> None:
        """Change a version (None = unchanged): traffic, default, Control/Treatment, settings, models, script."""
        changes = to_document(locals(), AKS_KEYS)
        with as_webservice_errors():
            self._info = self._manager().update_version(
                self.name, version_name, models=records(models),
                inference_config=inference_config.spec() if inference_config is not None else None,
                changes=changes, traffic_percentile=traffic_percentile, is_default=is_default,
                is_control_version_type=is_control_version_type, log=print)

    def delete_version(self, version_name: str) -> None:
        with as_webservice_errors():
            self._info = self._manager().delete_version(self.name, version_name)

    def update(self, auth_enabled: bool | None = None, token_auth_enabled: bool | None = None,  # type: ignore[override]
               enable_app_insights: bool | None = None, description: str | None = None,
               tags: dict[str, str] | None = None, properties: dict[str, str] | None = None) -> None:
        """The endpoint's own settings: auth, token auth, app insights, description, tags, properties."""
        changes = to_document({"auth_enabled": auth_enabled, "token_auth_enabled": token_auth_enabled,
                               "enable_app_insights": enable_app_insights}, AKS_KEYS)
        self._update(changes=changes, description=description, tags=tags, properties=properties)
