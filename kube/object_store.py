"""The router's desired state as Kubernetes objects: `KubernetesObjectStore` implements
`openscore.router.objects.ObjectStore` over the API server, so the same `StateStore` rules hold in a cluster.

kind "service" → a ScoringService CR (the document is its `spec` minus `spec.deployment`, which belongs to the
deployer and is kept on every write); "service-keys" → Secret `<service>-keys`; "signing-keys" → Secret
`openscore-signing-keys` (data `keys` = the JSON document). A revision is the object's resourceVersion; a
list's revision is composite (one resourceVersion per Kubernetes kind) and `watch(since=...)` merges the
kinds' watches from it. A 410 from the server is `Expired`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from openscore.kube.client import KubeClient
from openscore.router.objects import Event, ObjectStore, Stored
from openscore.router.state import StateStore


class KubernetesObjectStore(ObjectStore):
    """Desired-state objects in one namespace of a cluster."""

    def __init__(self, client: KubeClient, namespace: str):
        self.client = client
        self.namespace = namespace

    def where(self, kind: str, name: str) -> str:
        """The Kubernetes object, for messages (`scoringservices/<ns>/<name>`, `secrets/<ns>/<name>-keys`)."""
        return f"{kind}/{name}"

    async def get(self, kind: str, name: str) -> Stored | None:
        raise NotImplementedError

    async def list(self, kinds: Iterable[str]) -> tuple[dict[str, list[Stored]], str]:
        raise NotImplementedError

    async def put(self, kind: str, name: str, doc: Mapping[str, Any], expect: str | None = None) -> Stored:
        raise NotImplementedError

    async def delete(self, kind: str, name: str, expect: str | None = None) -> str | None:
        raise NotImplementedError

    def watch(self, since: str | None = None) -> AsyncIterator[Event]:
        raise NotImplementedError

    async def close(self) -> None:
        """Watches end; the client is the caller's (not closed here)."""


def KubernetesStateStore(client: KubeClient, namespace: str) -> StateStore:
    """The router's StateStore over a cluster namespace."""
    return StateStore(KubernetesObjectStore(client, namespace))
