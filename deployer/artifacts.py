"""The content-addressed blob store: `<ws>/artifacts/sha256/<ab>/<digest>`, one read-only file per distinct
content, so registering the same bytes twice stores them once.

A blob is written to a temporary file in the store, hashed as it is written, then renamed into place: a
reader never sees half a blob, and two processes writing the same content both end with the one file.
A folder is stored as one deterministic tar (sorted names, no owners or times), so the same folder always
has the same digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from openscore.deployer.errors import DeployError, NotFoundError

if TYPE_CHECKING:
    from openscore.deployer.store import Store

CHUNK = 1 << 20


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f, self.sha, self.size = f, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


class ArtifactStore:
    def __init__(self, ws: Store) -> None:
        self.root = ws.artifacts_dir / "sha256"
        self.tmp = ws.artifacts_dir / "tmp"

    def path(self, digest: str) -> Path:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise DeployError(f"{digest!r} is not a sha256 digest")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> IO[bytes]:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"artifact {digest} is missing from the workspace's store "
                                f"({self.path(digest)}): the workspace was changed by hand") from None

    def digests(self) -> list[str]:
        """Every stored blob (for tests and garbage collection)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for d in self.root.iterdir() if d.is_dir() for p in d.iterdir() if p.is_file())

    # --------------------------------------------------------------------------------------------- writes
    @contextlib.contextmanager
    def _writer(self) -> Iterator[tuple[_HashingWriter, list[str]]]:
        """Yields a hashing writer; on a clean exit the content is moved to its digest's path, whose digest
        is put in the yielded list."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        out: list[str] = []
        try:
            with os.fdopen(fd, "wb") as f:
                w = _HashingWriter(f)
                yield w, out
                f.flush()
                os.fsync(f.fileno())
            digest = w.sha.hexdigest()
            final = self.path(digest)
            if final.is_file():
                os.unlink(tmp)  # the same content is there already
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)  # blobs are immutable; what materialize() copies out is writable
                os.replace(tmp, final)
            out.append(digest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        with self._writer() as (w, out):
            w.write(data)
        return out[0], len(data)

    def put_file(self, path: Path) -> tuple[str, int]:
        """Store a file's content; returns (digest, size)."""
        with self._writer() as (w, out), open(path, "rb") as src:
            shutil.copyfileobj(src, w, CHUNK)
        return out[0], w.size

    def put_folder(self, folder: Path) -> tuple[str, int]:
        """Store a folder as a deterministic tar; returns (digest, total size of its files)."""
        files_size = 0
        with self._writer() as (w, out), \
                tarfile.open(fileobj=w, mode="w|", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for rel, full in _walk(folder):
                info = tarfile.TarInfo(rel)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if full.is_dir():
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
                    continue
                st = full.stat()
                info.size = st.st_size
                info.mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
                with open(full, "rb") as f:
                    tar.addfile(info, f)
                files_size += st.st_size
        return out[0], files_size

    # ---------------------------------------------------------------------------------------------- reads
    def copy_file_to(self, digest: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        with self.open(digest) as src, open(tmp, "wb") as f:
            shutil.copyfileobj(src, f, CHUNK)
        os.replace(tmp, dest)

    def extract_folder_to(self, digest: str, dest: Path) -> None:
        """Unpack a folder blob into `dest` (created; the caller removes it on failure)."""
        dest.mkdir(parents=True, exist_ok=True)
        with self.open(digest) as src, tarfile.open(fileobj=src, mode="r|") as tar:
            tar.extractall(dest, filter="data")

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(digest))


def _walk(folder: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix name, path) of every folder and file below `folder`, sorted, deterministic. A symlink
    to a file is stored as the file; a symlink to a folder (which could loop) is refused."""
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for d in list(dirnames):
            if (here / d).is_symlink():
                raise DeployError(f"{here / d} is a symlink to a folder: copy what it points to into the model "
                                  "folder instead")
        dirnames.sort()
        entries = sorted([(d, True) for d in dirnames] + [(f, False) for f in filenames])
        for name, _is_dir in entries:
            full = here / name
            if not _is_dir and not full.is_file():
                if full.is_symlink():
                    raise DeployError(f"{full} is a broken symlink")
                continue  # sockets, fifos: not model content
            yield full.relative_to(folder).as_posix(), full
