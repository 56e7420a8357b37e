"""`KubeClient`: the project's own small async interface to the Kubernetes API server, over lightkube's
AsyncClient. Objects are plain dicts (`apiVersion`, `kind`, `metadata`, ...) in and out, so the rest of
openscore never depends on lightkube's model classes and the client underneath can change.

Resources are addressed by (api_version, kind) like kubectl does; kinds lightkube does not know (our CRD) are
registered as generic resources on first use. Failures are `KubeError`s carrying the API server's status,
reason and message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

JsonObj = dict[str, Any]
JsonList = list[JsonObj]  # named here: inside KubeClient `list` is the method
MergeKind = Literal["merge", "strategic", "json"]


class KubeError(Exception):
    """The API server refused a request: `status` is its HTTP code, `reason` Kubernetes' reason word
    (NotFound, Conflict, ...), `message` its text verbatim (it names the object and the rule)."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class NotFoundError(KubeError):
    """404: the object (or its namespace, or its kind) does not exist."""


class ConflictError(KubeError):
    """409: it already exists (create), or its resourceVersion changed since it was read (replace)."""


class GoneError(KubeError):
    """410: a watch's resourceVersion is older than the server keeps: list again."""


class ForbiddenError(KubeError):
    """403: the credentials lack the right (RBAC)."""


class UnreachableError(KubeError):
    """The API server could not be reached (connection refused, DNS, TLS, timeout); status 0."""

    def __init__(self, message: str):
        super().__init__(0, "Unreachable", message)


class KubeClient:
    """Async access to one cluster. Create with `from_kubeconfig` or `in_cluster`; `close()` when done."""

    def __init__(self, client: Any, namespace: str = "default"):
        """Wrap a lightkube AsyncClient (use the factories)."""
        self._client = client
        self.namespace = namespace

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_kubeconfig(cls, path: str | None, context: str | None = None,
                        namespace: str | None = None) -> KubeClient:
        """A client from a kubeconfig file (token or client certificate, CA); `namespace` defaults to the
        context's."""
        raise NotImplementedError

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> KubeClient:
        """A client from the pod's service account (token, CA, KUBERNETES_SERVICE_HOST); `namespace` defaults
        to the pod's own."""
        raise NotImplementedError

    async def close(self) -> None:
        """Close the connections; watches in progress end."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reads
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> JsonObj | None:
        """The object, None when there is none."""
        raise NotImplementedError

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | Mapping[str, str] | None = None) -> tuple[JsonList, str]:
        """Every matching object and the list's resourceVersion (to `watch` from)."""
        raise NotImplementedError

    def watch(self, api_version: str, kind: str, namespace: str | None = None,
              label_selector: str | Mapping[str, str] | None = None,
              resource_version: str | None = None) -> AsyncIterator[tuple[str, JsonObj]]:
        """(event_type, obj) for each change after `resource_version` (ADDED, MODIFIED, DELETED), until the
        iterator is closed. When the server ends the watch (its timeout) it resumes from the last version
        seen; `GoneError` when that version is no longer kept."""
        raise NotImplementedError

    async def server_version(self) -> str:
        """The API server's gitVersion (v1.20.2)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ writes
    async def apply(self, obj: Mapping[str, Any], field_manager: str = "openscore", force: bool = True) -> JsonObj:
        """Server-side apply: the fields in `obj` become this field manager's; returns the object as stored."""
        raise NotImplementedError

    async def create(self, obj: Mapping[str, Any]) -> JsonObj:
        """POST; `ConflictError` if it exists."""
        raise NotImplementedError

    async def replace(self, obj: Mapping[str, Any]) -> JsonObj:
        """PUT the whole object; with metadata.resourceVersion set, `ConflictError` if it changed since."""
        raise NotImplementedError

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                    subresource: str | None = None, merge: MergeKind = "merge") -> JsonObj:
        """Patch the object (or its `status`/`scale` subresource): JSON merge, strategic merge or JSON patch."""
        raise NotImplementedError

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", resource_version: str | None = None) -> bool:
        """Delete; False when there was nothing to delete. With `resource_version`, `ConflictError` when the
        object changed since (a precondition)."""
        raise NotImplementedError

    async def scale(self, kind: str = "Deployment", *, name: str, namespace: str | None = None,
                    replicas: int) -> JsonObj:
        """Set spec.replicas through the scale subresource (the only write the router's Role allows)."""
        raise NotImplementedError

    async def get_scale(self, kind: str = "Deployment", *, name: str, namespace: str | None = None) -> JsonObj:
        """The scale subresource (spec.replicas, status.replicas, status.selector)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ pods and events
    async def pod_logs(self, name: str, namespace: str | None = None, container: str | None = None,
                       previous: bool = False, tail_lines: int | None = None) -> str:
        """A container's log; `previous` for the last terminated run (a crashed init())."""
        raise NotImplementedError

    async def events_for(self, namespace: str, kind: str, name: str) -> JsonList:
        """The core/v1 Events about one object, oldest first (the scheduler's FailedScheduling text...)."""
        raise NotImplementedError
