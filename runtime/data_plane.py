"""The data plane: one protocol-independent path for every scoring request.

`/score` (an entry script's run(), run_batch, or the no-code model) and every Open Inference Protocol infer go
through `DataPlane`: the bounded wait while init() runs, the concurrency slot, the scoring timeout, the queue-wait
and run-duration metrics, the response headers (request ids, queue wait, x-ms-run-function-failed,
x-ms-run-fn-exec-ms) and model data collection. Transports decode, call it, and encode; errors come back as a
`ScoreResult` with a status and a message each protocol words in its own error body.
"""

from __future__ import annotations

import asyncio
import logging
import os
import types
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from openscore.accelerators import AcceleratorError, InvalidInputError, QueueFullError, QueueTimeoutError
from openscore.accelerators import metrics as model_metrics
from openscore.accelerators.tensors import batch_rows, normalize
from openscore.runtime import metrics
from openscore.runtime.entry_script import InputMode
from openscore.runtime.incoming_request import IncomingRequest
from openscore.runtime.input_decoding import InputError, run_arguments
from openscore.runtime.metric_batch import MetricBatch
from openscore.runtime.model_registry import ModelNotFound, ModelRegistry
from openscore.runtime.response_encoding import JSON_CONTENT_TYPE
from openscore.runtime.run_threads import FAST_RUN_S, RunThreadPool
from openscore.runtime.scoring import EntryScriptRunner, InitState, ScoreResult, message_result
from openscore.runtime.slots import Overloaded, SlotGate

log = logging.getLogger("openscore.worker")

MAX_ID_LENGTH = 100
# Bodies above this are decoded (JSON, tensors, run()'s arguments) on a thread: decoding 85 MB of JSON takes
# seconds, which on the event loop would stall every other request, health checks included. Below it the
# thread handoff would cost more than the decoding.
OFFLOAD_DECODE_BYTES = 256 * 1024


class RequestIdTooLong(ValueError):
    """An id header over MAX_ID_LENGTH characters (answered 431, like azmlinfsrv)."""


@dataclass(slots=True)
class RequestIds:
    """The one request id of a request and the id headers its response carries (spec 1.8).

    `request_id` is x-request-id (sent, or generated): azmlinfsrv's REQUEST_ID, the id its logs and data
    collection use. It is what the access log, print() capture and data collection record."""

    request_id: str
    headers: list[tuple[str, str]]


class _RequestIdSource:
    """Fresh uuid4-formatted ids from one urandom read per 256 ids (a uuid4() per request costs a syscall)."""

    __slots__ = ("_left", "_pool")

    def __init__(self) -> None:
        self._pool = b""
        self._left = 0

    def next(self) -> str:
        if self._left == 0:
            self._pool = os.urandom(16 * 256)
            self._left = 256
        self._left -= 1
        i = self._left * 16
        h = self._pool[i:i + 16].hex()
        # RFC 4122 version 4: version nibble 4, variant bits 10
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class DataPlane:
    """Admission, execution and accounting of scoring requests, with no HTTP in it (tests drive it directly)."""

    def __init__(self, gate: SlotGate, pool: RunThreadPool, init_state: InitState, *, scoring_timeout_ms: int,
                 numpy_json: bool = False, registry: ModelRegistry | None = None, server_version: str = "",
                 collector: Any = None):
        self.gate = gate
        self.init_state = init_state
        self.registry = registry if registry is not None else ModelRegistry()
        # The models' metrics are written with the request metrics: per loop turn, when idle, before /metrics.
        self.metrics = MetricBatch(also=(model_metrics.flush_all,))
        model_metrics.defer_writes()
        self._queue_wait = self.metrics.histogram(metrics.QUEUE_WAIT_SECONDS)
        self._run_seconds = self.metrics.histogram(metrics.RUN_SECONDS)
        self.runner = EntryScriptRunner(pool, scoring_timeout_ms=scoring_timeout_ms, numpy_json=numpy_json,
                                        run_seconds=self._run_seconds)
        self.scoring_timeout_ms = scoring_timeout_ms
        self.server_version = server_version
        self.collector = collector
        self.nocode = False  # /score answered by the registry's one model instead of an entry script's run()
        self._ids = _RequestIdSource()

    @property
    def script(self) -> Any:
        return self.runner.script

    @script.setter
    def script(self, value: Any) -> None:
        self.runner.script = value

    # ------------------------------------------------------------ request ids
    def request_ids(self, headers: Mapping[str, str]) -> RequestIds:
        """The request id and the response's id headers. Raises RequestIdTooLong."""
        get = headers.get
        rid = get("x-request-id")
        ms_rid = get("x-ms-request-id")
        client_rid = get("x-ms-client-request-id")
        for name, v in (("x-request-id", rid), ("x-ms-request-id", ms_rid), ("x-ms-client-request-id", client_rid)):
            if v is not None and len(v) > MAX_ID_LENGTH:
                raise RequestIdTooLong(f"The {name} header is longer than {MAX_ID_LENGTH} characters.")
        if not rid:
            rid = self._ids.next()
        out = [("x-request-id", rid), ("x-ms-request-id", ms_rid or client_rid or rid)]
        if client_rid or ms_rid:
            out.append(("x-ms-client-request-id", client_rid or ms_rid))  # type: ignore[arg-type]
        trace = get("TraceId")
        if trace is not None:
            out.append(("TraceId", trace))
        out.append(("x-ms-server-version", self.server_version))
        return RequestIds(rid, out)

    def response_headers(self, ids: RequestIds, result: ScoreResult) -> list[tuple[str, str]]:
        """Every header of a scoring response: run()'s own, ids, and the data plane's accounting."""
        out = list(ids.headers)
        failed_set = False
        for k, v in result.headers:
            if not failed_set and k.lower() == "x-ms-run-function-failed":
                failed_set = True
            out.append((k, v))
        if not failed_set:
            out.append(("x-ms-run-function-failed", "True" if result.run_failed else "False"))
        if result.run_ms is not None:
            out.append(("x-ms-run-fn-exec-ms", f"{result.run_ms:.3f}"))
        if result.retry_after_s is not None:
            out.append(("Retry-After", str(result.retry_after_s)))
        out.append(("x-openscore-queue-wait-ms", f"{result.queue_wait_ms:.3f}"))
        return out

    def collect(self, request_id: str, method: str, path: str, status: int, latency_ms: float, request_body: bytes,
                request_type: str, response_body: bytes, response_type: str) -> None:
        """Model data collection (--collect-model-data) of one answered request."""
        if self.collector is not None:
            self.collector.record(request_id=request_id, method=method, path=path, status=status,
                                  latency_ms=latency_ms, request_body=request_body, request_type=request_type,
                                  response_body=response_body, response_type=response_type)

    # ------------------------------------------------------------ admission
    async def _wait_init(self) -> ScoreResult | None:
        """Wait (bounded, like a slot) for init() to finish: None, or the 503 to answer."""
        try:
            await self.init_state.wait(self.gate.max_wait_s, self.gate.max_queue)
        except Overloaded as e:
            metrics.REJECTED.labels("initializing").inc()
            return message_result(503, e.message, retry_after_s=e.retry_after_s)
        return None

    async def _acquire(self) -> ScoreResult | float:
        """A concurrency slot: the seconds waited for it, or the 503 to answer."""
        gate = self.gate
        if gate.try_acquire():
            waited = 0.0
        else:
            try:
                waited = await gate.acquire()
            except Overloaded as e:
                metrics.REJECTED.labels("overloaded").inc()
                return message_result(503, e.message, retry_after_s=e.retry_after_s)
        self._queue_wait.observe(waited)
        return waited

    # ------------------------------------------------------------ /score
    async def score(self, req: IncomingRequest, request_id: str) -> ScoreResult:
        """/score: the entry script's run() (or run_batch), or the no-code model."""
        if self.nocode:
            return await self._score_model(req, request_id)
        if not self.init_state.ready:
            refused = await self._wait_init()
            if refused is not None:
                return refused
        script = self.runner.script
        assert script is not None
        if req.method == "OPTIONS" and script.mode is not InputMode.RAW:
            return ScoreResult(200, [("Content-Type", "text/html; charset=utf-8")], b"")
        try:
            if len(req.body) > OFFLOAD_DECODE_BYTES:
                kwargs = await asyncio.to_thread(run_arguments, script, req)
            else:
                kwargs = run_arguments(script, req)
        except InputError as e:
            return message_result(e.status, e.message)
        got = await self._acquire()
        if isinstance(got, ScoreResult):
            return got
        try:
            result = await self.runner.call(kwargs, request_id)
        finally:
            self.gate.release()
        result.queue_wait_ms = got * 1000
        return result

    async def _score_model(self, req: IncomingRequest, request_id: str) -> ScoreResult:
        """No-code /score: `{"data": X}` or `{"<input name>": X, ...}` -> `{"<output name>": [...]}`."""
        if not self.init_state.ready:
            refused = await self._wait_init()
            if refused is not None:
                return refused
        model = self.registry.only()
        assert model is not None
        if req.method == "OPTIONS":
            return ScoreResult(200, [("Content-Type", "text/html; charset=utf-8")], b"")
        names = [t.name for t in model.inputs]
        usage = ('Expected a JSON object {"data": ...} (a list for a one-input model, a list in input order, or an '
                 f'object of input name -> list) or {{"<input name>": list, ...}} (inputs: {", ".join(names)}).')
        if req.method != "POST":
            return message_result(400, usage)
        if len(req.body) > OFFLOAD_DECODE_BYTES:  # the JSON and its lists -> arrays, off the event loop
            inputs = await asyncio.to_thread(_nocode_inputs, req.body, names, usage, model)
        else:
            inputs = _nocode_inputs(req.body, names, usage, None)
        if isinstance(inputs, ScoreResult):
            if isinstance(inputs, _InvalidInput) and model.metrics:
                model.metrics.failure("invalid_input")
            return inputs
        result = await self.infer(model.name, None, inputs, request_id)
        if result.outputs is None:
            return result
        try:
            body = orjson.dumps(result.outputs, option=orjson.OPT_SERIALIZE_NUMPY)
        except orjson.JSONEncodeError:  # e.g. a non-contiguous or object array: the slower, general way
            body = orjson.dumps({k: v.tolist() for k, v in result.outputs.items()})
        result.headers, result.body, result.outputs = [("Content-Type", JSON_CONTENT_TYPE)], body, None
        return result

    # ------------------------------------------------------------ models (V2 infer, no-code /score)
    def model(self, name: str, version: str | None) -> Any:
        """A ready model by name and version. Raises ModelNotFound."""
        return self.registry.get(name, version)

    async def infer(self, name: str, version: str | None, inputs: Any, request_id: str, *,
                    check: Any = None) -> ScoreResult:
        """One inference on a registered model: outputs by name in `result.outputs`, or an error result.

        `check(model, inputs)` validates protocol-level typing once the model is known (raises ValueError)."""
        if not self.init_state.ready:
            refused = await self._wait_init()
            if refused is not None:
                return refused
        try:
            model = self.registry.get(name, version)
        except ModelNotFound as e:
            return message_result(404, e.message)
        if check is not None:
            try:
                check(model, inputs)
            except ValueError as e:
                return message_result(400, str(e))
        got = await self._acquire()
        if isinstance(got, ScoreResult):
            return got
        try:
            result = await self._predict(model, inputs)
        finally:
            self.gate.release()
        result.queue_wait_ms = got * 1000
        return result

    async def _predict(self, model: Any, inputs: Any) -> ScoreResult:
        loop = asyncio.get_running_loop()
        start = loop.time()
        cm = None
        try:
            # A fast model runs inline on this thread: predict_async then finishes at its first step, and no
            # timer can interrupt it anyway. Only a call that suspends is awaited under the scoring timeout (a
            # timer per request costs ~5 CPU-µs).
            coro = model.predict_async(inputs, inline_below_s=FAST_RUN_S)
            try:
                first = coro.send(None)
            except StopIteration as done:
                outputs = done.value
            else:
                cm = asyncio.timeout(self.scoring_timeout_ms / 1000)
                async with cm:
                    outputs = await _resume(coro, first)
        except InvalidInputError as e:
            return message_result(400, f"Invalid input: {e}")
        except (QueueFullError, QueueTimeoutError) as e:
            return message_result(503, str(e), retry_after_s=1)
        except TimeoutError:
            if cm is None or not cm.expired():
                raise
            metrics.SCORING_TIMEOUTS.inc()
            return message_result(500, f"Scoring timeout after {self.scoring_timeout_ms} ms", run_failed=True)
        except AcceleratorError as e:
            log.error("inference failed on model %s: %s", model.name, e)
            return message_result(500, f"inference failed: {e}", run_failed=True)
        elapsed = loop.time() - start
        self._run_seconds.observe(elapsed)
        return ScoreResult(200, [], b"", run_ms=elapsed * 1000, outputs=outputs)


def _nocode_inputs(body: bytes, names: list[str], usage: str, model: Any) -> Any:
    """A no-code /score body's inputs (with `model`: already validated into arrays), or the 400 to answer."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return message_result(400, f"The request body is not valid JSON: {e}")
    if not isinstance(doc, dict):
        return message_result(400, usage)
    if "data" in doc and (len(doc) == 1 or "data" not in names):
        inputs = doc["data"]
    elif doc and all(k in names for k in doc):
        inputs = doc
    else:
        return message_result(400, usage)
    if model is None:
        return inputs
    try:  # what model.prepare() does, less its metrics (written on the loop thread only)
        tensors = normalize(inputs, model.inputs)
        if model.batchable:
            batch_rows(tensors)
        return tensors
    except ValueError as e:
        text = f"Invalid input: {e}"
        return _InvalidInput(400, [("Content-Type", JSON_CONTENT_TYPE)], orjson.dumps({"message": text}), message=text)


class _InvalidInput(ScoreResult):
    """A 400 for inputs the model refused, decoded on a thread: counted in the model's metrics on the loop."""

    __slots__ = ()


@types.coroutine
def _resume(coro: Any, yielded: Any) -> Generator[Any, Any, Any]:
    """Carry on a coroutine already stepped once by hand (what `await` does after its first step): whatever it
    yields goes to the running task, and what the task sends or throws goes back in."""
    try:
        while True:
            try:
                sent = yield yielded
            except BaseException as e:  # cancellation (the timeout) reaches the inner coroutine
                yielded = coro.throw(e)
            else:
                yielded = coro.send(sent)
    except StopIteration as done:
        return done.value
