"""Retiring a deleted version whose drain does not finish: its replicas are stopped at the deadline, not left
running. A real router core, file store and replica processes, driven in-process (no HTTP front end)."""

import asyncio
import os

from routerkit import SCRIPTS, until

from openscore.router.core import Router
from openscore.router.local_target import LocalProcessTarget
from openscore.router.state import FileStateStore


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_version_still_busy_at_the_drain_deadline_is_stopped(tmp_path, caplog):
    async def main():
        store = FileStateStore(tmp_path, poll_s=0.05)
        target = LocalProcessTarget(tmp_path, graceful_s=2)
        router = Router(store, target, drain_timeout_s=0.5)
        await store.put_service("busy-svc", {"computeType": "aks", "entryScript": str(SCRIPTS / "slow.py"),
                                             "sourceDirectory": str(SCRIPTS), "numReplicas": 1})
        await router.start()
        try:
            await until(lambda: "busy-svc" in router.services
                        and router.services["busy-svc"].versions["busy-svc"].pool.ready_count == 1,
                        what="a ready replica")
            vr = router.services["busy-svc"].versions["busy-svc"]
            (pid,) = target.pids().values()
            lease = vr.pool.try_acquire()  # a request in flight that never finishes
            assert lease is not None
            rev = await store.delete_service("busy-svc")
            assert await router.wait_applied("service", "busy-svc", rev)
            assert "busy-svc" not in router.services
            await until(lambda: not alive(pid), what=f"replica {pid} to be stopped after the drain deadline")
            # the retire task goes on a moment after its replica died: wait for it to finish, then check it did
            # not fail
            await until(lambda: not [t for t in router._tasks if t.get_name().startswith("delete-")],
                        what="the retire task to finish")
            assert target.keys() == set() and target.pids() == {}
            assert "background task" not in caplog.text
            lease.release()  # the late answer frees its slot on a pool nobody routes to any more
        finally:
            await router.stop()
            await store.close()
    asyncio.run(main())
