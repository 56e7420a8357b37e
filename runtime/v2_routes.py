"""The Open Inference Protocol (KServe V2) over REST, for the model an entry script publishes as `v2_model`
(the no-code `--model` script does): health, server and model metadata, readiness and infer, JSON and the
binary tensor data extension. The wire format lives in `accelerators.v2_codec`; this module maps it onto the
worker's slots, readiness and scoring timeout, and answers every error as V2's `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import hdrs, web
from aiohttp.web_request import BaseRequest

from openscore import __version__
from openscore.accelerators import AcceleratorError, InvalidInputError, Model, QueueFullError, QueueTimeoutError
from openscore.accelerators.v2_codec import (
    HEADER,
    V2Error,
    decode_infer_request,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_header_length,
)
from openscore.runtime import metrics
from openscore.runtime.request_context import current_request_id
from openscore.runtime.run_threads import FAST_RUN_S  # a model this fast runs on the loop thread: no handoff
from openscore.runtime.slots import Overloaded

if TYPE_CHECKING:
    from openscore.runtime.web_server import WorkerHttpApp

log = logging.getLogger("openscore.worker")

MODELS_PREFIX = "/v2/models/"
MODEL_VERSION = "1"
SERVER_METADATA = orjson.dumps({"name": "openscore", "version": __version__, "extensions": ["binary_tensor_data"]})
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})
Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]
Route = tuple[frozenset[str], Handler, str]


def v2_error(status: int, message: str, retry_after_s: int | None = None) -> web.Response:
    resp = web.Response(status=status, body=error_body(message), content_type="application/json")
    if retry_after_s is not None:
        resp.headers[hdrs.RETRY_AFTER] = str(retry_after_s)
    return resp


def _json(body: bytes, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json")


class V2Routes:
    """Exact routes for the app's path table, and `resolve()` for the `/v2/models/...` family."""

    def __init__(self, app: WorkerHttpApp):
        self.app = app
        self._metadata: dict[int, bytes] = {}  # id(model) -> encoded metadata document

    def routes(self) -> dict[str, Route]:
        return {"/v2": (_GET, self._server_metadata, "v2_server"),
                "/v2/health/live": (_GET, self._live, "v2_health"),
                "/v2/health/ready": (_GET, self._ready, "v2_health")}

    def resolve(self, path: str) -> Route | None:
        """`/v2/models/{m}[/versions/{v}][/ready|/infer]`; any other path under /v2 is a V2 404."""
        if not path.startswith(MODELS_PREFIX):
            return (_GET | _POST, self._not_found, "other")
        parts = path[len(MODELS_PREFIX):].split("/")
        name, version = parts[0], None
        if len(parts) >= 3 and parts[1] == "versions":
            version, parts = parts[2], [name] + parts[3:]
        if not name or len(parts) > 2:
            return (_GET | _POST, self._not_found, "other")
        action = parts[1] if len(parts) == 2 else ""
        if action == "":
            return (_GET, functools.partial(self._model_metadata, name=name, version=version), "v2_model")
        if action == "ready":
            return (_GET, functools.partial(self._model_ready, name=name, version=version), "v2_model")
        if action == "infer":
            return (_POST, functools.partial(self._infer, name=name, version=version), "v2_infer")
        return (_GET | _POST, self._not_found, "other")

    # ------------------------------------------------------------ server
    async def _server_metadata(self, request: BaseRequest) -> web.StreamResponse:
        return _json(SERVER_METADATA)

    async def _live(self, request: BaseRequest) -> web.StreamResponse:
        return _json(b'{"live":true}')

    async def _ready(self, request: BaseRequest) -> web.StreamResponse:
        app = self.app
        if not app.draining and app.scorer.init_state.ready and app.table.all_ready():
            return _json(b'{"ready":true}')
        return _json(orjson.dumps({"ready": False, "error": app.not_ready_reason()}), 503)

    async def _not_found(self, request: BaseRequest) -> web.StreamResponse:
        return v2_error(404, f"no Open Inference Protocol route {request.method} {request.path}")

    # ------------------------------------------------------------ models
    def _lookup(self, name: str, version: str | None) -> tuple[Model | None, web.Response | None]:
        app = self.app
        if not app.scorer.init_state.ready or app.scorer.script is None:
            return None, v2_error(503, f"model {name!r} is not ready: {app.not_ready_reason()}", 5)
        model = getattr(app.scorer.script.module, "v2_model", None)
        if not isinstance(model, Model):
            return None, v2_error(404, f"model {name!r} not found: this server serves an entry script; serve a "
                                       "model with --model for the Open Inference Protocol")
        if name != model.name:
            return None, v2_error(404, f"model {name!r} not found; this server serves {model.name!r}")
        if version is not None and version != MODEL_VERSION:
            return None, v2_error(404, f"model {name!r} has no version {version!r}; versions: {MODEL_VERSION}")
        return model, None

    async def _model_metadata(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        model, err = self._lookup(name, version)
        if model is None:
            return err  # type: ignore[return-value]
        body = self._metadata.get(id(model))
        if body is None:
            doc = model_metadata(model.name, model.inputs, model.outputs, versions=[MODEL_VERSION])
            body = self._metadata[id(model)] = orjson.dumps(doc)
        return _json(body)

    async def _model_ready(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        model, err = self._lookup(name, version)
        if model is None:
            return err  # type: ignore[return-value]
        return _json(b'{"ready":true}')

    async def _infer(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        """Infer, answered (errors too) with the same request-id headers as /score (spec 1.8)."""
        ids, rid, too_long = self.app.request_ids(request)
        if ids is None:
            return v2_error(431, too_long or "request id too long")
        current_request_id.set(rid)
        resp = await self._infer_once(request, name, version)
        resp.headers.extend(ids)
        return resp

    async def _infer_once(self, request: BaseRequest, name: str, version: str | None) -> web.StreamResponse:
        model, err = self._lookup(name, version)
        if model is None:
            return err  # type: ignore[return-value]
        got = await self.app.read_body(request)
        if isinstance(got, web.StreamResponse):
            return got
        try:
            req = decode_infer_request(got, parse_header_length(request.headers.get(HEADER), len(got)))
        except V2Error as e:
            return v2_error(400, str(e))
        with self.app.tracking_request():
            try:
                outputs = await self._predict(model, req.inputs)
            except _Answer as a:
                return a.response
        try:
            enc = encode_infer_response(model.name, outputs, model_version=version, request_id=req.id,
                                        requested=req.outputs, binary_default=req.binary_output_default)
        except V2Error as e:
            return v2_error(400, str(e))
        resp = web.Response(body=enc.body, content_type=enc.content_type)
        if enc.header_length is not None:
            resp.headers[HEADER] = str(enc.header_length)
        return resp

    async def _predict(self, model: Model, inputs: dict[str, Any]) -> dict[str, Any]:
        """One request through a concurrency slot and the model's batcher, within the scoring timeout."""
        scorer = self.app.scorer
        try:
            await scorer.gate.acquire()
        except Overloaded as e:
            metrics.REJECTED.labels("overloaded").inc()
            raise _Answer(v2_error(503, e.message, e.retry_after_s)) from None
        cm = asyncio.timeout(scorer.scoring_timeout_ms / 1000)
        try:
            async with cm:
                return await model.predict_async(inputs, inline_below_s=FAST_RUN_S)
        except InvalidInputError as e:
            raise _Answer(v2_error(400, str(e))) from None
        except (QueueFullError, QueueTimeoutError) as e:
            raise _Answer(v2_error(503, str(e), 1)) from None
        except TimeoutError:
            if not cm.expired():
                raise
            metrics.SCORING_TIMEOUTS.inc()
            raise _Answer(v2_error(500, f"Scoring timeout after {scorer.scoring_timeout_ms} ms")) from None
        except AcceleratorError as e:
            log.error("inference failed on model %s: %s", model.name, e)
            raise _Answer(v2_error(500, f"inference failed: {e}")) from None
        finally:
            scorer.gate.release()


class _Answer(Exception):
    """Carries a ready error response out of the slot-holding block."""

    def __init__(self, response: web.Response):
        self.response = response
