"""aiohttp's low-level server with JSON protocol errors (as the runtime's): the cheapest per request."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_server import Server

log = logging.getLogger("openscore.router")
Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


class _JsonErrors(RequestHandler):
    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            status, text = 431, f"Request header fields too large: {exc.message}"
        elif isinstance(exc, BadHttpMessage):
            text = f"Bad request: {exc.message}"
        elif status >= 500:
            log.error("unhandled error while serving %s", request.path, exc_info=exc)
            text = "An unexpected internal error occurred in the router. Check its logs."
        else:
            text = message or "Bad request"
        resp = web.Response(status=status, body=orjson.dumps({"message": text}),
                            headers={hdrs.CONTENT_TYPE: "application/json"})
        resp.force_close()
        return resp


class _Server(Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrors(self, loop=self._loop, **self._kwargs)


def make_server(handler: Handler) -> Server:
    # no body size limit here: the front end enforces each service's own limit while streaming
    def factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> BaseRequest:
        return BaseRequest(message, payload, protocol, writer, task, protocol._loop, client_max_size=2 ** 62)

    return _Server(handler, request_factory=factory, access_log=None)
