"""The aiohttp internals our two HTTP modules build on are still there and still take what we pass.

openscore/http_server.py subclasses aiohttp's low-level Server and RequestHandler and builds requests itself;
router/proxy.py drives aiohttp's llhttp response parser from its own asyncio protocol. None of that is public
API, so pyproject.toml pins aiohttp to the minor range tested. When the pin is raised, this file says which
internal moved and which of our files must follow, instead of a confusing failure deep in another test.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import base_protocol, hdrs, http, http_exceptions, streams, web, web_protocol, web_request, web_server
from packaging.requirements import Requirement

from openscore import http_server
from openscore.router import proxy

HTTP_SERVER = "openscore/http_server.py"
PROXY = "router/proxy.py"
USERS_OF_SERVER = "runtime/worker.py, router/cli.py"  # they call shutdown() on what make_server returns
ROOT = Path(__file__).resolve().parent.parent
_ = object()  # a placeholder argument: only whether the signature accepts it matters


@dataclass
class Use:
    """One internal and how we use it: `check` raises (or returns a reason) when that use would break."""

    internal: str
    user: str
    check: Callable[[], str | None]


def has(obj: Any, *names: str) -> Callable[[], str | None]:
    def check() -> str | None:
        missing = [n for n in names if not hasattr(obj, n)]
        return f"missing {', '.join(missing)}" if missing else None
    return check


def binds(func: Any, *args: Any, **kwargs: Any) -> Callable[[], str | None]:
    """The call we make, as placeholders: does `func`'s signature accept it?"""
    def check() -> str | None:
        try:
            inspect.signature(func).bind(*args, **kwargs)
        except TypeError as e:
            return f"signature {inspect.signature(func)} does not take our call: {e}"
        return None
    return check


def slots_or_attrs(cls: type, *names: str) -> Callable[[], str | None]:
    """Attributes an instance of `cls` gets in its __init__ (declared in __slots__ somewhere in its MRO)."""
    def check() -> str | None:
        declared = {s for c in cls.__mro__ for s in getattr(c, "__slots__", ())}
        missing = [n for n in names if n not in declared]
        return f"no longer declares {', '.join(missing)}" if missing else None
    return check


USES = [
    # ---- openscore/http_server.py
    Use("aiohttp.hdrs.CONTENT_TYPE", HTTP_SERVER, has(hdrs, "CONTENT_TYPE")),
    Use("aiohttp.web.Response(status=, body=, headers=).force_close()", HTTP_SERVER,
        lambda: binds(web.Response, status=400, body=b"", headers={})() or has(web.Response, "force_close")()),
    Use("aiohttp.http_exceptions.LineTooLong / BadHttpMessage .message", HTTP_SERVER,
        lambda: None if issubclass(http_exceptions.LineTooLong, http_exceptions.BadHttpMessage)
        and hasattr(http_exceptions.LineTooLong("x", 8190, "9000"), "message")
        else "LineTooLong is no longer a BadHttpMessage with .message (the 431 branch is checked first)"),
    Use("aiohttp.web_protocol.RequestHandler(manager, loop=, **kwargs)", HTTP_SERVER,
        binds(web_protocol.RequestHandler, _, loop=_, access_log=None)),
    Use("aiohttp.web_protocol.RequestHandler.handle_error(request, status, exc, message)", HTTP_SERVER,
        binds(web_protocol.RequestHandler.handle_error, _, _, status=500, exc=None, message=None)),
    Use("aiohttp.web_protocol.RequestHandler._manager", HTTP_SERVER,
        slots_or_attrs(web_protocol.RequestHandler, "_manager")),
    Use("aiohttp.web_protocol.RequestHandler._loop (the request factory's protocol._loop)", HTTP_SERVER,
        slots_or_attrs(web_protocol.RequestHandler, "_loop")),
    Use("aiohttp.web_server.Server(handler, request_factory=, access_log=)", HTTP_SERVER,
        binds(web_server.Server, _, request_factory=_, access_log=None)),
    Use("aiohttp.web_server.Server.__call__ (the protocol factory we override)", HTTP_SERVER,
        lambda: None if "__call__" in vars(web_server.Server) else "Server is no longer the protocol factory"),
    Use("aiohttp.web_server.Server request_factory(message, payload, protocol, writer, task)", HTTP_SERVER,
        binds(web_server.Server._make_request, _, _, _, _, _, _)),
    Use("aiohttp.web_request.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=)",
        HTTP_SERVER, binds(web_request.BaseRequest, _, _, _, _, _, _, client_max_size=1)),
    Use("aiohttp.web_server.Server.shutdown(timeout)", USERS_OF_SERVER, binds(web_server.Server.shutdown, _, 1.0)),
    # ---- router/proxy.py
    Use("aiohttp.StreamReader", PROXY, has(aiohttp, "StreamReader")),
    Use("aiohttp.base_protocol.BaseProtocol(loop)", PROXY, binds(base_protocol.BaseProtocol, _)),
    Use("aiohttp.base_protocol.BaseProtocol _loop, _parser, _paused, transport", PROXY,
        slots_or_attrs(base_protocol.BaseProtocol, "_loop", "_parser", "_paused", "transport")),
    Use("aiohttp.base_protocol.BaseProtocol._drain_helper()", PROXY,
        lambda: None if inspect.iscoroutinefunction(getattr(base_protocol.BaseProtocol, "_drain_helper", None))
        else "_drain_helper is gone or no longer a coroutine function"),
    Use("aiohttp.base_protocol.BaseProtocol.connection_lost(exc)", PROXY,
        binds(base_protocol.BaseProtocol.connection_lost, _, None)),
    Use("aiohttp.http.HttpResponseParser .feed_data .feed_eof .pause_reading", PROXY,
        has(http.HttpResponseParser, "feed_data", "feed_eof", "pause_reading")),
    Use("aiohttp.streams.EMPTY_PAYLOAD", PROXY, has(streams, "EMPTY_PAYLOAD")),
    Use("aiohttp.streams.StreamReader .readany() .read() .read_nowait(-1) .is_eof() .set_exception(exc)", PROXY,
        lambda: binds(streams.StreamReader.read_nowait, _, -1)()
        or binds(streams.StreamReader.set_exception, _, _)()
        or has(streams.StreamReader, "readany", "read", "is_eof")()),
    Use("aiohttp.web_request.BaseRequest .headers .remote .method .content_length .read() .content", PROXY,
        has(web_request.BaseRequest, "headers", "remote", "method", "content_length", "read", "content")),
    Use("aiohttp.web.StreamResponse(status=, headers=) .content_length .prepare .write .write_eof", PROXY,
        lambda: binds(web.StreamResponse, status=200, headers={})()
        or has(web.StreamResponse, "content_length", "prepare", "write", "write_eof")()),
]


@pytest.mark.parametrize("use", USES, ids=[u.internal for u in USES])
def test_internal_is_as_we_use_it(use: Use) -> None:
    problem = use.check()
    if problem:
        pytest.fail(f"aiohttp {aiohttp.__version__}: {use.internal} changed ({problem}); {use.user} uses it",
                    pytrace=False)


def test_installed_aiohttp_is_within_the_pin() -> None:
    """The range above was tested; an aiohttp outside pyproject's pin is untested with these internals."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(Requirement(d) for d in deps if Requirement(d).name == "aiohttp")
    assert pin.specifier.contains(aiohttp.__version__), (
        f"aiohttp {aiohttp.__version__} is installed, pyproject pins {pin}: run this file against it, then move "
        f"the pin ({HTTP_SERVER}, {PROXY} use aiohttp internals)")


@pytest.mark.skipif(bool(os.environ.get("AIOHTTP_NO_EXTENSIONS")), reason="aiohttp's C extensions turned off")
def test_response_parser_is_the_c_one() -> None:
    """router/proxy.py's hot path counts on llhttp; the pure-Python fallback works but costs far more CPU."""
    assert http.HttpResponseParser.__module__ == "aiohttp._http_parser", (
        f"aiohttp {aiohttp.__version__} exports {http.HttpResponseParser.__module__}.HttpResponseParser: "
        f"{PROXY} is meant to run on aiohttp's C parser (install a wheel with the extensions)")


# ---------------------------------------------------------------------- the internals at work
def test_request_handler_gets_what_the_subclass_reads() -> None:
    """http_server's factory passes the Server's `_loop` and `_kwargs` on; its handler reads the server back
    from `_manager` and builds requests on `protocol._loop`."""
    async def main() -> None:
        server = http_server.make_server(_ok, max_body_bytes=10, log=logging.getLogger("t"),
                                         internal_error_text="internal")
        loop = asyncio.get_running_loop()
        assert getattr(server, "_loop", None) is loop, f"Server._loop is not the loop ({HTTP_SERVER})"
        assert getattr(server, "_kwargs", {}).get("access_log", _) is None, (
            f"Server._kwargs no longer keeps the handler's keyword arguments ({HTTP_SERVER})")
        handler = server()
        assert isinstance(handler, web_protocol.RequestHandler)
        assert handler._manager is server, f"RequestHandler._manager no longer holds the Server ({HTTP_SERVER})"
        assert handler._loop is loop, f"RequestHandler._loop is not the loop ({HTTP_SERVER})"
    asyncio.run(main())


async def _ok(request: web_request.BaseRequest) -> web.StreamResponse:
    if request.path == "/crash":
        raise RuntimeError("boom")
    body = await request.read()
    return web.Response(body=b"read %d" % len(body))


async def _exchange(port: int, raw: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_http_server_answers_protocol_errors_as_json() -> None:
    """Through the overridden factory, handler and request factory: each error path ends in JSON."""
    async def main() -> dict[str, tuple[int, bytes]]:
        server = http_server.make_server(_ok, max_body_bytes=10, log=logging.getLogger("openscore.test"),
                                         internal_error_text="internal error")
        listener = await asyncio.get_running_loop().create_server(server, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        close = b"Connection: close\r\n"
        try:
            return {
                "small": await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n" + close +
                                         b"Content-Length: 5\r\n\r\nhello"),
                "over": await _exchange(port, b"POST / HTTP/1.1\r\nHost: x\r\n" + close +
                                        b"Content-Length: 11\r\n\r\nhello world"),
                "header": await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"),
                "garbage": await _exchange(port, b"NOT HTTP AT ALL\r\n\r\n"),
                "crash": await _exchange(port, b"GET /crash HTTP/1.1\r\nHost: x\r\n" + close + b"\r\n"),
            }
        finally:
            listener.close()
            await server.shutdown(1.0)
            await listener.wait_closed()

    got = asyncio.run(main())
    assert got["small"] == (200, b"read 5")
    assert got["over"][0] == 413, f"client_max_size from the request factory is not applied ({HTTP_SERVER})"
    assert got["header"][0] == 431
    assert orjson.loads(got["header"][1])["message"].startswith("Request header fields too large")
    assert got["garbage"][0] == 400
    assert orjson.loads(got["garbage"][1])["message"].startswith("Bad request")
    assert got["crash"] == (500, b'{"message":"internal error"}')


def _conn() -> proxy._Conn:
    loop = asyncio.new_event_loop()
    try:
        return proxy._Conn(loop, proxy.UpstreamPool(), "http://127.0.0.1:1")
    finally:
        loop.close()


def test_response_parser_yields_what_the_proxy_reads() -> None:
    """feed_data -> (messages, upgraded, tail); each message (head, payload) with .code, .headers, .should_close;
    bodies land in the payload, body-less ones get an empty payload at EOF, feed_eof ends a read-until-close body."""
    conn = _conn()
    assert conn._parser is conn.parser  # BaseProtocol's flow control pauses the parser through `_parser`
    messages, upgraded, tail = conn.parser.feed_data(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi")
    assert (len(messages), upgraded, tail) == (1, False, b""), f"feed_data's result changed ({PROXY})"
    message, payload = messages[0]
    assert (message.code, message.headers["X-A"], message.should_close) == (200, "b", False)
    assert payload.is_eof() and payload.read_nowait(-1) == b"hi"

    for head in (b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"):
        (message, payload), = conn.parser.feed_data(head)[0]  # EMPTY_PAYLOAD or an empty one at EOF
        assert payload is streams.EMPTY_PAYLOAD or (payload.is_eof() and payload.read_nowait(-1) == b"")

    (message, payload), = conn.parser.feed_data(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npart")[0]
    assert message.should_close and not payload.is_eof()
    conn.parser.feed_eof()
    assert payload.is_eof() and payload.read_nowait(-1) == b"part"


def test_malformed_response_raises_from_feed_data() -> None:
    """The proxy turns whatever feed_data raises into UpstreamFailed; it must raise, not swallow."""
    conn = _conn()
    with pytest.raises(http_exceptions.HttpProcessingError):
        conn.parser.feed_data(b"NOT A STATUS LINE\r\n\r\n")
