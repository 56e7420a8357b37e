"""A dynamic batcher with Triton's semantics, usable from threads and from asyncio.

An idle instance dispatches at once (no added delay); requests that queued while every instance was busy are
gathered into the next call, up to `max_batch_size` rows, cut to a preferred size when one can be formed,
optionally waiting `max_queue_delay_s` for more. Only requests with the same key (e.g. the non-batch
dimensions of every input) share a call. The queue is bounded; a request that waits past its timeout fails
alone; a failing batch is retried request by request so one bad request fails only itself.

Each instance is a callable `worker(payloads) -> results` with its own dispatcher thread; callers wait on
a concurrent.futures.Future (threads) or its asyncio wrapper (coroutines). When the queue is empty and an
instance is idle, a calling thread runs its request itself (no handoff: two thread switches saved, which is
most of the latency of a small model); so can a coroutine that opts in with `inline_below_s` while the
model's calls average less than that, so the event loop is never blocked for long.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import AcceleratorError, BatcherClosedError, ExecutionError, QueueFullError, QueueTimeoutError
from .metrics import ModelMetrics
from .os_threads import name_this_thread

Worker = Callable[[list], list]
REGROUP_FRACTION = 0.25  # the regrouping wait is at most this share of an instance's average call time
REGROUP_BACKOFF = (16, 256)  # regrouping chances skipped after a wait timed out: at first, and at most


@dataclass(frozen=True)
class BatcherOptions:
    max_batch_size: int = 32  # rows per device call; 1 disables batching
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_s: float = 0.0  # extra wait for a fuller batch; 0 = Triton's default (none)
    max_queue_size: int = 1024  # waiting requests; beyond it submit raises QueueFullError
    queue_timeout_s: float | None = None  # per request, time in queue (not compute)
    # Regrouping (not in Triton): after an instance answered a batch of n >= 2 requests while fewer than n queued
    # during that call, it waits for up to n new requests before its next call, at most REGROUP_FRACTION (a
    # quarter) of its average call time and at most this long; 0 turns it off. Without it, callers that send
    # their next request as soon as the answer arrives (a closed loop: a fixed pool of threads, synchronous
    # clients, most load generators) split into two groups that alternate forever, each call taking the group
    # that queued during the previous one: 16 threads give batches of ~8, and on a memory-bound model (wide
    # layers on a CPU) much less throughput. A lone request is never delayed (n = 1 waits for nothing, an idle
    # instance still dispatches at once), and neither is a queue that already holds n (steady open-loop load,
    # more callers than a batch). When the callers answer slower than the bound (their echo travels over HTTP
    # through the event loop, say), waiting would only idle the device while alternating groups keep it busy:
    # a wait that times out turns regrouping off for the next REGROUP_BACKOFF batches (16, doubling to 256),
    # after which it is tried again.
    max_regroup_delay_s: float = 0.005

    def __post_init__(self):
        if self.max_batch_size < 1 or self.max_queue_size < 1:
            raise ValueError("max_batch_size and max_queue_size must be >= 1")
        if any(p < 1 or p > self.max_batch_size for p in self.preferred_batch_sizes):
            raise ValueError(f"preferred_batch_sizes {self.preferred_batch_sizes} must lie in "
                             f"1..max_batch_size ({self.max_batch_size})")
        if self.max_regroup_delay_s < 0:
            raise ValueError("max_regroup_delay_s must be >= 0")
        if self.max_queue_delay_s < 0 or (self.queue_timeout_s is not None and self.queue_timeout_s <= 0):
            raise ValueError("max_queue_delay_s must be >= 0 and queue_timeout_s > 0")


class _Answer:
    """The outcome of a request run on its caller's thread: what a Future gives, without its lock and
    condition (nobody else waits for it)."""

    __slots__ = ("error", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None

    def set_result(self, value: Any) -> None:
        self.value = value

    def set_exception(self, error: BaseException) -> None:
        self.error = error

    def result(self) -> Any:
        if self.error is not None:
            try:
                raise self.error
            finally:
                self = None  # type: ignore[assignment]  # no cycle through the traceback (as Future.result)
        return self.value


class _Item:
    __slots__ = ("deadline", "enqueued", "future", "key", "payload", "size")

    def __init__(self, payload, size, key, deadline, future: Any = None):
        self.payload, self.size, self.key, self.deadline = payload, size, key, deadline
        self.future: cf.Future = future if future is not None else cf.Future()
        self.enqueued = time.monotonic()


class DynamicBatcher:
    """Queue + one dispatcher thread per worker. `size(payload)` gives its rows, `key(payload)` its
    compatibility class (only equal keys are batched together)."""

    def __init__(self, workers: Sequence[Worker], options: BatcherOptions = BatcherOptions(), *,
                 size: Callable[[Any], int] = lambda p: 1, key: Callable[[Any], Hashable] = lambda p: None,
                 name: str = "model", metrics: ModelMetrics | None = None, isolate_failures: bool = True):
        if not workers:
            raise ValueError("DynamicBatcher needs at least one worker")
        self.options, self.name, self.metrics = options, name, metrics
        self._size, self._key, self._isolate = size, key, isolate_failures
        self._queue: deque[_Item] = deque()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # notified on close and for waiters of a fuller batch
        self._closed = False
        self._workers = list(workers)
        self._busy = [False] * len(self._workers)  # by a dispatcher or by a caller running inline
        self._wake = [threading.Condition(self._lock) for _ in self._workers]  # per-instance dispatcher wake-up
        self._inline_ok = options.max_queue_delay_s == 0  # a delay means: wait for a fuller batch, never inline
        self._avg_exec_s: float | None = None  # moving average of one worker call
        self._arrivals = 0  # requests ever queued (regrouping counts the ones since a batch was answered)
        self._regroup_skip = self._regroup_backoff = 0  # batches left without regrouping; the current backoff
        self._threads = [threading.Thread(target=self._loop, args=(i,), name=f"openscore-batcher-{name}-{i}",
                                          daemon=True) for i in range(len(self._workers))]
        for t in self._threads:
            t.start()

    # ------------------------------------------------------------ callers
    def submit(self, payload, timeout: float | None = None) -> cf.Future:
        """Queue one request; the future resolves with its result or its own error."""
        return self._enqueue(payload, timeout).future

    def call(self, payload, timeout: float | None = None):
        """Submit and wait (from any thread). `timeout` overrides queue_timeout_s for this request.
        Runs on the calling thread when nothing is queued and an instance is idle."""
        done = self._try_inline(payload)
        if done is not None:
            return done.result()
        item = self._enqueue(payload, timeout)
        if item.deadline is None:
            return item.future.result()
        try:
            return item.future.result(timeout=max(0.0, item.deadline - time.monotonic()))
        except cf.TimeoutError:
            if self._cancel(item):
                raise self._timeout_error(item) from None
            return item.future.result()  # already running: compute time is not queue time

    async def call_async(self, payload, timeout: float | None = None, *, inline_below_s: float = 0.0):
        """Submit and await (from a coroutine); cancelling the caller withdraws a still-queued request.
        With `inline_below_s`, a model whose calls average less runs on the loop thread when an instance
        is idle (for tiny models the thread handoff costs more than the call)."""
        avg = self._avg_exec_s
        if inline_below_s > 0 and avg is not None and avg < inline_below_s:
            done = self._try_inline(payload)
            if done is not None:
                return done.result()
        item = self._enqueue(payload, timeout)
        fut = asyncio.wrap_future(item.future)
        try:
            if item.deadline is not None:
                finished, _ = await asyncio.wait({fut}, timeout=max(0.0, item.deadline - time.monotonic()))
                if not finished and self._cancel(item):
                    raise self._timeout_error(item)
            return await fut
        except asyncio.CancelledError:
            self._cancel(item)
            raise

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Stop accepting requests; finish queued ones (drain) or fail them with BatcherClosedError.
        Batches already on a device always finish."""
        with self._lock:
            self._closed = True
            dropped = [] if drain else list(self._queue)
            if not drain:
                self._queue.clear()
            self._cond.notify_all()
            for wake in self._wake:
                wake.notify_all()
        for item in dropped:
            self._fail(item, BatcherClosedError(f"model {self.name} shut down before this request ran"),
                       "shutdown", queued=True)
        for t in self._threads:
            t.join(timeout)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------ queue
    def _try_inline(self, payload) -> _Answer | None:
        """Run `payload` on this thread if nothing is queued and an instance is idle; its outcome."""
        if not self._inline_ok:
            return None
        with self._lock:
            if self._closed or self._queue:
                return None
            try:
                i = self._busy.index(False)
            except ValueError:
                return None
            self._busy[i] = True
        try:
            answer = _Answer()
            item = _Item(payload, self._size(payload), None, None, answer)
            self._execute(self._workers[i], [item], (0.0,))
        finally:
            with self._lock:
                self._busy[i] = False
                if self._queue:  # queued while we ran: this instance's dispatcher takes them
                    self._wake[i].notify()
        return answer

    def _enqueue(self, payload, timeout: float | None) -> _Item:
        timeout = self.options.queue_timeout_s if timeout is None else timeout
        size = self._size(payload)
        item = _Item(payload, size, self._key(payload), None if timeout is None else time.monotonic() + timeout)
        with self._cond:
            if self._closed:
                self._count_failure("shutdown")
                raise BatcherClosedError(f"model {self.name} is shutting down")
            if len(self._queue) >= self.options.max_queue_size:
                self._count_failure("queue_full")
                raise QueueFullError(f"model {self.name}: queue full ({self.options.max_queue_size} requests "
                                     f"waiting); retry later")
            self._queue.append(item)
            self._arrivals += 1
            if self.metrics:
                self.metrics.queued(1)
            for i, busy in enumerate(self._busy):
                if not busy:
                    self._wake[i].notify()
                    break
            self._cond.notify_all()  # dispatchers waiting for a fuller batch or regrouping
        return item

    def _cancel(self, item: _Item) -> bool:
        """Withdraw a queued request; False when a dispatcher already took it."""
        with self._lock:
            if not item.future.cancel():
                return False
            try:
                self._queue.remove(item)
                if self.metrics:
                    self.metrics.queued(-1)
            except ValueError:
                pass
        self._count_failure("queue_timeout")
        return True

    def _timeout_error(self, item: _Item) -> QueueTimeoutError:
        waited = time.monotonic() - item.enqueued
        return QueueTimeoutError(f"model {self.name}: request waited {waited:.3f}s in the queue and timed out "
                                 f"(queue_timeout); the server is overloaded")

    def _take(self, i: int) -> list[_Item] | None:
        """Under the lock, for idle instance `i`: the next batch, or None when closed and empty."""
        opts = self.options
        while True:
            while not self._queue or self._busy[i]:
                if self._closed and not self._queue:
                    return None
                self._wake[i].wait()
            head = self._queue[0]
            chosen: list[_Item] = []
            total = 0
            for it in self._queue:
                if it.key != head.key:
                    continue
                if chosen and total + it.size > opts.max_batch_size:
                    break
                chosen.append(it)
                total += it.size
            full = total >= opts.max_batch_size or total in opts.preferred_batch_sizes
            wait = head.enqueued + opts.max_queue_delay_s - time.monotonic()
            if full or wait <= 0 or self._closed:
                break
            self._cond.wait(wait)
        if opts.preferred_batch_sizes and total not in opts.preferred_batch_sizes:
            sums = list(itertools.accumulate(it.size for it in chosen))
            cut = [i for i, s in enumerate(sums) if s in opts.preferred_batch_sizes]
            if cut:
                chosen = chosen[:cut[-1] + 1]
        ids = {id(it) for it in chosen}
        self._queue = deque(it for it in self._queue if id(it) not in ids)
        if self.metrics:
            self.metrics.queued(-len(chosen))
        self._busy[i] = True
        return chosen

    # ------------------------------------------------------------ dispatch
    def _loop(self, i: int) -> None:
        name_this_thread(f"osc-batch{i}-{self.name}")  # what `top -H` shows, and what pinning tools look for
        worker = self._workers[i]
        while True:
            with self._lock:
                batch = self._take(i)
            if batch is None:
                return
            mark = None
            try:
                mark = self._dispatch(worker, batch)
            finally:
                with self._lock:
                    if mark is not None:
                        self._regroup(len(batch), mark)
                    self._busy[i] = False

    def _regroup(self, answered: int, mark: tuple[int, int]) -> None:
        """Under the lock, the instance still marked busy: unless the queue already held as many requests as it
        just answered when its batch left the device, wait (bounded) until that many arrived since; `mark` is
        (arrival count, queue length) at that moment. See BatcherOptions."""
        opts, avg = self.options, self._avg_exec_s
        if answered < 2 or opts.max_batch_size < 2 or opts.max_regroup_delay_s <= 0 or avg is None:
            return
        arrivals, queued = mark
        want = min(answered, opts.max_batch_size)
        if queued >= want:
            return
        if self._regroup_skip > 0:
            self._regroup_skip -= 1
            return
        deadline = time.monotonic() + min(opts.max_regroup_delay_s, REGROUP_FRACTION * avg)
        while not self._closed and self._arrivals - arrivals < want and len(self._queue) < opts.max_batch_size:
            left = deadline - time.monotonic()
            if left <= 0:  # the callers answer slower than that (over HTTP, say): waiting only idles the device
                first, most = REGROUP_BACKOFF
                self._regroup_backoff = self._regroup_skip = min(most, max(first, 2 * self._regroup_backoff))
                return
            self._cond.wait(left)
        self._regroup_backoff = 0

    def _dispatch(self, worker: Worker, batch: list[_Item]) -> tuple[int, int] | None:
        """Run a taken batch; (arrival count, queue length) when it left the device (None when nothing ran)."""
        now, ready, waits = time.monotonic(), [], []
        for it in batch:
            if not it.future.set_running_or_notify_cancel():
                continue  # withdrawn by its caller
            if it.deadline is not None and now > it.deadline:
                self._fail(it, self._timeout_error(it), "queue_timeout")
                continue
            ready.append(it)
            waits.append(now - it.enqueued)
        if ready:
            return self._execute(worker, ready, waits)
        return None

    def _execute(self, worker: Worker, batch: list[_Item], waits: Sequence[float]) -> tuple[int, int]:
        """Run `batch` (its requests waited `waits` in the queue) and answer its callers."""
        t0 = time.perf_counter()
        try:
            results = worker([it.payload for it in batch])
            mark = self._arrivals, len(self._queue)  # before the answers wake their callers
            if len(results) != len(batch):
                raise ExecutionError(f"model {self.name}: worker returned {len(results)} results for "
                                     f"{len(batch)} requests")
        except Exception as e:
            if len(batch) > 1 and self._isolate:
                for it, waited in zip(batch, waits):  # find the culprit: each request alone
                    mark = self._execute(worker, [it], (waited,))
                return mark
            if self.metrics:
                self.metrics.batch_failed(waits)
            for it in batch:
                self._fail(it, e, "invalid_input" if isinstance(e, ValueError) else "execution")
            return self._arrivals, len(self._queue)
        elapsed = time.perf_counter() - t0
        avg = self._avg_exec_s
        self._avg_exec_s = elapsed if avg is None else avg + (elapsed - avg) * 0.2
        ok = rows = 0
        for it, res in zip(batch, results):
            if not isinstance(res, BaseException):
                ok, rows = ok + 1, rows + it.size
        if self.metrics:  # once per batch, not per request
            self.metrics.batch_done(waits, elapsed, sum(it.size for it in batch), ok, rows)
        for it, res in zip(batch, results):  # after the metrics: an answered request is always counted
            if isinstance(res, BaseException):
                self._fail(it, res, "invalid_input" if isinstance(res, ValueError) else "execution")
            else:
                it.future.set_result(res)
        return mark

    def _fail(self, item: _Item, exc: BaseException, reason: str, queued: bool = False) -> None:
        if queued:
            if self.metrics:
                self.metrics.queued(-1)
            if not item.future.set_running_or_notify_cancel():
                return
        self._count_failure(reason)  # before the caller wakes, as for successes
        item.future.set_exception(exc)

    def _count_failure(self, reason: str) -> None:
        if self.metrics:
            self.metrics.failure(reason)


__all__ = ["AcceleratorError", "BatcherOptions", "DynamicBatcher"]
