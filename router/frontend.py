"""HTTP front end: scoring routes (Azure's AKS URLs), the admin API, health and metrics.

Scoring: `/api/v1/service/<name>/score|swagger.json` (traffic split over versions) and
`/api/v1/service/<name>/versions/<version>/score|swagger.json` (one version directly).
Admin (separate key): `/admin/v1/...`, see `_admin`; `GET /admin/v1/identity?nonce=N` needs no key: it
answers HMAC-SHA256(admin key, port and N), so a client can check it talks to its router before sending the key.

Every scoring response says which version and replica served it, how long it queued, and the limits in
force; a response the router made itself says which limit fired (`x-openscore-limit`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

from openscore.log_lines import AZURE_FORMAT, BatchedLineWriter, UtcFormatter
from openscore.router import coordination, proxy
from openscore.router.auth import IDENTITY_NONCE_MAX, AdminAuth, AuthError
from openscore.router.balancer import Lease, Rejected
from openscore.router.config import ConfigError, validate_admin_document
from openscore.router.core import Router, ServiceRuntime, VersionRuntime
from openscore.router.metrics import VersionMetrics
from openscore.router.state import (
    SERVICE,
    SERVICE_KEYS,
    SIGNING_KEYS,
    SIGNING_KEYS_NAME,
    Conflict,
    InvalidObject,
    KeysUnusable,
    NotFound,
)

log = logging.getLogger("openscore.router")
access_log = logging.getLogger("openscore.router.access")
JSON = "application/json"
SCORE_PREFIX = "/api/v1/service/"
ADMIN_PREFIX = "/admin/v1/"
MAX_CONNECT_ATTEMPTS = 3
NO_VERSION = ("-", "-")  # the service/version fields of an access line for a request outside scoring


def json_response(status: int, payload: Any, headers: CIMultiDict[str] | None = None) -> web.Response:
    h = headers if headers is not None else CIMultiDict()
    h[hdrs.CONTENT_TYPE] = JSON
    return web.Response(status=status, body=orjson.dumps(payload), headers=h)


def upstream_path(request: BaseRequest, leaf: str) -> str:
    """The replica's path: the leaf (/score, /swagger.json) with the client's query string exactly as sent."""
    raw = request.raw_path
    q = raw.find("?")
    return leaf if q < 0 else leaf + raw[q:]


def message(status: int, text: str, headers: CIMultiDict[str] | None = None) -> web.Response:
    return json_response(status, {"message": text}, headers)


class AccessLog:
    """One line per scoring request on `openscore.router.access`.

    Where logging is set up the way `openscore router` does it (one StreamHandler on the root logger with the
    standard line format), lines are formatted here, exactly as that handler would, and written together once
    per event-loop iteration: the logging machinery costs tens of microseconds per record, a tenth of the
    router's cost per request. Any other logging setup gets the records through logging, unchanged."""

    TEXT = ("%s %s %d service=%s version=%s replica=%s queue_ms=%.1f upstream_ms=%.1f total_ms=%.1f limit=%s "
            "request_id=%s")

    def __init__(self) -> None:
        self._prefix = f" I [{os.getpid()}] {access_log.name} - "
        self._out = self._direct_writer()

    def _direct_writer(self) -> BatchedLineWriter | None:
        """A writer straight to the log's stream when logging is set up exactly as `openscore router` does
        (one plain StreamHandler with the UTC line format); None means: go through logging."""
        lg: logging.Logger | None = access_log
        if not access_log.isEnabledFor(logging.INFO):
            return None
        while lg is not None and lg.parent is not None:  # every logger up to the root: no handler, no filter
            if lg.handlers or lg.filters or not lg.propagate:
                return None
            lg = lg.parent
        root = logging.getLogger()
        if len(root.handlers) != 1 or root.filters:
            return None
        hd = root.handlers[0]
        fmt = hd.formatter
        if (type(hd) is not logging.StreamHandler or hd.filters or hd.level > logging.INFO
                or type(fmt) is not UtcFormatter or fmt._fmt != AZURE_FORMAT or fmt.datefmt is not None):
            return None
        try:
            hd.flush()
            return BatchedLineWriter(hd.stream.fileno(), hd.stream)
        except (AttributeError, OSError, ValueError):
            return None

    def log(self, method: str, path: str, status: int, key: tuple[str, str], replica: str, queue_s: float,
            up_s: float, total_s: float, limit: str, rid: str) -> None:
        args = (method, path, status, key[0], key[1], replica, queue_s * 1000, up_s * 1000, total_s * 1000,
                limit or "-", rid)
        if self._out is None:
            access_log.info(self.TEXT, *args)
            return
        line = f"{self._out.timestamp(time.time())}{self._prefix}{self.TEXT % args}\n"
        self._out.write(line.encode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()


class Frontend:
    def __init__(self, router: Router, admin: AdminAuth, *, access_log_enabled: bool = True,
                 body_policy: proxy.BodyPolicy | None = None):
        self.router = router
        self.admin = admin
        self.body_policy = body_policy or proxy.BodyPolicy()
        self.upstream = proxy.UpstreamPool()
        self.access_log_enabled = access_log_enabled
        self.access = AccessLog() if access_log_enabled else None
        self.in_flight = 0
        self.ready = False
        # stopping: every answer closes its connection, so keep-alive clients go elsewhere and the drain ends
        # after the requests in flight (with kept-alive clients it would last the whole graceful timeout)
        self.draining = False
        self._mirrors: set[asyncio.Task] = set()  # shadow copies in flight (held so they are not collected)

    async def close(self) -> None:
        for t in list(self._mirrors):
            t.cancel()
        await asyncio.gather(*self._mirrors, return_exceptions=True)
        await self.upstream.close()
        if self.access is not None:
            self.access.flush()

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        resp = await self._route(request)
        if self.draining:
            resp.force_close()
        return resp

    async def _route(self, request: BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith(SCORE_PREFIX):
            return await self._score_route(request, path[len(SCORE_PREFIX):])
        if path == coordination.WS_PATH and self.router.coordination is not None:
            return await self.router.coordination.serve_peer(request)
        start = time.perf_counter()
        if path.startswith(ADMIN_PREFIX):
            resp = await self._admin(request, path[len(ADMIN_PREFIX):].strip("/").split("/"))
        elif path == "/healthz":
            resp = json_response(200, {"status": "alive"})
        elif path == "/readyz":
            resp = self._readyz()
        elif path == "/metrics":
            body = self.router.metrics.exposition()
            resp = web.Response(body=body, headers={hdrs.CONTENT_TYPE: "text/plain; version=0.0.4; charset=utf-8"})
        else:
            resp = message(404, f"No route for {path}. Scoring URLs are /api/v1/service/<name>/score.")
        self._log_answer(request, resp, NO_VERSION, start)
        return resp

    def _readyz(self) -> web.Response:
        """503 until the first snapshot is applied; ready afterwards even with a lost store (it serves from
        the last state), the detail saying so."""
        if not self.ready:
            return json_response(503, {"status": "not ready"})
        stale = self.router.stale_reason
        body: dict[str, Any] = {"status": "ready"}
        if stale is not None:
            body.update(state="stale", detail=stale)
        if self.router.coordination is not None:
            body["coordination"] = self.router.coordination.describe()
        return json_response(200, body)

    def _log_answer(self, request: BaseRequest, resp: web.StreamResponse, key: tuple[str, str], start: float,
                    limit: str = "") -> None:
        """The access line of a request answered without reaching a replica (every answer gets one)."""
        if self.access is not None:
            h = request.headers
            rid = h.get("x-request-id") or h.get("x-ms-client-request-id") or "-"
            self.access.log(request.method, request.path_qs, resp.status, key, "-", 0.0, 0.0,
                            time.perf_counter() - start, limit, rid)

    # ============================================================== scoring
    async def _score_route(self, request: BaseRequest, rest: str) -> web.StreamResponse:
        start = time.perf_counter()
        parts = rest.split("/")
        name = parts[0] or "-"
        resp: web.StreamResponse
        if len(parts) == 2:
            version, leaf = None, parts[1]
        elif len(parts) == 4 and parts[1] == "versions":
            version, leaf = parts[2], parts[3]
        else:
            resp = message(404, "Unknown scoring URL; use /api/v1/service/<name>/score or "
                                "/api/v1/service/<name>/versions/<version>/score.")
            self._log_answer(request, resp, (name, "-"), start)
            return resp
        key = (name, version or "-")
        if leaf not in ("score", "swagger.json"):
            resp = message(404, f"Unknown route {leaf!r}; use score or swagger.json.")
            self._log_answer(request, resp, key, start)
            return resp
        svc = self.router.services.get(name)
        if svc is None:
            resp = message(404, f"Service {name} not found.")
            self._log_answer(request, resp, key, start)
            return resp
        if request.method not in ("GET", "POST"):
            resp = message(405, f"Method {request.method} is not routed; only GET and POST are.",
                           CIMultiDict({hdrs.ALLOW: "GET, POST"}))
            self._log_answer(request, resp, key, start)
            return resp
        try:
            svc.auth.check(name, request.headers.get(hdrs.AUTHORIZATION), self.router.tokens)
        except AuthError as e:
            self.router.metrics.auth_failures.labels(name, e.reason).inc()
            resp = message(401, e.message, CIMultiDict({hdrs.WWW_AUTHENTICATE: 'Bearer realm="openscore"',
                                                        "x-openscore-limit": "auth"}))
            self._log_answer(request, resp, key, start, "auth")
            return resp
        mirrors: tuple[VersionRuntime, ...] = ()
        if version is None:
            vr = svc.choose_version()
            if svc.spec.mirror and leaf == "score":
                mirrors = tuple(svc.choose_mirrors())
        else:
            picked = svc.versions.get(version)
            if picked is None:
                resp = message(404, f"Service {name} has no version {version}.")
                self._log_answer(request, resp, key, start)
                return resp
            vr = picked
        self.in_flight += 1
        try:
            return await self._forward(request, svc, vr, "/" + leaf, mirrors, split=version is None)
        finally:
            self.in_flight -= 1

    @staticmethod
    def _headers(rid: str, vr: VersionRuntime) -> CIMultiDict[str]:
        spec = vr.spec
        return CIMultiDict((
            ("x-request-id", rid), ("x-openscore-version", vr.key[1]), ("azureml-model-deployment", vr.key[1]),
            ("x-openscore-scoring-timeout-ms", str(spec.scoring_timeout_ms)),
            ("x-openscore-max-queue-wait-ms", str(spec.max_queue_wait_ms))))

    async def _forward(self, request: BaseRequest, svc: ServiceRuntime, vr: VersionRuntime, leaf: str,
                       mirrors: tuple[VersionRuntime, ...] = (), split: bool = False) -> web.StreamResponse:
        start = time.perf_counter()
        vm = self.router.metrics.version(vr.key)
        headers = request.headers
        rid = headers.get("x-request-id") or headers.get("x-ms-client-request-id") or str(uuid.uuid4())
        h = self._headers(rid, vr)
        replica, limit, queue_s, up_s = "-", "", 0.0, 0.0
        resp: web.StreamResponse
        try:
            body = await proxy.read_body(request, svc.spec.max_body_bytes, self.body_policy)
        except proxy.PayloadTooLarge:
            resp, limit = self._too_large(svc, h), "payload_limit"
            vm.rejected(limit)
        except proxy.BodyTimeout:
            resp, limit = self._body_timeout(h), "body_timeout"
            vm.rejected(limit)
        except proxy.ClientGone as e:
            resp, limit = self._client_gone(h, e), "client_disconnected"
            vm.rejected(limit)
        else:
            if vr.retired and split:  # the version was removed while the body came in: split again
                now = self.router.services.get(vr.key[0])
                if now is not None and now.versions:
                    vr = now.choose_version()
                    vm, h = self.router.metrics.version(vr.key), self._headers(rid, vr)
            for m in mirrors:
                self._mirror(request, m, leaf, body, rid)
            resp, replica, limit, queue_s, up_s = await self._upstream(request, vr, vm, leaf, body, h, rid)
        vm.request(resp.status)
        if self.access is not None:
            self.access.log(request.method, request.path_qs, resp.status, vr.key, replica, queue_s, up_s,
                            time.perf_counter() - start, limit, rid)
        return resp

    # ============================================================== mirrored (shadow) traffic
    def _mirror(self, request: BaseRequest, vr: VersionRuntime, leaf: str, body: Any, rid: str) -> None:
        """Send a copy of the request to a mirrored version in the background; its answer is discarded and
        nothing about it reaches the client. A streamed (large or chunked) body is read once, so it is not
        copied: counted as `streamed`."""
        counter = self.router.metrics.mirrored
        if isinstance(body, proxy.LimitedStream):
            counter.labels(*vr.key, "streamed").inc()
            return
        headers = proxy.upstream_headers(request, rid)
        headers.append(("x-openscore-mirrored", "true"))
        path = upstream_path(request, leaf)
        t = asyncio.create_task(self._send_mirror(request.method, vr, path, headers, body))
        self._mirrors.add(t)
        t.add_done_callback(self._mirrors.discard)

    async def _send_mirror(self, method: str, vr: VersionRuntime, path: str, headers: list[tuple[str, str]],
                           body: bytes | None) -> None:
        outcome = "error"
        lease = self._try_acquire(vr)
        try:
            if lease is None:
                lease = await self._acquire(vr, vr.spec.max_queue_wait_ms / 1000.0)
            async with asyncio.timeout(vr.spec.scoring_timeout_ms / 1000.0):
                up = await self.upstream.send(method, lease.backend.address, path,
                                              with_secret(headers, lease.backend.secret), body)
                try:
                    if up.body is None and up.payload is not None:
                        while await up.payload.readany():
                            pass  # read and drop, so the connection can be reused
                        up.finish()
                finally:
                    up.close()
            outcome = str(up.status)
        except Rejected as e:
            outcome = e.reason
        except TimeoutError:
            outcome = "scoring_timeout"
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        except Exception as e:
            log.debug("mirrored request to %s/%s failed: %r", *vr.key, e)
        finally:
            if lease is not None:
                lease.release()
            self.router.metrics.mirrored.labels(*vr.key, outcome).inc()

    def _body_timeout(self, h: CIMultiDict[str]) -> web.Response:
        p = self.body_policy
        h["x-openscore-limit"] = "body_timeout"
        resp = message(408, f"The request body came in too slowly: it must arrive within {p.timeout_s:g} s plus "
                            f"1 s per {p.min_rate:g} bytes.", h)
        resp.force_close()
        return resp

    @staticmethod
    def _client_gone(h: CIMultiDict[str], e: BaseException) -> web.Response:
        """The client's connection failed mid-body: one log line, and an answer nobody may read."""
        log.info("client connection failed while sending the request body (%s)", e)
        h["x-openscore-limit"] = "client_disconnected"
        resp = message(400, "The request body was cut off.", h)
        resp.force_close()
        return resp

    def _too_large(self, svc: ServiceRuntime, h: CIMultiDict[str]) -> web.Response:
        h["x-openscore-limit"] = "payload_limit"
        resp = message(413, f"The request body is larger than the limit of {svc.spec.max_body_bytes} bytes "
                            "(maxRequestBodyBytes).", h)
        resp.force_close()
        return resp

    def _try_acquire(self, vr: VersionRuntime) -> Lease | None:
        c = self.router.coordination
        return vr.pool.try_acquire() if c is None else c.try_acquire(vr.key, vr.pool)

    async def _acquire(self, vr: VersionRuntime, wait_s: float) -> Lease:
        """A slot within `wait_s` (Rejected otherwise): from this router's pool, or, where another router
        coordinates the service, from that router's."""
        c = self.router.coordination
        return await (vr.pool.acquire(wait_s) if c is None else c.acquire(vr.key, vr.pool, wait_s))

    async def _upstream(self, request: BaseRequest, vr: VersionRuntime, vm: VersionMetrics, leaf: str, body: Any,
                        h: CIMultiDict[str], rid: str) -> tuple[web.StreamResponse, str, str, float, float]:
        spec = vr.spec
        wait_left = spec.max_queue_wait_ms / 1000.0
        queue_total = 0.0
        headers = proxy.upstream_headers(request, rid)
        path = upstream_path(request, leaf)
        for _attempt in range(MAX_CONNECT_ATTEMPTS):
            lease = self._try_acquire(vr)
            if lease is None:
                try:
                    lease = await self._acquire(vr, wait_left)
                except Rejected as e:
                    queue_total += e.waited_s
                    vm.queue_wait.observe(queue_total)
                    vm.rejected(e.reason)
                    h["x-openscore-limit"] = "max_queue_wait" if e.reason == "overloaded" else "no_ready_replica"
                    h["x-openscore-router-queue-wait-ms"] = f"{queue_total * 1000:.1f}"
                    h[hdrs.RETRY_AFTER] = "1"
                    return message(503, e.message, h), "-", h["x-openscore-limit"], queue_total, 0.0
            queue_total += lease.queue_wait_s
            wait_left = max(0.0, wait_left - lease.queue_wait_s)
            b = lease.backend
            sent = time.perf_counter()
            try:
                resp = await self._exchange(request, lease, vm, path, headers, body, h, queue_total,
                                            spec.scoring_timeout_ms, vr.key, spec.retry_after_send)
            except proxy.ConnectFailed as e:
                lease.release()
                log.warning("replica %s unreachable (%s); retrying elsewhere", b.id, e)
                vr.pool.set_ready(b.id, False)
                self.router.target.report_unreachable(b.id)
                asyncio.get_running_loop().call_later(1.0, self.router._on_target_change, vr.key)
                self.router.metrics.retries.labels(*vr.key).inc()
                continue
            up = time.perf_counter() - sent
            vm.queue_wait.observe(queue_total)
            vm.upstream.observe(up)
            return resp, b.id, h.get("x-openscore-limit", ""), queue_total, up
        h["x-openscore-limit"] = "replica_unreachable"
        vm.rejected("replica_unreachable")
        return (message(502, f"Could not connect to a replica of service {vr.key[0]} after "
                             f"{MAX_CONNECT_ATTEMPTS} attempts.", h), "-", "replica_unreachable", queue_total, 0.0)

    async def _exchange(self, request: BaseRequest, lease: Lease, vm: VersionMetrics, path: str,
                        headers: list[tuple[str, str]], body: Any, h: CIMultiDict[str],
                        queue_s: float, lease_timeout_ms: int, version_key: tuple[str, str],
                        retry_after_send: bool = False) -> web.StreamResponse:
        """One request on a held slot; the slot is released when the response body has been read."""
        b = lease.backend
        h["x-openscore-replica"] = b.id
        h["x-openscore-router-queue-wait-ms"] = f"{queue_s * 1000:.1f}"
        timeout_ms = lease_timeout_ms
        up: proxy.Upstream | None = None
        # a GET may be sent again; a POST only when the service declared run() idempotent (retryAfterSend)
        # and its body was buffered (a streamed body was consumed by the first send)
        replayable = request.method == "GET" or (retry_after_send and not isinstance(body, proxy.LimitedStream))
        try:
            try:
                async with asyncio.timeout(timeout_ms / 1000.0):
                    up = await self.upstream.send(request.method, b.address, path, with_secret(headers, b.secret),
                                                  body, replayable)
            except TimeoutError:
                h["x-openscore-limit"] = "scoring_timeout"
                vm.rejected("scoring_timeout")
                return message(504, f"Scoring timeout after {timeout_ms} ms (scoringTimeoutMs): the replica did "
                                    "not answer in time.", h)
            except proxy.PayloadTooLarge:  # over the limit while streaming: counted like the up-front 413
                h["x-openscore-limit"] = "payload_limit"
                vm.rejected("payload_limit")
                resp = message(413, "The request body is larger than the limit (maxRequestBodyBytes).", h)
                resp.force_close()
                return resp
            except proxy.BodyTimeout:  # the slot is freed below; the replica saw an unfinished body
                vm.rejected("body_timeout")
                return self._body_timeout(h)
            except proxy.ClientGone as e:
                vm.rejected("client_disconnected")
                return self._client_gone(h, e)
            except proxy.ConnectFailed:
                raise
            except proxy.UpstreamDisconnected as e:
                # the request was sent and the replica may have run it: never again elsewhere (it would run
                # twice), except a GET or a service that opted in (retryAfterSend). The replica leaves routing
                # at once, before its slot is free (a dying one may still accept connections for a moment, and
                # a POST sent to it then would fail too); its next probe, kicked now, puts it back if it lives
                lease.pool.set_ready(b.id, False)
                self.router.target.report_unreachable(b.id)
                asyncio.get_running_loop().call_later(1.0, self.router._on_target_change, version_key)
                dead = await proxy.is_dead(b.address)
                if replayable and dead and not isinstance(body, proxy.LimitedStream):
                    raise proxy.ConnectFailed(f"replica died after the request was sent: {e!r}") from e
                return self._replica_failed(b.id, vm, h, e)
            except Exception as e:
                return self._replica_failed(b.id, vm, h, e)
            status = 502 if up.status == 500 else up.status  # Azure's rule: only a model 500 becomes 502
            add = h.add
            for k, v in up.headers:
                if k.lower() != "x-request-id":
                    add(k, v)
            if up.body is not None:
                return web.Response(status=status, body=up.body, headers=h)
            return await proxy.stream_back(request, up, status, h)
        finally:
            if up is not None:
                up.close()  # a no-op once the body was read whole (the connection went back to the pool)
            lease.release()

    def _replica_failed(self, replica: str, vm: VersionMetrics, h: CIMultiDict[str],
                        e: BaseException) -> web.Response:
        h["x-openscore-limit"] = "replica_failed"
        vm.rejected("upstream_error")
        log.warning("replica %s failed during the request: %r", replica, e)
        name = type(e).__name__
        if isinstance(e, proxy.UpstreamDisconnected):
            name = "ServerDisconnectedError"
        return message(502, f"The replica failed while serving the request ({name}).", h)

    # ============================================================== admin API
    async def _admin(self, request: BaseRequest, parts: list[str]) -> web.StreamResponse:
        if parts == ["identity"]:
            return self._identity(request)
        try:
            self.admin.check(request.headers.get(hdrs.AUTHORIZATION))
        except AuthError as e:
            self.router.metrics.admin_auth_failures.inc()
            return message(401, e.message, CIMultiDict({hdrs.WWW_AUTHENTICATE: 'Bearer realm="openscore-admin"'}))
        try:
            return await self._admin_route(request, parts)
        except ConfigError as e:
            return json_response(400, {"message": f"Invalid configuration, {e}", "key": e.key, "rule": e.rule})
        except NotFound as e:
            return message(404, f"Service {e.args[0]} not found.")
        except Conflict as e:
            return json_response(409, {"message": f"{e} (send the revision a GET returns in If-Match, or none to "
                                                  "overwrite).", "currentRevision": e.current})
        except (KeysUnusable, InvalidObject) as e:  # the stored state, not the request, is the problem
            log.error("admin %s %s: %s", request.method, request.path, e)
            return message(409, str(e))
        except ValueError as e:
            return message(400, str(e))

    def _identity(self, request: BaseRequest) -> web.Response:
        """`GET /admin/v1/identity?nonce=N` -> {"proof": HMAC-SHA256(admin key, port + N)}, without auth: a
        client checks it before it sends the admin key (a fresh nonce each time: an answer cannot be replayed;
        the local port of this connection: it cannot be relayed from another port)."""
        if request.method != "GET":
            return message(405, "Use GET.")
        nonce = request.query.get("nonce", "")
        if not (16 <= len(nonce) <= IDENTITY_NONCE_MAX and nonce.isascii() and nonce.isprintable()):
            return message(400, f"nonce is required: 16 to {IDENTITY_NONCE_MAX} printable ASCII characters.")
        sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
        if not sock:
            return message(503, "The connection's local address is unknown; try again.")
        return json_response(200, {"proof": self.admin.proof(nonce, int(sock[1]))})

    async def _body_json(self, request: BaseRequest) -> dict[str, Any]:
        """The body as a JSON object ({} when empty); anything else is a 400."""
        raw = await request.read()
        if not raw:
            return {}
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise ValueError(f"The body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise ValueError(f"The body must be a JSON object, got {type(body).__name__}.")
        return body

    async def _admin_route(self, request: BaseRequest, parts: list[str]) -> web.StreamResponse:
        router = self.router
        store, method = router.store, request.method
        if parts == ["services"] and method == "GET":
            return json_response(200, {"services": [router.status(n) for n in sorted(router.services)]})
        if parts == ["signing-keys", "rotate"] and method == "POST":
            body = await self._body_json(request)
            keep = 0.0 if body.get("revoke") else float(router.tokens.lifetime_s)
            keys = await store.rotate_signing_key(keep)
            await router.wait_applied(SIGNING_KEYS, SIGNING_KEYS_NAME, keys.revision)
            assert keys.current is not None
            return json_response(200, {"kid": keys.current.kid, "previousKeysValidForSeconds": keep})
        if len(parts) < 2 or parts[0] != "services":
            return message(404, "Unknown admin route.")
        name = parts[1]
        if len(parts) == 2:
            if method == "GET":
                rec = await store.get_service(name)
                if rec is None or name not in router.services:
                    raise NotFound(name)
                out = router.status(name)
                out["config"], out["revision"] = rec.config, rec.revision  # the document: never keys
                return json_response(200, out, CIMultiDict({hdrs.ETAG: f'"{rec.revision}"'}))
            if method == "PUT":
                body = await self._body_json(request)
                existed = await store.get_service(name) is not None
                await asyncio.to_thread(validate_admin_document, name, body)  # absolute paths, files exist
                rec = await store.put_service(name, body, if_match(request))
                await router.wait_applied(SERVICE, name, rec.revision)
                out = router.status(name)
                out["revision"] = rec.revision
                return json_response(200 if existed else 201, out, CIMultiDict({hdrs.ETAG: f'"{rec.revision}"'}))
            if method == "DELETE":
                rev = await store.delete_service(name, if_match(request))
                if rev is None:
                    raise NotFound(name)
                await router.wait_applied(SERVICE, name, rev)
                return json_response(200, {"deleted": name, "revision": rev})
            return message(405, "Use GET, PUT or DELETE.")
        action = parts[2]
        rec = await store.get_service(name)
        if rec is None:
            raise NotFound(name)
        if action == "rollback" and method == "POST":  # one step back: the configuration before the last change
            try:
                rec = await store.rollback_service(name)
            except NotFound:
                raise
            except LookupError as e:
                return message(409, f"{e.args[0]}.")
            await router.wait_applied(SERVICE, name, rec.revision)
            return json_response(200, router.status(name))
        if action in ("keys", "listkeys") and method in ("GET", "POST"):
            svc_keys = await store.get_keys(name)
            if svc_keys is None:
                raise NotFound(name)
            return json_response(200, {"primaryKey": svc_keys.primary, "secondaryKey": svc_keys.secondary})
        if action == "regenerateKeys" and method == "POST":
            body = await self._body_json(request)
            key_type = body.get("keyType")
            if not isinstance(key_type, str):
                raise ValueError("keyType is required: 'Primary' or 'Secondary'.")
            new_keys = await store.set_key(name, key_type, body.get("keyValue"))
            await router.wait_applied(SERVICE_KEYS, name, new_keys.revision)
            kt = key_type.lower()
            return json_response(200, {f"{kt}Key": new_keys.primary if kt == "primary" else new_keys.secondary})
        if action == "token" and method == "POST":
            if not rec.spec.token_auth_enabled:
                return message(400, f"Token auth is not enabled for service {name} (tokenAuthEnabled).")
            if not router.tokens.can_issue:  # a cluster whose signing key Secret `cluster install` did not make
                return message(503, "No token signing key yet: the signing key Secret does not exist (openscore "
                                    "cluster install creates it); tokens can be issued once it does.",
                               CIMultiDict({hdrs.RETRY_AFTER: "5"}))
            return json_response(200, router.tokens.issue(name).as_json())
        return message(404, "Unknown admin route.")


def with_secret(headers: list[tuple[str, str]], secret: str) -> list[tuple[str, str]]:
    """The upstream headers plus the replica's own secret (none for a target that gives none)."""
    return [*headers, (proxy.REPLICA_SECRET_HEADER, secret)] if secret else headers


def if_match(request: BaseRequest) -> str | None:
    """The revision a write was based on (`If-Match: "<revision>"`, from GET's ETag), None for "last write
    wins"; `*` means any."""
    value = request.headers.get(hdrs.IF_MATCH)
    if value is None or value.strip() in ("", "*"):
        return None
    v = value.strip()
    if v.startswith("W/"):
        v = v[2:]
    if "," in v:
        raise ValueError("If-Match must name one revision (the ETag or revision a GET returned).")
    return v.strip().strip('"')
