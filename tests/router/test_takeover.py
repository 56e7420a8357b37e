"""A router that shares services with other routers acts on a service only once it coordinates it: joining, it
leaves a count it finds alone; taking over, it brings a count that drifted while nobody coordinated back to the
spec. A real router core, file store and replica processes, driven in-process (no HTTP front end, no
elector: the test tells the coordination who holds the service, as the Lease rounds would)."""

import asyncio

from routerkit import SCRIPTS, until

from openscore.router.coordination import Coordination, Holder, peer_token
from openscore.router.core import Router
from openscore.router.local_target import LocalProcessTarget
from openscore.router.state import FileStateStore

KEY = ("fixed", "fixed")


def test_a_joining_router_scales_nothing_and_converges_the_count_once_it_coordinates(tmp_path):
    async def main():
        store = FileStateStore(tmp_path, poll_s=0.05)
        target = LocalProcessTarget(tmp_path, graceful_s=2)
        router = Router(store, target, drain_timeout_s=2)
        coord = Coordination("me", "127.0.0.1:1", peer_token("k"), router.pool_for, router.keys_of, elected=True)
        router.coordinate(coord)
        await store.put_service("fixed", {"computeType": "aks", "entryScript": str(SCRIPTS / "echo.py"),
                                          "sourceDirectory": str(SCRIPTS), "numReplicas": 1})
        await router.start()
        try:
            await until(lambda: "fixed" in router.services and router.pool_for(KEY).ready_count == 1,
                        what="a ready replica")
            await target.scale(KEY, 2)  # drift while nobody coordinated (another router's count, a hand edit)
            await until(lambda: router.pool_for(KEY).ready_count == 2, what="the drifted second replica")
            await asyncio.sleep(0.5)
            assert target.wanted(KEY) == 2  # not coordinating: the count it finds is left alone
            assert not router.coordinates("fixed")

            coord.set_holder("fixed", Holder("me", "127.0.0.1:1"))  # this router's Lease round took it
            await until(lambda: target.wanted(KEY) == 1 and len(target.replicas(KEY)) == 1,
                        what="the count back at numReplicas 1")
            assert router.pool_for(KEY).ready_count == 1  # drained and stopped, the other kept serving
        finally:
            await router.stop()
            await coord.close()
            await store.close()
    asyncio.run(main())
