"""A small synchronous client for the router's admin API (`/admin/v1/...`, router/frontend.py).

The deployer never imports router internals: everything it does to a running router goes through this
client, so a router the user runs as a service of its own, or one in a cluster, is driven the same way.
Plain `http.client` (one keep-alive connection, no extra dependency): the calls are few and small.

The admin key is sent only on a connection whose server has first proved it holds the key: each new
connection starts with `GET /admin/v1/identity?nonce=<fresh random>` (no key), and the answer must be
HMAC-SHA256(admin key, "openscore-router-identity:<port>:<nonce>"), compared in constant time. Some other
program on a recorded or configured port (a reused pid, a stale router.json) never sees the key.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
from typing import Any
from urllib.parse import quote

from openscore.deployer.errors import ConflictError, DeployError, NotFoundError


class RouterUnreachable(DeployError):
    """Nothing (or something that is not this workspace's router) answers at the address."""


class NotThisRouter(RouterUnreachable):
    """A server answers at the address but cannot prove it holds the workspace's admin key (not sent to it)."""


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
        self._key = admin_key
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
            try:
                if self._conn is None:
                    self._conn = self._open(timeout_s or self.timeout_s)
                elif timeout_s is not None:
                    self._conn.timeout = timeout_s
                    if self._conn.sock is not None:
                        self._conn.sock.settimeout(timeout_s)
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

    def _open(self, timeout_s: float) -> http.client.HTTPConnection:
        """A new connection whose server has proved it is this workspace's router (before any key is sent)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout_s)
        try:
            nonce = secrets.token_urlsafe(32)
            conn.request("GET", f"/admin/v1/identity?nonce={nonce}")
            resp = conn.getresponse()
            payload = resp.read(4096)
            closing = resp.getheader("Connection", "").lower() == "close" or resp.will_close
            try:
                proof = json.loads(payload).get("proof") if resp.status == 200 else None
            except (ValueError, AttributeError):
                proof = None
            if not isinstance(proof, str) or not hmac.compare_digest(proof.encode("ascii", "replace"),
                                                                     self.expected_proof(nonce).encode()):
                raise NotThisRouter(
                    f"the server at {self.base_url} is not this workspace's router: it could not prove it holds "
                    f"the workspace's admin key (GET /admin/v1/identity answered HTTP {resp.status}), so the key "
                    "was not sent to it")
            if closing:
                raise RouterUnreachable(f"the router at {self.base_url} closed the connection after proving "
                                        "its identity")
        except BaseException:
            conn.close()
            raise
        return conn

    def expected_proof(self, nonce: str) -> str:
        msg = f"openscore-router-identity:{self.port}:{nonce}".encode()
        return hmac.new(self._key.encode("utf-8", "surrogateescape"), msg, hashlib.sha256).hexdigest()

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
        """True when the server at the address proves it is this workspace's router and accepts its key."""
        try:
            return self.identify()
        except RouterUnreachable:
            return False

    def identify(self) -> bool:
        """Like ping, but NotThisRouter (with its message) when another server answers at the address."""
        status, _, _ = self.request("GET", "/admin/v1/services", timeout_s=2.0)
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
