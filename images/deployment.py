"""A deployment's app and models as one thin layer on an environment image, pushed without a build container.

The layer holds the app at /var/azureml-app (where Azure's containers have it) and the models at
/var/azureml-app/azureml-models, so AZUREML_MODEL_DIR=azureml-models/<name>/<version> works as with a mounted
app. The image is the environment's manifest with that layer added: its tag is the first 20 hex digits of its
own manifest digest, so the same app, models and environment always give the same image, and pushing it again
costs a HEAD request.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .errors import ImageError
from .oci_layer import TarDir, layered_config, layered_manifest, sha256_digest, write_layer
from .recipe import ImageRef, registry_host
from .registry import Registry

APP_ROOT = "var/azureml-app"
MODELS_DIR = f"{APP_ROOT}/azureml-models"
APP_REPOSITORY = "openscore-app"
CREATED_BY = "openscore build_deployment_layer: app and models"


def _owner(user: str | None) -> tuple[int, int]:
    """uid, gid of the image's `User` when numeric (the runtime image's 10001:10001), else root."""
    parts = (user or "").split(":")
    try:
        uid = int(parts[0])
        return uid, int(parts[1]) if len(parts) > 1 else uid
    except ValueError:
        return 0, 0


def build_deployment_layer(base: ImageRef, app_dir: Path, models_dir: Path | None = None, *, registry: str,
                           repository: str = APP_REPOSITORY, work_dir: Path | None = None) -> ImageRef:
    """Write `app_dir` (and `models_dir`) as a layer on `base`, push layer, config and manifest to `registry`
    (the one that holds `base`) and return the new image; `cached` when the registry already had it."""
    remote = Registry(registry)
    if base.registry != remote.host:
        raise ImageError(f"the base image {base.by_digest} is not in the registry {remote.host}: push it there "
                         f"first (ensure_environment_image(..., registry={remote.host!r}))")
    app_dir = Path(app_dir)
    if not app_dir.is_dir():
        raise ImageError(f"app folder {app_dir} does not exist or is not a folder")
    if models_dir is not None and not Path(models_dir).is_dir():
        raise ImageError(f"models folder {models_dir} does not exist or is not a folder")
    manifest, _, base_digest = remote.get_manifest(base.repository, base.digest)
    config = json.loads(remote.get_blob(base.repository, manifest["config"]["digest"]))
    uid, gid = _owner(config.get("config", {}).get("User"))
    sources = [(app_dir, APP_ROOT)] + ([(Path(models_dir), MODELS_DIR)] if models_dir is not None else [])
    with tempfile.TemporaryDirectory(prefix="openscore-layer-", dir=work_dir) as tmp:
        layer = write_layer(sources, Path(tmp) / "layer.tar.gz",
                            dirs=[TarDir("var"), TarDir(APP_ROOT, uid, gid)])
        config_bytes = layered_config(config, layer, CREATED_BY,
                                      {"ai.openscore.base": f"{base.name}@{base_digest or base.digest}"})
        manifest_bytes, media_type = layered_manifest(manifest, config_bytes, layer)
        digest = sha256_digest(manifest_bytes)
        tag = digest.removeprefix("sha256:")[:20]
        name = f"{registry_host(registry)}/{repository}"
        if remote.manifest_digest(repository, tag) == digest:
            return ImageRef(name, tag, digest, cached=True)
        for blob in manifest["layers"]:  # the base's layers: mounted from its repository, copied if refused
            _copy_blob(remote, base.repository, repository, blob["digest"], Path(tmp))
        with open(layer.path, "rb") as f:
            remote.push_blob(repository, layer.digest, f, layer.size)
        remote.push_blob(repository, sha256_digest(config_bytes), config_bytes, len(config_bytes))
        pushed = remote.put_manifest(repository, tag, manifest_bytes, media_type)
    if pushed and pushed != digest:
        raise ImageError(f"the registry stored the manifest as {pushed}, not {digest}")
    return ImageRef(name, tag, digest, cached=False)


def _copy_blob(remote: Registry, source: str, target: str, digest: str, tmp: Path) -> None:
    if source == target or remote.mount_blob(target, digest, source):
        return
    path = tmp / digest.replace(":", "-")
    remote.download_blob(source, digest, path)
    with open(path, "rb") as f:
        remote.push_blob(target, digest, f, path.stat().st_size)
    path.unlink()
