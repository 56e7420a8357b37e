"""Versioned documents by (kind, name): the storage under the desired state, shaped like Kubernetes objects.

Every write gives the object a new revision (resourceVersion-like, opaque to callers: compare for equality
only); a write may name the revision it read and is then refused with `Conflict` if the object changed since
(compare-and-swap). `watch(since)` pushes every later change, in order. Kinds in `SECRET_KINDS` hold key
material and are stored apart from the others (Secrets next to ConfigMaps in a cluster).

`FileObjectStore` is the embedded implementation: one JSON file per object under `<workspace>/store/`
(mode 0600; secrets in their own 0700 folder), written atomically (temp file, fsync, rename, fsync of the
folder) under a file lock, and a journal of `(revision, kind, name, op)` lines that orders the changes for
watchers, including changes made by another process on the same folder. All file I/O runs on one worker
thread, never on the event loop.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

log = logging.getLogger("openscore.router.store")

SECRET_KINDS = frozenset({"service-keys", "signing-keys"})
T = TypeVar("T")


class Conflict(Exception):
    """A write named a revision that is no longer the object's current one (or the object is gone)."""

    def __init__(self, kind: str, name: str, expected: str, current: str | None):
        now = f"it is at revision {current}" if current is not None else "it does not exist"
        super().__init__(f"{kind} {name} changed since revision {expected} was read ({now}); read it again and "
                         "retry")
        self.kind, self.name, self.expected, self.current = kind, name, expected, current


class InvalidObject(ValueError):
    """A stored object that cannot be used (a hand edit, a torn disk): `where` names its file (or object),
    `field` the part that is wrong. Readers refuse it and keep what they had; writers never build on it."""

    def __init__(self, where: str, field: str, rule: str):
        super().__init__(f"{where}: {field} {rule}")
        self.where, self.field, self.rule = where, field, rule


class Expired(Exception):
    """The changes since the revision a watch started from are no longer kept (Kubernetes' 410 Gone): list
    again and watch from the listing's revision."""


@dataclass(frozen=True)
class Stored:
    kind: str
    name: str
    revision: str
    doc: Mapping[str, Any]
    invalid: InvalidObject | None = None  # listed but unreadable: `doc` is empty, the caller decides


@dataclass(frozen=True)
class Event:
    """One change seen by a watcher: `doc` is the new value, None for a deletion."""
    kind: str
    name: str
    revision: str
    doc: Mapping[str, Any] | None

    @property
    def deleted(self) -> bool:
        return self.doc is None


class ObjectStore(abc.ABC):
    """The storage contract a desired-state backend implements (file here, Kubernetes objects elsewhere)."""

    @abc.abstractmethod
    async def get(self, kind: str, name: str) -> Stored | None:
        """The object, None if there is none; InvalidObject if it exists but cannot be read."""

    def where(self, kind: str, name: str) -> str:
        """Where an object lives, for messages (a file, a resource name)."""
        return f"{kind}/{name}"

    @abc.abstractmethod
    async def list(self, kinds: Iterable[str]) -> tuple[dict[str, list[Stored]], str]:
        """Every object of these kinds (an unreadable one with `invalid` set), and a revision to pass to
        `watch(since=...)` to see what follows."""

    @abc.abstractmethod
    async def put(self, kind: str, name: str, doc: Mapping[str, Any], expect: str | None = None) -> Stored:
        """Create or replace (an unreadable object too, when no `expect` is given). With `expect`, only if
        the object is at that revision, else `Conflict`."""

    @abc.abstractmethod
    async def delete(self, kind: str, name: str, expect: str | None = None) -> str | None:
        """The deletion's revision, None if there was nothing to delete; `expect` as for `put`."""

    @abc.abstractmethod
    def watch(self, since: str | None = None) -> AsyncIterator[Event]:
        """Every change after revision `since` (after now when None), in order, until the iterator is closed;
        raises `Expired` when those changes are no longer all known."""

    async def close(self) -> None:  # noqa: B027 (optional: stores holding threads or connections override it)
        """Release threads and connections; watchers end."""


# ====================================================================== the file implementation
@dataclass(eq=False)
class _Watcher:
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event

    def notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is closed: nothing to wake
            self.loop.call_soon_threadsafe(self.wake.set)


@dataclass
class _Cursor:
    """Where one watcher is in the journal."""
    last: int
    ino: int = -1
    offset: int = 0
    stamp: tuple[int, int, int] = (0, 0, 0)


class FileObjectStore(ObjectStore):
    JOURNAL_MAX_BYTES = 256 * 1024
    HISTORY = 4096

    def __init__(self, workspace: str | Path, *, poll_s: float = 0.25):
        self.root = Path(workspace) / "store"
        self.poll_s = poll_s  # how soon a watcher notices another process's write (its own are pushed)
        for d, mode in ((self.root, 0o700), (self.root / "objects", 0o700), (self.root / "secrets", 0o700)):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, mode)
        self._journal = self.root / "journal"
        self._lock_path = self.root / "lock"
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openscore-store")
        self._history: collections.OrderedDict[int, Event] = collections.OrderedDict()  # this instance's writes
        self._watchers: set[_Watcher] = set()
        self._closed = False

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def close(self) -> None:
        self._closed = True
        for w in list(self._watchers):
            w.notify()
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)

    # ------------------------------------------------------------------ paths and files
    def _path(self, kind: str, name: str) -> Path:
        for part in (kind, name):
            if not part or "/" in part or part.startswith(".") or "\0" in part:
                raise ValueError(f"invalid object name {kind}/{name}")
        return self.root / ("secrets" if kind in SECRET_KINDS else "objects") / kind / f"{name}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def where(self, kind: str, name: str) -> str:
        return str(self._path(kind, name))

    @staticmethod
    def _read_file(path: Path) -> tuple[int, dict[str, Any]] | None:
        """(revision, doc) of one object file, None when there is none; InvalidObject naming the file and the
        field when it is not `{"revision": <int>, "doc": {...}}`."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise InvalidObject(str(path), "(file)", f"cannot be read: {e.strerror or e}") from None
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise InvalidObject(str(path), "(document)", f"is not JSON: {e}") from None
        if not isinstance(raw, dict):
            raise InvalidObject(str(path), "(document)", f"must be an object, got {type(raw).__name__}")
        rev = raw.get("revision")
        if isinstance(rev, bool) or not isinstance(rev, int) or rev < 0:
            raise InvalidObject(str(path), "revision", f"must be a whole number >= 0, got {rev!r}")
        if not isinstance(raw.get("doc"), dict):
            raise InvalidObject(str(path), "doc", f"must be an object, got {type(raw.get('doc')).__name__}")
        return rev, raw["doc"]

    @staticmethod
    def _write_atomic(path: Path, data: bytes) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(path.parent)

    def _journal_lines(self, data: bytes) -> list[dict[str, Any]]:
        out = []
        for line in data.split(b"\n"):
            try:
                e = json.loads(line)
                out.append({"rev": int(e["rev"]), "kind": str(e["kind"]), "name": str(e["name"]),
                            "op": str(e["op"])})
            except (ValueError, KeyError, TypeError):
                continue  # a torn line from a crash mid-append
        return out

    def _last_rev(self) -> int:
        try:
            with open(self._journal, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 8192))
                tail = self._journal_lines(f.read())
        except FileNotFoundError:
            tail = []
        if tail:
            return tail[-1]["rev"]
        # no journal (a new or a damaged workspace): never reuse a revision an object already has
        revs = [0]
        for p in self.root.glob("*/*/*.json"):
            with contextlib.suppress(ValueError, OSError, TypeError):
                got = self._read_file(p)
                if got is not None:
                    revs.append(got[0])
        return max(revs)

    def _append_journal(self, rev: int, kind: str, name: str, op: str) -> None:
        line = json.dumps({"rev": rev, "kind": kind, "name": name, "op": op}).encode() + b"\n"
        fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self._journal, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = b"\n" + line  # end a torn line first
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        if size > self.JOURNAL_MAX_BYTES:
            self._compact()

    def _compact(self) -> None:
        """Keep the newer half: a watcher further behind gets `Expired` and starts again from a listing."""
        lines = self._journal.read_bytes().splitlines(keepends=True)
        self._write_atomic(self._journal, b"".join(lines[len(lines) // 2:]))

    # ------------------------------------------------------------------ blocking operations (worker thread)
    def _get(self, kind: str, name: str) -> Stored | None:
        got = self._read_file(self._path(kind, name))
        return Stored(kind, name, str(got[0]), got[1]) if got else None

    def _list(self, kinds: list[str]) -> tuple[dict[str, list[Stored]], str]:
        with self._locked():  # one consistent cut: no write between the listing and its revision
            out: dict[str, list[Stored]] = {}
            for kind in kinds:
                items = []
                folder = self._path(kind, "x").parent
                for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
                    try:
                        got = self._read_file(p)
                    except InvalidObject as e:
                        items.append(Stored(kind, p.stem, "", {}, e))
                        continue
                    if got is not None:
                        items.append(Stored(kind, p.stem, str(got[0]), got[1]))
                out[kind] = items
            return out, str(self._last_rev())

    def _check(self, kind: str, name: str, current: tuple[int, dict[str, Any]] | None, expect: str | None) -> None:
        if expect is not None and (current is None or str(current[0]) != expect):
            raise Conflict(kind, name, expect, str(current[0]) if current else None)

    def _remember(self, ev: Event) -> None:
        self._history[int(ev.revision)] = ev
        while len(self._history) > self.HISTORY:
            self._history.popitem(last=False)

    def _put(self, kind: str, name: str, doc: dict[str, Any], expect: str | None) -> Stored:
        path = self._path(kind, name)
        data = json.dumps(doc, sort_keys=True)  # fails before anything is written if not JSON
        with self._locked():
            try:
                current = self._read_file(path)
            except InvalidObject as e:
                if expect is not None:
                    raise
                log.warning("replacing the unreadable object %s", e)
                current = None
            self._check(kind, name, current, expect)
            rev = self._last_rev() + 1
            self._append_journal(rev, kind, name, "put")  # first: a crash leaves a skipped line, not a reused rev
            self._write_atomic(path, f'{{"revision": {rev}, "doc": {data}}}'.encode())
            self._remember(Event(kind, name, str(rev), json.loads(data)))
        return Stored(kind, name, str(rev), json.loads(data))

    def _delete(self, kind: str, name: str, expect: str | None) -> str | None:
        path = self._path(kind, name)
        with self._locked():
            try:
                current = self._read_file(path)
            except InvalidObject:
                if expect is not None:
                    raise
                current = (-1, {})  # unreadable, but there: deleting it is what the caller asks
            self._check(kind, name, current, expect)
            if current is None:
                return None
            rev = self._last_rev() + 1
            self._append_journal(rev, kind, name, "delete")
            path.unlink()
            _fsync_dir(path.parent)
            self._remember(Event(kind, name, str(rev), None))
        return str(rev)

    def _events_after(self, cur: _Cursor) -> list[Event]:
        try:
            st = os.stat(self._journal)
        except FileNotFoundError:
            return []
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        if stamp == cur.stamp:
            return []  # nothing new (the cheap check a poll makes)
        if st.st_ino != cur.ino or st.st_size < cur.offset:
            cur.ino, cur.offset = st.st_ino, 0  # new or compacted: read the file from its start
        fresh = cur.offset == 0
        with open(self._journal, "rb") as f:
            f.seek(cur.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # only whole lines; a line being written is read next time
        cur.offset += end
        cur.stamp = stamp if end == len(data) else (0, 0, 0)
        lines = self._journal_lines(data[:end])
        if fresh and lines and lines[0]["rev"] > cur.last + 1:
            raise Expired(f"changes after revision {cur.last} are no longer kept (the journal starts at "
                          f"{lines[0]['rev']})")
        entries = [e for e in lines if e["rev"] > cur.last]
        out = []
        for e in entries:
            ev = self._history.get(e["rev"]) or self._load_event(e)
            cur.last = e["rev"]
            if ev is not None:
                out.append(ev)
        return out

    def _load_event(self, e: dict[str, Any]) -> Event | None:
        """Another process's change, read back from its file; None when a later change superseded it."""
        try:
            got = self._read_file(self._path(e["kind"], e["name"]))
        except (ValueError, OSError, TypeError) as err:
            log.error("skipping change %d to %s/%s: %s", e["rev"], e["kind"], e["name"], err)
            return None
        if e["op"] == "delete":
            return Event(e["kind"], e["name"], str(e["rev"]), None) if got is None else None
        if got is not None and got[0] == e["rev"]:
            return Event(e["kind"], e["name"], str(e["rev"]), got[1])
        return None

    def _start_cursor(self, since: str | None) -> _Cursor:
        return _Cursor(last=self._last_rev() if since is None else int(since))

    # ------------------------------------------------------------------ the async interface
    async def get(self, kind: str, name: str) -> Stored | None:
        return await self._run(self._get, kind, name)

    async def list(self, kinds: Iterable[str]) -> tuple[dict[str, list[Stored]], str]:
        return await self._run(self._list, list(kinds))

    async def put(self, kind: str, name: str, doc: Mapping[str, Any], expect: str | None = None) -> Stored:
        stored = await self._run(self._put, kind, name, dict(doc), expect)
        self._notify()
        return stored

    async def delete(self, kind: str, name: str, expect: str | None = None) -> str | None:
        rev = await self._run(self._delete, kind, name, expect)
        if rev is not None:
            self._notify()
        return rev

    def _notify(self) -> None:
        for w in list(self._watchers):
            w.notify()

    async def watch(self, since: str | None = None) -> AsyncIterator[Event]:
        w = _Watcher(asyncio.get_running_loop(), asyncio.Event())
        self._watchers.add(w)
        try:
            cur = await self._run(self._start_cursor, since)
            while not self._closed:
                w.wake.clear()  # before reading: a write from now on wakes the next wait
                try:
                    events = await self._run(self._events_after, cur)
                except RuntimeError:
                    return  # closed while reading
                for ev in events:
                    yield ev
                if not events:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(w.wake.wait(), self.poll_s)
        finally:
            self._watchers.discard(w)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
