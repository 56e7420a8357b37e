"""Deployment configurations built from azureml-core's keyword arguments (spec 2.1-2.3).

Each configuration is the deploymentconfig document that `--dc deploymentconfig.json` would hold, so the
SDK and the CLI reach the deployer with the same thing and are validated by the same parser (the router's,
through openscore.deployer.deployment_config): no rule is repeated here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# deploy_configuration() parameter -> its place in the deploymentconfig document (spec 2.1 "JSON key")
AKS_KEYS: dict[str, tuple[str, ...]] = {
    "autoscale_enabled": ("autoScaler", "autoscaleEnabled"),
    "autoscale_min_replicas": ("autoScaler", "minReplicas"),
    "autoscale_max_replicas": ("autoScaler", "maxReplicas"),
    "autoscale_refresh_seconds": ("autoScaler", "refreshPeriodInSeconds"),
    "autoscale_target_utilization": ("autoScaler", "targetUtilization"),
    "collect_model_data": ("dataCollection", "storageEnabled"),
    "auth_enabled": ("authEnabled",),
    "cpu_cores": ("containerResourceRequirements", "cpu"),
    "memory_gb": ("containerResourceRequirements", "memoryInGB"),
    "cpu_cores_limit": ("containerResourceRequirements", "cpuLimit"),
    "memory_gb_limit": ("containerResourceRequirements", "memoryInGBLimit"),
    "gpu_cores": ("gpuCores",),
    "enable_app_insights": ("appInsightsEnabled",),
    "scoring_timeout_ms": ("scoringTimeoutMs",),
    "replica_max_concurrent_requests": ("maxConcurrentRequestsPerContainer",),
    "max_request_wait_time": ("maxQueueWaitMs",),
    "num_replicas": ("numReplicas",),
    "primary_key": ("keys", "primaryKey"),
    "secondary_key": ("keys", "secondaryKey"),
    "period_seconds": ("livenessProbeRequirements", "periodSeconds"),
    "initial_delay_seconds": ("livenessProbeRequirements", "initialDelaySeconds"),
    "timeout_seconds": ("livenessProbeRequirements", "timeoutSeconds"),
    "success_threshold": ("livenessProbeRequirements", "successThreshold"),
    "failure_threshold": ("livenessProbeRequirements", "failureThreshold"),
    "namespace": ("namespace",),
    "token_auth_enabled": ("tokenAuthEnabled",),
    "compute_target_name": ("computeTargetName",),
}
ENDPOINT_KEYS: dict[str, tuple[str, ...]] = {
    **AKS_KEYS, "version_name": ("versionName",), "traffic_percentile": ("trafficPercentile",)}
# settings azureml-core keeps on the service object, not in the file (CLI --tag, --property, -d)
METADATA = ("tags", "properties", "description")


def to_document(values: Mapping[str, Any], keys: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """The deploymentconfig fragment for the parameters that were given (None = not given, as in azureml-core)."""
    doc: dict[str, Any] = {}
    for param, value in values.items():
        if value is None or param not in keys:
            continue
        *parents, leaf = keys[param]
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return doc


class DeploymentConfiguration:
    """A deploymentconfig document plus the service metadata that travels beside it."""

    compute_type = ""
    _keys: Mapping[str, tuple[str, ...]] = {}

    def __init__(self, **values: Any) -> None:
        unknown = sorted(set(values) - set(self._keys) - set(METADATA))
        if unknown:
            raise TypeError(f"deploy_configuration() got unexpected keyword arguments: {', '.join(unknown)}")
        self.values = {k: v for k, v in values.items() if v is not None}
        self.tags: dict[str, str] | None = values.get("tags")
        self.properties: dict[str, str] | None = values.get("properties")
        self.description: str | None = values.get("description")

    def __getattr__(self, name: str) -> Any:
        # azureml-core's configuration objects expose each parameter as an attribute (cpu_cores, num_replicas...)
        if name in self._keys:
            return self.__dict__.get("values", {}).get(name)
        raise AttributeError(name)

    def to_document(self) -> dict[str, Any]:
        """The document a deploymentconfig.json with these settings holds."""
        return {"computeType": self.compute_type, **to_document(self.values, self._keys)}

    def validate_configuration(self) -> None:
        """Check the settings with the deployer's parser (the router's rules); WebserviceException if invalid."""
        from openscore.sdk.webservice import deployment_spec
        deployment_spec(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.to_document()!r})"


class AksServiceDeploymentConfiguration(DeploymentConfiguration):
    """What AksWebservice.deploy_configuration(...) returns."""

    compute_type = "aks"
    _keys = AKS_KEYS


class AksEndpointDeploymentConfiguration(DeploymentConfiguration):
    """What AksEndpoint.deploy_configuration(...) returns: AKS settings plus version_name / traffic_percentile."""

    compute_type = "aksendpoint"
    _keys = ENDPOINT_KEYS


class LocalWebserviceDeploymentConfiguration(DeploymentConfiguration):
    """What LocalWebservice.deploy_configuration(port) returns."""

    compute_type = "local"
    _keys: Mapping[str, tuple[str, ...]] = {"port": ("port",)}
