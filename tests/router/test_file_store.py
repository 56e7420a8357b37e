"""The store contract bound to the file store, plus what only the file store promises: file modes, atomic
writes, no file I/O on the event loop, changes from another process, and a watcher that outlives compaction."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest
from store_contract import *  # noqa: F403 (the contract's tests run here, bound to this backend)
from store_contract import svc, take

from openscore.router.objects import FileObjectStore
from openscore.router.state import Expired, StateStore

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def open_store(tmp_path):
    opened: list[StateStore] = []

    async def open_() -> StateStore:
        s = StateStore(FileObjectStore(tmp_path, poll_s=0.05))
        opened.append(s)
        return s

    yield open_
    for s in opened:
        asyncio.run(s.close())
    assert not [t for t in threading.enumerate() if t.name.startswith("openscore-store")], "store thread leaked"


def test_secrets_are_0600_files_apart_from_service_documents(tmp_path):
    async def main():
        store = StateStore(FileObjectStore(tmp_path))
        try:
            await store.put_service("svc-a", svc(1, keys={"primaryKey": "primary-secret-0001"}))
            await store.ensure_signing_key()
        finally:
            await store.close()
    asyncio.run(main())
    root = tmp_path / "store"
    secrets = sorted((root / "secrets").rglob("*.json"))
    assert {p.parent.name for p in secrets} == {"service-keys", "signing-keys"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in secrets)
    assert (root / "secrets").stat().st_mode & 0o777 == 0o700
    assert any("primary-secret-0001" in p.read_text() for p in secrets)
    others = [p for p in root.rglob("*") if p.is_file() and p not in secrets]
    assert others and not any("primary-secret-0001" in p.read_text(errors="replace") for p in others)
    assert not list(root.rglob("*.tmp"))  # written through temp files that were renamed


def test_no_file_io_on_the_event_loop(tmp_path):
    """Every file the store opens is opened on its worker thread, never on the loop's thread."""
    opened_on: list[tuple[str, str]] = []
    root = str(tmp_path / "store")
    active = threading.Event()

    def hook(event: str, args: tuple) -> None:
        if active.is_set() and event == "open" and isinstance(args[0], (str, bytes)):
            path = args[0].decode() if isinstance(args[0], bytes) else args[0]
            if path.startswith(root):
                opened_on.append((threading.current_thread().name, path))

    sys.addaudithook(hook)

    async def main():
        store = StateStore(FileObjectStore(tmp_path, poll_s=0.05))
        try:
            start = await store.snapshot()
            changes = store.watch(start.revision)
            await store.put_service("svc-a", svc(1))
            await store.set_key("svc-a", "Primary")
            await store.get_service("svc-a")
            await store.rotate_signing_key(0)
            await take(changes, 1)
            await store.delete_service("svc-a")
            await changes.aclose()
        finally:
            await store.close()

    active.set()
    try:
        asyncio.run(main())
    finally:
        active.clear()
    assert opened_on, "the audit hook saw no file opened"
    assert {name for name, _ in opened_on} == {"openscore-store_0"}, opened_on


def test_a_change_from_another_process_is_pushed(tmp_path):
    script = ("import asyncio, sys\n"
              "from openscore.router.state import FileStateStore\n"
              "async def main():\n"
              "    s = FileStateStore(sys.argv[1])\n"
              "    doc = {'computeType': 'aks', 'entryScript': '/x/score.py', 'numReplicas': 3}\n"
              "    await s.put_service('svc-x', doc)\n"
              "    await s.close()\n"
              "asyncio.run(main())\n")

    async def main():
        store = StateStore(FileObjectStore(tmp_path, poll_s=0.05))
        try:
            start = await store.snapshot()
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", script, str(tmp_path), cwd=ROOT)
            assert await proc.wait() == 0
            seen = await take(store.watch(start.revision), 1)
            assert seen[0].name == "svc-x" and seen[0].value.spec.versions["svc-x"].num_replicas == 3
        finally:
            await store.close()
    asyncio.run(main())


def test_a_watcher_behind_a_compacted_journal_is_told_to_resync(tmp_path):
    """Like Kubernetes' 410 Gone: changes no longer in the journal end the watch with Expired, and a new
    snapshot has the state they made."""
    async def main():
        watcher = StateStore(FileObjectStore(tmp_path, poll_s=0.05))
        objects = FileObjectStore(tmp_path)
        objects.JOURNAL_MAX_BYTES = 300  # compacts every few writes
        writer = StateStore(objects)
        try:
            await writer.put_service("svc-b", svc(1))
            await writer.put_service("svc-c", svc(1))
            start = await watcher.snapshot()
            await writer.delete_service("svc-c")
            for n in range(2, 30):
                await writer.put_service("svc-b", svc(n))
            assert len((tmp_path / "store" / "journal").read_text().splitlines()) < 30  # compacted
            with pytest.raises(Expired, match=f"after revision {start.revision} are no longer kept"):
                await take(watcher.watch(start.revision), 1)
            again = await watcher.snapshot()
            assert set(again.services) == {"svc-b"} and again.services["svc-b"].config == svc(29)
            changes = watcher.watch(again.revision)  # and from there on it follows again
            rec = await writer.put_service("svc-b", svc(30))
            assert [c.revision for c in await take(changes, 1)] == [rec.revision]
            await changes.aclose()
        finally:
            await watcher.close()
            await writer.close()
    asyncio.run(main())


def test_a_torn_journal_line_is_skipped(tmp_path):
    async def main():
        store = StateStore(FileObjectStore(tmp_path, poll_s=0.05))
        try:
            first = await store.put_service("svc-a", svc(1))
            start = await store.snapshot()
            with open(tmp_path / "store" / "journal", "ab") as f:
                f.write(b'{"rev": 99, "kind": "serv')  # a crash in the middle of an append
            second = await store.put_service("svc-a", svc(2))
            assert second.revision != first.revision
            seen = await take(store.watch(start.revision), 1)
            assert seen[0].revision == second.revision and seen[0].value.config == svc(2)
        finally:
            await store.close()
        again = StateStore(FileObjectStore(tmp_path))
        try:
            assert (await again.get_service("svc-a")).config == svc(2)
        finally:
            await again.close()
    asyncio.run(main())
