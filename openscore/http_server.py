"""aiohttp's low-level server (the cheapest per request) with protocol errors answered as JSON.

Shared by the scoring server and the router: a bad request line, a header over the limit (431) or a
handler crash gets `{"message": ...}` like every other error, never aiohttp's plain-text page.
"""

from __future__ import annotations

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


class _JsonErrorRequestHandler(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        server: JsonErrorServer = self._manager  # type: ignore[assignment]
        if isinstance(exc, LineTooLong):
            status, text = 431, f"Request header fields too large: {exc.message}"
        elif isinstance(exc, BadHttpMessage):
            text = f"Bad request: {exc.message}"
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
    def __init__(self, handler: Handler, *, log: logging.Logger, internal_error_text: str, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.log = log
        self.internal_error_text = internal_error_text

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)


def make_server(handler: Handler, *, max_body_bytes: int, log: logging.Logger,
                internal_error_text: str) -> Server:
    """A server whose requests refuse bodies over `max_body_bytes` (the caller's limit, not aiohttp's 1 MiB)."""
    def factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> BaseRequest:
        return BaseRequest(message, payload, protocol, writer, task, protocol._loop, client_max_size=max_body_bytes)

    return JsonErrorServer(handler, log=log, internal_error_text=internal_error_text, request_factory=factory,
                           access_log=None)
