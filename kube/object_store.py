"""The router's desired state as Kubernetes objects: `KubernetesObjectStore` implements
`openscore.router.objects.ObjectStore` over the API server, so the same `StateStore` rules hold in a cluster.

kind "service" → a ScoringService CR (the document is its `spec` minus `spec.deployment`, which belongs to the
deployer and is kept on every write); "service-keys" → Secret `<service>-keys`; "signing-keys" → Secret
`openscore-signing-keys` (data `keys` = the JSON document). A revision is the object's resourceVersion
(compare-and-swap is a PUT naming it); a list's revision is composite (the CR list's and the Secret list's
resourceVersions) and `watch(since=...)` merges the two kinds' watches from it. A 410 from the server is
`Expired`.

A CR's resourceVersion also moves when its status or spec.deployment is written: a writer naming the older
revision then gets `Conflict` and reads again (StateStore retries writes that named none).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from openscore.kube import crd
from openscore.kube.client import ConflictError, GoneError, JsonObj, KubeClient, KubeError, NotFoundError
from openscore.router.objects import Conflict, Event, Expired, InvalidObject, ObjectStore, Stored
from openscore.router.state import SIGNING_KEYS_NAME, StateStore

log = logging.getLogger("openscore.kube.store")
SERVICE, SERVICE_KEYS, SIGNING_KEYS = "service", "service-keys", "signing-keys"
_SECRET_SELECTOR = f"{crd.LABEL_KIND} in ({crd.KIND_SERVICE_KEYS},{crd.KIND_SIGNING_KEYS})"
_RETRIES = 20
_DELETE_EVENT_WAIT_S = 10.0
_LISTINGS_KEPT = 4


def _kind_of(kind: str) -> tuple[str, str]:
    if kind == SERVICE:
        return crd.API_VERSION, crd.KIND
    if kind in (SERVICE_KEYS, SIGNING_KEYS):
        return "v1", "Secret"
    raise ValueError(f"unknown object kind {kind!r} (service, service-keys or signing-keys)")


def _object_name(kind: str, name: str) -> str:
    if not name or "/" in name:
        raise ValueError(f"invalid object name {kind}/{name}")
    _kind_of(kind)
    if kind == SERVICE:
        return name
    if kind == SERVICE_KEYS:
        return crd.service_keys_secret(name)
    if name != SIGNING_KEYS_NAME:
        raise ValueError(f"the signing keys are one object named {SIGNING_KEYS_NAME!r}, not {name!r}")
    return crd.SIGNING_KEYS_SECRET


def _store_name(obj: JsonObj) -> tuple[str, str] | None:
    """(kind, name) in the store of a CR or Secret read from the server; None for one that is not ours."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if obj.get("kind") == crd.KIND:
        return SERVICE, meta["name"]
    if labels.get(crd.LABEL_KIND) == crd.KIND_SIGNING_KEYS and meta.get("name") == crd.SIGNING_KEYS_SECRET:
        return SIGNING_KEYS, SIGNING_KEYS_NAME
    if labels.get(crd.LABEL_KIND) == crd.KIND_SERVICE_KEYS:
        service = labels.get(crd.LABEL_SERVICE) or ""
        if service and meta.get("name") == crd.service_keys_secret(service):
            return SERVICE_KEYS, service
    return None


class KubernetesObjectStore(ObjectStore):
    """Desired-state objects in one namespace of a cluster. The client is the caller's: `close()` ends this
    store's watches only."""

    def __init__(self, client: KubeClient, namespace: str):
        self.client = client
        self.namespace = namespace
        self._watches: set[asyncio.Queue[Any]] = set()
        self._pumps: set[asyncio.Task[None]] = set()  # every watch's two; close() ends them even if unread
        self._closed = False
        # the documents the last listings returned, by their revision: a watch from one knows what each object
        # held, so a status-only write right after it is no change either
        self._listed: collections.OrderedDict[str, dict[tuple[str, str], Mapping[str, Any]]] = \
            collections.OrderedDict()

    def where(self, kind: str, name: str) -> str:
        """The Kubernetes object, for messages (`scoringservices/<ns>/<name>`, `secrets/<ns>/<name>-keys`)."""
        plural = crd.PLURAL if kind == SERVICE else "secrets"
        return f"{plural}/{self.namespace}/{_object_name(kind, name)}"

    # ------------------------------------------------------------------ documents <-> objects
    def _decode(self, kind: str, name: str, obj: JsonObj) -> Stored:
        """The store's view of a CR or Secret; `invalid` set when it cannot be read."""
        rev = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        try:
            return Stored(kind, name, rev, self._doc(kind, name, obj))
        except InvalidObject as e:
            return Stored(kind, name, rev, {}, e)

    def _doc(self, kind: str, name: str, obj: JsonObj) -> dict[str, Any]:
        where = self.where(kind, name)
        if kind == SERVICE:
            spec = obj.get("spec")
            if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
                raise InvalidObject(where, "spec.config", "must be an object (the service's document)")
            return {k: v for k, v in spec.items() if k != "deployment"}
        data = obj.get("data") or {}
        if not isinstance(data, dict):
            raise InvalidObject(where, "data", "must be an object")
        text: dict[str, str] = {}
        for k, v in data.items():
            try:
                text[k] = base64.b64decode(v, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError, TypeError, ValueError):
                raise InvalidObject(where, f"data.{k}", "is not base64 of UTF-8 text") from None
        if kind == SERVICE_KEYS:
            return text
        try:
            doc = json.loads(text.get("keys", ""))
        except ValueError as e:
            raise InvalidObject(where, "data.keys", f"is not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise InvalidObject(where, "data.keys", f"must be a JSON object, got {type(doc).__name__}")
        return doc

    def _new_object(self, kind: str, name: str, doc: Mapping[str, Any]) -> JsonObj:
        api_version, k = _kind_of(kind)
        labels = {crd.LABEL_MANAGED: crd.MANAGED_BY}
        meta: JsonObj = {"name": _object_name(kind, name), "namespace": self.namespace, "labels": labels}
        if kind == SERVICE:
            labels[crd.LABEL_SERVICE] = name
            return {"apiVersion": api_version, "kind": k, "metadata": meta, "spec": dict(doc)}
        labels[crd.LABEL_KIND] = crd.KIND_SERVICE_KEYS if kind == SERVICE_KEYS else crd.KIND_SIGNING_KEYS
        if kind == SERVICE_KEYS:
            labels[crd.LABEL_SERVICE] = name
        return {"apiVersion": api_version, "kind": k, "metadata": meta, "type": "Opaque",
                "data": self._data(kind, doc)}

    @staticmethod
    def _data(kind: str, doc: Mapping[str, Any]) -> dict[str, str]:
        if kind == SIGNING_KEYS:
            raw = {"keys": json.dumps(doc, sort_keys=True)}
        else:
            bad = [k for k, v in doc.items() if not isinstance(v, str)]
            if bad:
                raise ValueError(f"service-keys values must be strings ({', '.join(bad)})")
            raw = dict(doc)
        return {k: base64.b64encode(v.encode()).decode() for k, v in raw.items()}

    def _updated(self, kind: str, current: JsonObj, doc: Mapping[str, Any]) -> JsonObj:
        """`current` with the new document, its metadata (resourceVersion: the CAS) and spec.deployment kept."""
        new = dict(current)
        if kind == SERVICE:
            spec = dict(doc)
            old = current.get("spec")
            if isinstance(old, dict) and "deployment" in old:
                spec["deployment"] = old["deployment"]
            new["spec"] = spec
            new.pop("status", None)  # the status subresource's; a PUT of the main resource ignores it anyway
        else:
            new["data"] = self._data(kind, doc)
            new.pop("stringData", None)
        return new

    # ------------------------------------------------------------------ reads
    async def _get_raw(self, kind: str, name: str) -> JsonObj | None:
        api_version, k = _kind_of(kind)
        return await self.client.get(api_version, k, _object_name(kind, name), self.namespace)

    async def get(self, kind: str, name: str) -> Stored | None:
        obj = await self._get_raw(kind, name)
        if obj is None:
            return None
        s = self._decode(kind, name, obj)
        if s.invalid is not None:
            raise s.invalid
        return s

    async def list(self, kinds: Iterable[str]) -> tuple[dict[str, list[Stored]], str]:
        wanted = list(kinds)
        for kind in wanted:
            _kind_of(kind)
        (services, rv_cr), (secrets, rv_secrets) = await asyncio.gather(
            self.client.list(crd.API_VERSION, crd.KIND, self.namespace),
            self.client.list("v1", "Secret", self.namespace, _SECRET_SELECTOR))
        out: dict[str, list[Stored]] = {k: [] for k in wanted}
        for obj in [*services, *secrets]:
            key = _store_name(obj)
            if key is not None and key[0] in out:
                out[key[0]].append(self._decode(key[0], key[1], obj))
        for items in out.values():
            items.sort(key=lambda s: s.name)
        rev = f"{rv_cr}.{rv_secrets}"
        self._listed[rev] = {(s.kind, s.name): s.doc for items in out.values() for s in items}
        while len(self._listed) > _LISTINGS_KEPT:
            self._listed.popitem(last=False)
        return out, rev

    # ------------------------------------------------------------------ writes
    async def put(self, kind: str, name: str, doc: Mapping[str, Any], expect: str | None = None) -> Stored:
        json.dumps(doc)  # not JSON: refused before anything is written
        for _ in range(_RETRIES):
            current = await self._get_raw(kind, name)
            current_rev = (current or {}).get("metadata", {}).get("resourceVersion")
            if expect is not None and current_rev != expect:
                raise Conflict(kind, name, expect, current_rev)
            try:
                if current is None:
                    stored = await self.client.create(self._new_object(kind, name, doc))
                    if kind == SERVICE:
                        await self._own_keys(name, stored)
                else:
                    stored = await self.client.replace(self._updated(kind, current, doc))
            except ConflictError:  # created or changed meanwhile
                if expect is not None:
                    now = await self._get_raw(kind, name)
                    raise Conflict(kind, name, expect, (now or {}).get("metadata", {}).get("resourceVersion")) \
                        from None
                continue  # last write wins: on what is there now
            except KubeError as e:
                if e.status in (400, 422):
                    raise ValueError(f"{self.where(kind, name)}: {e.message}") from None
                raise
            return Stored(kind, name, stored["metadata"]["resourceVersion"], dict(doc))
        raise Conflict(kind, name, "(latest)", None)

    async def _own_keys(self, name: str, cr: JsonObj) -> None:
        """The keys Secret (written before its service) now belongs to the CR: deleting the CR deletes it."""
        with contextlib.suppress(NotFoundError):
            await self.client.patch("v1", "Secret", crd.service_keys_secret(name),
                                    {"metadata": {"ownerReferences": [crd.owner_reference(cr)]}}, self.namespace)

    async def delete(self, kind: str, name: str, expect: str | None = None) -> str | None:
        api_version, k = _kind_of(kind)
        obj_name = _object_name(kind, name)
        for _ in range(_RETRIES):
            current = await self._get_raw(kind, name)
            if current is None:
                if expect is not None:
                    raise Conflict(kind, name, expect, None)
                return None
            rev = current["metadata"]["resourceVersion"]
            if expect is not None and rev != expect:
                raise Conflict(kind, name, expect, rev)
            # the deletion's own revision is only in its watch event: watch from the revision being deleted
            events = self.client.watch(api_version, k, self.namespace, resource_version=rev,
                                       field_selector=f"metadata.name={obj_name}")
            try:
                try:
                    deleted = await self.client.delete(api_version, k, obj_name, self.namespace,
                                                       resource_version=rev)
                except ConflictError:
                    if expect is not None:
                        now = await self._get_raw(kind, name)
                        raise Conflict(kind, name, expect, (now or {}).get("metadata", {}).get("resourceVersion")) \
                            from None
                    continue
                if not deleted:
                    continue  # someone else deleted it first: look again
                return await self._deletion_revision(events, rev)
            finally:
                await events.aclose()  # type: ignore[attr-defined]
        return None

    @staticmethod
    async def _deletion_revision(events: AsyncIterator[tuple[str, JsonObj]], fallback: str) -> str:
        async def first_delete() -> str:
            async for event_type, obj in events:
                if event_type == "DELETED":
                    return str(obj["metadata"]["resourceVersion"])
            return fallback
        try:
            return await asyncio.wait_for(first_delete(), _DELETE_EVENT_WAIT_S)
        except (TimeoutError, GoneError):
            log.warning("the deletion's revision was not seen in time; using the deleted object's %s", fallback)
            return fallback

    # ------------------------------------------------------------------ watch
    async def watch(self, since: str | None = None) -> AsyncIterator[Event]:
        """Every change after the composite revision `since`: the CR and Secret watches merged (each in order;
        a CR's and a Secret's change in the order they arrive). A write that leaves the document as it was
        (the CR's status, an ownerReference) is no change, as in the file store."""
        if self._closed:
            raise RuntimeError("the store is closed")
        rv_cr: str | None = None
        rv_secrets: str | None = None
        if since is not None:
            rv_cr, sep, rv_secrets = since.partition(".")
            if not sep or not rv_cr or not rv_secrets:
                raise ValueError(f"not a revision of this store: {since!r}")
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._watches.add(queue)
        last = dict(self._listed.get(since or "", {}))  # the document each object held: at `since`, then events

        async def pump(api_version: str, kind: str, rv: str | None, selector: str | None) -> None:
            try:
                async for event_type, obj in self.client.watch(api_version, kind, self.namespace, selector, rv):
                    await queue.put((event_type, obj))
            except BaseException as e:
                await queue.put(e)
                if isinstance(e, asyncio.CancelledError):
                    raise

        tasks = [asyncio.create_task(pump(crd.API_VERSION, crd.KIND, rv_cr, None), name="openscore-kube-watch"),
                 asyncio.create_task(pump("v1", "Secret", rv_secrets, _SECRET_SELECTOR), name="openscore-kube-watch")]
        self._pumps.update(tasks)
        try:
            while not self._closed:
                item = await queue.get()
                if item is None:
                    return
                if isinstance(item, GoneError):
                    raise Expired(f"changes after revision {since} are no longer kept ({item.message})") from None
                if isinstance(item, BaseException):
                    if isinstance(item, asyncio.CancelledError):
                        return
                    raise item
                event_type, obj = item
                key = _store_name(obj)
                if key is None:
                    continue
                rev = str(obj["metadata"]["resourceVersion"])
                if event_type == "DELETED":
                    last.pop(key, None)
                    yield Event(key[0], key[1], rev, None)
                    continue
                s = self._decode(key[0], key[1], obj)
                if last.get(key) == s.doc:
                    continue  # metadata or status only (an ownerReference, the CR's status): not a change
                last[key] = s.doc
                if s.invalid is not None:
                    log.error("%s is unreadable: %s", self.where(*key), s.invalid)
                yield Event(key[0], key[1], rev, s.doc)  # an unreadable one as {}: its reader refuses it
        finally:
            self._watches.discard(queue)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._pumps.difference_update(tasks)

    async def close(self) -> None:
        """Watches end; the client is the caller's (not closed here)."""
        self._closed = True
        for q in list(self._watches):
            q.put_nowait(None)
        pumps = list(self._pumps)
        for t in pumps:
            t.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


def KubernetesStateStore(client: KubeClient, namespace: str) -> StateStore:
    """The router's StateStore over a cluster namespace."""
    return StateStore(KubernetesObjectStore(client, namespace))
