"""The deploymentconfig document's shape: every key openscore knows, Azure's defaults, a JSON Schema.

The rules themselves (cross-field checks, messages naming the key) live in router/config.py; this module is
the one list of key names, used for two things: `deploymentconfig_schema()` (for the deployer and editors)
and `unknown_key_warnings()` (a misspelt key is ignored, as Azure does, but said so with the nearest known
key). Keys of Azure's other compute types (aci, local) are known too, so an Azure file raises no noise.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

_IGNORED = "accepted for Azure compatibility; no effect in openscore"


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class AutoScaler(_Doc):
    autoscaleEnabled: bool | None = Field(None, description="true unless numReplicas is given")
    minReplicas: int = Field(1, gt=0)
    maxReplicas: int = Field(10, gt=0)
    refreshPeriodInSeconds: float = Field(1, gt=0)
    targetUtilization: float = Field(70, gt=0, le=100, description="percent of the replicas' slots")


class ContainerResourceRequirements(_Doc):
    cpu: float = Field(0.1, gt=0, description="CPU cores requested per replica")
    memoryInGB: float = Field(0.5, gt=0, description="memory requested per replica, GB")
    cpuLimit: float | None = Field(None, gt=0, description=">= cpu")
    memoryInGBLimit: float | None = Field(None, gt=0, description=">= memoryInGB")
    gpu: int = Field(0, ge=0, description="GPUs per replica (the REST payload's spelling of gpuCores)")


class LivenessProbeRequirements(_Doc):
    periodSeconds: int = Field(10, gt=0)
    initialDelaySeconds: int = Field(310, gt=0)
    timeoutSeconds: int = Field(2, gt=0)
    successThreshold: int = Field(1, gt=0)
    failureThreshold: int = Field(3, gt=0)


class Keys(_Doc):
    primaryKey: str | None = Field(None, min_length=8)
    secondaryKey: str | None = Field(None, min_length=8)


class DataCollection(_Doc):
    storageEnabled: bool = Field(False, description=_IGNORED)
    eventHubEnabled: bool = Field(False, description=_IGNORED)


class Environment(_Doc):
    """Azure's Environment object; only environmentVariables reaches the replicas."""
    name: str | None = None
    version: str | None = None
    environmentVariables: dict[str, str] = Field(default_factory=dict)
    python: dict[str, Any] | None = Field(None, description=_IGNORED)
    docker: dict[str, Any] | None = Field(None, description=_IGNORED)
    spark: dict[str, Any] | None = Field(None, description=_IGNORED)
    databricks: dict[str, Any] | None = Field(None, description=_IGNORED)
    r: dict[str, Any] | None = Field(None, description=_IGNORED)
    inferencingStackVersion: str | None = Field(None, description=_IGNORED)


class InferenceConfig(_Doc):
    """inferenceconfig.json's keys (spec 2.4), nested under `inferenceConfig` or at the version's top level."""
    entryScript: str | None = Field(None, description="the score.py file, relative to sourceDirectory")
    sourceDirectory: str | None = Field(None, description="the app root; relative to the services file's folder")
    modelDir: str | None = Field(None, description="AZUREML_MODEL_DIR; relative to the services file's folder")
    environment: Environment | None = None
    runtime: str | None = Field(None, description=_IGNORED)
    condaFile: str | None = Field(None, description=_IGNORED)
    extraDockerfileSteps: str | None = Field(None, description=_IGNORED)
    enableGpu: bool | None = Field(None, description=_IGNORED)
    baseImage: str | None = Field(None, description=_IGNORED)
    baseImageRegistry: dict[str, Any] | None = Field(None, description=_IGNORED)
    cudaVersion: str | None = Field(None, description=_IGNORED)
    schemaFile: str | None = Field(None, description=_IGNORED)
    description: str | None = None


class VersionConfig(InferenceConfig):
    """One version: what its replicas run and the limits in front of them (spec 2.1)."""
    inferenceConfig: InferenceConfig | None = None
    environmentVariables: dict[str, str] = Field(default_factory=dict,
                                                 description="merged over environment.environmentVariables")
    numReplicas: int | None = Field(None, gt=0, description="a fixed count; absent = autoscale")
    autoScaler: AutoScaler | None = None
    containerResourceRequirements: ContainerResourceRequirements | None = None
    gpuCores: int | None = Field(None, ge=0, description="GPUs per replica (the file's top-level key)")
    livenessProbeRequirements: LivenessProbeRequirements | None = None
    scoringTimeoutMs: int = Field(60_000, gt=0, le=300_000)
    maxConcurrentRequestsPerContainer: int = Field(1, gt=0)
    maxQueueWaitMs: int = Field(500, gt=0)
    trafficPercentile: float = Field(0, ge=0, le=100)
    isDefault: bool | None = None
    type: Literal["Control", "Treatment", "control", "treatment"] | None = None
    image: str | None = Field(None, description="container image the replicas run (Kubernetes targets)")
    instanceType: str | None = Field(None, description="the pool (SKU) the replicas run on")
    workers: int = Field(1, gt=0, description="openscore: worker processes per replica")
    replicaArgs: list[str] = Field(default_factory=list, description="openscore: extra `openscore serve` flags")
    pythonInterpreter: str | None = Field(None, description="openscore: absolute path of the python the replicas "
                                                            "run (a built environment's); default: the router's")
    retryAfterSend: bool = Field(False, description="openscore: run() is idempotent, so a buffered request whose "
                                                    "replica died after it was sent is sent again to another "
                                                    "replica (default false: 502 replica_failed, never run twice)")
    tags: dict[str, str] | None = Field(None, description=_IGNORED)
    properties: dict[str, str] | None = Field(None, description=_IGNORED)


class ServiceConfig(VersionConfig):
    """A deploymentconfig document: an `aks` service (itself one version) or an `aksendpoint`."""
    computeType: str = Field(description="aks or aksendpoint (case-insensitive)")
    name: str | None = Field(None, description="the service name, when a file holds a single service")
    versionName: str | None = None
    versions: dict[str, VersionConfig] | None = Field(None, description="aksendpoint: up to six versions")
    authEnabled: bool | None = Field(None, description="key auth; default true unless tokenAuthEnabled")
    tokenAuthEnabled: bool = False
    keys: Keys | None = None
    namespace: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    maxRequestBodyBytes: int = Field(100 * 1024 * 1024, gt=0)
    mirrorTraffic: dict[str, float] | None = Field(None, description="version -> percent of requests copied")
    appInsightsEnabled: bool | None = Field(None, description=_IGNORED)
    dataCollection: DataCollection | None = None
    computeTargetName: str | None = Field(None, description=_IGNORED)
    # Azure's aci and local keys (spec 2.1, 2.3): an Azure file may carry them
    location: str | None = Field(None, description=_IGNORED)
    sslEnabled: bool | None = Field(None, description=_IGNORED)
    sslCertificate: str | None = Field(None, description=_IGNORED)
    sslKey: str | None = Field(None, description=_IGNORED)
    cname: str | None = Field(None, description=_IGNORED)
    dnsNameLabel: str | None = Field(None, description=_IGNORED)
    vaultBaseUrl: str | None = Field(None, description=_IGNORED)
    keyName: str | None = Field(None, description=_IGNORED)
    keyVersion: str | None = Field(None, description=_IGNORED)
    vnetName: str | None = Field(None, description=_IGNORED)
    subnetName: str | None = Field(None, description=_IGNORED)
    port: int | None = Field(None, description=_IGNORED)


class ServicesFile(BaseModel):
    services: dict[str, ServiceConfig]


def deploymentconfig_schema(services_file: bool = False) -> dict[str, Any]:
    """JSON Schema of one deploymentconfig document, or of a services file (`{"services": {name: ...}}`)."""
    return (ServicesFile if services_file else ServiceConfig).model_json_schema()


# ------------------------------------------------------------------------------------------ unknown keys
def _nested(annotation: Any) -> tuple[type[_Doc] | None, bool]:
    """(model class, is a name->model mapping) of a field's annotation, or (None, False) for a plain value."""
    args = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    for a in args:
        if isinstance(a, type) and issubclass(a, _Doc):
            return a, False
        if typing.get_origin(a) is dict:
            vt = typing.get_args(a)[1]
            if isinstance(vt, type) and issubclass(vt, _Doc):
                return vt, True
    return None, False


def unknown_key_warnings(doc: Any, path: str, model: type[_Doc] = ServiceConfig) -> list[tuple[str, str | None]]:
    """Every key of `doc` that openscore does not know: (dotted key path, nearest known key or None)."""
    if not isinstance(doc, Mapping):
        return []
    known = model.model_fields
    out: list[tuple[str, str | None]] = []
    for k, v in doc.items():
        full = f"{path}.{k}" if path else str(k)
        if k not in known:
            near = difflib.get_close_matches(str(k), list(known), n=1, cutoff=0.6)
            out.append((full, near[0] if near else None))
            continue
        sub, mapping = _nested(known[k].annotation)
        if sub is None:
            continue
        if mapping and isinstance(v, Mapping):
            for name, item in v.items():
                out.extend(unknown_key_warnings(item, f"{full}.{name}", sub))
        else:
            out.extend(unknown_key_warnings(v, full, sub))
    return out
