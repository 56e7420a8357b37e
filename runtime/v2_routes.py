"""The Open Inference Protocol (KServe V2) over REST for the models in the server's registry: health, server and
model metadata, readiness and infer, JSON and the binary tensor data extension. A thin transport: the wire
format lives in `accelerators.v2_codec`, admission, timeouts, metrics and headers in the data plane; every
error is answered as V2's `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson
from aiohttp import hdrs, web
from aiohttp.web_request import BaseRequest

from openscore import __version__
from openscore.accelerators.v2_codec import (
    HEADER,
    V2Error,
    check_input_types,
    decode_infer_request,
    encode_infer_response,
    error_body,
    model_metadata,
    parse_header_length,
)
from openscore.runtime.data_plane import OFFLOAD_DECODE_BYTES, DataPlane, RequestIds, RequestIdTooLong
from openscore.runtime.model_registry import ModelNotFound
from openscore.runtime.request_context import current_request_id
from openscore.runtime.scoring import ScoreResult, message_result
from openscore.runtime.worker_state import WorkerTable

log = logging.getLogger("openscore.worker")

MODELS_PREFIX = "/v2/models/"
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


class HostApp(Protocol):
    """What these routes use of the worker's HTTP app (runtime.web_server.WorkerHttpApp), which mounts them."""

    plane: DataPlane
    table: WorkerTable
    draining: bool

    def not_ready_reason(self) -> str: ...
    async def read_body(self, request: BaseRequest) -> bytes | web.StreamResponse: ...
    def tracking_request(self) -> AbstractContextManager[None]: ...


class V2Routes:
    """Exact routes for the app's path table, and `resolve()` for the `/v2/models/...` family."""

    def __init__(self, app: HostApp):
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
        if not app.draining and app.plane.init_state.ready and app.table.all_ready():
            return _json(b'{"ready":true}')
        return _json(orjson.dumps({"ready": False, "error": app.not_ready_reason()}), 503)

    async def _not_found(self, request: BaseRequest) -> web.StreamResponse:
        return v2_error(404, f"no Open Inference Protocol route {request.method} {request.path}")

    # ------------------------------------------------------------ models
    def _lookup(self, name: str, version: str | None) -> tuple[Any, web.Response | None]:
        app = self.app
        if not app.plane.init_state.ready:
            return None, v2_error(503, f"model {name!r} is not ready: {app.not_ready_reason()}", 5)
        try:
            return app.plane.model(name, version), None
        except ModelNotFound as e:
            return None, v2_error(404, e.message)

    async def _model_metadata(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        model, err = self._lookup(name, version)
        if model is None:
            return err  # type: ignore[return-value]
        body = self._metadata.get(id(model))
        if body is None:
            doc = model_metadata(model.name, model.inputs, model.outputs,
                                 versions=self.app.plane.registry.versions(model.name))
            body = self._metadata[id(model)] = orjson.dumps(doc)
        return _json(body)

    async def _model_ready(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        model, err = self._lookup(name, version)
        if model is None:
            return err  # type: ignore[return-value]
        return _json(b'{"ready":true}')

    async def _infer(self, request: BaseRequest, *, name: str, version: str | None) -> web.StreamResponse:
        """Decode, infer through the data plane, encode; answered (errors too) with /score's headers."""
        plane = self.app.plane
        try:
            ids = plane.request_ids(request.headers)
        except RequestIdTooLong as e:
            return v2_error(431, str(e))
        request_id = ids.request_id
        current_request_id.set(request_id)
        if plane.init_state.ready:  # an unknown model is a 404 whatever the body (during init() the plane waits)
            try:
                plane.model(name, version)
            except ModelNotFound as e:
                return self._answer(ids, message_result(404, e.message), request, b"")
        got = await self.app.read_body(request)
        if isinstance(got, web.StreamResponse):
            got.headers.extend(ids.headers)
            return got
        try:
            header_length = parse_header_length(request.headers.get(HEADER), len(got))
            if len(got) > OFFLOAD_DECODE_BYTES:  # seconds for a 95 MB tensor: health checks keep answering
                req = await asyncio.to_thread(decode_infer_request, got, header_length)
            else:
                req = decode_infer_request(got, header_length)
        except V2Error as e:
            return self._answer(ids, message_result(400, str(e)), request, got)
        with self.app.tracking_request():
            result = await plane.infer(name, version, req.inputs, request_id, check=check_input_types)
        if result.outputs is not None:
            try:
                enc = encode_infer_response(name, result.outputs, model_version=version, request_id=req.id,
                                            requested=req.outputs, binary_default=req.binary_output_default)
            except V2Error as e:
                result = message_result(400, str(e))
            else:
                result.body, result.headers = enc.body, [(hdrs.CONTENT_TYPE, enc.content_type)]
                if enc.header_length is not None:
                    result.headers.append((HEADER, str(enc.header_length)))
                result.outputs = None
        return self._answer(ids, result, request, got)

    def _answer(self, ids: RequestIds, result: ScoreResult, request: BaseRequest, body: bytes) -> web.Response:
        plane = self.app.plane
        if result.message is not None:  # an error: V2 words it as {"error": ...}
            result.body, result.headers = error_body(result.message), [(hdrs.CONTENT_TYPE, "application/json")]
        resp = web.Response(status=result.status, body=result.body, headers=plane.response_headers(ids, result))
        if plane.collector is not None:
            plane.collect(ids.request_id, request.method, request.path_qs, result.status, result.run_ms or 0.0, body,
                          request.headers.get(hdrs.CONTENT_TYPE, ""), result.body, resp.headers[hdrs.CONTENT_TYPE])
        return resp
