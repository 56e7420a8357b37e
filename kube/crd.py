"""The ScoringService custom resource (one per service: its desired state and its Azure state), and the names
and labels every openscore object in a cluster shares.

CR `spec` = {"config": <the router's service document>, "previousConfig": ..., "deployment": {...}}:
`config`/`previousConfig` are the router's store (kube/object_store.py); `deployment` is written by the
deployer with its own field manager and is opaque to the store. CR `status` = {"state", "reason", "error",
"scoringUri", "versions": {name: {"readyReplicas", "desiredReplicas", "rollout"}}, "observedGeneration"}.
Every object a service owns carries `owner_reference(cr)`, so deleting the CR deletes everything (the
controller-manager's garbage collector).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

GROUP = "openscore.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScoringService"
PLURAL = "scoringservices"
SINGULAR = "scoringservice"
SHORT_NAME = "osvc"
CRD_NAME = f"{PLURAL}.{GROUP}"

LABEL_SERVICE = "openscore.io/service"
LABEL_VERSION = "openscore.io/version"
LABEL_KIND = "openscore.io/kind"
LABEL_COMPONENT = "app.kubernetes.io/component"  # COMPONENT_REPLICA | COMPONENT_ROUTER
LABEL_MANAGED = "app.kubernetes.io/managed-by"
MANAGED_BY = "openscore"
COMPONENT_REPLICA = "replica"
COMPONENT_ROUTER = "router"

KIND_SERVICE_KEYS = "service-keys"    # value of LABEL_KIND on a service's keys Secret
KIND_SIGNING_KEYS = "signing-keys"    # value of LABEL_KIND on the token signing keys Secret
SIGNING_KEYS_SECRET = "openscore-signing-keys"  # data `keys`: the store's JSON document
ADMIN_SECRET = "openscore-admin"     # the in-cluster router's admin key, made by `openscore cluster install`
ADMIN_SECRET_KEY = "adminKey"        # its data key
REPLICA_SECRET_ENV = "OPENSCORE_REPLICA_SECRET"  # env of a replica, from `<deployment>-replica` data `secret`


def service_keys_secret(service: str) -> str:
    """Name of the Secret holding a service's keys (data `primaryKey`, `secondaryKey`)."""
    return f"{service}-keys"


def replica_secret(deployment: str) -> str:
    """Name of the Secret holding a version's replica credential (data `secret`)."""
    return f"{deployment}-replica"


def owner_reference(cr: Mapping[str, Any]) -> dict[str, Any]:
    """The ownerReference that makes an object belong to a ScoringService (as read back from the server: it
    needs metadata.uid): the controller-manager deletes the object with the CR."""
    meta = cr.get("metadata") or {}
    if not meta.get("uid") or not meta.get("name"):
        raise ValueError("owner_reference needs a ScoringService as stored (metadata.name and metadata.uid)")
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _free_form(description: str) -> dict[str, Any]:
    return {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "description": description}


def crd_manifest() -> dict[str, Any]:
    """The CustomResourceDefinition (apiextensions.k8s.io/v1): namespaced, structural schema (the documents
    are free-form), status subresource, printer columns State/Reason/Age, short name `osvc`."""
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "config": _free_form("The service's document as the router stores it (never keys)."),
                    "previousConfig": _free_form("The document before the last update, for one-step rollback."),
                    "deployment": _free_form("Written by the deployer (models, image, versions); opaque to the "
                                             "router's store."),
                },
            },
            "status": {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "description": "Azure's state: Transitioning, Healthy, "
                                                               "Unhealthy, Unschedulable, Failed."},
                    "reason": {"type": "string"},
                    "error": _free_form("Azure's error object (code, message, details)."),
                    "scoringUri": {"type": "string"},
                    "versions": {"type": "object", "additionalProperties": _free_form("One version's rollout.")},
                    "observedGeneration": {"type": "integer", "format": "int64"},
                },
                "x-kubernetes-preserve-unknown-fields": True,
            },
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {LABEL_MANAGED: MANAGED_BY}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"plural": PLURAL, "singular": SINGULAR, "kind": KIND, "shortNames": [SHORT_NAME],
                      "listKind": f"{KIND}List"},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "schema": {"openAPIV3Schema": schema},
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "State", "type": "string", "jsonPath": ".status.state"},
                    {"name": "Reason", "type": "string", "jsonPath": ".status.reason"},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
            }],
        },
    }
