"""Admission through a coordinating router (openscore.router.coordination), between real routers' coordination
endpoints on 127.0.0.1: each side has its own pools over the same replicas, as two router pods would."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random

import aiohttp
import pytest
from aiohttp.web_server import Server

from openscore.router.balancer import BackendState, Rejected, SlotPool
from openscore.router.coordination import WS_PATH, Coordination, Holder, peer_token
from openscore.router.server import make_server

KEY = ("svc", "v1")


def in_loop(test):
    """The project's tests run their own event loop (no pytest plugin); 30 s at most each."""
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(asyncio.wait_for(test(), 30))
    return run

TOKEN = peer_token("admin-key-for-tests")


class Side:
    """One router's coordination: its own pool of the version's replicas, served on its own port."""

    def __init__(self, name: str, replicas: int, slots: int, **options: float):
        self.pool = SlotPool("svc")
        self.pool.sync(BackendState(f"r{i}", f"10.0.0.{i}:5001", slots, True) for i in range(replicas))
        self.coord: Coordination | None = None
        self.name = name
        self.options = options
        self.listener: asyncio.Server | None = None
        self.server: Server | None = None

    async def start(self) -> None:
        async def handle(request):
            assert self.coord is not None
            if request.path == WS_PATH:
                return await self.coord.serve_peer(request)
            return aiohttp.web.Response(status=404)
        self.server = make_server(handle)
        loop = asyncio.get_running_loop()
        self.listener = await loop.create_server(self.server, "127.0.0.1", 0)
        port = self.listener.sockets[0].getsockname()[1]
        self.coord = Coordination(self.name, f"127.0.0.1:{port}", TOKEN,
                                  lambda k: self.pool if k == KEY else None, lambda s: [KEY] if s == "svc" else [],
                                  retry_s=0.2, **self.options)  # type: ignore[arg-type]

    async def stop(self) -> None:
        assert self.coord is not None and self.listener is not None and self.server is not None
        if self.coord.closed:
            return
        await self.coord.close()
        self.listener.close()
        await self.server.shutdown(0.5)

    def holder(self) -> Holder:
        assert self.coord is not None
        return Holder(self.coord.identity, self.coord.address)


@contextlib.asynccontextmanager
async def sides(n: int, replicas: int = 2, slots: int = 2, **options: float):
    out = [Side(f"router-{i}", replicas, slots, **options) for i in range(n)]
    for s in out:
        await s.start()
    for s in out:  # router-0 coordinates
        assert s.coord is not None
        s.coord.set_live_routers(n)
        s.coord.set_holder("svc", out[0].holder())
    try:
        yield out
    finally:
        for s in out:
            await s.stop()


async def eventually(check, timeout_s: float = 2.0) -> None:
    """Releases travel as messages: give them a moment to arrive."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not check() and loop.time() < end:
        await asyncio.sleep(0.01)
    assert check()


def concurrency_probe():
    """Per replica: (in flight now, most ever), across every router's requests."""
    now: dict[str, int] = {}
    most: dict[str, int] = {}

    @contextlib.contextmanager
    def on(replica: str):
        now[replica] = now.get(replica, 0) + 1
        most[replica] = max(most.get(replica, 0), now[replica])
        try:
            yield
        finally:
            now[replica] -= 1
    return on, most


async def request(side: Side, probe, wait_s: float, work_s: float) -> str:
    c = side.coord
    assert c is not None
    lease = c.try_acquire(KEY, side.pool) or await c.acquire(KEY, side.pool, wait_s)
    try:
        with probe(lease.backend.id):
            await asyncio.sleep(work_s * random.uniform(0.5, 1.5))
        return lease.backend.id
    finally:
        lease.release()


@in_loop
async def test_three_routers_never_put_more_requests_on_a_replica_than_its_slots():
    on, most = concurrency_probe()
    async with sides(3, replicas=2, slots=2) as ss:
        results = await asyncio.gather(*(request(ss[i % 3], on, 5.0, 0.01) for i in range(300)),
                                       return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert max(most.values()) == 2 and set(most) == {"r0", "r1"}
        # the peers' slots went back to the coordinator: nothing held anywhere afterwards
        for s in ss:
            await eventually(lambda s=s: s.pool.busy == 0)
        assert ss[1].coord.stats["remote"] > 0 and ss[1].coord.stats["fallback"] == 0


@in_loop
async def test_a_peer_waits_in_the_coordinators_queue_and_gets_its_503_at_the_deadline():
    async with sides(2, replicas=1, slots=1) as (a, b):
        hold = a.coord.try_acquire(KEY, a.pool)
        assert hold is not None
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(Rejected) as e:
            await b.coord.acquire(KEY, b.pool, 0.3)
        waited = loop.time() - t0
        assert e.value.reason == "overloaded" and 0.25 < waited < 1.0
        assert a.pool.queued == 0 and a.pool.busy == 1
        # queued on the coordinator, a peer's request is served in turn when the slot frees
        t = asyncio.ensure_future(b.coord.acquire(KEY, b.pool, 2.0))
        await asyncio.sleep(0.1)
        assert a.pool.queued == 1 and a.pool.utilization() == 2.0  # the coordinator sees the peer's queue
        hold.release()
        lease = await t
        assert a.pool.busy == 1 and b.pool.busy == 1 and lease.backend.id == "r0"
        lease.release()
        await eventually(lambda: a.pool.busy == 0 and b.pool.busy == 0)


@in_loop
async def test_a_peer_that_dies_gives_its_slots_back_and_a_cancelled_wait_leaves_none():
    async with sides(2, replicas=1, slots=2) as (a, b):
        lease = await b.coord.acquire(KEY, b.pool, 1.0)
        assert a.pool.busy == 1
        waiter = asyncio.ensure_future(b.coord.acquire(KEY, b.pool, 5.0))
        l2 = await waiter
        w3 = asyncio.ensure_future(b.coord.acquire(KEY, b.pool, 5.0))
        await asyncio.sleep(0.1)
        assert a.pool.queued == 1
        w3.cancel()  # the client went away while queued
        await asyncio.sleep(0.1)
        assert a.pool.queued == 0 and a.pool.busy == 2
        await b.coord.close()  # the peer's process is gone: its link closes
        await eventually(lambda: a.pool.busy == 0)
        lease.release()
        l2.release()


@in_loop
async def test_without_a_reachable_coordinator_each_router_fills_only_its_share():
    async with sides(3, replicas=2, slots=6) as ss:
        b = ss[1]
        b.coord.set_holder("svc", Holder("gone", "127.0.0.1:9"))  # nothing listens there
        got = []
        for _ in range(4):
            got.append(await b.coord.acquire(KEY, b.pool, 0.05))
        assert sorted(x.backend.id for x in got) == ["r0", "r0", "r1", "r1"]  # 6 slots // 3 routers = 2 each
        assert b.coord.stats["fallback"] >= 1
        with pytest.raises(Rejected):
            await b.coord.acquire(KEY, b.pool, 0.05)
        for x in got:
            x.release()


@in_loop
async def test_a_new_coordinator_counts_the_slots_its_peers_already_hold():
    async with sides(3, replicas=1, slots=2) as (a, b, c):
        held = await b.coord.acquire(KEY, b.pool, 1.0)  # granted by a
        assert a.pool.busy == 1 and c.pool.busy == 0
        for s in (a, b, c):  # a dies; c takes the Lease over
            s.coord.set_holder("svc", c.holder())
        await a.stop()
        got = await b.coord.acquire(KEY, b.pool, 1.0)  # b links to c and declares the slot it holds
        got.release()
        await eventually(lambda: c.pool.busy == 1)  # b's first request, adopted: one free slot left, not two
        one = await b.coord.acquire(KEY, b.pool, 1.0)
        with pytest.raises(Rejected):
            await b.coord.acquire(KEY, b.pool, 0.1)
        held.release()
        again = await b.coord.acquire(KEY, b.pool, 1.0)
        one.release()
        again.release()
        await eventually(lambda: c.pool.busy == 0 and b.pool.busy == 0)


@in_loop
async def test_a_coordinator_refuses_a_link_without_the_peer_token():
    async with sides(1) as (a,):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"http://{a.coord.address}{WS_PATH}",
                             headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401
            async with s.ws_connect(f"http://{a.coord.address}{WS_PATH}",
                                    headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
                await ws.send_str('{"op": "launch"}')  # nonsense: the link is closed, nothing is held
                msg = await ws.receive()
                assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert a.pool.busy == 0


@in_loop
async def test_a_peer_keeps_a_granted_slot_for_its_next_request_and_the_coordinator_counts_it():
    async with sides(2, replicas=1, slots=2, keep_s=0.2) as (a, b):
        first = await b.coord.acquire(KEY, b.pool, 1.0)
        first.release()
        assert a.pool.busy == 1 and b.pool.busy == 0  # kept: still taken on the coordinator, idle here
        again = await b.coord.acquire(KEY, b.pool, 1.0)
        assert b.coord.stats == {**b.coord.stats, "remote": 1, "kept": 1}  # no second round trip
        assert again.backend.id == first.backend.id and a.pool.busy == 1 and b.pool.busy == 1
        again.release()
        await eventually(lambda: a.pool.busy == 0)  # not reused within keep_s: given back


@in_loop
async def test_a_coordinator_whose_request_must_wait_recalls_the_slots_peers_keep():
    async with sides(2, replicas=1, slots=1, keep_s=60.0) as (a, b):
        mine = await b.coord.acquire(KEY, b.pool, 1.0)
        mine.release()
        assert a.pool.busy == 1  # kept by b, for up to a minute
        # a's own request finds no free slot: b is told to give its kept slot back, long before the minute
        assert a.coord.try_acquire(KEY, a.pool) is None
        lease = await a.coord.acquire(KEY, a.pool, 5.0)
        assert b.coord.describe()["slotsKept"] == 0
        # while the coordinator had a queue b keeps nothing: its queued request's slot goes straight back
        queued = asyncio.ensure_future(b.coord.acquire(KEY, b.pool, 5.0))
        await eventually(lambda: a.pool.queued == 1)
        lease.release()
        got = await queued
        got.release()
        await eventually(lambda: a.pool.busy == 0)
        assert b.coord.stats["kept"] == 0


@in_loop
async def test_kept_slots_go_back_to_their_coordinator_when_the_lease_moves():
    async with sides(3, replicas=1, slots=2, keep_s=60.0) as (a, b, c):
        (await b.coord.acquire(KEY, b.pool, 1.0)).release()
        assert a.pool.busy == 1
        for s in (a, b, c):
            s.coord.set_holder("svc", c.holder())
        await eventually(lambda: a.pool.busy == 0)
        got = await b.coord.acquire(KEY, b.pool, 1.0)  # asked of c, not taken from a's kept slot
        assert c.pool.busy == 1 and b.coord.stats["kept"] == 0
        got.release()


def test_a_router_with_an_elector_coordinates_nothing_until_the_elector_first_speaks():
    """A router pod joining the others applies its services before its first Lease round: meanwhile it must
    not act as their coordinator (it would scale an autoscaled service back to its initial count). Without an
    elector (one router, the workspace mode) it coordinates everything from the start."""
    roles: list[tuple[str, bool]] = []
    pool = SlotPool("svc")
    alone = Coordination("alone", "127.0.0.1:1", TOKEN, lambda k: pool, lambda s: [KEY])
    assert alone.coordinates("svc")
    joining = Coordination("me", "127.0.0.1:2", TOKEN, lambda k: pool, lambda s: [KEY], elected=True)
    joining.on_role = lambda service, here: roles.append((service, here))
    assert not joining.coordinates("svc") and not joining.coordinates("other")
    joining.set_holder("other", Holder("someone-else", "127.0.0.1:3"))
    joining.set_holder("svc", Holder("me", "127.0.0.1:2"))
    assert joining.coordinates("svc") and not joining.coordinates("other")
    assert roles == [("svc", True)]  # the router's hook: it takes over svc (and converges its count) now
