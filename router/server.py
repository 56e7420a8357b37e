"""The router's HTTP server: the runtime's low-level aiohttp server with JSON protocol errors."""

from __future__ import annotations

import logging

from aiohttp.web_server import Server

from openscore.http_server import Handler
from openscore.http_server import make_server as _make_server

log = logging.getLogger("openscore.router")


def make_server(handler: Handler, *, header_timeout_s: float = 15.0, max_connections: int = 4096) -> Server:
    """`header_timeout_s`: a request's headers must arrive within it; `max_connections`: open client
    connections at most (both from RouterSettings; enforced by openscore.http_server)."""
    # no body size limit here: the front end enforces each service's own limit while streaming
    # a gzip (or deflate, br) body is passed through as sent, with its Content-Encoding: the shared server
    # never inflates bodies; the replica inflates it under its own body limit, off its event loop
    server = _make_server(handler, max_body_bytes=2 ** 62, log=log,
                          internal_error_text="An unexpected internal error occurred in the router. Check its logs.",
                          header_timeout_s=header_timeout_s, max_connections=max_connections)
    return server
