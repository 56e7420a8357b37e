"""The model registry: `model register/list/show/download/update/delete` as Azure's `az ml model` and
`Model` have them.

A model is a file or a folder registered under a name; each registration is the next version (1, 2, 3...)
of that name and never changes afterwards (tags and description may, as in Azure). The bytes live in the
artifact store by content hash; a row here names the blob and the original basename, which is what the
model is laid out as at deploy time (`azureml-models/<name>/<version>/<basename>`).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openscore.deployer.artifacts import ArtifactStore
from openscore.deployer.errors import ConflictError, DeployError, NotFoundError
from openscore.deployer.store import Store

# Azure's rule for model names (azureml-core Model._validate_model_name and the service's message)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,254}$")
NAME_RULE = ("model names start with a letter or digit, hold only letters, digits, '-', '_' and '.', "
             "and are at most 255 characters")
# what a tag filter may be: "key", "key=value", (key, value), [key, value], or {key: value-or-None}
TagFilter = Mapping[str, str | None] | Iterable[str | tuple[str, str] | list[str]]


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    digest: str
    file_name: str
    is_dir: bool
    size: int
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    description: str = ""
    model_framework: str | None = None
    model_framework_version: str | None = None
    created: float = 0.0

    @property
    def id(self) -> str:
        return f"{self.name}:{self.version}"

    def to_json(self) -> dict[str, Any]:
        """Azure's keys (what `az ml model show` prints), plus where the bytes are."""
        return {
            "name": self.name, "version": self.version, "id": self.id, "tags": dict(self.tags),
            "properties": dict(self.properties), "description": self.description,
            "createdTime": _iso(self.created), "framework": self.model_framework or "Custom",
            "frameworkVersion": self.model_framework_version, "fileName": self.file_name,
            "isFolder": self.is_dir, "size": self.size, "digest": f"sha256:{self.digest}",
            "url": f"openscore://models/{self.name}/{self.version}/{self.file_name}",
        }

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ModelRecord:
        return cls(name=row["name"], version=row["version"], digest=row["digest"], file_name=row["file_name"],
                   is_dir=bool(row["is_dir"]), size=row["size"], tags=json.loads(row["tags"]),
                   properties=json.loads(row["properties"]), description=row["description"],
                   model_framework=row["model_framework"], model_framework_version=row["model_framework_version"],
                   created=row["created"])


class ModelRegistry:
    def __init__(self, ws: Store) -> None:
        self.ws = ws
        self.artifacts = ArtifactStore(ws)

    # ------------------------------------------------------------------------------------------- register
    def register(self, name: str, path: str | Path, *, tags: Mapping[str, str] | None = None,
                 properties: Mapping[str, str] | None = None, description: str = "",
                 model_framework: str | None = None, model_framework_version: str | None = None) -> ModelRecord:
        """Store `path` (a file or a folder) as the next version of `name`."""
        check_name(name)
        src = Path(path).expanduser()
        if not src.exists():
            raise NotFoundError(f"model path {src} does not exist")
        if not src.is_dir() and not src.is_file():
            raise DeployError(f"model path {src} is neither a file nor a folder")
        digest, size = self._store(src)
        file_name = src.absolute().name
        tags_json = json.dumps(_str_map(tags, "tag"), sort_keys=True)
        props_json = json.dumps(_str_map(properties, "property"), sort_keys=True)
        with self.ws.transaction() as db:  # the lock makes max()+1 safe against a concurrent register
            if not self.artifacts.exists(digest):  # a delete of the last other user removed it meanwhile
                digest, size = self._store(src)
            version = db.execute("SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE name = ?",
                                 (name,)).fetchone()[0]
            db.execute("INSERT INTO models (name, version, digest, file_name, is_dir, size, tags, properties,"
                       " description, model_framework, model_framework_version, created)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (name, version, digest, file_name, int(src.is_dir()), size, tags_json, props_json,
                        description or "", model_framework, model_framework_version, time.time()))
        return self.get(name, version)

    def _store(self, src: Path) -> tuple[str, int]:
        try:
            return self.artifacts.put_folder(src) if src.is_dir() else self.artifacts.put_file(src)
        except OSError as e:  # an unreadable model file, a full disk
            where = f" ({e.filename})" if e.filename else ""
            raise DeployError(f"cannot store model {src} in workspace {self.ws.root}: {e.strerror or e}{where}") \
                from None

    # ---------------------------------------------------------------------------------------------- reads
    def get(self, name: str, version: int | None = None) -> ModelRecord:
        db = self.ws.db()
        if version is None:
            row = db.execute("SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
        else:
            row = db.execute("SELECT * FROM models WHERE name = ? AND version = ?", (name, int(version))).fetchone()
        if row is None:
            raise NotFoundError(self._missing(name, version))
        return ModelRecord.from_row(row)

    def _missing(self, name: str, version: int | None) -> str:
        versions = [r[0] for r in self.ws.db().execute(
            "SELECT version FROM models WHERE name = ? ORDER BY version", (name,))]
        if not versions:
            return f"no model named {name!r} is registered (openscore model list shows what is)"
        return f"model {name!r} has no version {version} (registered versions: {', '.join(map(str, versions))})"

    def resolve(self, ref: str) -> ModelRecord:
        """`name:version` or `name` (the latest version), as `az ml model deploy -m` takes them."""
        name, sep, version = ref.strip().rpartition(":")
        if not sep:
            return self.get(ref.strip())
        if not version.isdigit() or not name:
            raise DeployError(f"model reference {ref!r}: write NAME:VERSION with a whole-number version, or NAME "
                              "for the latest")
        return self.get(name, int(version))

    def list(self, name: str | None = None, *, tags: TagFilter | None = None,
             properties: TagFilter | None = None, latest: bool = False) -> list[ModelRecord]:
        """Models by name then version; `tags`/`properties` keep those having every key (and value) named;
        `latest` keeps the highest version of each name (after filtering, as Azure's `latest=True`)."""
        sql, args = "SELECT * FROM models", []
        if name is not None:
            sql, args = sql + " WHERE name = ?", [name]
        rows = [ModelRecord.from_row(r) for r in self.ws.db().execute(sql + " ORDER BY name, version", args)]
        tag_wants, prop_wants = _filters(tags), _filters(properties)
        rows = [r for r in rows if _matches(r.tags, tag_wants) and _matches(r.properties, prop_wants)]
        if latest:
            newest: dict[str, ModelRecord] = {}
            for r in rows:
                newest[r.name] = r
            rows = list(newest.values())
        return rows

    # --------------------------------------------------------------------------------------------- output
    def materialize(self, rec: ModelRecord, dest_dir: Path) -> Path:
        """Write the model as `dest_dir/<file_name>` (a file, or a folder) and return that path."""
        dest = Path(dest_dir) / rec.file_name
        if rec.is_dir:
            partial = dest.with_name(f".{dest.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            try:
                self.artifacts.extract_folder_to(rec.digest, partial)
                if dest.exists():
                    shutil.rmtree(dest)
                partial.rename(dest)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        else:
            self.artifacts.copy_file_to(rec.digest, dest)
        return dest

    def download(self, name: str, version: int | None, target_dir: str | Path, exist_ok: bool = False) -> Path:
        """Model.download: the model's file or folder into `target_dir`; an existing one is refused unless
        `exist_ok`."""
        rec = self.get(name, version)
        target = Path(target_dir).expanduser()
        dest = target / rec.file_name
        if dest.exists() and not exist_ok:
            raise ConflictError(f"{dest} already exists: remove it, choose another target folder, "
                                "or pass --overwrite (exist_ok=True)")
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DeployError(f"cannot create download folder {target}: {e.strerror or e}") from None
        return self.materialize(rec, target)

    # -------------------------------------------------------------------------------------------- changes
    def update(self, name: str, version: int, *, add_tags: Mapping[str, str] | None = None,
               remove_tags: Iterable[str] | None = None, add_properties: Mapping[str, str] | None = None,
               description: str | None = None) -> ModelRecord:
        """Tags and description change; properties are only ever added (Azure: a property, once set, stays)."""
        add_t, add_p = _str_map(add_tags, "tag"), _str_map(add_properties, "property")
        with self.ws.transaction() as db:
            row = db.execute("SELECT * FROM models WHERE name = ? AND version = ?", (name, int(version))).fetchone()
            if row is None:
                raise NotFoundError(self._missing(name, version))
            rec = ModelRecord.from_row(row)
            tags = {**rec.tags, **add_t}
            for key in remove_tags or ():
                if key not in tags:
                    raise NotFoundError(f"model {rec.id} has no tag {key!r} to remove (its tags: "
                                        f"{', '.join(sorted(tags)) or 'none'})")
                del tags[key]
            props = dict(rec.properties)
            for key, value in add_p.items():
                if key in props and props[key] != value:
                    raise ConflictError(f"model {rec.id} already has property {key}={props[key]!r}: properties "
                                        "cannot be changed once added (use a tag for a value that changes)")
                props[key] = value
            db.execute("UPDATE models SET tags = ?, properties = ?, description = ? WHERE name = ? AND version = ?",
                       (json.dumps(tags, sort_keys=True), json.dumps(props, sort_keys=True),
                        rec.description if description is None else description, name, int(version)))
        return self.get(name, version)

    def delete(self, name: str, version: int) -> None:
        """Remove one version; refused (409) while a service uses it. Its blob goes when nothing else uses it."""
        with self.ws.transaction() as db:
            row = db.execute("SELECT digest FROM models WHERE name = ? AND version = ?",
                             (name, int(version))).fetchone()
            if row is None:
                raise NotFoundError(self._missing(name, version))
            users = [r[0] for r in db.execute("SELECT service FROM service_models WHERE model_name = ? AND "
                                              "model_version = ? ORDER BY service", (name, int(version)))]
            if users:
                raise ConflictError(f"model {name}:{version} is used by service{'s' if len(users) > 1 else ''} "
                                    f"{', '.join(users)}: delete or update {'them' if len(users) > 1 else 'it'} "
                                    "first")
            db.execute("DELETE FROM models WHERE name = ? AND version = ?", (name, int(version)))
            digest = row[0]
            still_used = db.execute("SELECT 1 FROM models WHERE digest = ? UNION SELECT 1 FROM snapshots WHERE "
                                    "digest = ? LIMIT 1", (digest, digest)).fetchone()
            if still_used is None:  # inside the lock: no register can be pointing a new row at it meanwhile
                self.artifacts.remove(digest)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise DeployError(f"model name {name!r} is not valid: {NAME_RULE}")


def _str_map(values: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (values or {}).items():
        if not isinstance(key, str) or not key:
            raise DeployError(f"a {what} name must be a non-empty string, not {key!r}")
        out[key] = "" if value is None else str(value)
    return out


def _filters(wanted: TagFilter | None) -> list[tuple[str, str | None]]:
    if wanted is None:
        return []
    if isinstance(wanted, str):  # one filter, not its characters
        wanted = [wanted]
    if isinstance(wanted, Mapping):
        return [(str(k), None if v is None else str(v)) for k, v in wanted.items()]
    out: list[tuple[str, str | None]] = []
    for item in wanted:
        if isinstance(item, str):
            key, sep, value = item.partition("=")
            out.append((key, value if sep else None))
        else:
            pair = list(item)
            out.append((str(pair[0]), str(pair[1]) if len(pair) > 1 else None))
    return out


def _matches(have: Mapping[str, str], wanted: list[tuple[str, str | None]]) -> bool:
    return all(k in have and (v is None or have[k] == v) for k, v in wanted)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e6):06d}+00:00"
