"""The OCI distribution API, as much of it as pushing, pulling and listing images takes (stdlib HTTP only).

A registry is named by host (`127.0.0.1:5000`, `myregistry.azurecr.io`); loopback hosts are spoken to over
plain HTTP, any other over HTTPS, unless the name starts with `http://` or `https://`. No credentials: a registry
that wants them answers 401, which is reported as such.
"""

from __future__ import annotations

import ipaddress
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, BinaryIO

from .errors import RegistryError
from .oci_layer import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from .recipe import registry_host

MANIFEST_TYPES = ", ".join([OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST])
TIMEOUT_S = 60


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if host.count(":") <= 1 or host.startswith("[") else host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(registry: str) -> str:
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    host = registry_host(registry)
    return f"{'http' if is_loopback(host) else 'https'}://{host}"


class Registry:
    """One registry's /v2/ API. Methods raise RegistryError naming the request when the registry refuses it."""

    def __init__(self, registry: str):
        self.host = registry_host(registry)
        self.url = base_url(registry)
        self.plain_http = self.url.startswith("http://")

    # --- plumbing --------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, data: Any = None, headers: dict[str, str] | None = None,
                 ok: tuple[int, ...] = (200,)) -> tuple[int, dict[str, str], bytes]:
        url = path if path.startswith(("http://", "https://")) else self.url + path
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
                body = resp.read() if method != "HEAD" else b""
                status, got = resp.status, {k.lower(): v for k, v in resp.headers.items()}
        except urllib.error.HTTPError as e:
            status, got, body = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise RegistryError(f"cannot reach the registry at {self.url}: {reason}") from e
        if status not in ok:
            detail = body.decode(errors="replace").strip()[:500]
            hint = " (the registry wants credentials; openscore sends none)" if status == 401 else ""
            raise RegistryError(f"{method} {url}: {status}{hint} {detail}".rstrip(), status)
        return status, got, body

    # --- manifests -------------------------------------------------------------------------------------------
    def manifest_digest(self, name: str, reference: str) -> str | None:
        """The digest the registry has for name:reference (HEAD), None when it has none."""
        status, headers, _ = self._request("HEAD", f"/v2/{name}/manifests/{reference}",
                                           headers={"Accept": MANIFEST_TYPES}, ok=(200, 404))
        return headers.get("docker-content-digest") if status == 200 else None

    def get_manifest(self, name: str, reference: str) -> tuple[dict, bytes, str]:
        """(manifest, its bytes, its digest); a multi-platform index resolves to its linux/amd64 image."""
        _, headers, body = self._request("GET", f"/v2/{name}/manifests/{reference}",
                                         headers={"Accept": MANIFEST_TYPES})
        manifest = json.loads(body)
        digest = headers.get("docker-content-digest") or ""
        if manifest.get("mediaType") in (OCI_INDEX, DOCKER_LIST) or "manifests" in manifest:
            for entry in manifest.get("manifests", []):
                platform = entry.get("platform", {})
                if platform.get("os") == "linux" and platform.get("architecture") == "amd64":
                    return self.get_manifest(name, entry["digest"])
            raise RegistryError(f"{name}:{reference} has no linux/amd64 image")
        manifest.setdefault("mediaType", headers.get("content-type", OCI_MANIFEST).split(";")[0])
        return manifest, body, digest

    def put_manifest(self, name: str, reference: str, body: bytes, media_type: str) -> str:
        _, headers, _ = self._request("PUT", f"/v2/{name}/manifests/{reference}", data=body,
                                      headers={"Content-Type": media_type}, ok=(201,))
        return headers.get("docker-content-digest", "")

    # --- blobs -----------------------------------------------------------------------------------------------
    def has_blob(self, name: str, digest: str) -> bool:
        status, _, _ = self._request("HEAD", f"/v2/{name}/blobs/{digest}", ok=(200, 404))
        return status == 200

    def get_blob(self, name: str, digest: str) -> bytes:
        return self._request("GET", f"/v2/{name}/blobs/{digest}")[2]

    def download_blob(self, name: str, digest: str, out: Path) -> None:
        req = urllib.request.Request(f"{self.url}/v2/{name}/blobs/{digest}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp, open(out, "wb") as f:
                shutil.copyfileobj(resp, f, 1 << 20)
        except (urllib.error.URLError, OSError) as e:
            raise RegistryError(f"GET {self.url}/v2/{name}/blobs/{digest}: {e}") from e

    def push_blob(self, name: str, digest: str, data: bytes | BinaryIO, size: int) -> None:
        """A monolithic upload (POST for a session, PUT with the digest), skipped when the blob is there."""
        if self.has_blob(name, digest):
            return
        _, headers, _ = self._request("POST", f"/v2/{name}/blobs/uploads/", ok=(202,))
        location = self._absolute(headers["location"])
        joiner = "&" if "?" in location else "?"
        self._request("PUT", f"{location}{joiner}digest={urllib.parse.quote(digest)}", data=data,
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                      ok=(201,))

    def mount_blob(self, name: str, digest: str, source: str) -> bool:
        """Cross-repository mount of a blob `source` has; False when the registry would rather take an upload."""
        if self.has_blob(name, digest):
            return True
        status, headers, _ = self._request(
            "POST", f"/v2/{name}/blobs/uploads/?mount={urllib.parse.quote(digest)}&from={urllib.parse.quote(source)}",
            ok=(201, 202))
        if status == 202:  # an upload session was opened instead: close it unused
            try:
                self._request("DELETE", self._absolute(headers["location"]), ok=(204, 404))
            except RegistryError:
                pass
        return status == 201

    def _absolute(self, location: str) -> str:
        return location if location.startswith(("http://", "https://")) else self.url + location

    # --- listing ---------------------------------------------------------------------------------------------
    def repositories(self) -> list[str]:
        """Every repository, following the catalog's pages (`Link: <...>; rel="next"`)."""
        found: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            _, headers, body = self._request("GET", path)
            found += json.loads(body).get("repositories") or []
            link = headers.get("link", "")
            path = link[link.index("<") + 1:link.index(">")] if 'rel="next"' in link else None
        return sorted(found)

    def tags(self, name: str) -> list[str]:
        status, _, body = self._request("GET", f"/v2/{name}/tags/list", ok=(200, 404))
        return sorted(json.loads(body).get("tags") or []) if status == 200 else []
