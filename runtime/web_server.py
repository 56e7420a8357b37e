"""HTTP transport of a worker: aiohttp's low-level server, a path table, headers, limits and logs.

Kept thin: admission, execution and accounting of scoring requests are in `DataPlane`. The low-level server
(no router, no middlewares) is used because per-request CPU is the product's main cost figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server
from multidict import CIMultiDict

from openscore.http_server import Handler, make_server
from openscore.runtime import content_encoding, metrics
from openscore.runtime.data_plane import DataPlane, RequestIdTooLong
from openscore.runtime.device_routes import DevicesRoute
from openscore.runtime.incoming_request import IncomingRequest
from openscore.runtime.logs import AccessLog
from openscore.runtime.replica_secret import REFUSED_MESSAGE, ReplicaSecret
from openscore.runtime.request_context import current_request_id
from openscore.runtime.settings import ServerSettings
from openscore.runtime.swagger import SwaggerDocuments, SwaggerGenerationError, SwaggerVersionError
from openscore.runtime.v2_routes import V2Routes
from openscore.runtime.worker_state import WorkerTable

log = logging.getLogger("openscore.worker")

NOT_FOUND = ("The requested URL was not found on the server. If you entered the URL manually please check "
             "your spelling and try again.")
NOT_ALLOWED = "The method is not allowed for the requested URL."
JSON = "application/json"


def _json_response(status: int, message: str, headers: CIMultiDict[str] | None = None) -> web.Response:
    h = headers if headers is not None else CIMultiDict()
    h[hdrs.CONTENT_TYPE] = JSON
    return web.Response(status=status, body=orjson.dumps({"message": message}), headers=h)


class WorkerHttpApp:
    """Routes one worker's requests. `draining` makes every response close its connection."""

    def __init__(self, settings: ServerSettings, plane: DataPlane, table: WorkerTable, index: int,
                 swagger: SwaggerDocuments | None):
        self.settings = settings
        self.plane = plane
        self.table = table
        self.index = index
        self.swagger = swagger
        self.draining = False
        self.in_flight = 0
        self._handling = 0  # requests of any route inside handle()
        # With several workers a scrape may be answered by another one, which cannot flush this worker's batched
        # metrics: so they are written whenever this worker falls idle. One worker flushes before its own
        # /metrics answer, and otherwise on the batch's timer (flushing when idle wrote once per request).
        self._flush_when_idle = table.workers > 1
        self._request_count: dict[tuple[str, int], Any] = {}
        self._request_seconds: dict[str, Any] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        # path -> (allowed methods, handler, metrics route label, azure blueprint route?)
        self._routes: dict[str, tuple[frozenset[str], Handler, str]] = {
            "/": (frozenset({"GET", "HEAD", "OPTIONS"}), self._azure_health, "health"),
            "/score": (frozenset({"GET", "HEAD", "POST", "OPTIONS"}), self._score, "score"),
            "/swagger.json": (frozenset({"GET", "HEAD", "OPTIONS"}), self._swagger, "swagger"),
            "/healthz": (frozenset({"GET", "HEAD"}), self._healthz, "healthz"),
            "/readyz": (frozenset({"GET", "HEAD"}), self._readyz, "readyz"),
            "/slots": (frozenset({"GET", "HEAD"}), self._slots, "slots"),
            "/metrics": (frozenset({"GET", "HEAD"}), self._metrics, "metrics"),
            "/devices": (frozenset({"GET", "HEAD"}), DevicesRoute().handle, "devices"),
        }
        self.v2 = V2Routes(self)  # Open Inference Protocol; /v2/models/... is resolved by prefix in handle()
        self._routes.update(self.v2.routes())
        self._server_header = settings.server_version_header
        self.access_log = AccessLog(settings.log_format) if settings.access_log else None
        self._cors = settings.cors_origins
        self._secret = ReplicaSecret(settings.replica_secret) if settings.replica_secret else None

    def make_server(self) -> Server:
        s = self.settings
        return make_server(self.handle, max_body_bytes=s.max_body_bytes, log=log,
                           internal_error_text="An unexpected internal error occurred. Check the logs for more info.",
                           header_timeout_s=s.header_timeout_s, max_connections=s.max_connections)

    async def wait_idle(self) -> None:
        await self._idle.wait()

    @contextlib.contextmanager
    def tracking_request(self) -> Iterator[None]:
        """Count a scoring request as in flight (drain waits for it; /slots and /metrics report it)."""
        self.in_flight += 1
        self._idle.clear()
        self.table.add_in_flight(self.index, 1)
        try:
            yield
        finally:
            self.in_flight -= 1
            self.table.add_in_flight(self.index, -1)
            if self.in_flight == 0:
                self._idle.set()

    # ---------------------------------------------------------------- dispatch
    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        start = time.perf_counter()
        self._handling += 1
        try:
            return await self._dispatch(request, start)
        finally:
            self._handling -= 1
            if self._handling == 0 and self._flush_when_idle:
                self.plane.metrics.flush()  # before the answer is sent: a scrape that follows sees it

    async def _dispatch(self, request: BaseRequest, start: float) -> web.StreamResponse:
        current_request_id.set(None)  # the connection's task is reused across keep-alive requests
        path = request.path
        entry = self._routes.get(path)
        if entry is None and path.startswith("/v2/"):
            entry = self.v2.resolve(path)
        if self._secret is not None and not self._secret.allows(request.method, path, request.headers):
            resp: web.StreamResponse = _json_response(403, REFUSED_MESSAGE)
            resp.force_close()  # its body, if any, is never read
            label = entry[2] if entry is not None else "other"
        elif entry is None:
            resp = _json_response(404, NOT_FOUND)
            label = "other"
        else:
            methods, handler, label = entry
            if request.method not in methods:
                resp = _json_response(405, NOT_ALLOWED)
                resp.headers[hdrs.ALLOW] = ", ".join(sorted(methods))
                resp.headers["x-ms-run-function-failed"] = "False"  # as azmlinfsrv's 405
            elif request.method == "OPTIONS" and path != "/score":
                resp = web.Response(status=200, headers={hdrs.ALLOW: ", ".join(sorted(methods))})
            else:
                resp = await handler(request)
        self._add_slot_headers(resp.headers)
        if self.draining:
            resp.force_close()
        if self._cors:
            self._add_cors(request, resp)
        elapsed = time.perf_counter() - start
        self._observe(label, resp.status, elapsed)
        if self.access_log is not None and path != "/":
            self.access_log.log(request.method, request.path_qs, resp.status, elapsed * 1000,
                                resp.content_length, current_request_id.get())
        return resp

    def _observe(self, route: str, status: int, seconds: float) -> None:
        """openscore_requests_total and openscore_request_duration_seconds, batched (metric_batch)."""
        key = (route, status)
        count = self._request_count.get(key)
        if count is None:
            count = self._request_count[key] = self.plane.metrics.counter(metrics.REQUESTS, route, str(status))
        count.inc()
        hist = self._request_seconds.get(route)
        if hist is None:
            hist = self._request_seconds[route] = self.plane.metrics.histogram(metrics.REQUEST_SECONDS, route)
        hist.observe(seconds)

    def _add_slot_headers(self, headers: Any) -> None:
        """Replica-wide slot occupancy on every response, for a router to route by."""
        if self.table.workers == 1:
            gate = self.plane.gate
            busy, total, queued = gate.busy, gate.total, gate.queued
        else:
            o = self.table.occupancy()
            busy, total, queued = o.busy, o.total, o.queued
        headers["x-openscore-slots-busy"] = str(busy)
        headers["x-openscore-slots-total"] = str(total)
        headers["x-openscore-queue-length"] = str(queued)

    def _add_cors(self, request: BaseRequest, resp: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if not origin:
            return
        if "*" in self._cors or origin in self._cors:
            resp.headers["Access-Control-Allow-Origin"] = "*" if "*" in self._cors else origin
            resp.headers.add("Vary", "Origin")
            if request.method == "OPTIONS":
                resp.headers["Access-Control-Allow-Methods"] = "GET, POST"
                req_headers = request.headers.get("Access-Control-Request-Headers")
                if req_headers:
                    resp.headers["Access-Control-Allow-Headers"] = req_headers

    # ---------------------------------------------------------------- routes
    async def _azure_health(self, request: BaseRequest) -> web.StreamResponse:
        if self.plane.init_state.ready and not self.draining:
            return web.Response(status=200, text="Healthy", content_type="text/html")
        return web.Response(status=503, text="Unhealthy: " + self.not_ready_reason(), content_type="text/html")

    def not_ready_reason(self) -> str:
        """Why the worker does not take requests (for 503 bodies)."""
        if self.draining:
            return "the server is shutting down"
        if self.plane.init_state.failed:
            return f"init() failed: {self.plane.init_state.failed}"
        if not self.plane.init_state.ready:
            return "init() has not finished"
        return "not every worker has finished init()"

    async def _healthz(self, request: BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "alive"})

    async def _readyz(self, request: BaseRequest) -> web.StreamResponse:
        if not self.draining and self.plane.init_state.ready and self.table.all_ready():
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": self.not_ready_reason()}, status=503)

    async def _slots(self, request: BaseRequest) -> web.StreamResponse:
        o = self.table.occupancy()
        return web.json_response({"busy": o.busy, "total": o.total, "queued": o.queued,
                                  "in_flight": o.in_flight, "workers_ready": o.workers_ready,
                                  "workers": o.workers, "ready": o.workers_ready == o.workers and not self.draining})

    async def _metrics(self, request: BaseRequest) -> web.StreamResponse:
        self.plane.metrics.flush()
        body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition, self.table)
        return web.Response(body=body, headers={hdrs.CONTENT_TYPE: "text/plain; version=0.0.4; charset=utf-8"})

    async def _swagger(self, request: BaseRequest) -> web.StreamResponse:
        try:
            ids = self.plane.request_ids(request.headers)
        except RequestIdTooLong as e:
            return _json_response(431, str(e))
        headers = CIMultiDict(ids.headers)
        headers["x-ms-run-function-failed"] = "False"  # azmlinfsrv sends it on every blueprint response
        current_request_id.set(ids.request_id)
        if self.swagger is None:
            return _json_response(503, "The service is initializing: init() has not finished", headers)
        try:
            body = self.swagger.get(request.query.get("version"))
        except SwaggerVersionError as e:
            return _json_response(404, str(e), headers)
        except SwaggerGenerationError as e:
            log.error("swagger generation failed: %s", e, exc_info=e.__cause__)
            return _json_response(500, str(e), headers)
        headers[hdrs.CONTENT_TYPE] = JSON
        return web.Response(body=body, headers=headers)

    async def _score(self, request: BaseRequest) -> web.StreamResponse:
        plane = self.plane
        try:
            ids = plane.request_ids(request.headers)
        except RequestIdTooLong as e:
            return _json_response(431, str(e))
        request_id = ids.request_id
        current_request_id.set(request_id)
        body = b""
        method = request.method
        if method == "POST":
            got = await self.read_body(request)
            if isinstance(got, web.StreamResponse):
                return got
            body = got
        req = IncomingRequest(
            method="GET" if method == "HEAD" else method, path=request.path,
            query_string=request.query_string, headers=request.headers, body=body,
            scheme=request.scheme, host=request.host, remote=request.remote or "")
        with self.tracking_request():
            result = await plane.score(req, request_id)
        # a list, not a CIMultiDict: web.Response copies the headers it is given into its own
        resp = web.Response(status=result.status, body=result.body, headers=plane.response_headers(ids, result))
        if plane.collector is not None:
            plane.collect(request_id, req.method, request.path_qs, result.status, result.run_ms or 0.0, body,
                          req.content_type, result.body, resp.headers.get(hdrs.CONTENT_TYPE, ""))
        return resp

    async def read_body(self, request: BaseRequest) -> bytes | web.StreamResponse:
        """The request body, or the error response to send instead: 413 over --max-body-bytes, 408 when the
        client is slower than the body read timeout."""
        limit = self.settings.max_body_bytes
        too_large = (f"The request body is larger than the limit of {limit} bytes "
                     "(--max-body-bytes / OPENSCORE_MAX_BODY_BYTES).")
        length = request.content_length
        if length is not None and length > limit:
            resp = _json_response(413, too_large)
            resp.force_close()
            return resp
        codings = content_encoding.encodings(request.headers.get(hdrs.CONTENT_ENCODING))
        try:
            content_encoding.check_supported(codings)
            if request.content.is_eof():  # the whole body came with the headers: no wait, no timer
                body = await request.read()
            else:
                async with asyncio.timeout(self.settings.body_read_timeout_s):
                    body = await request.read()
            if not codings or not body:
                return body
            # inflating costs CPU in proportion to the output (a gzip bomb's 1000:1): on a thread, never the loop
            return await asyncio.to_thread(content_encoding.inflate, body, codings, limit)
        except web.HTTPRequestEntityTooLarge:
            resp = _json_response(413, too_large)
        except content_encoding.BodyTooLarge:
            resp = _json_response(413, f"The request body, once decoded ({', '.join(codings)}), is larger than the "
                                       f"limit of {limit} bytes (--max-body-bytes / OPENSCORE_MAX_BODY_BYTES).")
        except content_encoding.BadEncoding as e:
            resp = _json_response(415 if e.unsupported else 400, f"The request body could not be decoded: {e}")
        except TimeoutError:
            resp = _json_response(408, f"Timed out reading the request body after "
                                       f"{self.settings.body_read_timeout_s} s.")
        resp.force_close()
        return resp
