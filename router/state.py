"""The desired state: services (their deploymentconfig documents), their keys, and the token signing keys. The
router *watches* it and converges; it never holds the truth itself.

`StateStore` keeps the rules in one place over any `ObjectStore` (the file store here, Kubernetes objects in a
cluster): a service document never holds keys (they are a `service-keys` secret of their own, the signing keys
a `signing-keys` secret), each object has its own revision, a write naming a stale revision is refused with
`Conflict`, and `watch()` pushes typed changes. A write without a revision is "last write wins".
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from openscore.router.config import ConfigError, ServiceSpec, check_key_value, parse_service
from openscore.router.objects import Conflict, Event, FileObjectStore, ObjectStore, Stored
from openscore.router.objects import Expired as Expired  # re-exported: callers need only this module
from openscore.router.objects import InvalidObject as InvalidObject

log = logging.getLogger("openscore.router.store")
KEY_TYPES = ("primary", "secondary")
SERVICE, SERVICE_KEYS, SIGNING_KEYS = "service", "service-keys", "signing-keys"
SIGNING_KEYS_NAME = "token"  # the one signing-keys object
_RETRIES = 20
T = TypeVar("T")


def new_key() -> str:
    """A service key: 32 random bytes, URL-safe (Azure's keys are 32 characters of base64)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes
    created: float
    retired_at: float | None = None   # set when a newer key took over
    valid_until: float | None = None  # a retired key still verifies tokens until then

    def verifies_at(self, now: float) -> bool:
        return self.valid_until is None or now < self.valid_until


@dataclass(frozen=True)
class SigningKeys:
    keys: tuple[SigningKey, ...] = ()
    revision: str = ""

    @property
    def current(self) -> SigningKey | None:
        live = [k for k in self.keys if k.retired_at is None]
        return live[-1] if live else None


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    config: Mapping[str, Any]      # the deploymentconfig document as stored (absolute paths, never keys)
    spec: ServiceSpec
    revision: str
    previous_config: Mapping[str, Any] | None = None  # for one-step rollback


@dataclass(frozen=True)
class ServiceKeys:
    name: str
    primary: str
    secondary: str
    revision: str = ""


@dataclass(frozen=True)
class Change:
    """One change pushed by `watch()`: `value` is the new object, None when it was deleted."""
    kind: str                      # SERVICE, SERVICE_KEYS or SIGNING_KEYS
    name: str
    revision: str
    value: ServiceRecord | ServiceKeys | SigningKeys | None

    @property
    def deleted(self) -> bool:
        return self.value is None


@dataclass(frozen=True)
class DesiredState:
    """A consistent snapshot; `watch(since=revision)` continues from it."""
    revision: str = ""
    services: Mapping[str, ServiceRecord] = field(default_factory=dict)
    keys: Mapping[str, ServiceKeys] = field(default_factory=dict)
    signing_keys: SigningKeys = SigningKeys()
    invalid: frozenset[tuple[str, str]] = frozenset()  # (kind, name) of objects refused: keep what you had


class NotFound(KeyError):
    pass


class KeysUnusable(Exception):
    """A service exists but its keys object is missing or invalid: keys are never made up for it behind the
    operator's back (every client's key would stop working). Fix the file, or regenerate deliberately."""

    def __init__(self, name: str, where: str, problem: str):
        super().__init__(f"the keys of service {name} ({where}) {problem}; they are not regenerated "
                         f"silently: restore the file, give keys.primaryKey and keys.secondaryKey in the "
                         f"service's document, or regenerate them with POST /admin/v1/services/{name}/"
                         "regenerateKeys (keyType Primary, then Secondary)")
        self.name, self.where = name, where


# ---------------------------------------------------------------------- documents <-> values
# Each raises InvalidObject naming the object's file (`where`) and the field, for any document it cannot use.
def _service(s: Stored, where: str) -> ServiceRecord:
    if s.invalid is not None:
        raise s.invalid
    config = s.doc.get("config")
    if not isinstance(config, dict):
        raise InvalidObject(where, "doc.config", f"must be an object (the service's document), got "
                                                 f"{type(config).__name__}")
    try:
        spec = parse_service(s.name, config, "/", path=f"services.{s.name}")
    except ConfigError as e:
        raise InvalidObject(where, f"doc.config ({e.key})", e.rule) from None
    previous = s.doc.get("previousConfig")
    return ServiceRecord(s.name, config, spec, s.revision, previous if isinstance(previous, dict) else None)


def _keys(s: Stored, where: str) -> ServiceKeys:
    if s.invalid is not None:
        raise s.invalid
    values = []
    for k in ("primaryKey", "secondaryKey"):
        v = s.doc.get(k)
        if not isinstance(v, str):
            raise InvalidObject(where, f"doc.{k}", "is missing" if v is None else f"must be a string, got {v!r}")
        try:
            values.append(check_key_value(v, k))
        except ConfigError as e:
            raise InvalidObject(where, f"doc.{k}", e.rule) from None
    return ServiceKeys(s.name, values[0], values[1], s.revision)


def _signing(s: Stored | None, where: str = SIGNING_KEYS) -> SigningKeys:
    if s is None:
        return SigningKeys()
    if s.invalid is not None:
        raise s.invalid
    raw = s.doc.get("keys")
    if not isinstance(raw, list):
        raise InvalidObject(where, "doc.keys", "must be a list")
    out = []
    for i, k in enumerate(raw):
        try:
            out.append(SigningKey(str(k["kid"]), base64.b64decode(k["secret"], validate=True), float(k["created"]),
                                  k.get("retired_at"), k.get("valid_until")))
        except (KeyError, TypeError, ValueError, binascii.Error) as e:
            raise InvalidObject(where, f"doc.keys[{i}]", f"is not a signing key ({type(e).__name__}: {e})") from None
    return SigningKeys(tuple(out), s.revision)


def _signing_doc(key: SigningKey) -> dict[str, Any]:
    d: dict[str, Any] = {"kid": key.kid, "secret": base64.b64encode(key.secret).decode(), "created": key.created}
    if key.retired_at is not None:
        d["retired_at"] = key.retired_at
    if key.valid_until is not None:
        d["valid_until"] = key.valid_until
    return d


def _value(kind: str, s: Stored, where: str) -> ServiceRecord | ServiceKeys | SigningKeys:
    return _service(s, where) if kind == SERVICE else _keys(s, where) if kind == SERVICE_KEYS else _signing(s, where)


class StateStore:
    """Desired state over an `ObjectStore`. Writers validate before storing, so a reader never sees an invalid
    service."""

    def __init__(self, objects: ObjectStore):
        self.objects = objects

    async def close(self) -> None:
        await self.objects.close()

    async def _retry(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Read-modify-write, again on a concurrent change (only writes without a caller's revision)."""
        for _ in range(_RETRIES):
            try:
                return await fn()
            except Conflict:
                continue
        return await fn()

    def _where(self, kind: str, name: str) -> str:
        try:
            return self.objects.where(kind, name)
        except ValueError:
            return f"{kind}/{name}"

    # ------------------------------------------------------------------ reading
    async def snapshot(self) -> DesiredState:
        """Everything valid; each refused object is logged (file and field) and named in `invalid`, so the
        caller keeps what it had for it."""
        listing, rev = await self.objects.list((SERVICE, SERVICE_KEYS, SIGNING_KEYS))
        invalid: set[tuple[str, str]] = set()
        services = {}
        for s in listing[SERVICE]:
            try:
                services[s.name] = _service(s, self._where(SERVICE, s.name))
            except InvalidObject as e:  # a broken object: serve the others, say why
                log.error("refusing service %s: %s", s.name, e)
                invalid.add((SERVICE, s.name))
        keys = {}
        for s in listing[SERVICE_KEYS]:
            try:
                keys[s.name] = _keys(s, self._where(SERVICE_KEYS, s.name))
            except InvalidObject as e:
                log.error("refusing the keys of service %s: %s", s.name, e)
                invalid.add((SERVICE_KEYS, s.name))
        for name, rec in services.items():
            if name not in keys and (SERVICE_KEYS, name) not in invalid and rec.spec.auth_enabled:
                log.error("service %s has no keys object (%s): every key is refused until they are restored or "
                          "regenerated (POST /admin/v1/services/%s/regenerateKeys)", name,
                          self._where(SERVICE_KEYS, name), name)
        signing = SigningKeys()
        for s in listing[SIGNING_KEYS]:
            if s.name == SIGNING_KEYS_NAME:
                try:
                    signing = _signing(s, self._where(SIGNING_KEYS, s.name))
                except InvalidObject as e:
                    log.error("refusing the token signing keys: %s", e)
                    invalid.add((SIGNING_KEYS, s.name))
        return DesiredState(rev, services, keys, signing, frozenset(invalid))

    async def get_service(self, name: str) -> ServiceRecord | None:
        s = await self.objects.get(SERVICE, name)
        return _service(s, self._where(SERVICE, name)) if s else None

    async def get_keys(self, name: str) -> ServiceKeys | None:
        s = await self.objects.get(SERVICE_KEYS, name)
        return _keys(s, self._where(SERVICE_KEYS, name)) if s else None

    async def signing_keys(self) -> SigningKeys:
        s = await self.objects.get(SIGNING_KEYS, SIGNING_KEYS_NAME)
        return _signing(s, self._where(SIGNING_KEYS, SIGNING_KEYS_NAME))

    async def watch(self, since: str | None = None) -> AsyncIterator[Change]:
        """Every change after `since` (a snapshot's revision; now when None), in order, pushed; `Expired` when
        the store no longer knows them all (take a new snapshot)."""
        async for ev in self.objects.watch(since):
            change = self._change(ev)
            if change is not None:
                yield change

    def _change(self, ev: Event) -> Change | None:
        if ev.kind not in (SERVICE, SERVICE_KEYS, SIGNING_KEYS):
            return None
        if ev.doc is None:
            return Change(ev.kind, ev.name, ev.revision, None)
        try:
            return Change(ev.kind, ev.name, ev.revision, _value(ev.kind, Stored(ev.kind, ev.name, ev.revision,
                                                                                ev.doc), self._where(ev.kind, ev.name)))
        except InvalidObject as e:
            log.error("refusing %s %s at revision %s, keeping the last good one: %s", ev.kind, ev.name,
                      ev.revision, e)
            return None

    # ------------------------------------------------------------------ services
    async def put_service(self, name: str, config: Mapping[str, Any], revision: str | None = None) -> ServiceRecord:
        """Create or replace; raises ConfigError, and Conflict when `revision` is not the current one. Keys given
        in the document (`keys.primaryKey/secondaryKey`) go to the service's secret; others are kept, or
        generated for a new service. An identical document is not a change (same revision)."""
        spec = parse_service(name, config, "/", path=f"services.{name}")  # validates the keys too
        doc = {k: v for k, v in config.items() if k != "keys"}
        plain = parse_service(name, doc, "/", path=f"services.{name}")
        if revision is not None:
            current = await self.objects.get(SERVICE, name)
            if current is None or current.revision != revision:
                raise Conflict(SERVICE, name, revision, current.revision if current else None)
        await self._ensure_keys(name, spec.primary_key, spec.secondary_key)  # first: no service without keys

        async def write() -> ServiceRecord:
            try:
                current = await self.objects.get(SERVICE, name)
            except InvalidObject as e:
                if revision is not None:
                    raise
                log.warning("service %s: replacing its unreadable document (%s)", name, e)
                current = None
            if current is not None and current.doc.get("config") == doc:
                if revision is not None and current.revision != revision:
                    raise Conflict(SERVICE, name, revision, current.revision)
                prev = current.doc.get("previousConfig")
                return ServiceRecord(name, doc, plain, current.revision, prev if isinstance(prev, dict) else None)
            new: dict[str, Any] = {"config": doc}
            previous = current.doc.get("config") if current else None
            previous = previous if isinstance(previous, dict) else None
            if previous is not None:
                new["previousConfig"] = previous
            expect = revision if revision is not None else (current.revision if current else None)
            s = await self.objects.put(SERVICE, name, new, expect)
            return ServiceRecord(name, doc, plain, s.revision, previous)

        return await (write() if revision is not None else self._retry(write))

    async def put_services(self, configs: Mapping[str, Mapping[str, Any]], prune: bool = False) -> None:
        """Apply a whole services file (every document validated before any is written); `prune` deletes the
        services it does not name."""
        for n, c in configs.items():
            parse_service(n, c, "/", path=f"services.{n}")
        if prune:
            listing, _ = await self.objects.list((SERVICE,))
            for s in listing[SERVICE]:
                if s.name not in configs:
                    await self.delete_service(s.name)
        for n, c in configs.items():
            await self.put_service(n, c)

    async def delete_service(self, name: str, revision: str | None = None) -> str | None:
        """The deletion's revision (None: there was no such service); its keys go with it."""
        rev = await self.objects.delete(SERVICE, name, revision)
        if rev is not None:
            await self.objects.delete(SERVICE_KEYS, name)
        return rev

    async def rollback_service(self, name: str) -> ServiceRecord:
        """One-step rollback: the configuration before the last change comes back (and the rolled-back one
        becomes the previous, so a second rollback redoes it). NotFound without a service; LookupError
        without a previous configuration. Keys are not rolled back."""
        async def write() -> ServiceRecord:
            current = await self.objects.get(SERVICE, name)
            if current is None:
                raise NotFound(name)
            previous = current.doc.get("previousConfig")
            if previous is None:
                raise LookupError(f"service {name} has no previous configuration to roll back to")
            spec = parse_service(name, previous, "/", path=f"services.{name}")
            s = await self.objects.put(SERVICE, name, {"config": previous, "previousConfig": current.doc["config"]},
                                       current.revision)
            return ServiceRecord(name, previous, spec, s.revision, current.doc["config"])

        return await self._retry(write)

    # ------------------------------------------------------------------ keys
    async def _ensure_keys(self, name: str, primary: str | None, secondary: str | None,
                           regenerate: bool = False) -> ServiceKeys:
        """The service's keys with `primary`/`secondary` set where given. Others are kept; they are made up
        only for a new service, or when the operator regenerates (`regenerate`): for an existing service
        whose keys object is missing or invalid, KeysUnusable."""
        where = self._where(SERVICE_KEYS, name)

        async def write() -> ServiceKeys:
            problem = ""
            try:
                current = await self.objects.get(SERVICE_KEYS, name)
                ks = _keys(current, where) if current else None
                old = {"primary": ks.primary, "secondary": ks.secondary} if ks else {}
            except InvalidObject as e:
                current, old, problem = None, {}, f"are invalid ({e.field} {e.rule})"
            if current is None and not problem and await self._service_exists(name):
                problem = "are missing"
            if problem and not regenerate and not (primary and secondary):
                raise KeysUnusable(name, where, problem)
            if problem:
                log.warning("service %s: its keys %s; writing new ones as asked", name, problem)
            doc = {"primaryKey": primary or old.get("primary") or new_key(),
                   "secondaryKey": secondary or old.get("secondary") or new_key()}
            if current is not None and doc == dict(current.doc):
                return _keys(current, where)
            s = await self.objects.put(SERVICE_KEYS, name, doc, current.revision if current else None)
            return _keys(s, where)

        return await self._retry(write)

    async def _service_exists(self, name: str) -> bool:
        try:
            return await self.objects.get(SERVICE, name) is not None
        except InvalidObject:
            return True  # there, if unreadable: its keys are not new

    async def set_key(self, name: str, key_type: str, value: str | None = None) -> ServiceKeys:
        """Regenerate (value None) or set the primary/secondary key; the old value is gone at once."""
        kt = key_type.lower()
        if kt not in KEY_TYPES:
            raise ValueError(f"keyType must be 'Primary' or 'Secondary', got {key_type!r}")
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError("keyValue", f"must be a string, got {type(value).__name__}")
            check_key_value(value, "keyValue")
        v = value or new_key()
        if not await self._service_exists(name):
            raise NotFound(name)
        return await self._ensure_keys(name, v if kt == "primary" else None, v if kt == "secondary" else None,
                                       regenerate=True)

    # ------------------------------------------------------------------ token signing keys
    async def _update_signing(self, fn: Callable[[list[SigningKey]], list[SigningKey] | None]) -> SigningKeys:
        where = self._where(SIGNING_KEYS, SIGNING_KEYS_NAME)

        async def write() -> SigningKeys:
            current = await self.objects.get(SIGNING_KEYS, SIGNING_KEYS_NAME)
            keys = list(_signing(current, where).keys)
            new = fn(keys)
            if new is None:
                return _signing(current, where)
            s = await self.objects.put(SIGNING_KEYS, SIGNING_KEYS_NAME, {"keys": [_signing_doc(k) for k in new]},
                                       current.revision if current else None)
            return _signing(s, where)

        return await self._retry(write)

    async def rotate_signing_key(self, keep_old_for_s: float) -> SigningKeys:
        """A new current token signing key; older ones verify for `keep_old_for_s` more (0 = revoke now)."""
        now = time.time()
        key = SigningKey(secrets.token_hex(8), secrets.token_bytes(32), now)

        def rotate(keys: list[SigningKey]) -> list[SigningKey]:
            kept = []
            for k in keys:
                if k.retired_at is None:
                    k = SigningKey(k.kid, k.secret, k.created, now, now + keep_old_for_s)
                if keep_old_for_s > 0 and k.verifies_at(now):
                    kept.append(k)
            return [*kept, key]

        return await self._update_signing(rotate)

    async def ensure_signing_key(self) -> SigningKeys:
        """A first signing key for a new workspace (token auth needs one)."""
        def first(keys: list[SigningKey]) -> list[SigningKey] | None:
            if any(k.retired_at is None for k in keys):
                return None
            return [*keys, SigningKey(secrets.token_hex(8), secrets.token_bytes(32), time.time())]

        return await self._update_signing(first)


def FileStateStore(workspace: str | Path, *, poll_s: float = 0.25) -> StateStore:
    """The embedded default: the desired state in `<workspace>/store/` (see `FileObjectStore`)."""
    return StateStore(FileObjectStore(workspace, poll_s=poll_s))
