"""Forwarding one request to one replica over a lean keep-alive HTTP/1.1 pool, thin on purpose.

The upstream hop is the router's hot path, so it does not go through a general HTTP client: the request head
is formatted once and written with the body in one `transport.write`, and the response is parsed by aiohttp's
C parser (llhttp) in an `asyncio.Protocol` (`_Conn`). Per replica address, idle connections wait in a LIFO
list (`UpstreamPool`); one idle longer than `keepalive_s`, or closed by the replica, is never handed out.

Request bodies up to `BodyPolicy.buffer_bytes` (known length or chunked) are read whole *before* a replica slot
is taken and sent as bytes (cheapest, one copy), so a slow client never holds a slot while its body trickles
in. Larger ones are streamed through (their first `buffer_bytes` read before the slot), counted against the
size limit, with their Content-Length when the client sent one, else chunked. Every body must arrive within
`timeout_s` plus the time `min_rate` allows for what has arrived (`BodyTimeout`: the router answers 408 and
frees the slot); a client whose connection fails mid-body is `ClientGone`, never blamed on the replica.
Responses with a small known length are read whole, others are streamed back chunk by chunk.

Failures, and what the caller may do about them:
- `ConnectFailed`: the connection to the replica could not be made, nothing was sent: retry elsewhere.
- a *reused* keep-alive connection that turns out closed before any byte of the response came back is
  retried once on a fresh connection to the same replica only for a `replayable` request (GET, or a service
  that declared its requests idempotent) whose body can be sent again. A POST is not: the same symptom is
  what a replica killed inside `run()` looks like, and RFC 9112 9.3.1 forbids re-sending a non-idempotent
  request that may have been applied. (The replicas keep idle connections longer than this pool does, so
  they do not close them under a request in normal operation.)
- `UpstreamDisconnected`: the connection closed or was reset after the request was sent (the replica may have
  run it); `UpstreamFailed` (its base): any other transport or protocol error after sending. Not retried here.
"""

from __future__ import annotations

import asyncio
import collections
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import aiohttp
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.http import HttpResponseParser
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_request import BaseRequest
from multidict import CIMultiDict

BUFFER_RESPONSE_BYTES = 1024 * 1024
READ_LIMIT = 2 ** 16                     # the parser's per-read buffer (flow control pauses at twice that)
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length"))
REPLICA_SECRET_HEADER = "x-openscore-replica-secret"  # proves to a replica that the request came from its router
# the key or token is the router's business, not the model's; Expect: this hop does not do 100-continue; the
# replica secret is the router's own (a client's copy is dropped, the router adds the real one)
_DROP_REQUEST = HOP_BY_HOP | {"authorization", "expect", "x-request-id", "x-forwarded-for", REPLICA_SECRET_HEADER}
_DROP_RESPONSE = HOP_BY_HOP | {"x-openscore-slots-busy", "x-openscore-slots-total", "x-openscore-queue-length",
                               "server", "date"}


class PayloadTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    """The client's body came in slower than the minimum rate the router allows: a 408."""


class ClientGone(Exception):
    """The client's connection failed while its body was being read: nobody is left to answer."""


@dataclass(frozen=True)
class BodyPolicy:
    """How request bodies are read. A body must be complete by `timeout_s` after the request head plus
    1/`min_rate` seconds per byte received, so a fast upload of any size passes and a trickle does not."""
    buffer_bytes: int = 1024 * 1024   # read whole before a slot is taken
    timeout_s: float = 30.0
    min_rate: float = 32 * 1024.0     # bytes per second

    def deadline(self, start: float, received: int) -> float:
        return start + self.timeout_s + received / self.min_rate


async def _chunk(stream: aiohttp.StreamReader, policy: BodyPolicy, start: float, received: int) -> bytes:
    """The next piece of the client's body, within the body deadline."""
    left = policy.deadline(start, received) - time.monotonic()
    if left <= 0:
        raise BodyTimeout()
    try:
        async with asyncio.timeout(left):
            return await stream.readany()
    except TimeoutError:
        raise BodyTimeout() from None
    except asyncio.CancelledError:
        raise
    except Exception as e:  # the client's connection failed or its framing broke mid-body
        raise ClientGone(f"{type(e).__name__}: {e}") from None


class ConnectFailed(Exception):
    """The connection to the replica failed before anything was sent: safe to retry elsewhere."""


class UpstreamFailed(Exception):
    """A transport or protocol failure after the request was (maybe) sent: not safe to retry."""


class UpstreamDisconnected(UpstreamFailed):
    """The replica closed or reset the connection before its response was complete."""


class _Lost(UpstreamDisconnected):
    """Internal: the connection was lost; `got_bytes` says whether any response byte had come back."""

    def __init__(self, text: str, got_bytes: bool):
        super().__init__(text)
        self.got_bytes = got_bytes


# ====================================================================== the request's side
def upstream_headers(request: BaseRequest, request_id: str) -> list[tuple[str, str]]:
    """The client's headers for the replica: hop-by-hop ones and Authorization dropped, the request id and
    X-Forwarded-For set."""
    drop = _DROP_REQUEST
    headers = request.headers
    out = [(k, v) for k, v in headers.items() if k.lower() not in drop]
    out.append(("x-request-id", request_id))
    peer = request.remote
    if peer:
        prior = headers.get("X-Forwarded-For")
        out.append(("X-Forwarded-For", f"{prior}, {peer}" if prior else peer))
    else:
        out.extend(("X-Forwarded-For", v) for v in headers.getall("X-Forwarded-For", ()))
    return out


async def read_body(request: BaseRequest, limit: int, policy: BodyPolicy = BodyPolicy(),
                    start: float | None = None) -> bytes | LimitedStream | None:
    """Bytes for bodies up to `policy.buffer_bytes`, read before any slot is taken; for larger ones a counting
    stream holding what was read so far. None for no body. Raises PayloadTooLarge, BodyTimeout, ClientGone."""
    if request.method != "POST":
        return None
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge()
    if length == 0:
        return b""
    stream = request.content
    if stream.is_eof():  # the common case: the whole body came with the head
        data = stream.read_nowait(-1)
        if len(data) > limit:
            raise PayloadTooLarge()
        return data
    start = time.monotonic() if start is None else start
    bound = min(policy.buffer_bytes, limit)
    chunks: list[bytes] = []
    seen = 0
    while seen <= bound:
        chunk = await _chunk(stream, policy, start, seen)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        seen += len(chunk)
    if seen > limit:
        raise PayloadTooLarge()
    return LimitedStream(stream, limit, length, chunks, policy, start)


class LimitedStream:
    """The client's body, passed through as it arrives, counted against the limit and held to the body
    deadline. `length` is the client's Content-Length (None: chunked); `prefix` is what was read before the
    slot was taken; `started` says whether any of it was sent (then it cannot be re-sent)."""

    def __init__(self, stream: aiohttp.StreamReader, limit: int, length: int | None = None,
                 prefix: list[bytes] | None = None, policy: BodyPolicy = BodyPolicy(), start: float | None = None):
        self.stream = stream
        self.limit = limit
        self.length = length
        self.prefix = prefix or []
        self.policy = policy
        self.start = time.monotonic() if start is None else start
        self.exceeded = False
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        seen = 0
        for chunk in self.prefix:
            self.started = True
            seen += len(chunk)
            yield chunk
        while True:
            chunk = await _chunk(self.stream, self.policy, self.start, seen)
            self.started = True
            if not chunk:
                return
            seen += len(chunk)
            if seen > self.limit:
                self.exceeded = True
                raise PayloadTooLarge()
            yield chunk


# ====================================================================== one connection
class _Conn(BaseProtocol):
    """One keep-alive connection to a replica; one request at a time."""

    __slots__ = (
        "got_bytes",
        "head",
        "idle_since",
        "key",
        "lost",
        "parser",
        "payload",
        "pool",
        "should_close",
        "uses",
        "writer",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, pool: UpstreamPool, key: str):
        super().__init__(loop)
        self.pool = pool
        self.key = key
        self.parser = HttpResponseParser(self, loop, READ_LIMIT, max_line_size=8190, max_field_size=8190,
                                         response_with_body=True, read_until_eof=True, auto_decompress=False)
        self._parser = self.parser  # BaseProtocol's flow control pauses it
        self.head: asyncio.Future | None = None     # (message, payload) of the current request's response
        self.payload: StreamReader | None = None    # its body while it is still arriving
        self.got_bytes = False
        self.lost = False
        self.should_close = False
        self.idle_since = 0.0
        self.uses = 0
        self.writer: asyncio.Task | None = None     # the task streaming a request body

    # ------------------------------------------------------------------ asyncio.Protocol
    def data_received(self, data: bytes) -> None:
        if data:
            self.got_bytes = True
            if self.head is None and self.payload is None:  # nothing was asked: a broken peer
                self.should_close = True
                self.close()
                return
        try:
            messages, _upgraded, _tail = self.parser.feed_data(data)
        except BaseException as e:  # a malformed response
            self.should_close = True
            exc = UpstreamFailed(f"invalid response from the replica: {e!r}")
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()
            if not isinstance(e, Exception):
                raise
            return
        for message, payload in messages:
            code = message.code
            if 100 <= code < 200 and code != 101:
                continue  # an interim response: the real one follows
            if message.should_close:
                self.should_close = True
            head = self.head
            if head is None or head.done():  # a second, unasked response
                self.should_close = True
                self.close()
                return
            if payload is not EMPTY_PAYLOAD and not payload.is_eof():
                self.payload = payload
            head.set_result((message, payload))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost follows

    def connection_lost(self, exc: BaseException | None) -> None:
        super().connection_lost(exc)
        self.lost = True
        self.pool._forget(self)
        text = f"connection lost ({exc!r})" if exc is not None else "connection closed by the replica"
        payload = self.payload
        if payload is not None:
            try:
                self.parser.feed_eof()  # completes a read-until-close body
            except Exception as e:
                payload.set_exception(UpstreamDisconnected(f"{text} during the response body: {e}"))
            else:
                if not payload.is_eof():
                    payload.set_exception(UpstreamDisconnected(f"{text} during the response body"))
            self.payload = None
        head = self.head
        if head is not None and not head.done():
            head.set_exception(_Lost(text, self.got_bytes))

    # ------------------------------------------------------------------ helpers
    def _fail(self, exc: BaseException) -> None:
        head = self.head
        if head is not None and not head.done():
            head.set_exception(exc)
        if self.payload is not None:
            self.payload.set_exception(exc)
            self.payload = None

    def close(self) -> None:
        self.should_close = True
        if self.writer is not None and not self.writer.done():
            self.writer.cancel()
        if self.transport is not None:
            self.transport.close()

    @property
    def reusable(self) -> bool:
        return (not self.should_close and not self.lost and self.transport is not None
                and not self.transport.is_closing())

    def finish(self) -> None:
        """The response body was read whole: back to the pool, or closed."""
        self.head = None
        self.payload = None
        w = self.writer
        if w is not None:
            self.writer = None
            if not w.done() or w.cancelled() or w.exception() is not None:
                self.should_close = True
        if self.reusable:
            self.pool._put(self)
        else:
            self.close()

    async def drain(self) -> None:
        if self.transport is None:
            raise UpstreamDisconnected("connection lost while sending the body")
        if self._paused:
            await self._drain_helper()


# ====================================================================== the pool
@dataclass
class Upstream:
    status: int
    headers: list[tuple[str, str]]          # without hop-by-hop headers and the replica's internals
    body: bytes | None                      # None: stream `payload`, then `finish()` / `close()`
    length: int | None                      # the replica's Content-Length
    payload: StreamReader | None = None
    conn: _Conn | None = None

    def finish(self) -> None:
        c, self.conn = self.conn, None
        if c is not None:
            c.finish()

    def close(self) -> None:
        c, self.conn = self.conn, None
        if c is not None:
            c.close()


class UpstreamPool:
    """Keep-alive connections per replica address ("http://host:port"), reused most recent first."""

    def __init__(self, keepalive_s: float = 30.0, max_idle_per_address: int = 256):
        self.keepalive_s = keepalive_s
        self.max_idle = max_idle_per_address
        self._idle: dict[str, collections.deque[_Conn]] = {}
        self._addr: dict[str, tuple[str, int, str]] = {}
        self._closed = False
        self.connections_opened = 0  # for tests and debugging

    # ------------------------------------------------------------------ connections
    def _target(self, address: str) -> tuple[str, int, str]:
        t = self._addr.get(address)
        if t is None:
            hostport = address.rpartition("//")[2].rstrip("/")
            host, port = host_port(address)
            t = self._addr[address] = (host, port, hostport)
        return t

    def _get_idle(self, address: str) -> _Conn | None:
        idle = self._idle.get(address)
        if not idle:
            return None
        limit = time.monotonic() - self.keepalive_s
        while idle:
            c = idle.pop()
            if c.reusable and c.idle_since >= limit:
                return c
            c.close()
        return None

    async def _connect(self, address: str) -> _Conn:
        host, port, _ = self._target(address)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(loop, self, address), host, port)
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {address}: {e.strerror or e!r}") from e
        self.connections_opened += 1
        return conn

    def _put(self, c: _Conn) -> None:
        if self._closed:
            c.close()
            return
        idle = self._idle.get(c.key)
        if idle is None:
            idle = self._idle[c.key] = collections.deque()
        now = time.monotonic()
        c.idle_since = now
        idle.append(c)
        limit = now - self.keepalive_s
        while idle and (idle[0].idle_since < limit or len(idle) > self.max_idle):
            idle.popleft().close()

    def _forget(self, c: _Conn) -> None:
        idle = self._idle.get(c.key)
        if idle:
            try:
                idle.remove(c)
            except ValueError:
                pass

    async def close(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        self._idle.clear()
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ one exchange
    async def send(self, method: str, address: str, path: str, headers: list[tuple[str, str]],
                   body: bytes | LimitedStream | None, replayable: bool | None = None) -> Upstream:
        """Send the request and read the response head (and a small body whole).

        `replayable`: the request may be sent again if a reused connection turns out closed (default: GET
        and HEAD only). Raises ConnectFailed (nothing sent), PayloadTooLarge / BodyTimeout / ClientGone (a
        streamed body over the limit, too slow, or cut off by the client), UpstreamDisconnected /
        UpstreamFailed after sending."""
        if replayable is None:
            replayable = method in ("GET", "HEAD")
        hostport = self._target(address)[2]
        stream: LimitedStream | None
        plain: bytes | None
        stream, plain = (body, None) if isinstance(body, LimitedStream) else (None, body)
        text = f"{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n" + "".join([f"{k}: {v}\r\n" for k, v in headers])
        n = len(headers)
        head = text.encode("utf-8", "surrogateescape")
        if head.count(b"\n") != n + 2 or head.count(b"\r") != n + 2:
            raise UpstreamFailed("a header or the path holds a line break")  # never forward an injected line
        if stream is not None:
            head += (b"Transfer-Encoding: chunked\r\n\r\n" if stream.length is None
                     else b"Content-Length: %d\r\n\r\n" % stream.length)
        elif plain is not None:
            head += b"Content-Length: %d\r\n\r\n" % len(plain)
        else:
            head += b"\r\n"
        data = head + plain if plain else head

        for attempt in (0, 1):
            idle = self._get_idle(address) if attempt == 0 else None
            reused = idle is not None
            conn = idle if idle is not None else await self._connect(address)
            loop = conn._loop
            fut = conn.head = loop.create_future()
            conn.got_bytes = False
            conn.uses += 1
            try:
                conn.transport.write(data)  # type: ignore[union-attr]
                if stream is not None:
                    conn.writer = loop.create_task(self._write_body(conn, stream))
                    conn.writer.add_done_callback(partial(_writer_done, conn))
                message, payload = await fut
            except _Lost as e:
                conn.close()
                if reused and replayable and not e.got_bytes and not (stream is not None and stream.started):
                    continue  # a stale keep-alive connection and a request that may be re-sent: once more
                raise UpstreamDisconnected(str(e)) from None
            except BaseException:
                conn.close()
                raise
            break
        try:
            status = message.code
            drop = _DROP_RESPONSE
            out = [(k, v) for k, v in message.headers.items() if k.lower() not in drop]
            cl = message.headers.get("Content-Length")
            length = int(cl) if cl is not None and cl.isdigit() else None
            if payload is EMPTY_PAYLOAD or status in (204, 304):
                conn.finish()
                return Upstream(status, out, b"", length)
            if length is not None and length <= BUFFER_RESPONSE_BYTES:
                if payload.is_eof():
                    data = payload.read_nowait(-1)
                else:
                    data = await payload.read()
                conn.finish()
                return Upstream(status, out, data, length)
            return Upstream(status, out, None, length, payload, conn)
        except BaseException:
            conn.close()
            raise

    @staticmethod
    async def _write_body(conn: _Conn, body: LimitedStream) -> None:
        chunked = body.length is None
        async for chunk in body:
            t = conn.transport
            if t is None:
                raise UpstreamDisconnected("connection lost while sending the body")
            if chunked:
                t.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
            else:
                t.write(chunk)
            await conn.drain()
        if chunked and conn.transport is not None:
            conn.transport.write(b"0\r\n\r\n")


def _writer_done(conn: _Conn, task: asyncio.Task) -> None:
    """A failed body stream ends the exchange at once (before the replica answers, if it has not)."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    conn.should_close = True
    head = conn.head
    if head is not None and not head.done():
        head.set_exception(exc)
    if conn.transport is not None:
        conn.transport.close()


# ====================================================================== the response's side
async def stream_back(request: BaseRequest, up: Upstream, status: int, headers: CIMultiDict[str]) -> web.StreamResponse:
    """Copy a large or unknown-length upstream body to the client as it arrives."""
    out = web.StreamResponse(status=status, headers=headers)
    if up.length is not None:
        out.content_length = up.length
    try:
        await out.prepare(request)
        payload = up.payload
        assert payload is not None
        while True:
            chunk = await payload.readany()
            if not chunk:
                break
            await out.write(chunk)
        await out.write_eof()
        up.finish()
    finally:
        up.close()
    return out


async def is_dead(address: str, timeout_s: float = 0.25) -> bool:
    """True when nothing listens at the replica's address any more (connection refused)."""
    host, port = host_port(address)
    try:
        _, w = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:  # (a subclass of OSError: first) slow to accept is not dead
        return False
    except OSError:
        return True
    w.close()
    return False


def host_port(address: str) -> tuple[str, int]:
    """(host, port) of a base URL or `host:port`, IPv6 literals included (`http://[::1]:8080` -> ("::1", 8080));
    the scheme's default port when none is given. ValueError for anything else."""
    url = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    port = url.port  # raises ValueError for a port out of range or not a number
    if not url.hostname:
        raise ValueError(f"no host in address {address!r}")
    if port is None:
        port = 443 if url.scheme == "https" else 80
    return url.hostname, port
