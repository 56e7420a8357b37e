"""A small synchronous client for the router's admin API (`/admin/v1/...`, router/frontend.py).

The deployer never imports router internals: everything it does to a running router goes through this
client, so a router the user runs as a service of its own, or one in a cluster, is driven the same way.
Plain `http.client` (one keep-alive connection, no extra dependency): the calls are few and small.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import quote

from openscore.deployer.errors import ConflictError, DeployError, NotFoundError


class RouterUnreachable(DeployError):
    """Nothing (or something that is not this workspace's router) answers at the address."""


class RouterError(DeployError):
    """The router answered with an error; `status` is its HTTP status, the message its own."""

    def __init__(self, message: str, status: int, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


class RouterClient:
    def __init__(self, host: str, port: int, admin_key: str, *, timeout_s: float = 30.0):
        self.host, self.port = host, port
        self.base_url = f"http://{host}:{port}"
        self._auth = f"Bearer {admin_key}"
        self.timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ transport
    def request(self, method: str, path: str, body: Any = None, *, headers: dict[str, str] | None = None,
                timeout_s: float | None = None, raw_body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request; a dropped keep-alive connection is retried once on a fresh one."""
        data = raw_body if raw_body is not None else (None if body is None else json.dumps(body).encode())
        h = {"Authorization": self._auth, **(headers or {})}
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s or self.timeout_s)
            elif timeout_s is not None:
                self._conn.timeout = timeout_s
                if self._conn.sock is not None:
                    self._conn.sock.settimeout(timeout_s)
            try:
                self._conn.request(method, path, body=data, headers=h)
                resp = self._conn.getresponse()
                payload = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload
            except (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine) as e:
                self.close()
                if attempt == 2 or isinstance(e, ConnectionRefusedError):
                    raise RouterUnreachable(f"the router at {self.base_url} is not answering ({e})") from e
            except (TimeoutError, OSError) as e:
                self.close()
                raise RouterUnreachable(f"the router at {self.base_url} did not answer ({e})") from e
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        status, _, payload = self.request(method, path, body, **kw)
        try:
            doc = json.loads(payload) if payload else {}
        except ValueError:
            doc = {"message": payload.decode("utf-8", "replace")[:500]}
        if status >= 400:
            msg = doc.get("message") if isinstance(doc, dict) else None
            msg = msg or f"HTTP {status}"
            if status == 404:
                raise NotFoundError(msg)
            if status == 409:
                raise ConflictError(msg)
            raise RouterError(msg, status, doc)
        return doc

    # ------------------------------------------------------------------ admin API
    def ping(self) -> bool:
        """True when the server at the address accepts this admin key (i.e. it is this workspace's router)."""
        try:
            status, _, _ = self.request("GET", "/admin/v1/services", timeout_s=2.0)
        except RouterUnreachable:
            return False
        return status == 200

    def list_services(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/admin/v1/services")["services"])

    def get_service(self, name: str) -> dict[str, Any]:
        return dict(self._json("GET", f"/admin/v1/services/{quote(name)}"))

    def put_service(self, name: str, doc: dict[str, Any]) -> dict[str, Any]:
        return dict(self._json("PUT", f"/admin/v1/services/{quote(name)}", doc))

    def delete_service(self, name: str) -> None:
        self._json("DELETE", f"/admin/v1/services/{quote(name)}")

    def get_keys(self, name: str) -> tuple[str, str]:
        doc = self._json("POST", f"/admin/v1/services/{quote(name)}/listkeys")
        return doc["primaryKey"], doc["secondaryKey"]

    def regenerate_key(self, name: str, key_type: str, value: str | None = None) -> str:
        body: dict[str, Any] = {"keyType": key_type}
        if value is not None:
            body["keyValue"] = value
        doc = self._json("POST", f"/admin/v1/services/{quote(name)}/regenerateKeys", body)
        return str(next(iter(doc.values())))

    def token(self, name: str) -> dict[str, Any]:
        return dict(self._json("POST", f"/admin/v1/services/{quote(name)}/token"))

    # ------------------------------------------------------------------ data plane
    def score(self, path: str, data: bytes, authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        """POST to a scoring URL path with the service's key or token (not the admin key)."""
        h = {"Content-Type": "application/json"}
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        try:
            if authorization:
                h["Authorization"] = authorization
            conn.request("POST", path, body=data, headers=h)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        except OSError as e:
            raise RouterUnreachable(f"the router at {self.base_url} did not answer ({e})") from e
        finally:
            conn.close()
