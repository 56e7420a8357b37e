"""The deployment layer writer: byte-for-byte deterministic, digests that check out, the tar a runtime unpacks."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from openscore.images import ImageError
from openscore.images.oci_layer import (
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_LAYER,
    OCI_MANIFEST,
    TarDir,
    layered_config,
    layered_manifest,
    sha256_digest,
    write_layer,
)

DIRS = [TarDir("var"), TarDir("var/azureml-app", 10001, 10001)]


def make_app(root: Path, mode: int = 0o644, mtime: int = 1_700_000_000) -> Path:
    (root / "app" / "sub").mkdir(parents=True)
    (root / "app" / "score.py").write_text("def init():\n    pass\n")
    (root / "app" / "sub" / "data.bin").write_bytes(os.urandom(0) + bytes(range(256)) * 100)
    (root / "app" / "run.sh").write_text("#!/bin/sh\n")
    (root / "app" / "run.sh").chmod(0o700)
    (root / "app" / "score.py").chmod(mode)
    (root / "app" / "link.py").symlink_to("score.py")
    for p in (root / "app").rglob("*"):
        os.utime(p, (mtime, mtime), follow_symlinks=False)
    return root / "app"


def members(layer_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(layer_path, "r:gz") as tar:
        return tar.getmembers()


def test_the_same_files_give_the_same_bytes_whatever_their_times_and_permissions(tmp_path):
    one = make_app(tmp_path / "one", mode=0o644, mtime=1_700_000_000)
    two = make_app(tmp_path / "two", mode=0o600, mtime=1_800_000_000)  # other mtimes, a private file
    a = write_layer([(one, "var/azureml-app")], tmp_path / "a.tar.gz", DIRS)
    b = write_layer([(two, "var/azureml-app")], tmp_path / "b.tar.gz", DIRS)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert (a.digest, a.diff_id, a.size) == (b.digest, b.diff_id, b.size)
    (two / "score.py").write_text("def init():\n    return 1\n")  # content does change it
    c = write_layer([(two, "var/azureml-app")], tmp_path / "c.tar.gz", DIRS)
    assert c.digest != a.digest and c.diff_id != a.diff_id


def test_digests_are_those_of_the_blob_and_of_the_tar_inside(tmp_path):
    layer = write_layer([(make_app(tmp_path), "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    blob = layer.path.read_bytes()
    assert layer.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert layer.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest()
    assert layer.size == len(blob)
    assert blob[4:8] == b"\0\0\0\0" and not blob[3] & 0x08  # gzip: mtime 0, no file name


def test_the_tar_holds_the_app_in_order_owned_by_root_with_fixed_modes(tmp_path):
    app = make_app(tmp_path)
    layer = write_layer([(app, "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    got = members(layer.path)
    names = [m.name for m in got]
    assert names == ["var", "var/azureml-app", "var/azureml-app/link.py", "var/azureml-app/run.sh",
                     "var/azureml-app/score.py", "var/azureml-app/sub", "var/azureml-app/sub/data.bin"]
    by = {m.name: m for m in got}
    assert by["var/azureml-app"].isdir() and (by["var/azureml-app"].uid, by["var/azureml-app"].gid) == (10001, 10001)
    assert all(m.mtime == 0 and m.uname == "" and m.gname == "" for m in got)
    assert all((m.uid, m.gid) == (0, 0) for m in got if m.name.startswith("var/azureml-app/"))
    assert by["var/azureml-app/score.py"].mode == 0o644 and by["var/azureml-app/run.sh"].mode == 0o755
    assert by["var/azureml-app/sub"].mode == 0o755
    assert by["var/azureml-app/link.py"].issym() and by["var/azureml-app/link.py"].linkname == "score.py"
    with tarfile.open(layer.path, "r:gz") as tar:
        assert tar.extractfile("var/azureml-app/sub/data.bin").read() == bytes(range(256)) * 100


def test_models_go_under_the_app_and_a_file_from_two_sources_is_refused(tmp_path):
    app = make_app(tmp_path)
    models = tmp_path / "models" / "m" / "1"
    models.mkdir(parents=True)
    (models / "model.onnx").write_bytes(b"onnx")
    layer = write_layer([(app, "var/azureml-app"), (tmp_path / "models", "var/azureml-app/azureml-models")],
                        tmp_path / "l.tar.gz", DIRS)
    assert "var/azureml-app/azureml-models/m/1/model.onnx" in [m.name for m in members(layer.path)]
    (app / "azureml-models" / "m" / "1").mkdir(parents=True)
    (app / "azureml-models" / "m" / "1" / "model.onnx").write_bytes(b"other")
    with pytest.raises(ImageError, match=r"azureml-models/m/1/model.onnx would come from both"):
        write_layer([(app, "var/azureml-app"), (tmp_path / "models", "var/azureml-app/azureml-models")],
                    tmp_path / "l2.tar.gz", DIRS)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside"])
def test_a_symlink_out_of_the_folder_is_refused(tmp_path, target):
    app = make_app(tmp_path)
    (app / "escape").symlink_to(target)
    with pytest.raises(ImageError, match=r"symbolic link to .* outside the folder"):
        write_layer([(app, "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)


def test_special_files_and_missing_folders_are_refused(tmp_path):
    app = make_app(tmp_path)
    os.mkfifo(app / "pipe")
    with pytest.raises(ImageError, match="neither a file, a folder nor a symbolic link"):
        write_layer([(app, "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    with pytest.raises(ImageError, match="is not a folder"):
        write_layer([(tmp_path / "nope", "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)


@pytest.mark.parametrize("media_type, layer_type", [(DOCKER_MANIFEST, DOCKER_LAYER), (OCI_MANIFEST, OCI_LAYER)])
def test_the_image_adds_the_layer_to_the_base_and_runs_nothing(tmp_path, media_type, layer_type):
    layer = write_layer([(make_app(tmp_path), "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    base_config = {"architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
                   "config": {"User": "10001:10001", "Healthcheck": {"Test": ["CMD", "true"]}},
                   "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64]},
                   "history": [{"created_by": "RUN pip install openscore"}]}
    base_manifest = {"schemaVersion": 2, "mediaType": media_type, "config": {"digest": "sha256:" + "2" * 64},
                     "layers": [{"mediaType": layer_type, "size": 10, "digest": "sha256:" + "3" * 64}]}
    config = layered_config(base_config, layer, "openscore: app", {"ai.openscore.base": "x@sha256:1"})
    manifest_bytes, got_type = layered_manifest(base_manifest, config, layer)
    cfg, manifest = json.loads(config), json.loads(manifest_bytes)
    assert cfg["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, layer.diff_id]
    assert cfg["history"][-1] == {"created_by": "openscore: app", "created": "2026-01-01T00:00:00Z"}
    assert cfg["config"]["Healthcheck"] == {"Test": ["CMD", "true"]}  # the base's settings stay
    assert cfg["config"]["Labels"] == {"ai.openscore.base": "x@sha256:1"}
    assert base_config["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64]  # the base's dict is left alone
    assert got_type == media_type == manifest["mediaType"]
    assert manifest["config"]["digest"] == sha256_digest(config) and manifest["config"]["size"] == len(config)
    assert manifest["layers"] == [*base_manifest["layers"],
                                  {"mediaType": layer_type, "size": layer.size, "digest": layer.digest}]
    assert "RUN" not in cfg["history"][-1]["created_by"]
    assert layered_manifest(base_manifest, config, layer)[0] == manifest_bytes  # deterministic JSON


def test_a_manifest_list_is_not_a_base(tmp_path):
    layer = write_layer([(make_app(tmp_path), "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    with pytest.raises(ImageError, match="not an image manifest"):
        layered_manifest({"mediaType": "application/vnd.oci.image.index.v1+json", "layers": []}, b"{}", layer)


def test_a_large_file_is_streamed_not_held_in_memory(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    with open(app / "big.bin", "wb") as f:
        for _ in range(16):
            f.write(os.urandom(1 << 20))
    layer = write_layer([(app, "var/azureml-app")], tmp_path / "l.tar.gz", DIRS)
    with tarfile.open(layer.path, "r:gz") as tar:
        member = tar.getmember("var/azureml-app/big.bin")
        assert member.size == 16 << 20
        data = tar.extractfile(member).read()
    assert hashlib.sha256(data).digest() == hashlib.sha256((app / "big.bin").read_bytes()).digest()
