"""Slot accounting and the deadline queue (plain classes, no I/O).

A `SlotPool` holds one version's replicas. A request takes a slot on the least busy routable replica, or
waits in a FIFO queue; a freed slot is handed *directly* to the first waiter (the count never drops and
rises again), so the number of requests in flight to a replica can never exceed its slots, whatever the
interleaving. All mutation happens synchronously on the event loop: there is no await between checking
and taking a slot.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


class Rejected(Exception):
    """No slot within the deadline. `reason` is 'overloaded' or 'no_ready_replica'."""

    def __init__(self, reason: str, message: str, waited_s: float):
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.waited_s = waited_s


@dataclass(eq=False)
class Backend:
    id: str
    address: str
    slots: int
    busy: int = 0
    ready: bool = True
    draining: bool = False
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    secret: str = field(default="", repr=False)  # sent to the replica on every request (proves the router)
    cap: int = 0  # the slots this router may fill itself: `slots`, or its share while it cannot coordinate

    def __post_init__(self) -> None:
        self.idle.set()
        self.cap = self.cap or self.slots

    @property
    def routable(self) -> bool:
        return self.ready and not self.draining

    @property
    def free(self) -> bool:
        return self.routable and self.busy < self.cap


@dataclass(eq=False)
class Lease:
    pool: SlotPool
    backend: Backend
    queue_wait_s: float
    released: bool = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.pool._free(self.backend)


@dataclass(frozen=True)
class BackendState:
    """What the pool needs to know about a replica (from the compute target)."""
    id: str
    address: str
    slots: int
    ready: bool
    secret: str = field(default="", repr=False)


class SlotPool:
    def __init__(self, name: str):
        self.name = name
        self.backends: dict[str, Backend] = {}
        self._waiters: collections.deque[asyncio.Future[Backend]] = collections.deque()
        self.queued = 0
        self._rotor = 0
        self.share = 1  # >1: several routers admit on their own, each fills 1/share of every replica's slots

    # ------------------------------------------------------------------ membership
    def sync(self, states: Iterable[BackendState]) -> list[Backend]:
        """Make the pool match the target's replicas; returns the backends that left (maybe still busy)."""
        seen = set()
        for s in states:
            seen.add(s.id)
            b = self.backends.get(s.id)
            if b is None:
                b = self.backends[s.id] = Backend(s.id, s.address, max(1, s.slots), ready=s.ready, secret=s.secret)
            else:
                b.slots, b.ready, b.address, b.secret = max(1, s.slots), s.ready, s.address, s.secret
            b.cap = max(1, b.slots // self.share)
        gone = [b for bid, b in self.backends.items() if bid not in seen]
        for b in gone:
            del self.backends[b.id]
        self._dispatch()
        return gone

    def set_share(self, share: int) -> None:
        """Admit up to 1/`share` of each replica's slots (at least one): `share` routers admitting without a
        coordinator never exceed a replica's slots together. 1: all of them (this router coordinates)."""
        self.share = max(1, share)
        for b in self.backends.values():
            b.cap = max(1, b.slots // self.share)
        self._dispatch()

    def adopt(self, backend_id: str) -> Lease | None:
        """Count a slot another router already holds on this replica (it declared it to a new coordinator),
        even above the slots: nothing new is admitted there until it is released."""
        b = self.backends.get(backend_id)
        if b is None:
            return None
        self._take(b)
        return Lease(self, b, 0.0)

    def set_ready(self, backend_id: str, ready: bool) -> None:
        b = self.backends.get(backend_id)
        if b is not None:
            b.ready = ready
            self._dispatch()

    def drain(self, backend_id: str) -> Backend | None:
        """Take a backend out of routing; await `backend.idle.wait()` for its in-flight requests."""
        b = self.backends.get(backend_id)
        if b is not None:
            b.draining = True
        return b

    # ------------------------------------------------------------------ stats
    @property
    def busy(self) -> int:
        return sum(b.busy for b in self.backends.values())

    @property
    def routable_slots(self) -> int:
        return sum(b.slots for b in self.backends.values() if b.routable)

    @property
    def ready_count(self) -> int:
        return sum(1 for b in self.backends.values() if b.routable)

    def utilization(self) -> float | None:
        """(busy + queued) / routable slots, Azure's v2 definition; None when nothing is routable."""
        total = self.routable_slots
        if total == 0:
            return None
        busy = sum(b.busy for b in self.backends.values() if b.routable)
        return (busy + self.queued) / total

    # ------------------------------------------------------------------ acquire / release
    def _pick(self) -> Backend | None:
        best: Backend | None = None
        best_load = 2.0
        backends = list(self.backends.values())
        n = len(backends)
        if n == 0:
            return None
        self._rotor = (self._rotor + 1) % n  # rotate the start so ties spread over replicas
        for i in range(n):
            b = backends[(self._rotor + i) % n]
            if b.free:
                load = b.busy / b.slots
                if load < best_load:
                    best, best_load = b, load
                    if load == 0.0:
                        break
        return best

    def _take(self, b: Backend) -> None:
        b.busy += 1
        b.idle.clear()

    def _free(self, b: Backend) -> None:
        b.busy -= 1
        if b.busy < 0:  # a bug, never silently absorbed
            b.busy = 0
            raise AssertionError(f"slot released twice on {b.id}")
        if b.free and self._waiters and b.id in self.backends:
            self._hand_over(b)
        if b.busy == 0:
            b.idle.set()

    def _hand_over(self, b: Backend) -> bool:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                self._take(b)
                fut.set_result(b)
                return True
        return False

    def _dispatch(self) -> None:
        while self._waiters:
            b = self._pick()
            if b is None or not self._hand_over(b):
                return

    def try_acquire(self) -> Lease | None:
        b = self._pick() if not self.queued else None  # FIFO: never jump the queue
        if b is None:
            return None
        self._take(b)
        return Lease(self, b, 0.0)

    async def acquire(self, max_wait_s: float) -> Lease:
        lease = self.try_acquire()
        if lease is not None:
            return lease
        start = time.monotonic()
        if max_wait_s <= 0:
            raise self._rejection(0.0)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Backend] = loop.create_future()
        self._waiters.append(fut)
        self.queued += 1
        timer = loop.call_later(max_wait_s, self._expire, fut, start)
        try:
            backend = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._free(fut.result())  # handed a slot just as the client went away
            raise
        finally:
            timer.cancel()
            self.queued -= 1
        return Lease(self, backend, time.monotonic() - start)

    def _expire(self, fut: asyncio.Future[Backend], start: float) -> None:
        if not fut.done():
            fut.set_exception(self._rejection(time.monotonic() - start))

    def _rejection(self, waited: float) -> Rejected:
        if self.ready_count == 0:
            return Rejected("no_ready_replica", f"No ready replicas for service {self.name}", waited)
        return Rejected("overloaded", f"Too many requests for service {self.name} (overloaded): no free "
                                      f"slot within {waited * 1000:.0f} ms", waited)


class TrafficSplitter:
    """Smooth weighted round-robin (nginx's): exact shares over any window, no randomness to tune.

    Only versions that can serve (ready replicas) take part; their shares are renormalised, so traffic never
    goes to a version that is still starting.
    """

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    def choose(self, shares: Mapping[str, float], eligible: Iterable[str]) -> str | None:
        total = 0.0
        best: str | None = None
        best_w = float("-inf")
        for name in eligible:
            w = shares.get(name, 0.0)
            if w <= 0:
                continue
            cur = self._current.get(name, 0.0) + w
            self._current[name] = cur
            total += w
            if cur > best_w:
                best, best_w = name, cur
        if best is not None:
            self._current[best] -= total
        return best
