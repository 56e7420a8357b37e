"""Threads that execute synchronous run() calls, one per busy slot, with a timeout that needs no SIGALRM.

A call that outlives its timeout is answered at once; its thread is abandoned (never given more work,
counted, reported) because Python cannot stop a thread. The pool replaces it with a fresh one on demand.

Handoff cost matters: waking the event loop from another thread (self-pipe write, epoll wake-up, GIL
convoy) costs more CPU than a trivial run(). So when run() has recently been fast, the loop thread
waits for the result on a lock for at most SYNC_WAIT_S (releasing the GIL to the run thread at once),
and only falls back to an asyncio future when run() takes longer. The loop is never blocked for more
than SYNC_WAIT_S per call, less than the GIL's own 5 ms switch interval.
"""

from __future__ import annotations

import _thread
import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from openscore.runtime.request_context import current_request_id, in_user_run

log = logging.getLogger("openscore.worker")

SYNC_WAIT_S = 0.001       # longest the loop thread waits synchronously for a run() result
FAST_RUN_S = 0.0004       # run() counts as fast while its moving average stays below this


class ScoringTimeout(Exception):
    pass


class _Job:
    __slots__ = (
        "abandoned",
        "done_lock",
        "elapsed",
        "finished",
        "fn",
        "future",
        "kwargs",
        "loop",
        "mutex",
        "ok",
        "request_id",
        "started",
        "value",
    )

    def __init__(self, fn: Callable[..., Any], kwargs: dict[str, Any], request_id: str | None,
                 loop: asyncio.AbstractEventLoop):
        self.fn = fn
        self.kwargs = kwargs
        self.request_id = request_id
        self.loop = loop
        self.future: asyncio.Future[Any] | None = None   # set only when the caller waits asynchronously
        self.abandoned = False
        self.started = 0.0
        self.elapsed = 0.0
        self.ok = False
        self.value: Any = None
        self.finished = False
        self.done_lock = _thread.allocate_lock()
        self.done_lock.acquire()                          # released by the run thread when finished
        self.mutex = _thread.allocate_lock()              # orders `finished` against `future`


def _deliver(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    """Wake the waiting caller; a user exception travels in the job, only ScoringTimeout is raised."""
    if fut.done():
        return
    if isinstance(value, ScoringTimeout):
        fut.set_exception(value)
    else:
        fut.set_result(None)


class RunThreadPool:
    def __init__(self, name: str = "run"):
        self._name = name
        self._idle: list[_RunThread] = []
        self._count = 0
        self.abandoned = 0
        self._avg_run_s = 0.0

    async def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], request_id: str | None,
                   timeout_s: float) -> tuple[bool, Any, float]:
        """Run fn(**kwargs) on a pool thread: (returned normally?, result or exception, seconds in fn).

        Raises ScoringTimeout when fn has not returned within timeout_s."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, kwargs, request_id, loop)
        thread = self._idle.pop() if self._idle else self._new_thread()
        thread.jobs.put(job)
        if self._avg_run_s < FAST_RUN_S and job.done_lock.acquire(True, min(SYNC_WAIT_S, timeout_s)):
            return self._result(job)
        with job.mutex:
            if not job.finished:
                job.future = loop.create_future()
        if job.future is None:
            return self._result(job)
        timer = loop.call_later(max(0.0, timeout_s - SYNC_WAIT_S), _deliver, job.future, False, ScoringTimeout())
        try:
            await job.future
        except ScoringTimeout:
            job.abandoned = True
            self.abandoned += 1
            log.error("run() for request %s did not return within %.0f ms; its thread %s is abandoned "
                      "(%d abandoned so far) and will not be reused", request_id, timeout_s * 1000,
                      thread.name, self.abandoned)
            raise
        finally:
            timer.cancel()
        return self._result(job)

    def _result(self, job: _Job) -> tuple[bool, Any, float]:
        self._avg_run_s += (job.elapsed - self._avg_run_s) * 0.2
        return job.ok, job.value, job.elapsed

    def _new_thread(self) -> _RunThread:
        self._count += 1
        t = _RunThread(f"{self._name}-{self._count}", self)
        t.start()
        return t

    def _return_idle(self, thread: _RunThread) -> None:
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
                job.value = job.fn(**job.kwargs)
                job.ok = True
            except BaseException as e:  # SystemExit from sys.exit() in run() must not kill the worker
                job.value = e
            finally:
                in_user_run.set(False)
                job.elapsed = time.perf_counter() - job.started
            with job.mutex:
                job.finished = True
                fut = job.future
            if job.abandoned:
                log.warning("abandoned run() for request %s finally returned after %.1f s; the thread exits",
                            job.request_id, job.elapsed)
                return
            if fut is not None:
                job.loop.call_soon_threadsafe(_deliver, fut, job.ok, job.value)
            self._pool._return_idle(self)
            job.done_lock.release()
