"""The image cluster tests run: the cpu runtime image (images/build.sh) plus one layer holding THIS checkout's
openscore package, in the cluster's registry. A code change is then tested in the cluster without rebuilding the
image: only the thin layer changes (written and pushed with images/oci_layer.py, no build container).

The layer overwrites the installed package folders (site-packages/openscore/...) with the checkout's folders as
pyproject's [tool.setuptools.package-dir] maps them, and the dist-info's entry_points.txt (so subcommands added
since the base image was built are found). Files deleted from the checkout stay in the image: harmless for
imports that nothing makes any more.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

from openscore.images.oci_layer import layered_config, layered_manifest, sha256_digest, write_layer
from openscore.images.recipe import ImageRef
from openscore.images.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
SITE_PACKAGES = "opt/openscore/venv/lib/python3.11/site-packages"
BASE_REPOSITORY = "openscore-test-base"
REPOSITORY = "openscore-test-runtime"


def push_local_image(local: str, registry: str) -> ImageRef:
    """Copy a local (podman/buildah storage) image to `registry` under its image ID (skipped when there)."""
    inspect = subprocess.run(["podman", "image", "inspect", local, "--format", "{{.Id}}"], capture_output=True,
                             text=True, timeout=60)
    if inspect.returncode != 0:
        raise RuntimeError(f"no local image {local}: {inspect.stderr.strip()}")
    tag = inspect.stdout.strip()[:20]
    remote = Registry(registry)
    digest = remote.manifest_digest(BASE_REPOSITORY, tag)
    if digest is None:
        copy = subprocess.run(["skopeo", "copy", "-q", "--format", "v2s2", "--dest-tls-verify=false",
                               f"containers-storage:{local}", f"docker://{registry}/{BASE_REPOSITORY}:{tag}"],
                              capture_output=True, text=True, timeout=600)
        if copy.returncode != 0:
            raise RuntimeError(f"skopeo copy {local} to {registry} failed: {copy.stderr.strip()}")
        digest = remote.manifest_digest(BASE_REPOSITORY, tag)
        assert digest is not None
    return ImageRef(f"{registry}/{BASE_REPOSITORY}", tag, digest)


def entry_points_txt(pyproject: dict) -> str:
    project = pyproject["project"]
    groups = {"console_scripts": project.get("scripts", {}), **project.get("entry-points", {})}
    return "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
                   for group, entries in groups.items() if entries)


def stage_checkout(dest: Path) -> Path:
    """The checkout's package as it is installed: dest/<site-packages>/openscore/... and the entry points."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    site = dest / SITE_PACKAGES
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".cache", "*.egg-info")
    for package, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        shutil.copytree(ROOT / folder, site / package.replace(".", "/"), ignore=ignore, dirs_exist_ok=True)
    name, version = pyproject["project"]["name"], pyproject["project"]["version"]
    dist_info = site / f"{name}-{version}.dist-info"
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "entry_points.txt").write_text(entry_points_txt(pyproject))
    return dest


def checkout_image(base: ImageRef, registry: str) -> ImageRef:
    """`base` (in `registry`) plus the checkout's package as one layer; its tag is its manifest digest's start,
    so the same checkout on the same base is pushed once."""
    remote = Registry(registry)
    manifest, _, _ = remote.get_manifest(base.repository, base.digest)
    config = json.loads(remote.get_blob(base.repository, manifest["config"]["digest"]))
    with tempfile.TemporaryDirectory(prefix="openscore-checkout-layer-") as tmp:
        staged = stage_checkout(Path(tmp) / "root")
        layer = write_layer([(staged / "opt", "opt")], Path(tmp) / "layer.tar.gz")
        config_bytes = layered_config(config, layer, "tests/cluster/imagekit.py: this checkout's openscore",
                                      {"ai.openscore.test-base": base.by_digest})
        manifest_bytes, media_type = layered_manifest(manifest, config_bytes, layer)
        digest = sha256_digest(manifest_bytes)
        tag = digest.removeprefix("sha256:")[:20]
        if remote.manifest_digest(REPOSITORY, tag) == digest:
            return ImageRef(f"{registry}/{REPOSITORY}", tag, digest, cached=True)
        for blob in manifest["layers"]:
            if not remote.mount_blob(REPOSITORY, blob["digest"], base.repository):
                raise RuntimeError(f"the registry refused to mount {blob['digest']} from {base.repository}")
        with open(layer.path, "rb") as f:
            remote.push_blob(REPOSITORY, layer.digest, f, layer.size)
        remote.push_blob(REPOSITORY, sha256_digest(config_bytes), config_bytes, len(config_bytes))
        remote.put_manifest(REPOSITORY, tag, manifest_bytes, media_type)
    return ImageRef(f"{registry}/{REPOSITORY}", tag, digest)
