"""Concurrency slots with a bounded, deadline-limited wait queue (one per worker process).

A request holds a slot while run() executes. When all are busy it waits in FIFO order; a full queue or an
expired wait is an Overloaded error (503 + Retry-After), never an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable


class Overloaded(Exception):
    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s


class SlotGate:
    def __init__(self, total: int, max_queue: int, max_wait_s: float,
                 on_change: Callable[[int, int], None] | None = None):
        if total < 1:
            raise ValueError("at least one slot is needed")
        self.total = total
        self.max_queue = max_queue
        self.max_wait_s = max_wait_s
        self.busy = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._on_change = on_change or (lambda busy, queued: None)

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def try_acquire(self) -> bool:
        if self.busy < self.total and not self._waiters:
            self.busy += 1
            self._on_change(self.busy, len(self._waiters))
            return True
        return False

    async def acquire(self) -> float:
        """Take a slot; returns the seconds spent waiting. Raises Overloaded."""
        if self.try_acquire():
            return 0.0
        if len(self._waiters) >= self.max_queue:
            raise Overloaded(f"all {self.total} concurrency slots are busy and the wait queue is full "
                             f"({self.max_queue} requests)")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        self._on_change(self.busy, len(self._waiters))
        start = time.monotonic()
        timer = loop.call_later(self.max_wait_s, _expire, fut)
        try:
            await fut  # resolved by release(): the slot is handed over, busy is unchanged
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self.release()  # we were handed a slot but will not use it
            raise
        except _WaitExpired:
            raise Overloaded(f"no concurrency slot became free within {self.max_wait_s * 1000:.0f} ms "
                             f"({self.total} slots busy)", retry_after_s=max(1, round(self.max_wait_s))) from None
        finally:
            timer.cancel()
            try:
                self._waiters.remove(fut)
            except ValueError:
                pass
            self._on_change(self.busy, len(self._waiters))
        return time.monotonic() - start

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._on_change(self.busy, len(self._waiters))
                return
        self.busy -= 1
        self._on_change(self.busy, len(self._waiters))

    def fail_waiters(self, message: str) -> None:
        """Answer everyone still waiting (used when the worker stops)."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(Overloaded(message))


class _WaitExpired(Exception):
    pass


def _expire(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_exception(_WaitExpired())
