"""Hostile clients against a real `openscore serve` on 127.0.0.1: encoded bodies and gzip bombs, clients that
vanish mid-body, slowloris heads, connection floods, and bodies large enough to stall the event loop.

What is asserted is what a client notices (status codes, `{"message": ...}` bodies, connections closed, health
checks answered before a big request, a bounded log); no duration is asserted. The worst /healthz latency
during a bomb is printed (`-s` shows it); bench/bench_large_body.py measures it properly.
"""

from __future__ import annotations

import gzip
import json
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests

HTTP_TIMEOUT = 30  # only keeps a broken server from hanging the test


def _score(server: Any, body: bytes, headers: dict[str, str] | None = None) -> requests.Response:
    h = {"Content-Type": "application/json", **(headers or {})}
    return requests.post(server.url + "/score", data=body, headers=h, timeout=HTTP_TIMEOUT)


def _slots(server: Any) -> dict:
    return requests.get(server.url + "/slots", timeout=HTTP_TIMEOUT).json()


def _worker_pids(server: Any) -> list[int]:
    pid = server.proc.pid
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return -1


def _gzip_bomb(inflated: int) -> bytes:
    """`inflated` zero bytes, gzipped a MiB at a time (the test never holds the inflated body)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    parts = [c.compress(zeros) for _ in range(inflated >> 20)]
    return b"".join(parts) + c.flush()


# ---------------------------------------------------------------------------------------------- encoded bodies

def test_gzip_and_deflate_bodies_are_inflated_and_bad_ones_are_400(serve):
    server = serve("plain_echo.py")
    doc = {"data": [1, 2, 3]}
    raw = json.dumps(doc).encode()
    for coding, body in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw)),
                         ("x-gzip", gzip.compress(raw)), ("gzip, deflate", zlib.compress(gzip.compress(raw)))):
        r = _score(server, body, {"Content-Encoding": coding})
        assert (r.status_code, r.json()) == (200, {"echo": doc}), coding
    for what, body in (("not gzip at all", b'{"data": [1, 2, 3]}'), ("truncated", gzip.compress(raw)[:-9]),
                       ("garbage after a valid header", gzip.compress(raw)[:10] + b"\xff" * 40)):
        r = _score(server, body, {"Content-Encoding": "gzip"})
        assert r.status_code == 400, (what, r.status_code, r.text)
        assert "could not be decoded" in r.json()["message"] and "gzip" in r.json()["message"], what
    r = _score(server, b"x", {"Content-Encoding": "br"})
    assert r.status_code == 415 and "'br' is not supported" in r.json()["message"]
    assert _score(server, raw).json() == {"echo": doc}  # still serving, plain bodies as before
    assert "Traceback" not in server.log()


@pytest.mark.slow
def test_a_gzip_bomb_stops_at_the_limit_and_health_checks_keep_answering(serve):
    limit = 32 << 20
    server = serve("plain_echo.py", "--max-body-bytes", str(limit))
    worker = _worker_pids(server)[0]
    bomb = _gzip_bomb(1 << 30)  # about 1 MB that inflates to 1 GiB
    rss_before = _vm_hwm_kib(worker)

    worst, stop = [0.0], threading.Event()

    def probe() -> None:
        while not stop.is_set():
            t = time.perf_counter()
            assert requests.get(server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
            worst[0] = max(worst[0], time.perf_counter() - t)
            time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        r = _score(server, bomb, {"Content-Encoding": "gzip"})
    finally:
        stop.set()
        prober.join()
    assert r.status_code == 413
    assert f"once decoded (gzip), is larger than the limit of {limit} bytes" in r.json()["message"]
    rss_after = _vm_hwm_kib(worker)
    print(f"\ngzip bomb of {len(bomb)} bytes (1 GiB inflated), limit {limit >> 20} MiB: worst /healthz "
          f"{worst[0] * 1000:.1f} ms; worker peak RSS {rss_before // 1024} -> {rss_after // 1024} MiB")
    # memory follows the limit, not the bomb: the limit and the compressed body, with room for copies
    assert (rss_after - rss_before) * 1024 < 4 * limit + len(bomb)
    assert _slots(server)["busy"] == 0
    assert _worker_pids(server) == [worker]


# ---------------------------------------------------------------------------------------------- vanishing clients

def test_a_client_that_disconnects_mid_body_leaves_no_traceback_and_no_slot(serve):
    server = serve("plain_echo.py")
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100000\r\n\r\n{\"data\": [1, ")
            time.sleep(0.2)  # the server is reading the body when the client goes
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and server.log().count("client closed the connection") < 5:
        time.sleep(0.05)
    log = server.log()
    assert "Traceback" not in log and "AttributeError" not in log, log
    assert log.count("client closed the connection before POST /score was answered") == 5, log
    assert _slots(server) | {"busy": 0} == _slots(server) and _slots(server)["queued"] == 0
    assert _score(server, b'{"data": 1}').json() == {"echo": {"data": 1}}


# ---------------------------------------------------------------------------------------------- slowloris, floods

def _read_all(s: socket.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return out
        if not chunk:
            return out
        out += chunk


def test_a_head_sent_a_byte_at_a_time_is_cut_off_with_408(serve):
    server = serve("plain_echo.py", "--header-timeout-s", "1")
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-Padding: " + b"a" * 40 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as s:
        sent, closed = 0, False
        for byte in head:  # about 48 s if the server waited for the whole head
            try:
                s.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            sent += 1
            time.sleep(0.5)
            s.setblocking(False)
            try:
                peek = s.recv(1, socket.MSG_PEEK)
            except BlockingIOError:
                peek = None
            finally:
                s.setblocking(True)
            if peek is not None:
                closed = True
                break
        assert closed and sent < len(head), "the server waited for the whole slow head"
        answer = _read_all(s)
    if answer:  # closed with a reason (it may also have been reset before the client read it)
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {"message": "Timed out waiting for the request headers."}
    # a connection that sends nothing at all is closed too, silently
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as s:
        assert _read_all(s) == b""
    assert requests.get(server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200


def test_connections_beyond_the_cap_are_closed_and_idle_keepalive_ones_make_room(serve):
    server = serve("plain_echo.py", "--max-connections", "4", "--header-timeout-s", "30")
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) for _ in range(4)]
    time.sleep(0.3)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_all(extra) == b"", "a connection beyond --max-connections was served"
    finally:
        for s in silent:
            s.close()
    time.sleep(0.5)  # the server notices the closed ones
    # idle keep-alive connections (a request answered, none pending) give way to new ones, oldest first
    sessions = [requests.Session() for _ in range(4)]
    for sess in sessions:
        assert sess.get(server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    with requests.Session() as newcomer:
        assert newcomer.get(server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
    for sess in sessions:  # evicted or not, each client simply reconnects
        assert sess.get(server.url + "/healthz", timeout=HTTP_TIMEOUT).status_code == 200
        sess.close()
    assert "connection(s) refused: already 4 open" in server.log()


# ---------------------------------------------------------------------------------------------- large bodies

@pytest.fixture
def mlp_model(tmp_path: Path) -> Path:
    from openscore.accelerators.sample_models import mlp, save
    return save(mlp(in_features=64, hidden=16, layers=1, classes=4), tmp_path / "mlp.onnx")


def _healthz_overtakes(server: Any, path: str, body: bytes, headers: dict[str, str]) -> tuple[bool, int]:
    """Send `body` to `path`; once it is all sent, ask /healthz. Did the server answer /healthz before the big
    request? (Read from the order of the access log's lines: the server's own order, no clock involved.)"""
    status: list[int] = []
    big_sent = threading.Event()

    def body_then_mark():
        yield body
        big_sent.set()

    def big() -> None:
        status.append(requests.post(server.url + path, data=body_then_mark(), headers=headers, timeout=120).status_code)

    t = threading.Thread(target=big)
    t.start()
    assert big_sent.wait(60)
    time.sleep(0.3)  # the last bytes reach the server and its decoding starts
    assert requests.get(server.url + "/healthz", timeout=120).status_code == 200
    t.join(120)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(line in server.log()
                                                  for line in ("GET /healthz 200", f"POST {path} {status[0]}")):
        time.sleep(0.05)
    log = server.log()
    return log.index("GET /healthz 200") < log.index(f"POST {path} {status[0]}"), status[0]


@pytest.mark.slow
def test_health_checks_answer_while_a_large_v2_tensor_is_decoded(serve, mlp_model):
    server = serve(None, "--model", str(mlp_model), "--max-body-bytes", str(200 << 20))
    # a BYTES tensor of 2 million short strings (about 30 MB of JSON): seconds of decoding in Python
    doc = {"inputs": [{"name": "x", "shape": [2_000_000], "datatype": "BYTES", "data": ["abcdefghijkl"] * 2_000_000}]}
    first, status = _healthz_overtakes(server, "/v2/models/mlp/infer", json.dumps(doc).encode(),
                                       {"Content-Type": "application/json"})
    assert status == 400  # the model takes FP32: refused after decoding
    assert first, "/healthz waited for the V2 decoding (it ran on the event loop)"


@pytest.mark.slow
def test_health_checks_answer_while_a_large_nocode_json_body_is_decoded(serve, mlp_model):
    server = serve(None, "--model", str(mlp_model), "--max-body-bytes", str(200 << 20))
    # about 12 MB of JSON numbers, rows one feature short: refused once decoded, with nothing else awaited
    body = json.dumps({"data": [[0.5] * 63] * 40_000}).encode()
    first, status = _healthz_overtakes(server, "/score", body, {"Content-Type": "application/json"})
    assert status == 400
    assert first, "/healthz waited for the JSON decoding (it ran on the event loop)"
