"""deploymentconfig.json / YAML (spec 2.1, 2.2, 2.3): read, checked with the router's own parser.

The router already holds Azure's cross-field rules and their messages (openscore.router.config); checking the
file here with the same parser means `model deploy` and a router `--config` file say the same thing about the
same mistake, before anything is written. `computeType` is `local`, `aks` or `aksendpoint` (case-insensitive,
as Azure's CLI); every one of them runs behind the router, `local` as an `aks` service (its only own key is
`port`, where the workspace's router is started).

An `aksendpoint` file is Azure's: one version's settings at the top level (`versionName`, default the
endpoint's name, `trafficPercentile`, `isDefault`, `type`) next to the endpoint's (auth, keys, namespace,
description); the router's `versions: {...}` form is accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openscore.deployer.documents import load_document
from openscore.deployer.errors import DeployError
from openscore.router.config import ConfigError, config_warnings, parse_service

COMPUTE_TYPES = ("local", "aks", "aksendpoint")
# Keys that belong to the endpoint of an aksendpoint, not to its versions (spec 2.2).
ENDPOINT_KEYS = ("authEnabled", "tokenAuthEnabled", "keys", "namespace", "description", "appInsightsEnabled",
                 "computeType", "computeTargetName", "maxRequestBodyBytes", "mirrorTraffic", "tags", "properties")
# Inference keys: they come from the inference config, never from a deploymentconfig.
_INFERENCE_KEYS = ("entryScript", "sourceDirectory", "modelDir", "inferenceConfig", "environment")
_CHECK_SCRIPT = "/openscore-deploymentconfig-check/score.py"  # stands in for the entry script while checking
_CHECK_NAME = "deploymentconfig"


@dataclass(frozen=True)
class DeploymentConfigSpec:
    compute_type: str                      # "local" | "aks" | "aksendpoint"
    raw: dict[str, Any]                    # the document as given (minus nothing)
    port: int | None = None                # local: where the workspace's router listens
    warnings: tuple[str, ...] = field(default=())

    @property
    def compute_target_name(self) -> str | None:
        v = self.raw.get("computeTargetName")
        return v if isinstance(v, str) and v else None

    def version_name(self, service: str) -> str:
        v = self.raw.get("versionName")
        return v if isinstance(v, str) and v else service

    def version_keys(self) -> dict[str, Any]:
        """The keys that configure one version's replicas (the router's version document, minus inference)."""
        return {k: v for k, v in self.raw.items() if k not in ENDPOINT_KEYS and k not in _INFERENCE_KEYS
                and k not in ("port", "versions", "name", "versionName")}

    def endpoint_keys(self) -> dict[str, Any]:
        return {k: v for k, v in self.raw.items() if k in ENDPOINT_KEYS and k not in
                ("computeType", "computeTargetName", "tags", "properties", "appInsightsEnabled")}


def _for_check(doc: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k not in _INFERENCE_KEYS and k != "port"}
    out["entryScript"] = _CHECK_SCRIPT
    return out


def check_service_document(doc: Mapping[str, Any], where: str) -> None:
    """Run the router's parser over a (deployer-shaped) document; ConfigError becomes the router's message."""
    try:
        parse_service(_CHECK_NAME, doc, None, path="")
    except ConfigError as e:
        raise DeployError(f"{where}: Invalid configuration, {e}") from None


def deployment_config_from_dict(doc: Mapping[str, Any], where: str = "deployment config") -> DeploymentConfigSpec:
    if not isinstance(doc, Mapping):
        raise DeployError(f"{where}: must be an object, got {type(doc).__name__}")
    raw = dict(doc)
    ctype = raw.get("computeType")
    if not isinstance(ctype, str) or not ctype.strip():
        raise DeployError(f"{where}: Invalid configuration, computeType: is required (local, aks or aksendpoint)")
    ctype = ctype.strip().lower()
    if ctype not in COMPUTE_TYPES:
        raise DeployError(f"{where}: Invalid configuration, computeType: {raw['computeType']!r} is not supported "
                          "here; use local, aks or aksendpoint (Azure's aci and mir are not)")
    port = raw.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise DeployError(f"{where}: Invalid configuration, port: must be a port number (1-65535), got {port!r}")
    check = _for_check(raw)
    if ctype == "aksendpoint" and isinstance(raw.get("versions"), Mapping):
        check["versions"] = {n: _for_check(v) if isinstance(v, Mapping) else v for n, v in raw["versions"].items()}
        check.pop("entryScript")
    else:
        # local and aks, and Azure's one-version aksendpoint file: every rule of one version and its service
        check["computeType"] = "aks"
        check.pop("versions", None)
    check_service_document(check, where)
    warnings = tuple(w for w in config_warnings({k: v for k, v in raw.items() if k != "port"}, where))
    return DeploymentConfigSpec(compute_type=ctype, raw=raw, port=port if ctype == "local" else None,
                                warnings=warnings)


def load_deployment_config(path: str | Path) -> DeploymentConfigSpec:
    """A deploymentconfig file (JSON or YAML), checked; DeployError naming the file and the rule."""
    return deployment_config_from_dict(load_document(path, "deployment config"), str(path))
