"""Forwarding one request to one replica over a keep-alive pool (aiohttp client), thin on purpose.

Small bodies with a known length are read once and sent as bytes (cheapest, one copy); others are streamed
through, counted against the size limit. Responses with a small known length are read whole, others are
streamed back chunk by chunk. A failure to *connect* means the request never left, so the caller may retry it
elsewhere; any later failure is not retried (the replica may have run it).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp
from aiohttp import hdrs, web
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict, CIMultiDictProxy

BUFFER_REQUEST_BYTES = 256 * 1024
BUFFER_RESPONSE_BYTES = 1024 * 1024
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))
_DROP_REQUEST = HOP_BY_HOP | {"authorization"}  # the key or token is the router's business, not the model's
_DROP_RESPONSE = HOP_BY_HOP | {"x-openscore-slots-busy", "x-openscore-slots-total", "x-openscore-queue-length",
                               "server", "date"}


class PayloadTooLarge(Exception):
    pass


class ConnectFailed(Exception):
    """The connection to the replica failed before anything was sent: safe to retry elsewhere."""


def new_session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=30, enable_cleanup_closed=False)
    return aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(),
                                 cookie_jar=aiohttp.DummyCookieJar(), skip_auto_headers=("User-Agent",))


def upstream_headers(request: BaseRequest, request_id: str) -> CIMultiDict[str]:
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in request.headers.items():
        if k.lower() not in _DROP_REQUEST:
            out.add(k, v)
    out["x-request-id"] = request_id
    peer = request.remote
    if peer:
        prior = request.headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    return out


async def read_body(request: BaseRequest, limit: int) -> "bytes | LimitedStream | None":
    """Bytes for small known-length bodies, a counting stream otherwise; None for no body."""
    if request.method != "POST":
        return None
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge()
    if length is not None and length <= BUFFER_REQUEST_BYTES:
        return await request.read() if length else b""
    return LimitedStream(request.content, limit)


class LimitedStream:
    """The client's body, passed through as it arrives; `exceeded` tells a 413 from a transport error
    (the client library wraps the exception raised here)."""

    def __init__(self, stream: aiohttp.StreamReader, limit: int):
        self.stream = stream
        self.limit = limit
        self.exceeded = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        async for chunk in self.stream.iter_any():
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise PayloadTooLarge()
            yield chunk


@dataclass
class Upstream:
    status: int
    headers: CIMultiDict[str]
    body: bytes | None                      # None: stream `response`
    response: aiohttp.ClientResponse


async def send(session: aiohttp.ClientSession, method: str, url: str, headers: CIMultiDict[str],
               body: "bytes | LimitedStream | None") -> Upstream:
    """Send and read the head (and a small body). Raises ConnectFailed, or aiohttp errors after sending."""
    try:
        data = body.__aiter__() if isinstance(body, LimitedStream) else body
        resp = await session.request(method, url, headers=headers, data=data, allow_redirects=False,
                                     compress=None, skip_auto_headers=("Content-Type",))
    except aiohttp.ClientConnectorError as e:
        raise ConnectFailed(str(e)) from e
    except Exception:
        if isinstance(body, LimitedStream) and body.exceeded:
            raise PayloadTooLarge() from None
        raise
    try:
        out = CIMultiDict((k, v) for k, v in resp.headers.items() if k.lower() not in _DROP_RESPONSE)
        length = resp.content_length
        data = None
        if length is not None and length <= BUFFER_RESPONSE_BYTES:
            data = await resp.read()
            resp.release()
        return Upstream(resp.status, out, data, resp)
    except BaseException:
        resp.close()
        raise


async def stream_back(request: BaseRequest, up: Upstream, status: int, headers: CIMultiDict[str]) -> web.StreamResponse:
    """Copy a large or unknown-length upstream body to the client as it arrives."""
    out = web.StreamResponse(status=status, headers=headers)
    if up.response.content_length is not None:
        out.content_length = up.response.content_length
    try:
        await out.prepare(request)
        async for chunk in up.response.content.iter_chunked(64 * 1024):
            await out.write(chunk)
        await out.write_eof()
    finally:
        up.response.close()
    return out


def filtered(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> CIMultiDict[str]:
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _DROP_RESPONSE)


async def aclose(up: Upstream | None) -> None:
    if up is not None:
        up.response.close()
        await asyncio.sleep(0)


async def is_dead(address: str, timeout_s: float = 0.25) -> bool:
    """True when nothing listens at the replica's address any more (connection refused)."""
    host, _, port = address.rpartition("//")[2].partition(":")
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except TimeoutError:  # (a subclass of OSError: first) slow to accept is not dead
        return False
    except OSError:
        return True
    w.close()
    return False
