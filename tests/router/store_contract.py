"""The desired-state store's contract, for any backend.

A backend's test module binds it with a fixture `open_store`: an async function returning a new `StateStore`
over the *same* backing storage each time it is called (a second call is a restart, or another process), and
then imports these tests (`from store_contract import *`). The fixture closes what it opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from openscore.router.state import SERVICE, SERVICE_KEYS, SIGNING_KEYS, Change, Conflict, NotFound, StateStore

__all__ = [
    "test_cas_success_and_stale_write_refused",
    "test_create_and_read",
    "test_delete",
    "test_delete_with_a_stale_revision_is_refused",
    "test_identical_write_is_not_a_change",
    "test_invalid_config_writes_nothing",
    "test_restart_sees_the_same_state",
    "test_revisions_are_per_object",
    "test_secrets_are_kept_apart",
    "test_signing_keys_rotate_and_revoke",
    "test_snapshot_then_watch_misses_nothing",
    "test_watch_sees_create_update_delete_in_order",
]


def svc(replicas: int = 1, **keys: object) -> dict:
    return {"computeType": "aks", "entryScript": "/srv/app/score.py", "numReplicas": replicas, **keys}


async def take(changes: AsyncIterator[Change], n: int, kinds: tuple[str, ...] = (SERVICE,)) -> list[Change]:
    """The next `n` changes of these kinds (others skipped), failing rather than hanging."""
    out: list[Change] = []

    async def collect() -> None:
        async for ch in changes:
            if ch.kind in kinds:
                out.append(ch)
                if len(out) == n:
                    return
    await asyncio.wait_for(collect(), 10)
    return out


def run(coro):
    return asyncio.run(coro)


def test_create_and_read(open_store):
    async def main():
        store: StateStore = await open_store()
        assert await store.get_service("svc-a") is None
        rec = await store.put_service("svc-a", svc(2))
        assert rec.revision and rec.config == svc(2) and rec.spec.versions["svc-a"].num_replicas == 2
        got = await store.get_service("svc-a")
        assert got is not None and got.revision == rec.revision and got.config == svc(2)
        state = await store.snapshot()
        assert set(state.services) == {"svc-a"} and state.services["svc-a"].revision == rec.revision
        assert set(state.keys) == {"svc-a"}  # a new service gets its two keys
    run(main())


def test_cas_success_and_stale_write_refused(open_store):
    async def main():
        store: StateStore = await open_store()
        first = await store.put_service("svc-a", svc(1))
        second = await store.put_service("svc-a", svc(2), revision=first.revision)  # read, then write on it
        assert second.revision != first.revision
        with pytest.raises(Conflict) as e:
            await store.put_service("svc-a", svc(3), revision=first.revision)  # a writer that read before
        assert e.value.current == second.revision
        got = await store.get_service("svc-a")
        assert got is not None and got.config == svc(2) and got.revision == second.revision  # nothing lost
        with pytest.raises(Conflict):  # a revision of a service that does not exist
            await store.put_service("svc-b", svc(1), revision=first.revision)
        assert await store.get_service("svc-b") is None
        last = await store.put_service("svc-a", svc(4))  # no revision: last write wins
        assert (await store.get_service("svc-a")).revision == last.revision
    run(main())


def test_identical_write_is_not_a_change(open_store):
    async def main():
        store: StateStore = await open_store()
        rec = await store.put_service("svc-a", svc(1))
        again = await store.put_service("svc-a", svc(1))
        assert again.revision == rec.revision
    run(main())


def test_invalid_config_writes_nothing(open_store):
    async def main():
        store: StateStore = await open_store()
        with pytest.raises(ValueError, match="numReplicas"):
            await store.put_service("svc-a", svc(-1))
        assert await store.get_service("svc-a") is None and await store.get_keys("svc-a") is None
    run(main())


def test_delete(open_store):
    async def main():
        store: StateStore = await open_store()
        await store.put_service("svc-a", svc(1))
        rev = await store.delete_service("svc-a")
        assert rev is not None
        assert await store.get_service("svc-a") is None
        assert await store.get_keys("svc-a") is None  # its keys go with it
        assert await store.delete_service("svc-a") is None  # nothing left to delete
        with pytest.raises(NotFound):
            await store.set_key("svc-a", "Primary")
    run(main())


def test_delete_with_a_stale_revision_is_refused(open_store):
    async def main():
        store: StateStore = await open_store()
        first = await store.put_service("svc-a", svc(1))
        second = await store.put_service("svc-a", svc(2))
        with pytest.raises(Conflict):
            await store.delete_service("svc-a", revision=first.revision)
        assert await store.get_service("svc-a") is not None
        assert await store.delete_service("svc-a", revision=second.revision) is not None
    run(main())


def test_watch_sees_create_update_delete_in_order(open_store):
    async def main():
        store: StateStore = await open_store()
        start = await store.snapshot()
        changes = store.watch(start.revision)
        created = await store.put_service("svc-a", svc(1))
        updated = await store.put_service("svc-a", svc(2))
        deleted = await store.delete_service("svc-a")
        seen = await take(changes, 3)
        await changes.aclose()
        assert [(c.name, c.revision, c.deleted) for c in seen] == [
            ("svc-a", created.revision, False), ("svc-a", updated.revision, False), ("svc-a", deleted, True)]
        assert seen[0].value.config == svc(1) and seen[1].value.config == svc(2)
    run(main())


def test_snapshot_then_watch_misses_nothing(open_store):
    """A change made by another store instance between the snapshot and the first read of the watch."""
    async def main():
        store: StateStore = await open_store()
        other: StateStore = await open_store()
        await store.put_service("svc-a", svc(1))
        start = await store.snapshot()
        rec = await other.put_service("svc-b", svc(1))
        seen = await take(store.watch(start.revision), 1)
        assert seen[0].name == "svc-b" and seen[0].revision == rec.revision
        assert "svc-a" in start.services and "svc-b" not in start.services
    run(main())


def test_secrets_are_kept_apart(open_store):
    async def main():
        store: StateStore = await open_store()
        start = await store.snapshot()
        changes = store.watch(start.revision)
        rec = await store.put_service("svc-a", svc(1, keys={"primaryKey": "primary-0001",
                                                            "secondaryKey": "secondary-0001"}))
        assert "keys" not in rec.config and "primary-0001" not in repr(rec.config)
        got = await store.get_service("svc-a")
        assert got is not None and "keys" not in got.config
        keys = await store.get_keys("svc-a")
        assert (keys.primary, keys.secondary) == ("primary-0001", "secondary-0001")
        seen = await take(changes, 2, (SERVICE, SERVICE_KEYS))
        assert {c.kind for c in seen} == {SERVICE, SERVICE_KEYS}
        for c in seen:
            if c.kind == SERVICE:
                assert "primary-0001" not in repr(c.value.config)
        # a new key: the service document (and its revision) is untouched; a replace without keys keeps them
        new = await store.set_key("svc-a", "Secondary")
        assert new.primary == "primary-0001" and new.secondary not in ("secondary-0001", "")
        assert (await store.get_service("svc-a")).revision == rec.revision
        await store.put_service("svc-a", svc(2))
        assert (await store.get_keys("svc-a")).secondary == new.secondary
        with pytest.raises(ValueError, match="keyType"):
            await store.set_key("svc-a", "Tertiary")
    run(main())


def test_revisions_are_per_object(open_store):
    async def main():
        store: StateStore = await open_store()
        a = await store.put_service("svc-a", svc(1))
        b = await store.put_service("svc-b", svc(1))
        await store.put_service("svc-b", svc(2))
        await store.set_key("svc-a", "Primary")
        await store.rotate_signing_key(0)
        assert (await store.get_service("svc-a")).revision == a.revision  # others' writes leave it alone
        assert (await store.get_service("svc-b")).revision != b.revision
        await store.put_service("svc-a", svc(2), revision=a.revision)  # so a's reader can still write
    run(main())


def test_signing_keys_rotate_and_revoke(open_store):
    async def main():
        store: StateStore = await open_store()
        first = await store.ensure_signing_key()
        assert first.current is not None
        assert (await store.ensure_signing_key()).current == first.current  # only a first one
        start = await store.snapshot()
        changes = store.watch(start.revision)
        kept = await store.rotate_signing_key(60)
        assert kept.current.kid != first.current.kid
        old = [k for k in kept.keys if k.kid == first.current.kid]
        assert old and old[0].retired_at is not None and old[0].valid_until is not None
        revoked = await store.rotate_signing_key(0)
        assert [k.kid for k in revoked.keys] == [revoked.current.kid]
        seen = await take(changes, 2, (SIGNING_KEYS,))
        assert [c.revision for c in seen] == [kept.revision, revoked.revision]
        assert (await store.snapshot()).signing_keys.current.secret == revoked.current.secret
    run(main())


def test_restart_sees_the_same_state(open_store):
    async def main():
        store: StateStore = await open_store()
        rec = await store.put_service("svc-a", svc(1))
        await store.put_service("svc-a", svc(2))
        keys = await store.set_key("svc-a", "Primary", "chosen-primary-01")
        signing = await store.ensure_signing_key()
        before = await store.snapshot()
        await store.close()
        again: StateStore = await open_store()
        after = await again.snapshot()
        assert after.services["svc-a"].config == svc(2)
        assert after.services["svc-a"].revision == before.services["svc-a"].revision
        assert after.keys["svc-a"] == keys
        assert after.signing_keys == signing
        back = await again.rollback_service("svc-a")  # the previous configuration survived too
        assert back.config == svc(1) and back.revision not in (rec.revision, before.services["svc-a"].revision)
    run(main())
