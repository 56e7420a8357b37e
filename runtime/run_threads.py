"""Threads that execute synchronous run() calls, one per busy slot, with a timeout that needs no SIGALRM.

A call that outlives its timeout is answered at once; its thread is abandoned (never given more work,
counted, reported) because Python cannot stop a thread. The pool replaces it with a fresh one on demand.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from typing import Any, Callable

from runtime.request_context import current_request_id, in_user_run

log = logging.getLogger("openscore.worker")


class ScoringTimeout(Exception):
    pass


class _Job:
    __slots__ = ("fn", "kwargs", "request_id", "loop", "future", "abandoned", "started", "elapsed")

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any], request_id: str | None,
                 loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]):
        self.fn = fn
        self.kwargs = kwargs
        self.request_id = request_id
        self.loop = loop
        self.future = future
        self.abandoned = False
        self.started = 0.0
        self.elapsed = 0.0


def _deliver(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class RunThreadPool:
    def __init__(self, name: str = "run"):
        self._name = name
        self._idle: list[_RunThread] = []
        self._count = 0
        self.abandoned = 0

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], request_id: str | None,
                   timeout_s: float) -> tuple[Any, float]:
        """Run fn(**kwargs) on a pool thread; returns (result, seconds run() took)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        job = _Job(fn, kwargs, request_id, loop, fut)
        thread = self._idle.pop() if self._idle else self._new_thread()
        thread.jobs.put(job)
        timer = loop.call_later(timeout_s, _deliver, fut, False, ScoringTimeout())
        try:
            result = await fut
        except ScoringTimeout:
            job.abandoned = True
            self.abandoned += 1
            log.error("run() for request %s did not return within %.0f ms; its thread %s is abandoned "
                      "(%d abandoned so far) and will not be reused", request_id, timeout_s * 1000,
                      thread.name, self.abandoned)
            raise
        finally:
            timer.cancel()
        return result, job.elapsed

    def _new_thread(self) -> "_RunThread":
        self._count += 1
        t = _RunThread(f"{self._name}-{self._count}", self)
        t.start()
        return t

    def _return_idle(self, thread: "_RunThread") -> None:
        self._idle.append(thread)  # list.append is atomic under the GIL

    def shutdown(self) -> None:
        for t in self._idle:
            t.jobs.put(None)
        self._idle.clear()


class _RunThread(threading.Thread):
    def __init__(self, name: str, pool: RunThreadPool):
        super().__init__(name=name, daemon=True)
        self.jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pool = pool

    def run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            current_request_id.set(job.request_id)
            in_user_run.set(True)
            job.started = time.perf_counter()
            try:
                value = job.fn(**job.kwargs)
                ok = True
            except BaseException as e:  # SystemExit from sys.exit() in run() must not kill the worker
                value, ok = e, False
            finally:
                in_user_run.set(False)
                job.elapsed = time.perf_counter() - job.started
            if job.abandoned:
                log.warning("abandoned run() for request %s finally returned after %.1f s; the thread exits",
                            job.request_id, time.perf_counter() - job.started)
                return
            job.loop.call_soon_threadsafe(_deliver, job.future, ok, value)
            self._pool._return_idle(self)
