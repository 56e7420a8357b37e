"""The desired-state store: services (with their endpoint versions, traffic and autoscale settings), keys and
token signing keys. The router *watches* it and converges; it never holds the truth itself.

`StateStore` is the interface the deployer reuses (a Kubernetes store would keep the same documents in
ConfigMaps/Secrets). `FileStateStore` is the embedded default: one JSON document in a workspace folder,
written atomically under a file lock, so the CLI, the admin API and a hand edit can all change it and a
running router picks the change up without a restart.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openscore.router.config import ConfigError, ServiceSpec, parse_service

KEY_TYPES = ("primary", "secondary")


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
class ServiceRecord:
    name: str
    config: Mapping[str, Any]      # the deploymentconfig document as stored (absolute paths)
    spec: ServiceSpec
    primary_key: str
    secondary_key: str


@dataclass(frozen=True)
class DesiredState:
    revision: int = 0
    services: Mapping[str, ServiceRecord] = field(default_factory=dict)
    signing_keys: tuple[SigningKey, ...] = ()

    @property
    def current_signing_key(self) -> SigningKey | None:
        live = [k for k in self.signing_keys if k.retired_at is None]
        return live[-1] if live else None


class NotFound(KeyError):
    pass


class StateStore(abc.ABC):
    """Desired state. Writers validate before storing, so a reader never sees an invalid service."""

    @abc.abstractmethod
    def read(self) -> DesiredState: ...

    @abc.abstractmethod
    def put_service(self, name: str, config: Mapping[str, Any]) -> ServiceRecord:
        """Create or replace; raises ConfigError. Keys survive a replace unless the config sets them."""

    @abc.abstractmethod
    def delete_service(self, name: str) -> bool: ...

    @abc.abstractmethod
    def rollback_service(self, name: str) -> ServiceRecord:
        """One-step rollback: the configuration before the last change comes back (and the rolled-back one
        becomes the previous, so a second rollback redoes it). NotFound without a service; LookupError
        without a previous configuration."""

    @abc.abstractmethod
    def set_key(self, name: str, key_type: str, value: str | None = None) -> str:
        """Regenerate (value None) or set the primary/secondary key; the old value is gone at once."""

    @abc.abstractmethod
    def rotate_signing_key(self, keep_old_for_s: float) -> SigningKey:
        """A new current token signing key; older ones verify for `keep_old_for_s` more (0 = revoke now)."""

    async def watch(self, interval_s: float = 0.25) -> AsyncIterator[DesiredState]:
        """Yields the state now and after every change (polling; stores with push can override)."""
        last = -1
        while True:
            try:
                state = await asyncio.to_thread(self.read)
            except (OSError, ValueError):
                state = None  # a half-written hand edit: try again next tick
            if state is not None and state.revision != last:
                last = state.revision
                yield state
            await asyncio.sleep(interval_s)


class FileStateStore(StateStore):
    """`<workspace>/state.json` (mode 0600: it holds keys), guarded by `<workspace>/state.lock`."""

    def __init__(self, workspace: str | Path):
        self.workspace = Path(workspace)
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.path = self.workspace / "state.json"
        self._lock_path = self.workspace / "state.lock"
        self._cache: tuple[tuple[int, int, int], DesiredState] | None = None

    # ------------------------------------------------------------------ file plumbing
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _load_doc(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"revision": 0, "services": {}, "signing_keys": []}
        if not isinstance(doc, dict):
            raise ValueError(f"{self.path}: not a JSON object")
        doc.setdefault("revision", 0)
        doc.setdefault("services", {})
        doc.setdefault("signing_keys", [])
        return doc

    def _write_doc(self, doc: dict[str, Any]) -> None:
        doc["revision"] = int(doc.get("revision", 0)) + 1
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _mutate(self, fn: Callable[[dict[str, Any]], Any]) -> Any:
        with self._locked():
            doc = self._load_doc()
            result = fn(doc)
            self._write_doc(doc)
            return result

    # ------------------------------------------------------------------ reading
    def read(self) -> DesiredState:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return DesiredState()
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        doc = self._load_doc()
        services: dict[str, ServiceRecord] = {}
        for name, entry in doc["services"].items():
            try:
                spec = parse_service(name, entry["config"], "/", path=f"services.{name}")
            except (ConfigError, KeyError, TypeError) as e:
                # a hand edit broke one service: keep serving the others, say which and why
                raise ValueError(f"{self.path}: service {name!r} is invalid: {e}") from e
            services[name] = ServiceRecord(name, entry["config"], spec, entry["primaryKey"], entry["secondaryKey"])
        keys = tuple(SigningKey(k["kid"], base64.b64decode(k["secret"]), k["created"], k.get("retired_at"),
                                k.get("valid_until")) for k in doc["signing_keys"])
        state = DesiredState(int(doc["revision"]), services, keys)
        self._cache = (stamp, state)
        return state

    # ------------------------------------------------------------------ writing
    def put_service(self, name: str, config: Mapping[str, Any]) -> ServiceRecord:
        spec = parse_service(name, config, "/", path=f"services.{name}")  # before taking the lock

        def fn(doc: dict[str, Any]) -> ServiceRecord:
            old = doc["services"].get(name, {})
            primary = spec.primary_key or old.get("primaryKey") or new_key()
            secondary = spec.secondary_key or old.get("secondaryKey") or new_key()
            entry = {"config": dict(config), "primaryKey": primary, "secondaryKey": secondary}
            if "config" in old and old["config"] != entry["config"]:
                entry["previousConfig"] = old["config"]  # for one-step rollback
            elif "previousConfig" in old:
                entry["previousConfig"] = old["previousConfig"]
            doc["services"][name] = entry
            return ServiceRecord(name, dict(config), spec, primary, secondary)

        return self._mutate(fn)

    def put_services(self, configs: Mapping[str, Mapping[str, Any]], prune: bool = False) -> None:
        """Apply a whole services file in one revision (validated first); `prune` deletes the others."""
        specs = {n: parse_service(n, c, "/", path=f"services.{n}") for n, c in configs.items()}

        def fn(doc: dict[str, Any]) -> None:
            if prune:
                for n in list(doc["services"]):
                    if n not in configs:
                        del doc["services"][n]
            for n, c in configs.items():
                old = doc["services"].get(n, {})
                entry = {"config": dict(c),
                         "primaryKey": specs[n].primary_key or old.get("primaryKey") or new_key(),
                         "secondaryKey": specs[n].secondary_key or old.get("secondaryKey") or new_key()}
                previous = old.get("config") if old.get("config") not in (None, entry["config"]) \
                    else old.get("previousConfig")
                if previous is not None:
                    entry["previousConfig"] = previous
                doc["services"][n] = entry

        self._mutate(fn)

    def delete_service(self, name: str) -> bool:
        return bool(self._mutate(lambda doc: doc["services"].pop(name, None) is not None))

    def rollback_service(self, name: str) -> ServiceRecord:
        def fn(doc: dict[str, Any]) -> ServiceRecord:
            entry = doc["services"].get(name)
            if entry is None:
                raise NotFound(name)
            previous = entry.get("previousConfig")
            if previous is None:
                raise LookupError(f"service {name} has no previous configuration to roll back to")
            spec = parse_service(name, previous, "/", path=f"services.{name}")
            entry["previousConfig"], entry["config"] = entry["config"], previous
            return ServiceRecord(name, previous, spec, entry["primaryKey"], entry["secondaryKey"])

        return self._mutate(fn)

    def set_key(self, name: str, key_type: str, value: str | None = None) -> str:
        kt = key_type.lower()
        if kt not in KEY_TYPES:
            raise ValueError(f"keyType must be 'Primary' or 'Secondary', got {key_type!r}")
        if value is not None and (not isinstance(value, str) or len(value) < 8):
            raise ValueError("keyValue must be a string of at least 8 characters")
        v = value or new_key()

        def fn(doc: dict[str, Any]) -> str:
            entry = doc["services"].get(name)
            if entry is None:
                raise NotFound(name)
            entry[f"{kt}Key"] = v
            # a key set in the config file would bring the old value back on the next apply: drop it there
            entry["config"].get("keys", {}).pop(f"{kt}Key", None)
            return v

        return self._mutate(fn)

    def rotate_signing_key(self, keep_old_for_s: float) -> SigningKey:
        now = time.time()
        key = SigningKey(secrets.token_hex(8), secrets.token_bytes(32), now)

        def fn(doc: dict[str, Any]) -> SigningKey:
            kept = []
            for k in doc["signing_keys"]:
                if k.get("retired_at") is None:
                    k["retired_at"] = now
                    k["valid_until"] = now + keep_old_for_s
                if keep_old_for_s > 0 and k.get("valid_until", now + 1) > now:
                    kept.append(k)
            kept.append({"kid": key.kid, "secret": base64.b64encode(key.secret).decode(), "created": now})
            doc["signing_keys"] = kept
            return key

        return self._mutate(fn)

    def ensure_signing_key(self) -> None:
        """A first signing key for a new workspace (token auth needs one)."""
        if self.read().current_signing_key is not None:
            return

        def fn(doc: dict[str, Any]) -> None:
            if not any(k.get("retired_at") is None for k in doc["signing_keys"]):
                doc["signing_keys"].append({"kid": secrets.token_hex(8), "created": time.time(),
                                            "secret": base64.b64encode(secrets.token_bytes(32)).decode()})

        self._mutate(fn)
