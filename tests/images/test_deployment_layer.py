"""build_deployment_layer against a real registry (Debian's docker-registry on 127.0.0.1): the app and models
pushed as a layer on a base image, pulled back by digest, the same digest (and a cache hit) the second time.
The base here is a small image pushed with the distribution API itself, so these tests need no builder."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from openscore.images import ImageError, ImageRef, RegistryError, build_deployment_layer, list_images
from openscore.images.oci_layer import DOCKER_CONFIG, DOCKER_LAYER, DOCKER_MANIFEST, canonical_json, sha256_digest
from openscore.images.registry import Registry
from tests.images.registrykit import free_port


def push_base(host: str, repository: str = "openscore-env", tag: str = "base") -> ImageRef:
    """A one-layer Docker-format image with the runtime image's user, as buildah would push it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("etc/os-release")
        data = b"ID=test\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    diff = buf.getvalue()
    blob = gzip.compress(diff, mtime=0)
    config = canonical_json({"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                             "config": {"User": "10001:10001", "Healthcheck": {"Test": ["CMD", "true"]}},
                             "rootfs": {"type": "layers", "diff_ids": [sha256_digest(diff)]},
                             "history": [{"created_by": "base"}]})
    manifest = canonical_json({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                               "config": {"mediaType": DOCKER_CONFIG, "size": len(config),
                                          "digest": sha256_digest(config)},
                               "layers": [{"mediaType": DOCKER_LAYER, "size": len(blob),
                                           "digest": sha256_digest(blob)}]})
    reg = Registry(host)
    reg.push_blob(repository, sha256_digest(blob), blob, len(blob))
    reg.push_blob(repository, sha256_digest(config), config, len(config))
    digest = reg.put_manifest(repository, tag, manifest, DOCKER_MANIFEST)
    assert digest == sha256_digest(manifest)
    return ImageRef(f"{host}/{repository}", tag, digest)


@pytest.fixture
def app(tmp_path) -> tuple[Path, Path]:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "score.py").write_text("def init():\n    pass\n\ndef run(data):\n    return data\n")
    models = tmp_path / "models" / "mlp" / "1"
    models.mkdir(parents=True)
    (models / "model.onnx").write_bytes(b"\x08\x07" * 1000)
    return tmp_path / "app", tmp_path / "models"


def test_the_layer_is_pushed_pulled_back_by_digest_and_the_same_every_time(registry, app, tmp_path):
    base = push_base(registry.host)
    first = build_deployment_layer(base, *app, registry=registry.host)
    assert first.name == f"{registry.host}/openscore-app" and first.tag == first.digest[7:27]
    assert first.cached is False
    again = build_deployment_layer(base, *app, registry=registry.host)
    assert again.digest == first.digest and again.cached is True  # content-addressed: nothing pushed twice

    reg = Registry(registry.host)
    manifest, _, digest = reg.get_manifest("openscore-app", first.digest)  # pulled back by digest
    assert digest == first.digest and manifest["mediaType"] == DOCKER_MANIFEST
    base_manifest, _, _ = reg.get_manifest("openscore-env", base.digest)
    assert manifest["layers"][:-1] == base_manifest["layers"]  # the environment's layers, unchanged
    for blob in [manifest["config"], *manifest["layers"]]:  # every blob is there and is what the manifest says
        data = reg.get_blob("openscore-app", blob["digest"])
        assert "sha256:" + hashlib.sha256(data).hexdigest() == blob["digest"] and len(data) == blob["size"]
    config = json.loads(reg.get_blob("openscore-app", manifest["config"]["digest"]))
    assert config["config"]["User"] == "10001:10001" and config["config"]["Healthcheck"]  # the base's settings
    assert config["config"]["Labels"]["ai.openscore.base"] == f"{base.name}@{base.digest}"
    top = reg.get_blob("openscore-app", manifest["layers"][-1]["digest"])
    assert config["rootfs"]["diff_ids"][-1] == "sha256:" + hashlib.sha256(gzip.decompress(top)).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(top), mode="r:gz") as tar:
        names = tar.getnames()
        assert tar.getmember("var/azureml-app").uid == 10001  # the app root stays the image user's
    assert "var/azureml-app/score.py" in names and "var/azureml-app/azureml-models/mlp/1/model.onnx" in names

    (app[1] / "mlp" / "1" / "model.onnx").write_bytes(b"new model")
    changed = build_deployment_layer(base, *app, registry=registry.host)
    assert changed.digest != first.digest and changed.cached is False

    listed = {(r.name, r.tag, r.digest) for r in list_images(registry.host)}
    assert {(first.name, first.tag, first.digest), (changed.name, changed.tag, changed.digest),
            (base.name, base.tag, base.digest)} <= listed


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (apt-get install skopeo)")
def test_skopeo_pulls_the_deployment_image_by_digest(registry, app, tmp_path):
    base = push_base(registry.host, tag="base-skopeo")
    image = build_deployment_layer(base, *app, registry=registry.host)
    out = subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{image.by_digest}",
                          f"dir:{tmp_path / 'pulled'}"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sha256_digest((tmp_path / "pulled" / "manifest.json").read_bytes()) == image.digest


def test_the_base_must_be_in_the_registry_pushed_to(registry, app):
    base = push_base(registry.host)
    elsewhere = ImageRef("127.0.0.1:1/openscore-env", "base", base.digest)
    with pytest.raises(ImageError, match=r"is not in the registry 127\.0\.0\.1:\d+: push it there first"):
        build_deployment_layer(elsewhere, *app, registry=registry.host)


def test_missing_folders_and_an_unknown_base_are_clear_errors(registry, app, tmp_path):
    base = push_base(registry.host)
    with pytest.raises(ImageError, match=r"app folder .*nope does not exist"):
        build_deployment_layer(base, tmp_path / "nope", registry=registry.host)
    with pytest.raises(ImageError, match=r"models folder .*nope does not exist"):
        build_deployment_layer(base, app[0], tmp_path / "nope", registry=registry.host)
    unknown = ImageRef(base.name, "x", "sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match="404") as e:
        build_deployment_layer(unknown, *app, registry=registry.host)
    assert e.value.status == 404


def test_a_registry_that_is_not_there_is_named_in_the_error(app):
    host = f"127.0.0.1:{free_port()}"
    base = ImageRef(f"{host}/openscore-env", "base", "sha256:" + "0" * 64)
    with pytest.raises(RegistryError, match=f"cannot reach the registry at http://{host}"):
        build_deployment_layer(base, *app, registry=host)


def test_plain_http_only_for_loopback_registries():
    assert Registry("127.0.0.1:5000").url == "http://127.0.0.1:5000"
    assert Registry("localhost:5000").url == "http://localhost:5000"
    assert Registry("myregistry.azurecr.io").url == "https://myregistry.azurecr.io"
    assert Registry("http://10.0.0.5:5000").url == "http://10.0.0.5:5000"  # said explicitly
