"""A plain OCI layer written from folders, byte for byte the same every time, and the image that adds it.

No build container and no RUN: the layer is a tar of files, so writing it needs no privileges and no builder,
and its digest depends only on the files' paths, contents and executable bits. What makes it deterministic:
entries in sorted path order, each parent before its children; mtime 0, owner root (0:0) with no user or group
names, modes 0644/0755 (0755 where any execute bit is set) whatever the umask; gzip with mtime 0 and no file
name. Both digests are taken while it is written: `digest` over the gzip blob (what the manifest names),
`diff_id` over the tar (what the image config's rootfs names).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ImageError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
# the image's format decides the layer's and config's media types; the Docker format keeps HEALTHCHECK
LAYER_TYPE = {DOCKER_MANIFEST: DOCKER_LAYER, OCI_MANIFEST: OCI_LAYER}
CONFIG_TYPE = {DOCKER_MANIFEST: DOCKER_CONFIG, OCI_MANIFEST: OCI_CONFIG}
CHUNK = 1 << 20


@dataclass(frozen=True)
class TarDir:
    """A directory entry the layer carries with given owner and mode (the app root, owned by the image's user)."""

    path: str
    uid: int = 0
    gid: int = 0
    mode: int = 0o755


@dataclass(frozen=True)
class Layer:
    path: Path
    digest: str  # sha256 of the gzip blob
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of the blob


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Digesting(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it on its way to `sink`."""

    def __init__(self, sink: Any):
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.hash.update(data)
        self.size += len(data)
        self.sink.write(data)
        return len(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _walk(source: Path, dest: PurePosixPath) -> Iterator[tuple[PurePosixPath, Path]]:
    """(path in the image, path on disk) for `source` and everything under it, parents first, names sorted."""
    yield dest, source
    if source.is_dir() and not source.is_symlink():
        for name in sorted(os.listdir(source)):
            yield from _walk(source / name, dest / name)


def collect(sources: Sequence[tuple[Path, str]]) -> list[tuple[PurePosixPath, Path, Path]]:
    """Every entry of the layer, (path in the image, path on disk, the source folder it is in), each
    (folder, path in the image) pair walked, sorted by image path. Two sources giving the same file is an
    error (directories may merge)."""
    entries: dict[PurePosixPath, tuple[Path, Path]] = {}
    for source, dest in sources:
        source = Path(source)
        if not source.is_dir():
            raise ImageError(f"{source} is not a folder")
        for image_path, disk_path in _walk(source, PurePosixPath(dest.strip("/"))):
            earlier = entries.get(image_path, (None, None))[0]
            if earlier is not None and not (earlier.is_dir() and disk_path.is_dir()):
                raise ImageError(f"/{image_path} would come from both {earlier} and {disk_path}")
            entries.setdefault(image_path, (disk_path, source))
    return sorted(((k, *v) for k, v in entries.items()), key=lambda e: e[0].parts)


def _info(name: str, mode: int, kind: bytes, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = kind, mode, uid, gid, "", "", 0
    return info


def write_layer(sources: Sequence[tuple[Path, str]], out: Path, dirs: Sequence[TarDir] = ()) -> Layer:
    """Write the folders `sources` ((folder on disk, path in the image) pairs) as one gzipped tar layer at
    `out`. `dirs` are directory entries written first, with their own owner and mode (parents of the paths)."""
    entries = collect(sources)
    given = {PurePosixPath(d.path.strip("/")): d for d in dirs}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as blob_file:
        blob = _Digesting(blob_file)
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, mtime=0, compresslevel=6) as gz:
            tar_stream = _Digesting(gz)
            with tarfile.open(fileobj=tar_stream, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for d in sorted(given.values(), key=lambda d: PurePosixPath(d.path.strip("/")).parts):
                    tar.addfile(_info(d.path.strip("/") + "/", d.mode, tarfile.DIRTYPE, d.uid, d.gid))
                for image_path, disk_path, source in entries:
                    if image_path in given:
                        continue
                    _add(tar, str(image_path), disk_path, source)
    return Layer(out, blob.digest, tar_stream.digest, blob.size)


def _add(tar: tarfile.TarFile, name: str, path: Path, source: Path) -> None:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        target = os.readlink(path)
        inside = os.path.normpath(os.path.join(os.path.dirname(os.path.relpath(path, source)), target))
        if os.path.isabs(target) or inside == ".." or inside.startswith("../"):
            raise ImageError(f"{path} is a symbolic link to {target}, outside the folder it is in: copy the "
                             f"file instead")
        info = _info(name, 0o777, tarfile.SYMTYPE)
        info.linkname = target
        tar.addfile(info)
    elif stat.S_ISDIR(st.st_mode):
        tar.addfile(_info(name + "/", 0o755, tarfile.DIRTYPE))
    elif stat.S_ISREG(st.st_mode):
        info = _info(name, 0o755 if st.st_mode & 0o111 else 0o644, tarfile.REGTYPE)
        info.size = st.st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        raise ImageError(f"{path} is neither a file, a folder nor a symbolic link: it cannot go in an image")


def layered_config(base_config: dict, layer: Layer, created_by: str, labels: dict[str, str]) -> bytes:
    """The base's image config with `layer` on top: its diff_id, a history entry (dated like the base, so the
    config depends on the content only) and `labels`."""
    config = copy.deepcopy(base_config)
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), layer.diff_id]
    entry: dict[str, Any] = {"created_by": created_by}
    if config.get("created"):
        entry["created"] = config["created"]
    config["history"] = [*config.get("history", []), entry]
    inner = config.setdefault("config", {})
    inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
    return canonical_json(config)


def layered_manifest(base_manifest: dict, config: bytes, layer: Layer) -> tuple[bytes, str]:
    """An image manifest of the base's format naming `config` and the base's layers plus `layer`."""
    media_type = base_manifest.get("mediaType") or OCI_MANIFEST
    if media_type not in LAYER_TYPE:
        raise ImageError(f"the base image's manifest is a {media_type}, not an image manifest")
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": CONFIG_TYPE[media_type], "size": len(config), "digest": sha256_digest(config)},
        "layers": [*base_manifest["layers"],
                   {"mediaType": LAYER_TYPE[media_type], "size": layer.size, "digest": layer.digest}],
    }
    return canonical_json(manifest), media_type


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
