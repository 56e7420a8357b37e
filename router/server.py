"""The router's HTTP server: the runtime's low-level aiohttp server with JSON protocol errors."""

from __future__ import annotations

import logging

from aiohttp.web_server import Server

from openscore.http_server import Handler
from openscore.http_server import make_server as _make_server

log = logging.getLogger("openscore.router")


def make_server(handler: Handler) -> Server:
    # no body size limit here: the front end enforces each service's own limit while streaming
    return _make_server(handler, max_body_bytes=2 ** 62, log=log,
                        internal_error_text="An unexpected internal error occurred in the router. Check its logs.")
