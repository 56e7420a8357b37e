"""The slot gate and the run() thread pool, driven directly (no HTTP)."""

import asyncio
import threading

import pytest

from openscore.runtime.input_decoding import query_to_dict, title_case_headers
from openscore.runtime.run_threads import RunThreadPool, ScoringTimeout
from openscore.runtime.slots import Overloaded, SlotGate


def run(coro):
    return asyncio.run(coro)


def test_gate_never_exceeds_its_slots_and_serves_fifo():
    async def main():
        gate = SlotGate(2, max_queue=10, max_wait_s=5)
        active = peak = 0
        order = []

        async def user(i):
            nonlocal active, peak
            await gate.acquire()
            active += 1
            peak = max(peak, active)
            order.append(i)
            await asyncio.sleep(0.01)
            active -= 1
            gate.release()

        await asyncio.gather(*(user(i) for i in range(8)))
        return peak, order, gate.busy, gate.queued

    peak, order, busy, queued = run(main())
    assert peak == 2 and order == list(range(8)) and busy == 0 and queued == 0


def test_gate_refuses_when_queue_full_and_when_wait_expires():
    async def main():
        gate = SlotGate(1, max_queue=1, max_wait_s=0.05)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="queue is full"):
            await gate.acquire()
        with pytest.raises(Overloaded, match="no concurrency slot became free"):
            await waiter
        gate.release()
        return gate.busy, gate.queued

    assert run(main()) == (0, 0)


def test_cancelled_waiter_does_not_leak_its_slot():
    async def main():
        gate = SlotGate(1, max_queue=5, max_wait_s=5)
        await gate.acquire()
        waiter = asyncio.ensure_future(gate.acquire())
        await asyncio.sleep(0)
        gate.release()          # hands the slot to the waiter...
        waiter.cancel()         # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return gate.busy, gate.queued

    assert run(main()) == (0, 0)


def test_pool_returns_results_exceptions_and_times_out_without_reusing_stuck_thread():
    release = threading.Event()

    def work(x):
        if x == "hang":
            release.wait(5)
        if x == "raise":
            raise ValueError("bad")
        if x == "exit":
            raise SystemExit(3)
        return threading.current_thread().name

    async def main():
        pool = RunThreadPool("t")
        ok, _name, _ = await pool.call(work, {"x": 1}, "r1", 5)
        assert ok
        ok, err, _ = await pool.call(work, {"x": "raise"}, "r2", 5)
        assert not ok and isinstance(err, ValueError)
        ok, err, _ = await pool.call(work, {"x": "exit"}, "r3", 5)
        assert not ok and isinstance(err, SystemExit)
        with pytest.raises(ScoringTimeout):
            await pool.call(work, {"x": "hang"}, "r4", 0.05)
        assert pool.abandoned == 1
        ok, name2, _ = await pool.call(work, {"x": 2}, "r5", 5)
        release.set()
        return name2

    name = run(main())
    assert name  # a working thread answered after the stuck one was abandoned


def test_query_string_rules():
    assert query_to_dict("a=1&b=[1,2]&c=x&c=y&d=null") == {"a": 1, "b": [1, 2], "c": ["x", "y"], "d": None}
    assert query_to_dict("") == {}
    assert query_to_dict("s=%22q%22&e=") == {"s": "q", "e": ""}


def test_title_case_headers_join_repeats():
    class H:
        def items(self):
            return [("x-ms-request-id", "1"), ("accept", "a"), ("Accept", "b")]

    assert title_case_headers(H()) == {"X-Ms-Request-Id": "1", "Accept": "a,b"}
