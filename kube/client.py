"""`KubeClient`: the project's own small async interface to the Kubernetes API server, over lightkube (pinned):
its async transport (kubeconfig and in-cluster auth, TLS, request paths) and its resource table, with every
kind decoded as a plain dict (`apiVersion`, `kind`, `metadata`, ...), in and out, so the rest of openscore
never depends on lightkube's model classes and the library underneath can change.

Resources are addressed by (api_version, kind) like kubectl does: built-in kinds from lightkube's table, our
ScoringService registered here (`register_kind` for others). Failures are `KubeError`s carrying the API
server's status, reason and message verbatim. The watch loop is our own (lightkube's raises its own error,
or on 410 silently restarts from the current state, which loses changes): it resumes from the last revision
seen when the server ends a watch, and raises `GoneError` when that revision is too old.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal

import httpx2
from lightkube.config.client_adapter import ConnectionParams
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core import resource as res
from lightkube.core.exceptions import ApiError, ConfigError, LoadResourceError
from lightkube.core.generic_client import BasicRequest, GenericAsyncClient
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import Generic, create_api_info
from lightkube.resources.core_v1 import PodLog
from lightkube.types import PatchType

from openscore.kube import crd

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


_SCALE_API = {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "ReplicaSet": "apps/v1"}
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
WATCH_SERVER_TIMEOUT_S = 300  # the server ends a watch after this; the client resumes it transparently
# A watch silent this long past the server's own end is a dead connection (a half-open TCP pipe after a network
# cut sends no FIN and no RST while we only read): drop it and resume, instead of waiting on it forever.
WATCH_READ_MARGIN_S = 30.0


def _error(e: BaseException) -> KubeError:
    """The KubeError for a lightkube/httpx failure, with the API server's own message."""
    if isinstance(e, ApiError):
        st = e.status
        return _error_for(int(st.code or 0), st.reason or "", st.message or str(e))
    if isinstance(e, httpx2.HTTPStatusError):
        r = e.response
        text = ""
        with contextlib.suppress(httpx2.ResponseNotRead, UnicodeDecodeError):
            text = r.text
        with contextlib.suppress(ValueError, AttributeError):
            body = json.loads(text)
            return _error_for(int(body.get("code") or r.status_code), body.get("reason", ""), body.get("message", text))
        return _error_for(r.status_code, r.reason_phrase, text.strip() or r.reason_phrase)
    if isinstance(e, httpx2.TransportError | OSError):
        return UnreachableError(f"cannot reach the API server: {type(e).__name__}: {e}")
    return KubeError(0, type(e).__name__, str(e))


def _error_for(status: int, reason: str, message: str) -> KubeError:
    cls = {404: NotFoundError, 409: ConflictError, 410: GoneError, 403: ForbiddenError}.get(status, KubeError)
    return cls(status, reason, message)


def _selector(label_selector: str | Mapping[str, str] | None) -> str | None:
    if label_selector is None or isinstance(label_selector, str):
        return label_selector or None
    return ",".join(f"{k}={v}" for k, v in label_selector.items()) or None


class _Kind:
    """How to reach one (api_version, kind): lightkube resource classes that decode to plain dicts."""

    def __init__(self, api_version: str, kind: str, plural: str, namespaced: bool, verbs: list[str] | None = None):
        group, _, version = api_version.rpartition("/")
        info = create_api_info(group, version, kind, plural, verbs=verbs)
        base: type = res.NamespacedResourceG if namespaced else res.GlobalResource
        sub: type = res.NamespacedSubResource if namespaced else res.GlobalSubResource
        self.api_version, self.kind, self.namespaced = api_version, kind, namespaced
        self.main: type = type(kind, (base, Generic), {"_api_info": info})
        self.sub: dict[str, type] = {}
        for action in ("status", "scale"):
            self.sub[action] = type(f"{kind}{action.capitalize()}", (sub, Generic), {"_api_info": res.ApiInfo(
                resource=info.resource if action == "status" else res.ResourceDef("autoscaling", "v1", "Scale"),
                parent=info.resource, plural=plural, verbs=["get", "patch", "put"], action=action)})


_KINDS: dict[tuple[str, str], _Kind] = {
    (crd.API_VERSION, crd.KIND): _Kind(crd.API_VERSION, crd.KIND, crd.PLURAL, namespaced=True),
}


def register_kind(api_version: str, kind: str, plural: str, namespaced: bool = True) -> None:
    """Make a custom kind addressable (ours is registered already; lightkube knows the built-in ones)."""
    _KINDS[(api_version, kind)] = _Kind(api_version, kind, plural, namespaced)


def _kind(api_version: str, kind: str) -> _Kind:
    k = _KINDS.get((api_version, kind))
    if k is None:
        try:
            typed = resource_registry.load(api_version, kind)
        except (LoadResourceError, ImportError, ValueError):
            raise KubeError(400, "BadRequest", f"unknown kind {kind} in {api_version} (register_kind it)") from None
        info = typed._api_info
        k = _KINDS[(api_version, kind)] = _Kind(api_version, kind, info.plural,
                                                issubclass(typed, res.NamespacedResource), list(info.verbs))
    return k


def _plain(obj: Any, k: _Kind | None = None) -> JsonObj:
    d = dict(obj)
    if k is not None:  # list items come without them
        d.setdefault("apiVersion", k.api_version)
        d.setdefault("kind", k.kind)
    return d


class KubeClient:
    """Async access to one cluster. Create with `from_kubeconfig` or `in_cluster`; `close()` when done."""

    def __init__(self, config: SingleConfig, namespace: str | None = None, *, timeout_s: float = 10.0):
        """A client for one kubeconfig context (use the factories)."""
        self._g = GenericAsyncClient(ConnectionParams(timeout=httpx2.Timeout(timeout_s), trust_env=False), config,
                                     namespace=namespace)
        self.namespace: str = self._g.namespace
        self.watch_server_timeout_s = WATCH_SERVER_TIMEOUT_S
        self.watch_read_margin_s = WATCH_READ_MARGIN_S
        self._timeout_s = timeout_s
        self._streams: set[httpx2.Response] = set()
        self._closed = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_kubeconfig(cls, path: str | None, context: str | None = None,
                        namespace: str | None = None) -> KubeClient:
        """A client from a kubeconfig file (token or client certificate, CA); `namespace` defaults to the
        context's. `path` None: $KUBECONFIG or ~/.kube/config."""
        try:
            kc = KubeConfig.from_file(path) if path else KubeConfig.from_env()
            config = kc.get(context_name=context)
        except (ConfigError, OSError, ValueError, KeyError) as e:
            raise KubeError(0, "BadConfig", f"kubeconfig {path or '(default)'}: {e}") from None
        if config is None:
            raise KubeError(0, "BadConfig", f"kubeconfig {path}: no context {context or '(current)'}")
        return cls(config, namespace)

    @classmethod
    def in_cluster(cls, namespace: str | None = None, *,
                   service_account_dir: str = SERVICE_ACCOUNT_DIR) -> KubeClient:
        """A client from the pod's service account (token, CA, KUBERNETES_SERVICE_HOST/PORT); `namespace`
        defaults to the pod's own."""
        try:
            config = KubeConfig.from_service_account(service_account_dir).get()
        except (ConfigError, OSError) as e:
            raise KubeError(0, "BadConfig", f"not in a cluster (no service account in {service_account_dir}): "
                                            f"{e}") from None
        except KeyError as e:
            raise KubeError(0, "BadConfig", f"not in a cluster: ${e.args[0]} is not set") from None
        assert config is not None
        return cls(config, namespace)

    async def close(self) -> None:
        """Close the connections; watches in progress end (their iterators stop)."""
        self._closed = True
        for r in list(self._streams):
            with contextlib.suppress(Exception):
                await r.aclose()
        await self._g.close()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ transport
    def _prepare(self, method: str, resource: type, *, obj: Any = None, name: str | None = None,
                 namespace: str | None = None, watch: bool = False, params: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> BasicRequest:
        if self._closed:
            raise RuntimeError("the Kubernetes client is closed")
        try:
            return self._g.prepare_request(method, resource, obj, name, namespace, watch, params=params,
                                           headers=headers)
        except (ValueError, AttributeError) as e:
            raise KubeError(400, "BadRequest", str(e)) from None

    async def _send(self, br: BasicRequest) -> httpx2.Response:
        try:
            resp = await self._g.send(self._g.build_adapter_request(br))
            self._g.raise_for_status(resp)
            return resp
        except (httpx2.HTTPError, OSError) as e:
            raise _error(e) from None

    async def _object(self, br: BasicRequest) -> JsonObj:
        resp = await self._send(br)
        return dict(json.loads(resp.content))

    # ------------------------------------------------------------------ reads
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> JsonObj | None:
        """The object, None when there is none."""
        try:
            return await self._object(self._prepare("get", _kind(api_version, kind).main, name=name,
                                                    namespace=namespace))
        except NotFoundError:
            return None

    async def list(self, api_version: str, kind: str, namespace: str | None = None,
                   label_selector: str | Mapping[str, str] | None = None) -> tuple[JsonList, str]:
        """Every matching object and the list's resourceVersion (to `watch` from)."""
        k = _kind(api_version, kind)
        br = self._prepare("list", k.main, namespace=namespace,
                           params={"labelSelector": _selector(label_selector), "limit": 500})
        items: JsonList = []
        rv = ""
        while True:
            body = json.loads((await self._send(br)).content)
            items.extend(_plain(i, k) for i in body.get("items") or [])
            meta = body.get("metadata") or {}
            rv = meta.get("resourceVersion") or rv
            if not meta.get("continue"):
                return items, rv
            br.params["continue"] = meta["continue"]

    async def watch(self, api_version: str, kind: str, namespace: str | None = None,
                    label_selector: str | Mapping[str, str] | None = None,
                    resource_version: str | None = None,
                    field_selector: str | None = None) -> AsyncIterator[tuple[str, JsonObj]]:
        """(event_type, obj) for each change after `resource_version` (ADDED, MODIFIED, DELETED; after now
        when None), until the iterator is closed or the client is. When the server ends the watch (its
        timeout) it resumes from the last version seen; `GoneError` when that version is no longer kept."""
        k = _kind(api_version, kind)
        if resource_version is None:  # "now": a list's revision (one item is enough to get it)
            br = self._prepare("list", k.main, namespace=namespace, params={"limit": 1})
            resource_version = str((json.loads((await self._send(br)).content).get("metadata") or {})
                                   .get("resourceVersion") or "")
        rv = resource_version
        while not self._closed:
            br = self._prepare("list", k.main, namespace=namespace, watch=True, params={
                "labelSelector": _selector(label_selector), "fieldSelector": field_selector,
                "resourceVersion": rv, "allowWatchBookmarks": "true",
                "timeoutSeconds": self.watch_server_timeout_s})
            timeout = httpx2.Timeout(self._timeout_s, read=self.watch_server_timeout_s + self.watch_read_margin_s)
            req = self._g._client.build_request(br.method, br.url, params=br.params, timeout=timeout)
            try:
                resp = await self._g.send(req, stream=True)
            except (httpx2.HTTPError, OSError) as e:
                if self._closed:
                    return
                raise _error(e) from None
            self._streams.add(resp)
            try:
                if resp.is_error:
                    await resp.aread()
                    self._g.raise_for_status(resp)
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        raise _error_for(int(obj.get("code") or 500), obj.get("reason", ""), obj.get("message", ""))
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if ev.get("type") == "BOOKMARK":
                        continue
                    yield ev["type"], _plain(obj, k)
            except (httpx2.HTTPError, OSError) as e:
                if self._closed:
                    return
                if isinstance(e, httpx2.HTTPStatusError | ApiError):
                    raise _error(e) from None
                # the connection broke mid-stream (server restart, idle proxy) or went silent past the server's
                # end of the watch (a half-open pipe): resume from `rv`
                await asyncio.sleep(0.2)
            finally:
                self._streams.discard(resp)
                await resp.aclose()

    async def server_version(self) -> str:
        """The API server's gitVersion (v1.20.2)."""
        resp = await self._send(BasicRequest(method="GET", url="version"))
        return str(resp.json().get("gitVersion", ""))

    # ------------------------------------------------------------------ writes
    def _obj_kind(self, obj: Mapping[str, Any]) -> tuple[_Kind, Any, str, str | None]:
        meta = obj.get("metadata") or {}
        if not obj.get("apiVersion") or not obj.get("kind") or not meta.get("name"):
            raise KubeError(400, "BadRequest", "an object needs apiVersion, kind and metadata.name")
        k = _kind(obj["apiVersion"], obj["kind"])
        return k, k.main(obj), meta["name"], meta.get("namespace")

    async def apply(self, obj: Mapping[str, Any], field_manager: str = "openscore", force: bool = True) -> JsonObj:
        """Server-side apply: the fields in `obj` become this field manager's; returns the object as stored."""
        k, body, name, ns = self._obj_kind(obj)
        body["metadata"] = {key: v for key, v in body["metadata"].items() if key != "managedFields"}
        br = self._prepare("patch", k.main, obj=dict(body), name=name, namespace=ns,
                           headers={"Content-Type": PatchType.APPLY.value},
                           params={"fieldManager": field_manager, "force": "true" if force else None})
        return await self._object(br)

    async def create(self, obj: Mapping[str, Any]) -> JsonObj:
        """POST; `ConflictError` if it exists. An object read back can be created again elsewhere: its
        resourceVersion is dropped (the server refuses one on create)."""
        k, body, _, ns = self._obj_kind(obj)
        body["metadata"] = {key: v for key, v in body["metadata"].items() if key != "resourceVersion"}
        return await self._object(self._prepare("post", k.main, obj=body, namespace=ns))

    async def replace(self, obj: Mapping[str, Any]) -> JsonObj:
        """PUT the whole object; with metadata.resourceVersion set, `ConflictError` if it changed since."""
        k, body, name, ns = self._obj_kind(obj)
        return await self._object(self._prepare("put", k.main, obj=body, name=name, namespace=ns))

    async def patch(self, api_version: str, kind: str, name: str, patch: Any, namespace: str | None = None,
                    subresource: str | None = None, merge: MergeKind = "merge") -> JsonObj:
        """Patch the object (or its `status`/`scale` subresource): JSON merge, strategic merge or JSON patch."""
        k = _kind(api_version, kind)
        target = k.main if subresource is None else k.sub.get(subresource)
        if target is None:
            raise KubeError(400, "BadRequest", f"unknown subresource {subresource!r} (status or scale)")
        ctype = {"merge": PatchType.MERGE, "strategic": PatchType.STRATEGIC, "json": PatchType.JSON}[merge].value
        return await self._object(self._prepare("patch", target, obj=patch, name=name, namespace=namespace,
                                                headers={"Content-Type": ctype}))

    async def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
                     propagation: str = "Background", resource_version: str | None = None) -> bool:
        """Delete; False when there was nothing to delete. With `resource_version`, `ConflictError` when the
        object changed since (a precondition)."""
        br = self._prepare("delete", _kind(api_version, kind).main, name=name, namespace=namespace)
        options: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        if resource_version is not None:
            options["preconditions"] = {"resourceVersion": resource_version}
        br.data = options
        try:
            await self._send(br)
        except NotFoundError:
            return False
        return True

    async def scale(self, kind: str = "Deployment", *, name: str, namespace: str | None = None,
                    replicas: int, api_version: str | None = None) -> JsonObj:
        """Set spec.replicas through the scale subresource (the only write the router's Role allows)."""
        if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
            raise KubeError(400, "BadRequest", f"replicas must be a whole number >= 0, got {replicas!r}")
        return await self.patch(api_version or _SCALE_API.get(kind, "apps/v1"), kind, name,
                                {"spec": {"replicas": replicas}}, namespace, subresource="scale")

    async def get_scale(self, kind: str = "Deployment", *, name: str, namespace: str | None = None,
                        api_version: str | None = None) -> JsonObj:
        """The scale subresource (spec.replicas, status.replicas, status.selector)."""
        k = _kind(api_version or _SCALE_API.get(kind, "apps/v1"), kind)
        return await self._object(self._prepare("get", k.sub["scale"], name=name, namespace=namespace))

    # ------------------------------------------------------------------ pods and events
    async def pod_logs(self, name: str, namespace: str | None = None, container: str | None = None,
                       previous: bool = False, tail_lines: int | None = None) -> str:
        """A container's log; `previous` for the last terminated run (a crashed init())."""
        br = self._prepare("get", PodLog, name=name, namespace=namespace, params={
            "container": container, "previous": "true" if previous else None, "tailLines": tail_lines})
        return (await self._send(br)).text

    async def events_for(self, namespace: str, kind: str, name: str) -> JsonList:
        """The core/v1 Events about one object, oldest first (the scheduler's FailedScheduling text...)."""
        k = _kind("v1", "Event")
        br = self._prepare("list", k.main, namespace=namespace, params={
            "fieldSelector": f"involvedObject.kind={kind},involvedObject.name={name}"})
        items = [_plain(i, k) for i in json.loads((await self._send(br)).content).get("items") or []]

        def when(e: JsonObj) -> str:
            return str(e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
                       or (e.get("metadata") or {}).get("creationTimestamp") or "")
        return sorted(items, key=when)
