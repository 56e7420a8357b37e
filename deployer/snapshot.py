"""Source snapshots: the source directory zipped as Azure's AKS deployment page describes, leaving out what
`.amlignore` (or, without one, `.gitignore`) names, with gitignore's rules (pathspec's GitIgnoreSpec:
negation, folder patterns, anchoring), stored in the artifact store by content hash.

The zip is deterministic (sorted names, fixed times and modes), so an unchanged folder gives the same
digest and a deploy can tell that the code did not change. `.git/` is never included, and neither is the
workspace when it lies inside the source folder (it would snapshot itself).
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from openscore.deployer.artifacts import ArtifactStore
from openscore.deployer.errors import DeployError, NotFoundError
from openscore.deployer.store import Store

IGNORE_FILES = (".amlignore", ".gitignore")   # the first one present is used, as Azure does
ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Snapshot:
    digest: str
    files: int
    size: int


def ignore_spec(source_dir: Path):  # -> pathspec.GitIgnoreSpec | None
    import pathspec

    for name in IGNORE_FILES:
        path = source_dir / name
        if path.is_file():
            return pathspec.GitIgnoreSpec.from_lines(path.read_text(encoding="utf-8", errors="replace").splitlines())
    return None


def snapshot_files(source_dir: Path, *, exclude: Path | None = None) -> list[tuple[str, Path]]:
    """(posix name, path) of each file the snapshot holds, sorted."""
    spec = ignore_spec(source_dir)
    out: list[tuple[str, Path]] = []
    excluded = exclude.resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(source_dir):
        here = Path(dirpath)
        rel_here = here.relative_to(source_dir).as_posix()
        prefix = "" if rel_here == "." else rel_here + "/"
        keep = []
        for d in sorted(dirnames):
            full = here / d
            if d == ".git" or (excluded is not None and full.resolve() == excluded):
                continue
            if full.is_symlink():  # a folder link could loop or leave the source folder: its files are not taken
                continue
            if spec is not None and spec.match_file(prefix + d + "/"):
                continue  # gitignore: an ignored folder's contents cannot be re-included
            keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            full = here / f
            if not full.is_file():
                continue
            if spec is not None and spec.match_file(prefix + f):
                continue
            out.append((prefix + f, full))
    return sorted(out)


def snapshot_source(ws: Store, source_dir: Path) -> Snapshot:
    """Zip `source_dir` (minus what its ignore file names) into the workspace's store."""
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise NotFoundError(f"source directory {source_dir} does not exist or is not a folder")
    files = snapshot_files(source_dir, exclude=ws.root)
    buf = io.BytesIO()  # source folders are small (Azure caps snapshots at 300 MB); a spool would also do
    total = 0
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            try:
                data = path.read_bytes()
            except OSError as e:
                raise DeployError(f"source file {path} cannot be read: {e.strerror or e}") from None
            total += len(data)
            zf.writestr(info, data)
    digest, _ = ArtifactStore(ws).put_bytes(buf.getvalue())
    with ws.transaction() as db:
        db.execute("INSERT OR IGNORE INTO snapshots (digest, files, size, created) VALUES (?, ?, ?, ?)",
                   (digest, len(files), total, time.time()))
    return Snapshot(digest=digest, files=len(files), size=total)


def extract_snapshot(ws: Store, digest: str, dest: Path) -> None:
    """Unpack a snapshot into `dest` (created; left out entirely if the snapshot is unknown or unreadable)."""
    store = ArtifactStore(ws)
    if ws.db().execute("SELECT 1 FROM snapshots WHERE digest = ?", (digest,)).fetchone() is None \
            or not store.exists(digest):
        raise NotFoundError(f"snapshot {digest} is not in the workspace")
    dest = Path(dest)
    created = not dest.exists()
    try:
        dest.mkdir(parents=True, exist_ok=True)
        with store.open(digest) as f, zipfile.ZipFile(f) as zf:
            for info in zf.infolist():
                target = zf.extract(info, dest)  # ZipFile.extract keeps names inside dest
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    os.chmod(target, mode)
    except BaseException:
        if created:
            shutil.rmtree(dest, ignore_errors=True)
        raise
