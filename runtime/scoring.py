"""Calling an entry script's run() within the scoring timeout, init() state, and scoring results.

Every failure becomes the status and `{"message": ...}` body that azmlinfsrv gives (spec 1.4-1.8), plus
503 for overload, which azmlinfsrv lacks. Admission (init wait, slots) is in `data_plane`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson

from openscore.runtime import metrics
from openscore.runtime.entry_script import EntryScript
from openscore.runtime.repeated_errors import run_errors
from openscore.runtime.request_context import in_user_run
from openscore.runtime.response_encoding import JSON_CONTENT_TYPE, UnserializableResult, encode_result
from openscore.runtime.run_threads import RunThreadPool, ScoringTimeout
from openscore.runtime.slots import Overloaded

log = logging.getLogger("openscore.worker")

RUN_FAILED_MESSAGE = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR_MESSAGE = "An unexpected internal error occurred. Check the logs for more info."


@dataclass(slots=True)
class ScoreResult:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    run_ms: float | None = None          # set only when run() returned normally (x-ms-run-fn-exec-ms)
    queue_wait_ms: float = 0.0
    run_failed: bool = False
    retry_after_s: int | None = None
    message: str | None = None           # an error's text, for protocols that word errors their own way
    outputs: dict[str, Any] | None = None  # a model inference's outputs by name (encoded by the transport)


def message_result(status: int, message: str, *, run_failed: bool = False,
                   retry_after_s: int | None = None) -> ScoreResult:
    return ScoreResult(status, [("Content-Type", JSON_CONTENT_TYPE)], orjson.dumps({"message": message}),
                       run_failed=run_failed, retry_after_s=retry_after_s, message=message)


class InitState:
    """Whether init() has finished in this worker; requests wait for it, boundedly."""

    def __init__(self) -> None:
        self._done = asyncio.Event()
        self.failed: str | None = None
        self.waiting = 0

    @property
    def ready(self) -> bool:
        return self._done.is_set() and self.failed is None

    def finish(self, failure: str | None = None) -> None:
        self.failed = failure
        self._done.set()

    async def wait(self, timeout_s: float, max_waiting: int) -> None:
        if self._done.is_set():
            if self.failed:
                raise Overloaded(f"init() failed: {self.failed}", retry_after_s=5)
            return
        if self.waiting >= max_waiting:
            raise Overloaded("The service is initializing (init() has not finished) and the wait queue is full")
        self.waiting += 1
        try:
            async with asyncio.timeout(timeout_s):
                await self._done.wait()
        except TimeoutError:
            raise Overloaded("The service is initializing: init() has not finished", retry_after_s=5) from None
        finally:
            self.waiting -= 1
        if self.failed:
            raise Overloaded(f"init() failed: {self.failed}", retry_after_s=5)


class EntryScriptRunner:
    """Calls the entry script's run() (threaded or async) within the scoring timeout and encodes its result.
    Admission (init wait, slots) is the data plane's."""

    def __init__(self, pool: RunThreadPool, *, scoring_timeout_ms: int, numpy_json: bool = False,
                 run_seconds: Any = None):
        self.script: EntryScript | None = None  # set once init() has succeeded
        self._run_seconds = run_seconds if run_seconds is not None else metrics.RUN_SECONDS
        self.pool = pool
        self.scoring_timeout_ms = scoring_timeout_ms
        self.numpy_json = numpy_json

    async def call(self, kwargs: dict, request_id: str) -> ScoreResult:
        timeout_s = self.scoring_timeout_ms / 1000
        assert self.script is not None
        try:
            if self.script.is_async:
                ok, value, elapsed = await self._call_async(kwargs, timeout_s)
            else:
                ok, value, elapsed = await self.pool.call(self.script.run, kwargs, request_id, timeout_s)
        except ScoringTimeout:
            metrics.SCORING_TIMEOUTS.inc()
            if not self.script.is_async:
                metrics.ABANDONED_THREADS.inc()
            return message_result(500, f"Scoring timeout after {self.scoring_timeout_ms} ms", run_failed=True)
        self._run_seconds.observe(elapsed)
        if not ok:
            if isinstance(value, BaseException):
                run_errors.error(log, value, "run() raised %s for request %s", type(value).__name__, request_id)
            else:
                log.error("run() failed for request %s: %r", request_id, value)
            return message_result(500, RUN_FAILED_MESSAGE, run_failed=True)
        try:
            enc = encode_result(value, self.numpy_json)
        except UnserializableResult as e:
            log.error("%s (request %s)", e, request_id)
            return message_result(500, INTERNAL_ERROR_MESSAGE)
        except Exception as e:  # a Response subclass whose body cannot be produced
            log.error("the response returned by run() could not be sent (request %s)", request_id, exc_info=e)
            return message_result(500, INTERNAL_ERROR_MESSAGE)
        return ScoreResult(enc.status, enc.headers, enc.body, run_ms=elapsed * 1000, run_failed=enc.status >= 500)

    async def _call_async(self, kwargs: dict, timeout_s: float) -> tuple[bool, object, float]:
        assert self.script is not None
        token = in_user_run.set(True)
        start = time.perf_counter()
        cm = asyncio.timeout(timeout_s)
        try:
            async with cm:
                value = await self.script.run(**kwargs)
            ok = True
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            if isinstance(e, TimeoutError) and cm.expired():
                raise ScoringTimeout() from None
            value, ok = e, False
        finally:
            in_user_run.reset(token)
        return ok, value, time.perf_counter() - start
