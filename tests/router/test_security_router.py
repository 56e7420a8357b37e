"""The router's holes from issue 10, each against real `openscore router` processes and their real replicas.

Every test here failed on the router before the fixes (main at 6dd05ed), for the reason its docstring gives;
each waits only with bounded waits and asserts what a client or an operator would see.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import select
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import requests
from routerkit import alive, group_members, hand_edit, replica_secret, restart_on, service, wait_for

OPEN = {"authEnabled": False}


def busy(r, name: str) -> int:
    return sum(v["slotsBusy"] for v in r.status(name)["versions"].values())


def read_response(sock: socket.socket, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on a raw socket (read until the router closes it)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
            n = int(headers.get("content-length", "-1"))
            if 0 <= n <= len(body):
                return int(lines[0].split()[1]), headers, body[:n]
    if not data:
        return 0, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return (int(lines[0].split()[1]), {k.strip().lower(): v.strip() for k, _, v in
                                       (x.partition(":") for x in lines[1:])}, body)


def slow_upload(port: int, path: str, results: list, chunked: bool, up_front: bytes = b"",
                length: int = 100_000, max_s: float = 15.0) -> None:
    """A client sending its body at 1 byte/s until the router answers (or `max_s` passes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        framing = b"Transfer-Encoding: chunked" if chunked else b"Content-Length: %d" % length
        s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s\r\n\r\n"
                  % (path.encode(), framing))
        if up_front:
            s.sendall(b"%x\r\n%s\r\n" % (len(up_front), up_front) if chunked else up_front)
        deadline = time.monotonic() + max_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([s], [], [], 1.0)
            if readable:
                break
            try:
                s.sendall(b"1\r\n \r\n" if chunked else b" ")
            except OSError:
                break
        results.append(read_response(s))


# ====================================================================== hole 1: slow uploads
def test_slow_uploads_hold_no_slot_get_408_and_others_keep_being_served(start_router):
    """Before: a chunked body took a replica slot before it had arrived, so two 1 byte/s clients on a 2-slot
    service gave everyone else 503 (max_queue_wait) for as long as they kept trickling, and never a 408."""
    name = "slowup-svc"
    r = start_router({name: service("echo.py", maxConcurrentRequestsPerContainer=2, maxQueueWaitMs=200, **OPEN)},
                     "--body-timeout-s", "2", "--min-upload-bytes-per-s", "1000", "--request-buffer-bytes", "64")
    path = f"/api/v1/service/{name}/score"
    results: list = []
    slow = [threading.Thread(target=slow_upload, args=(r.port, path, results, True)) for _ in range(2)]
    # and one larger than the buffer: it is streamed, so it takes a slot, and the deadline frees it
    slow.append(threading.Thread(target=slow_upload, args=(r.port, path, results, False, b"[" * 100, 100_000)))
    for t in slow:
        t.start()
    others = []
    s = requests.Session()
    while any(t.is_alive() for t in slow):
        others.append(s.post(r.url + path, data=b'{"a": 1}', timeout=10).status_code)
        time.sleep(0.05)
    for t in slow:
        t.join(20)
    assert len(results) == 3
    for status, headers, body in results:
        assert status == 408, (status, headers, body)
        assert headers["x-openscore-limit"] == "body_timeout"
        assert b"too slowly" in body
    assert len(others) >= 5 and set(others) == {200}, others
    assert wait_for(lambda: busy(r, name) == 0, 5), r.status(name)
    assert "Traceback" not in r.log()


# ====================================================================== hole 2: a SIGKILLed router
def test_sigkilled_router_takes_its_replicas_along_and_a_restart_leaves_one_set(start_router):
    """Before: after `kill -9` of the router its replicas kept answering POST /score on their ports with 200
    and no key, and a restarted router started a second full set next to them."""
    name = "orphan-svc"
    services = {name: service("echo.py", numReplicas=2)}
    r = start_router(services)
    r.wait_ready(name, replicas=2)
    old = [p["pid"] for p in r.status(name)["versions"][name]["replicas"]]
    assert len(old) == 2 and all(group_members(p) for p in old)
    address = r.status(name)["versions"][name]["replicas"][0]["address"]
    assert address.startswith("http://127.0.0.1:")

    os.kill(r.proc.pid, signal.SIGKILL)
    r.proc.wait(10)
    assert wait_for(lambda: not any(group_members(p) for p in old), 10), [group_members(p) for p in old]
    assert wait_for(lambda: _refused(address), 5), f"{address} still answers with its router dead"

    # a predecessor's leftovers the restart must deal with: one recorded replica still running (PDEATHSIG
    # cannot fire for a replica whose router lost it some other way), and a record whose PID now names
    # another process (its start time differs): that one must never be signalled
    records = r.workspace / "run" / "replicas"
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ticks = Path(f"/proc/{leftover.pid}/stat").read_text().rpartition(")")[2].split()[19]
        (records / f"{leftover.pid}.json").write_text(json.dumps(
            {"pid": leftover.pid, "start": int(ticks), "replica": "old-1", "port": 1, "router": r.proc.pid}))
        (records / f"{bystander.pid}.json").write_text(json.dumps(
            {"pid": bystander.pid, "start": 1, "replica": "old-2", "port": 2, "router": r.proc.pid}))

        again = restart_on(start_router, r, services)
        again.wait_ready(name, replicas=2)
        assert wait_for(lambda: leftover.poll() is not None, 10), "the recorded leftover was not stopped"
        assert bystander.poll() is None and alive(bystander.pid), "a process with a reused PID was signalled"
        new = [p["pid"] for p in again.status(name)["versions"][name]["replicas"]]
        assert len(new) == 2 and not set(new) & set(old)
        assert not any(alive(p) for p in old)
        assert sorted(int(f.stem) for f in records.glob("*.json")) == sorted(new)  # exactly one set recorded

        # a replica is no side door: without its router's secret, 403; with it, 200
        rep = again.status(name)["versions"][name]["replicas"][0]
        assert requests.post(f"{rep['address']}/score", data=b"{}", timeout=5).status_code == 403
        forged = {"x-openscore-replica-secret": "guess"}
        assert requests.post(f"{rep['address']}/score", data=b"{}", headers=forged, timeout=5).status_code == 403
        ok = requests.post(f"{rep['address']}/score", data=b"{}", headers=replica_secret(rep["pid"]), timeout=5)
        assert ok.status_code == 200, ok.text
        # and through the router the key still rules (the secret is the router's, never the client's)
        key = again.keys(name)["primaryKey"]
        url = f"{again.url}/api/v1/service/{name}/score"
        assert requests.post(url, data=b"{}", headers=replica_secret(rep["pid"]), timeout=5).status_code == 401
        assert requests.post(url, data=b"{}", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    finally:
        for p in (leftover, bystander):
            if p.poll() is None:
                p.kill()
            p.wait(5)


def _refused(address: str) -> bool:
    try:
        requests.get(f"{address}/", timeout=1)
    except requests.ConnectionError:
        return True
    except requests.RequestException:
        return False
    return False


# ====================================================================== hole 3: never run twice
def _kill_mid_request(start_router, tmp_path: Path, retry_after_send: bool | None) -> tuple[requests.Response,
                                                                                         list[str]]:
    """Two replicas; a request whose run() is under way when its replica is SIGKILLed."""
    count = tmp_path / "runs.txt"
    count.write_text("")
    keys = {"retryAfterSend": retry_after_send} if retry_after_send is not None else {}
    name = "twice-svc"
    r = start_router({name: service("count_runs.py", numReplicas=2, environmentVariables={
        "RUN_COUNT_FILE": str(count)}, **OPEN, **keys)})
    r.wait_ready(name, replicas=2)
    out: list[requests.Response] = []
    client = threading.Thread(target=lambda: out.append(requests.post(
        f"{r.url}/api/v1/service/{name}/score", json={"sleep": 3, "echo": "once"}, timeout=30)))
    client.start()
    assert wait_for(lambda: count.read_text().strip() != "", 10), "run() never started"
    worker = int(count.read_text().split()[0])
    replica = os.getpgid(worker)  # the replica's supervisor leads its process group
    assert replica in {p["pid"] for p in r.status(name)["versions"][name]["replicas"]}
    # the whole replica dies: its supervisor first, then whatever of the group is left (the worker running
    # run() holds the request's connection and the listening socket), so the router finds its port closed
    os.kill(replica, signal.SIGKILL)
    assert wait_for(lambda: not alive(replica), 5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(replica, signal.SIGKILL)
    client.join(30)
    assert out, "no answer"
    assert "Traceback" not in r.log()
    return out[0], count.read_text().split()


def test_a_request_whose_replica_dies_inside_run_is_a_502_and_ran_once(start_router, tmp_path):
    """Before: the router sent it again to the other replica, so run() ran twice and the client saw 200."""
    resp, runs = _kill_mid_request(start_router, tmp_path, None)
    assert resp.status_code == 502, resp.text
    assert resp.headers["x-openscore-limit"] == "replica_failed"
    assert len(runs) == 1, runs


def test_retry_after_send_opt_in_sends_it_again_to_another_replica(start_router, tmp_path):
    """The opt-in for idempotent services (retryAfterSend: true): the same death gives 200, run() twice."""
    resp, runs = _kill_mid_request(start_router, tmp_path, True)
    assert resp.status_code == 200, resp.text
    assert resp.json()["echo"] == "once"
    assert len(runs) == 2 and runs[0] != runs[1], runs


# ====================================================================== hole 4: gzip
def test_gzip_bodies_pass_through_and_a_false_gzip_is_a_400(start_router):
    """Before: a valid gzip body got 502 through the router (the replica alone accepted it), and a body
    labelled gzip that is not gzip got 500."""
    name = "gzip-svc"
    r = start_router({name: service("echo.py", **OPEN)})
    url = f"{r.url}/api/v1/service/{name}/score"
    inflated = json.dumps({"data": list(range(1000))}).encode()
    ok = requests.post(url, data=gzip.compress(inflated), headers={"Content-Encoding": "gzip",
                                                                   "Content-Type": "application/json"}, timeout=10)
    assert ok.status_code == 200, ok.text
    assert ok.json()["len"] == len(inflated)  # the replica scored the inflated JSON
    bad_inputs = [b"this is not gzip", gzip.compress(inflated)[:40], b"\x1f\x8b" + b"\0" * 30]
    for bad in bad_inputs:
        resp = requests.post(url, data=bad, headers={"Content-Encoding": "gzip"}, timeout=10)
        assert resp.status_code == 400, (bad[:20], resp.status_code, resp.text)
        assert resp.headers.get("x-openscore-replica"), "the 400 comes from the replica, through the router"
    assert requests.post(url, data=b"{}", timeout=10).status_code == 200
    assert "Traceback" not in r.log()


# ====================================================================== hole 6: the state files
def test_hand_edited_state_is_refused_naming_file_and_field_and_the_watcher_lives_on(start_router):
    """Before: keys lacking primaryKey killed the watcher silently (later edits ignored), `{}` brought the
    service back with new keys, and garbage ended the router with a traceback at its next start."""
    name = "state-svc"
    services = {name: service("echo.py")}
    r = start_router(services)
    url = f"{r.url}/api/v1/service/{name}/score"
    old = r.keys(name)
    keys_file = r.workspace / "store" / "secrets" / "service-keys" / f"{name}.json"
    service_file = r.workspace / "store" / "objects" / "service" / f"{name}.json"
    assert keys_file.is_file() and service_file.is_file()

    def scores(key: str) -> int:
        return requests.post(url, data=b"{}", headers={"Authorization": f"Bearer {key}"}, timeout=5).status_code

    bad_edits = [  # (kind, file content, what the log line must name)
        ("service-keys", b'{"revision": @REV@, "doc": {"secondaryKey": "secondary-key-0001"}}', "doc.primaryKey"),
        ("service-keys", b"{}", "revision"),
        ("service-keys", b"\x00garbage{{", "is not JSON"),
        ("service-keys", b'{"revision": @REV@, "doc": {"primaryKey": "short", "secondaryKey": 7}}', "primaryKey"),
        ("service", b'{"revision": @REV@, "doc": {"config": {"computeType": "aks"}}}', "entryScript"),
        ("service", b'{"revision": @REV@, "doc": []}', "doc"),
    ]
    for kind, content, field in bad_edits:
        mark = len(r.log())
        hand_edit(r.workspace, kind, name, content)
        path = keys_file if kind == "service-keys" else service_file
        assert wait_for(lambda p=path, f=field, m=mark: any(str(p) in x and f in x for x in r.log()[m:].splitlines()),
                        10), (content, r.log()[mark:])
        assert scores(old["primaryKey"]) == 200 and scores(old["secondaryKey"]) == 200
    assert "Traceback" not in r.log()

    # the watcher is alive: a valid edit is picked up, the old primary stops working
    hand_edit(r.workspace, "service-keys", name, b'{"revision": @REV@, "doc": {"primaryKey": "hand-set-primary-01", '
                                                 b'"secondaryKey": "hand-set-second-01"}}')
    assert wait_for(lambda: scores("hand-set-primary-01") == 200, 10)
    assert scores(old["primaryKey"]) == 401

    # a start on an unusable state: exit 1, one clear line naming the file, no traceback, keys untouched
    r.stop()
    keys_file.write_bytes(b"{}")
    again = restart_on(start_router, r, services, wait=False)
    assert again.proc.wait(30) == 1
    log = again.log()
    assert "Traceback" not in log, log
    errors = [x for x in log.splitlines() if "error" in x.lower()]
    assert len(errors) == 1 and str(keys_file) in errors[0] and "not regenerated" in errors[0], log
    assert keys_file.read_bytes() == b"{}"


# ====================================================================== hole 9: clients gone mid-body
def test_clients_that_disconnect_mid_body_leave_no_traceback_and_no_busy_slot(start_router):
    """Before: each such request crashed the error handler (`'NoneType' object has no attribute 'log'`),
    two tracebacks per request."""
    name = "gone-svc"
    r = start_router({name: service("echo.py", maxConcurrentRequestsPerContainer=2, **OPEN)},
                     "--request-buffer-bytes", "64")
    path = f"/api/v1/service/{name}/score"
    cuts = [  # (framing header, what is sent before the close)
        (b"Content-Length: 100000", b"0123456789"),            # buffered: gone before any slot
        (b"Content-Length: 100000", b"x" * 1000),              # streamed: gone while holding a slot
        (b"Transfer-Encoding: chunked", b"10\r\n0123"),        # cut inside a chunk
        (b"Transfer-Encoding: chunked", b"zz\r\n"),            # a broken chunk size
        (b"Transfer-Encoding: chunked", b"400\r\n" + b"y" * 1024 + b"\r\n" + b"400\r\n" + b"y" * 100),
    ]
    for framing, sent in cuts:
        with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
            s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%s" % (path.encode(), framing, sent))
            time.sleep(0.2)
    assert wait_for(lambda: busy(r, name) == 0, 5), r.status(name)
    assert requests.post(r.url + path, data=b"{}", timeout=5).status_code == 200
    assert wait_for(lambda: r.log().count("client connection failed") >= 2, 5), r.log()[-3000:]
    assert "Traceback" not in r.log(), r.log()[-5000:]
    assert "AttributeError" not in r.log()
    assert busy(r, name) == 0


# ====================================================================== holes 8, 10 and 11 through a real router
def test_bad_credentials_admin_bodies_slow_heads_and_a_connection_flood(start_router):
    """Before: `Bearer \\xff\\xfe` was a 500 with a traceback, `signing-keys/rotate` with `[1]` a 500,
    numReplicas 100000 accepted, and a head trickling in one byte at a time held its connection forever."""
    name = "edge-svc"
    r = start_router({name: service("echo.py")}, "--header-timeout-s", "2", "--max-connections", "8")
    url = f"{r.url}/api/v1/service/{name}/score"
    # hole 8: credentials that are not ASCII
    for raw in (b"Bearer \xff\xfe", b"Bearer k\xc3\xa9y", b"\xff"):
        for path in (f"/api/v1/service/{name}/score", "/admin/v1/services"):
            with socket.create_connection(("127.0.0.1", r.port), timeout=5) as s:
                s.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Length: 2\r\n\r\n{}"
                          % (path.encode(), raw))
                status, _, body = read_response(s)
            assert status == 401, (path, raw, status, body)
    # hole 10: admin bodies and documents out of bounds
    admin = f"{r.url}/admin/v1"
    for body in (b"[1]", b'"x"', b"7", b"{", b"\xff"):
        resp = r.admin.post(f"{admin}/signing-keys/rotate", data=body, timeout=5)
        assert resp.status_code == 400, (body, resp.status_code, resp.text)
    doc = service("echo.py")
    for key, value in (("numReplicas", 100000), ("workers", 100000),
                       ("autoScaler", {"autoscaleEnabled": True, "maxReplicas": 100000})):
        bad = {k: v for k, v in doc.items() if k != "numReplicas"} | {key: value}
        resp = r.admin.put(f"{admin}/services/{name}", json=bad, timeout=5)
        assert resp.status_code == 400 and key in resp.json()["key"], (key, resp.text)
    for value in ("abcdefgh\r\nX-Evil: 1", "abcdefgh\n", "abc\x00defgh"):
        resp = r.admin.post(f"{admin}/services/{name}/regenerateKeys", timeout=5,
                            json={"keyType": "Primary", "keyValue": value})
        assert resp.status_code == 400, (value, resp.text)
    key = r.keys(name)["primaryKey"]
    assert requests.post(url, data=b"{}", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    assert len(r.status(name)["versions"][name]["replicas"]) == 1  # nothing of the above was applied
    # hole 11: heads that trickle in are closed with a 408; beyond the cap, a connection is closed at once
    r.admin.close()  # its idle keep-alive connection would be evicted anyway; keep the count exact
    socks = [socket.create_connection(("127.0.0.1", r.port), timeout=10) for _ in range(8)]
    try:
        for s in socks:
            s.sendall(b"POST /api/v1/service/edge-svc/score HTTP/1.1\r\nHo")
        extra = socket.create_connection(("127.0.0.1", r.port), timeout=10)
        with extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHo")
            refused = read_response(extra)
        assert refused[0] == 0, refused  # closed without a response: the cap, not the header timer
        answers = []
        for s in socks:  # a byte now and then never extends the head's deadline
            for _ in range(20):
                try:
                    s.sendall(b"s")
                except OSError:
                    break
                if select.select([s], [], [], 0.5)[0]:
                    break
            answers.append(read_response(s)[0])
        assert answers == [408] * 8, answers
    finally:
        for s in socks:
            s.close()
    assert wait_for(lambda: requests.get(f"{r.url}/healthz", timeout=2).status_code == 200, 5)
    assert requests.post(url, data=b"{}", headers={"Authorization": f"Bearer {key}"}, timeout=5).ok
    assert "Traceback" not in r.log()
