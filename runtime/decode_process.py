"""Large no-code /score and V2 infer bodies decoded in a helper process, so the worker's event loop keeps
answering.

A thread is not enough: `orjson.loads` of an 85 MB JSON tensor and numpy's conversion of its nested lists are
each one C call that holds the GIL for seconds (the Python objects they make, and later free, too), so an
event loop on another thread of the same process stalls for all of it, health checks included. The helper
process parses the JSON, converts it to the model's arrays and sends back only the arrays (a memory copy to
unpickle; a V2 BYTES tensor's strings are still objects to rebuild, in the executor's thread). It is spawned
(not forked: the worker has threads) on the first large body, holds one decode at a time, dies with its worker
(PR_SET_PDEATHSIG) and is replaced if it dies (a body too large for memory).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import numpy as np
import orjson

log = logging.getLogger("openscore.worker")
T = TypeVar("T")


class DecodeFailed(RuntimeError):
    """The helper process died while decoding (killed, or out of memory)."""


class DecodeProcess:
    """One lazily spawned helper process per worker for GIL-holding decodes of large bodies."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in the helper process (`fn` a module-level function; what it raises is raised here).
        Raises DecodeFailed when the process dies."""
        loop = asyncio.get_running_loop()
        try:
            fut = loop.run_in_executor(self._executor(), fn, *args)
        except BrokenProcessPool:  # it died while idle: a fresh one takes this body
            self._discard()
            fut = loop.run_in_executor(self._executor(), fn, *args)
        try:
            return await fut
        except BrokenProcessPool:
            self._discard()
            size = sum(len(a) for a in args if isinstance(a, bytes))
            log.error("the decode process died while decoding a %d-byte request body; it is replaced", size)
            raise DecodeFailed("the decode process died while decoding the request body") from None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_child_init, initargs=(os.getpid(),))
        return self._pool

    def _discard(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        self._discard()


def input_specs(model: Any) -> list[tuple[str, str, tuple]]:
    """A model's inputs as (name, dtype, shape) plain values: what the helper needs of the model."""
    return [(t.name, np.dtype(t.dtype).str, t.shape) for t in model.inputs]


def _child_init(parent_pid: int) -> None:
    """In the helper: die with the worker, and leave Ctrl-C and SIGTERM handling to it (it closes the pool)."""
    from openscore.runtime.parent_death import die_with_parent

    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def nocode_document(body: bytes, names: list[str], usage: str) -> tuple[str, Any]:
    """A no-code body's inputs as sent: ("ok", inputs), or ("error", the 400's message)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return ("error", f"The request body is not valid JSON: {e}")
    if not isinstance(doc, dict):
        return ("error", usage)
    if "data" in doc and (len(doc) == 1 or "data" not in names):
        return ("ok", doc["data"])
    if doc and all(k in names for k in doc):
        return ("ok", doc)
    return ("error", usage)


def decode_nocode(body: bytes, names: list[str], usage: str, specs: list[tuple[str, str, tuple]],
                  batchable: bool) -> tuple:
    """A no-code body -> ("ok", tensors), ("invalid", message) for inputs the model refuses (a model failure
    in its metrics), or ("error", message) for a body that is not the no-code format: both answered 400.

    `specs` are the model inputs' (name, dtype, shape): plain values, so the helper needs no model."""
    from openscore.accelerators.backend import TensorSpec
    from openscore.accelerators.tensors import batch_rows, normalize

    kind, inputs = nocode_document(body, names, usage)
    if kind != "ok":
        return (kind, inputs)
    try:
        tensors = normalize(inputs, [TensorSpec(n, np.dtype(d), s) for n, d, s in specs])
        if batchable:
            batch_rows(tensors)
    except ValueError as e:
        return ("invalid", f"Invalid input: {e}")
    return ("ok", tensors)


def decode_v2(body: bytes, header_length: int | None, specs: list[tuple[str, str, tuple]] | None) -> Any:
    """A V2 infer body -> its InferRequest (raises V2Error). With the model's input `specs`, the datatypes are
    checked here too, so a tensor the model would refuse (a 95 MB BYTES one for an FP32 input) is answered 400
    without its millions of objects being sent back to the worker."""
    from openscore.accelerators.backend import TensorSpec
    from openscore.accelerators.v2_codec import check_input_types, decode_infer_request

    req = decode_infer_request(body, header_length)
    if specs is not None:
        check_input_types(_Inputs([TensorSpec(n, np.dtype(d), s) for n, d, s in specs]), req.inputs)
    return req


class _Inputs:
    """What check_input_types reads of a model."""

    def __init__(self, inputs: list) -> None:
        self.inputs = inputs
