"""`run_batch(items) -> results` in an entry script: concurrent requests are batched into one call.

Each element of `items` is what run() would receive for one request in the script's input mode: when run()
takes one parameter, that argument itself (the body as str for a plain run(), the request object for
@rawhttp, the decoded value for @input_schema); when run() takes several (request_headers included), the
dict of keyword arguments run() would get. run_batch returns one result per element, in order, and each is
answered to its own request by Azure's rules for run()'s return value; an element that is an Exception
fails only its request. When run_batch raises, the batch is retried one request at a time, so a bad request
fails only itself. run() is still required: its decorators and signature choose the input mode, and it is
what Azure itself calls.

The batcher is `accelerators.DynamicBatcher` (dispatch at once when idle, gather what queued meanwhile, up to
--max-batch-size). Requests still hold a concurrency slot while batched, so batches are at most
--max-concurrent-requests large; the scoring timeout applies to each request as for run().
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

from openscore.accelerators import BatcherOptions, DynamicBatcher, current_device
from openscore.accelerators.metrics import ModelMetrics
from openscore.runtime.entry_script import EntryScript, EntryScriptError
from openscore.runtime.settings import ServerSettings

log = logging.getLogger("openscore.worker")


def with_run_batch(script: EntryScript, settings: ServerSettings) -> EntryScript:
    """The script to score with: unchanged without run_batch, else one whose run() goes through a batcher."""
    fn = getattr(script.module, "run_batch", None)
    if fn is None:
        return script
    if not callable(fn) or inspect.iscoroutinefunction(inspect.unwrap(fn)):
        raise EntryScriptError("run_batch must be a plain (not async) function taking a list of inputs")
    if settings.max_concurrent_requests < 2:
        log.warning("run_batch() is defined but --max-concurrent-requests is 1: every batch will hold one "
                    "request; raise it to at least --max-batch-size (%d)", settings.max_batch_size)
    device = current_device()
    batcher = DynamicBatcher(
        [_worker(fn)], BatcherOptions(settings.max_batch_size, (), settings.max_queue_delay_ms / 1000.0,
                                      max(1, settings.max_concurrent_requests)),
        name="run_batch", metrics=ModelMetrics(script.path.stem, device.name if device else "none"))
    single = len(script.params) == 1 and not script.wants_request_headers
    data_param = script.data_param

    def batched_run(**kwargs: Any) -> Any:
        return batcher.call(kwargs[data_param] if single else kwargs)

    return dataclasses.replace(script, run=batched_run, is_async=False)


def _worker(fn: Callable[[list], Any]) -> Callable[[list], list]:
    def call(items: list) -> list:
        results = fn(items)
        if isinstance(results, (str, bytes, dict)) or not hasattr(results, "__len__"):
            raise TypeError(f"run_batch must return a list with one result per input, got {type(results).__name__}")
        return list(results)
    return call
