"""Slot accounting and the deadline queue, driven directly (no processes)."""

import asyncio
import random

import pytest

from openscore.router.balancer import BackendState, Rejected, SlotPool, TrafficSplitter


def pool(*slots: int, ready: bool = True) -> SlotPool:
    p = SlotPool("svc")
    p.sync([BackendState(f"r{i}", f"http://r{i}", s, ready) for i, s in enumerate(slots)])
    return p


def test_exact_accounting_under_a_race():
    """500 tasks with random hold times over replicas of 1, 2 and 3 slots: never more than the slots."""
    async def main():
        p = pool(1, 2, 3)
        peak = {b: 0 for b in p.backends}
        in_flight = {b: 0 for b in p.backends}
        served = rejected = 0

        async def one():
            nonlocal served, rejected
            await asyncio.sleep(random.random() * 0.05)
            try:
                lease = await p.acquire(0.2)
            except Rejected as e:
                assert e.reason == "overloaded"
                rejected += 1
                return
            bid = lease.backend.id
            in_flight[bid] += 1
            peak[bid] = max(peak[bid], in_flight[bid])
            assert lease.backend.busy <= lease.backend.slots
            await asyncio.sleep(random.random() * 0.01)
            in_flight[bid] -= 1
            lease.release()
            served += 1

        await asyncio.gather(*(one() for _ in range(500)))
        assert peak == {"r0": 1, "r1": 2, "r2": 3}
        assert all(b.busy == 0 for b in p.backends.values()) and p.queued == 0
        # every request was either served on a slot or rejected as overloaded (asserted above), none lost
        assert served + rejected == 500 and served >= 6
    asyncio.run(main())


def test_least_busy_and_fifo_handover():
    async def main():
        p = pool(2, 2)
        a = await p.acquire(0)
        b = await p.acquire(0)
        assert a.backend is not b.backend  # least busy first
        c, d = await p.acquire(0), await p.acquire(0)
        order = []

        async def waiter(i):
            lease = await p.acquire(1.0)
            order.append(i)
            return lease

        tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
        await asyncio.sleep(0.01)
        assert p.queued == 3
        a.release()
        b.release()
        c.release()
        leases = await asyncio.gather(*tasks)
        assert order == [0, 1, 2] and all(le.queue_wait_s > 0 for le in leases)
        for le in [d, *leases]:
            le.release()
        assert p.busy == 0
    asyncio.run(main())


def test_deadline_and_reasons():
    async def main():
        p = pool(1)
        held = await p.acquire(0)
        with pytest.raises(Rejected) as e:
            await p.acquire(0.05)
        assert e.value.reason == "overloaded" and e.value.waited_s >= 0.04
        assert "(overloaded)" in e.value.message
        held.release()
        empty = pool(1, ready=False)
        with pytest.raises(Rejected) as e:
            await empty.acquire(0.02)
        assert e.value.reason == "no_ready_replica" and "No ready replicas for service svc" in e.value.message
    asyncio.run(main())


def test_replica_becoming_ready_serves_the_queue():
    async def main():
        p = pool(1, ready=False)
        t = asyncio.create_task(p.acquire(1.0))
        await asyncio.sleep(0.01)
        p.sync([BackendState("r0", "http://r0", 1, True)])
        lease = await t
        assert lease.backend.id == "r0"
        lease.release()
    asyncio.run(main())


def test_cancelled_waiter_leaks_no_slot():
    async def main():
        p = pool(1)
        held = await p.acquire(0)
        t = asyncio.create_task(p.acquire(5.0))
        await asyncio.sleep(0.01)
        held.release()  # handed to the waiter...
        t.cancel()      # ...which is cancelled before it resumes
        with pytest.raises(asyncio.CancelledError):
            await t
        assert p.busy == 0 and p.queued == 0
        (await p.acquire(0)).release()
    asyncio.run(main())


def test_draining_backend_takes_no_new_requests():
    async def main():
        p = pool(2, 2)
        b = p.drain("r0")
        leases = [await p.acquire(0), await p.acquire(0)]
        assert all(le.backend.id == "r1" for le in leases)
        assert b is not None and b.idle.is_set()
        for le in leases:
            le.release()
    asyncio.run(main())


def test_traffic_split_is_exact_over_10000():
    s = TrafficSplitter()
    shares = {"a": 70.0, "b": 20.0, "c": 10.0}
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(10_000):
        counts[s.choose(shares, ["a", "b", "c"])] += 1
    assert counts == {"a": 7000, "b": 2000, "c": 1000}
    # a version without ready replicas is skipped, the others renormalised
    counts = {"a": 0, "b": 0}
    for _ in range(900):
        counts[s.choose(shares, ["a", "b"])] += 1
    assert counts == {"a": 700, "b": 200}
