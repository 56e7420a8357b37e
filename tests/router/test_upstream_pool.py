"""The router's upstream keep-alive pool (router/proxy.py) against scripted in-process HTTP servers.

Each server reads request heads (and Content-Length or chunked bodies) itself, so a test decides exactly when
a connection closes: before any response byte, after part of one, or while idle.
"""

import asyncio
import json

import pytest

from openscore.router import proxy

try:
    import uvloop  # what the router runs on when installed (a dependency of openscore)
except ImportError:  # pragma: no cover - the pool must work on plain asyncio too
    uvloop = None  # type: ignore[assignment]
LOOPS = {"asyncio": asyncio.new_event_loop, **({"uvloop": uvloop.new_event_loop} if uvloop else {})}


def run(factory, coro):
    with asyncio.Runner(loop_factory=factory) as runner:  # cancels what is left at the end
        return runner.run(asyncio.wait_for(coro, 20))


async def read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip(), 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
        body = b"".join(parts)
    return lines[0], headers, body


def response(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n"
            f"x-openscore-slots-busy: 1\r\nServer: test\r\n{extra}\r\n").encode() + body


class Server:
    """Counts connections; `behave(conn_index, request_index_on_conn, request, writer)` answers or not."""

    def __init__(self, behave):
        self.behave = behave
        self.connections = 0
        self.requests: list[tuple[int, int, str, dict, bytes]] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader, writer) -> None:
        index = self.connections
        self.connections += 1
        n = 0
        try:
            while True:
                req = await read_request(reader)
                if req is None:
                    break
                self.requests.append((index, n, *req))
                if not await self.behave(index, n, req, writer):
                    break
                n += 1
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()


async def echo(index, n, req, writer) -> bool:
    line, headers, body = req
    writer.write(response(json.dumps({"line": line, "len": len(body), "conn": index, "headers": headers}).encode()))
    await writer.drain()
    return True


def answer(pool: proxy.UpstreamPool, address: str, body=b"{}", headers=None):
    return pool.send("POST", address, "/score", headers or [("Content-Type", "application/json")], body)


def with_pool(factory, behave, check) -> None:
    """Run `check(server, address, pool)` against a scripted server; both are closed after, pass or fail."""
    async def main():
        srv = Server(behave)
        addr = await srv.start()
        pool = proxy.UpstreamPool()
        try:
            await check(srv, addr, pool)
        finally:
            await pool.close()
            await srv.stop()
    run(factory, main())


@pytest.fixture(params=sorted(LOOPS))
def loop_factory(request):
    return LOOPS[request.param]


def test_keep_alive_reuse_and_headers(loop_factory):
    async def check(srv, addr, pool):
        for i in range(5):
            up = await answer(pool, addr, b'{"i": %d}' % i, [("X-Thing", "v"), ("Content-Type", "application/json")])
            assert up.status == 200 and up.conn is None  # read whole, connection back in the pool
            got = json.loads(up.body)
            assert got["line"] == "POST /score HTTP/1.1" and got["len"] == len(b'{"i": 0}')
            assert got["headers"]["host"] == addr.split("//")[1] and got["headers"]["x-thing"] == "v"
            names = {k.lower() for k, _ in up.headers}
            assert "x-openscore-slots-busy" not in names and "server" not in names
            assert "content-length" not in names and "content-type" in names  # the router frames it itself
        assert srv.connections == 1 and pool.connections_opened == 1
    with_pool(loop_factory, echo, check)


def test_stale_reused_connection_is_retried_on_a_fresh_one_for_a_get(loop_factory):
    """The replica closes a kept-alive connection just as the next request goes out (no response byte):
    a GET is sent again on a new connection, once."""
    async def behave(index, n, req, writer):
        if index == 0 and n == 1:
            return False  # close without answering the second request on the first connection
        return await echo(index, n, req, writer)

    async def check(srv, addr, pool):
        assert (await answer(pool, addr)).status == 200
        up = await pool.send("GET", addr, "/swagger.json", [], None)
        assert up.status == 200 and json.loads(up.body)["conn"] == 1
        assert srv.connections == 2 and [r[:2] for r in srv.requests] == [(0, 0), (0, 1), (1, 0)]
    with_pool(loop_factory, behave, check)


def test_a_post_on_a_reused_connection_closed_without_answer_is_not_sent_again(loop_factory):
    """The same symptom is what a replica killed inside run() looks like: a POST may have run, so it is sent
    once (UpstreamDisconnected), unless the caller says it is replayable."""
    async def behave(index, n, req, writer):
        if index == 0 and n == 1:
            return False
        return await echo(index, n, req, writer)

    async def check(srv, addr, pool):
        assert (await answer(pool, addr)).status == 200
        with pytest.raises(proxy.UpstreamDisconnected):
            await answer(pool, addr, b'{"again": 1}')
        assert srv.connections == 1 and [r[:2] for r in srv.requests] == [(0, 0), (0, 1)]
        assert (await answer(pool, addr)).status == 200  # and the next one on a new connection
        up = await pool.send("POST", addr, "/score", [], b"{}", replayable=True)  # declared idempotent
        assert up.status == 200
    with_pool(loop_factory, behave, check)


def test_fresh_connection_closed_without_answer_is_not_retried(loop_factory):
    async def behave(index, n, req, writer):
        return False

    async def check(srv, addr, pool):
        with pytest.raises(proxy.UpstreamDisconnected):
            await answer(pool, addr)
        assert srv.connections == 1 and len(srv.requests) == 1  # sent once: it may have run
    with_pool(loop_factory, behave, check)


def test_reused_connection_lost_after_a_response_byte_is_not_retried(loop_factory):
    async def behave(index, n, req, writer):
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Len")
            await writer.drain()
            return False
        return await echo(index, n, req, writer)

    async def check(srv, addr, pool):
        assert (await answer(pool, addr)).status == 200
        with pytest.raises(proxy.UpstreamDisconnected):
            await answer(pool, addr)
        assert srv.connections == 1 and len(srv.requests) == 2
    with_pool(loop_factory, behave, check)


def test_idle_connection_closed_by_the_replica_is_not_reused(loop_factory):
    async def behave(index, n, req, writer):
        await echo(index, n, req, writer)
        return False  # keep-alive promised, then closed while idle

    async def check(srv, addr, pool):
        assert (await answer(pool, addr)).status == 200
        await asyncio.sleep(0.1)  # the FIN arrives while the connection is idle in the pool
        up = await answer(pool, addr)
        assert up.status == 200 and json.loads(up.body)["conn"] == 1
        assert len(srv.requests) == 2  # nothing was sent on the closed connection
    with_pool(loop_factory, behave, check)


def test_connect_failure_is_connect_failed(loop_factory):
    async def main():
        srv = Server(echo)
        addr = await srv.start()
        await srv.stop()
        srv.server.close()
        await srv.server.wait_closed()
        pool = proxy.UpstreamPool()
        with pytest.raises(proxy.ConnectFailed):
            await answer(pool, addr)
    run(loop_factory, main())


class Chunks:
    """Stands in for the client's body stream (what LimitedStream reads)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        return self.chunks.pop(0) if self.chunks else b""


def test_streamed_bodies_both_ways(loop_factory):
    """A chunked request body and a chunked 3 MB response, then the connection is reused."""
    big = b"r" * (3 * 1024 * 1024)

    async def behave(index, n, req, writer):
        _line, headers, body = req
        if body.startswith(b"big"):
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i in range(0, len(big), 100_000):
                part = big[i:i + 100_000]
                writer.write(b"%x\r\n%s\r\n" % (len(part), part))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        writer.write(response(json.dumps({"len": len(body), "te": headers.get("transfer-encoding"),
                                          "cl": headers.get("content-length")}).encode()))
        await writer.drain()
        return True

    async def check(srv, addr, pool):
        body = proxy.LimitedStream(Chunks([b"a" * 300_000] * 4), 10 ** 7)  # unknown length: chunked
        up = await answer(pool, addr, body)
        assert json.loads(up.body) == {"len": 1_200_000, "te": "chunked", "cl": None}
        body = proxy.LimitedStream(Chunks([b"a" * 300_000] * 2), 10 ** 7, 600_000)  # known: Content-Length
        up = await answer(pool, addr, body)
        assert json.loads(up.body) == {"len": 600_000, "te": None, "cl": "600000"}
        up = await answer(pool, addr, b"big")
        assert up.body is None and up.length is None
        got = []
        while chunk := await up.payload.readany():
            got.append(chunk)
        up.finish()
        assert b"".join(got) == big
        assert (await answer(pool, addr)).status == 200
        assert srv.connections == 1
    with_pool(loop_factory, behave, check)


def test_streamed_body_over_the_limit(loop_factory):
    async def check(srv, addr, pool):
        body = proxy.LimitedStream(Chunks([b"a" * 1000] * 5), 3000)
        with pytest.raises(proxy.PayloadTooLarge):
            await answer(pool, addr, body)
        assert body.exceeded
        assert (await answer(pool, addr)).status == 200  # a fresh connection for the next one
    with_pool(loop_factory, echo, check)


def test_line_breaks_in_headers_are_refused(loop_factory):
    async def check(srv, addr, pool):
        with pytest.raises(proxy.UpstreamFailed):
            await answer(pool, addr, b"{}", [("X-A", "v\r\nX-Injected: 1")])
        assert srv.requests == []
    with_pool(loop_factory, echo, check)


def test_cancelled_exchange_closes_the_connection(loop_factory):
    async def behave(index, n, req, writer):
        if n == 0 and index == 0:
            await asyncio.sleep(5)
        return await echo(index, n, req, writer)

    async def check(srv, addr, pool):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.2):
                await answer(pool, addr)
        up = await answer(pool, addr)  # never the half-used connection
        assert up.status == 200 and json.loads(up.body)["conn"] == 1
    with_pool(loop_factory, behave, check)
