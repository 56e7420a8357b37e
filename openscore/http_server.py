"""aiohttp's low-level server (the cheapest per request) with protocol errors answered as JSON.

Shared by the scoring server and the router: a bad request line, a header over the limit (431) or a
handler crash gets `{"message": ...}` like every other error, never aiohttp's plain-text page. It also
bounds what a client can hold without sending a request: a connection must send its request head within
`header_timeout_s` (slowloris), and at most `max_connections` are open at once (beyond it the oldest idle
keep-alive connection makes room, else the new one is closed at once), so file descriptors cannot run out.
Bodies are not inflated here (aiohttp's `auto_decompress` is off): a `Content-Encoding` body reaches the
handler as sent, which inflates it off the event loop under its own limit, or passes it on untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]
DEFAULT_HEADER_TIMEOUT_S = 15.0
DEFAULT_MAX_CONNECTIONS = 4096
_TIMEOUT_BODY = orjson.dumps({"message": "Timed out waiting for the request headers."})
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY))


class _JsonErrorRequestHandler(RequestHandler):
    """One connection. Adds the header-read timer and the connection cap to aiohttp's handler.

    The timer runs from the connection's opening until its first request head is complete, and from the first
    byte of each later request until that head is complete. An idle keep-alive connection is not timed by it
    (the router's upstream pool would race a replica closing its idle connections) but is the first to be
    closed when the cap is reached."""

    def __init__(self, server: JsonErrorServer, **kwargs: Any):
        super().__init__(server, **kwargs)
        self._server = server  # aiohttp clears _manager when the connection is lost; error handling needs it after
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = False  # bytes of an incomplete head arrived since the timer was armed
        self._active = False  # a request head is complete and its response not yet written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        room = len(server._connections) < server.max_connections or server.evict_idle()
        super().connection_made(transport)
        if not room:
            server.refused += 1
            if server.refused == 1 or server.refused % 1000 == 0:
                server.log.warning("%d connection(s) refused: already %d open (the limit)", server.refused,
                                   server.max_connections)
            self.force_close()
            return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._head_bytes = False
        self._head_timer = self._loop.call_later(self._server.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        transport = self.transport
        if self._active or transport is None or transport.is_closing():
            return
        self._server.header_timeouts += 1
        if self._head_bytes:  # a partial head: say why (nothing of a response has been written on it)
            transport.write(_TIMEOUT_RESPONSE)
        self.force_close()

    def idle(self) -> bool:
        """Between requests on a keep-alive connection, with nothing of the next one received."""
        return self._request_count > 0 and not self._active and self._head_timer is None and not self._messages

    def data_received(self, data: bytes) -> None:
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # a head is complete
            self._active = True
            self._cancel_head_timer()
        elif not self._active:
            if self._head_timer is None:  # the first byte of a keep-alive connection's next request
                self._arm_head_timer()
            self._head_bytes = True

    async def finish_response(self, request: BaseRequest, resp: web.StreamResponse,
                              start_time: float | None) -> tuple[web.StreamResponse, bool]:
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._active = bool(self._messages)  # a pipelined request already waits: it is active

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        server = self._server
        if isinstance(exc, LineTooLong):
            status, text = 431, f"Request header fields too large: {exc.message}"
        elif isinstance(exc, BadHttpMessage):
            text = f"Bad request: {exc.message}"
        elif isinstance(exc, ConnectionError) or (status >= 500 and self.transport is None):
            # The client went away (mid-body, or before the answer): nobody to answer, nothing to debug.
            server.log.info("client closed the connection before %s %s was answered (%s)", request.method,
                            request.path, exc or "connection lost")
            text = message or "Client closed the connection"
        elif status >= 500:
            server.log.error("unhandled error while serving %s", request.path, exc_info=exc)
            text = server.internal_error_text
        else:
            text = message or "Bad request"
        resp = web.Response(status=status, body=orjson.dumps({"message": text}),
                            headers={hdrs.CONTENT_TYPE: "application/json"})
        resp.force_close()
        return resp


class JsonErrorServer(Server):
    def __init__(self, handler: Handler, *, log: logging.Logger, internal_error_text: str,
                 header_timeout_s: float, max_connections: int, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.log = log
        self.internal_error_text = internal_error_text
        self.header_timeout_s = header_timeout_s
        self.max_connections = max_connections
        self.header_timeouts = 0  # connections closed for a late request head
        self.refused = 0  # connections closed at once because max_connections were open

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)

    def evict_idle(self) -> bool:
        """Close the longest-open idle keep-alive connection to make room; False when none is idle."""
        for handler in self._connections:  # insertion order: oldest first
            if isinstance(handler, _JsonErrorRequestHandler) and handler.idle():
                handler.force_close()
                self._connections.pop(handler, None)
                return True
        return False


def make_server(handler: Handler, *, max_body_bytes: int, log: logging.Logger, internal_error_text: str,
                header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
                max_connections: int = DEFAULT_MAX_CONNECTIONS) -> Server:
    """A server whose requests refuse bodies over `max_body_bytes` (the caller's limit, not aiohttp's 1 MiB),
    that closes connections whose request head is not complete within `header_timeout_s`, and keeps at most
    `max_connections` open."""
    if header_timeout_s <= 0 or max_connections < 1:
        raise ValueError("header_timeout_s must be > 0 and max_connections >= 1")

    def factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> BaseRequest:
        return BaseRequest(message, payload, protocol, writer, task, protocol._loop, client_max_size=max_body_bytes)

    return JsonErrorServer(handler, log=log, internal_error_text=internal_error_text,
                           header_timeout_s=header_timeout_s, max_connections=max_connections,
                           request_factory=factory, access_log=None, auto_decompress=False)
