"""Replica addresses: parsing (IPv6 literals included) and the "is anything still listening" check."""

import asyncio
import socket

import pytest

from openscore.router import proxy


@pytest.mark.parametrize("address, expected", [
    ("http://127.0.0.1:41234", ("127.0.0.1", 41234)),
    ("http://[::1]:8080", ("::1", 8080)),
    ("[::1]:31", ("::1", 31)),
    ("10.0.0.7:5001", ("10.0.0.7", 5001)),
    ("http://replica.local", ("replica.local", 80)),
    ("https://replica.local", ("replica.local", 443)),
])
def test_host_port(address, expected):
    assert proxy.host_port(address) == expected


@pytest.mark.parametrize("address", ["http://:80", "http://[::1]:notaport", "http://h:99999", ""])
def test_host_port_refuses_what_is_not_an_address(address):
    with pytest.raises(ValueError):
        proxy.host_port(address)


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("host", [
    "127.0.0.1",
    pytest.param("::1", marks=pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")),
])
def test_is_dead_on_a_listening_then_closed_port(host):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), host, 0)
        port = server.sockets[0].getsockname()[1]
        address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        alive = await proxy.is_dead(address)
        server.close()
        await server.wait_closed()
        return alive, await proxy.is_dead(address)
    assert asyncio.run(main()) == (False, True)
