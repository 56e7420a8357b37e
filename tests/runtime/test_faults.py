"""Lifecycle, limits and faults, against real `python -m openscore serve` processes.

Every test asserts what a user of the server would notice: status codes, `{"message": ...}` bodies,
headers, exit codes, log lines, that the server keeps serving afterwards and that no concurrency slot
leaks (`GET /slots` shows busy 0 and queued 0 once the storm is over). Nothing asserts a duration: where
a test needs requests to overlap, the entry script (tests/scripts/fault_*.py) waits for a file the test
creates, or counts simultaneous run() calls itself. Timeouts only keep a broken server from hanging the
suite.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

RUN_FAILED_MSG = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_MSG = "An unexpected internal error occurred. Check the logs for more info."
HTTP_TIMEOUT = 20  # seconds; only to keep a broken server from hanging the test


# ---------------------------------------------------------------------------------------------
# helpers


def score(server: Any, payload: dict | None = None, **kw: Any) -> requests.Response:
    kw.setdefault("timeout", HTTP_TIMEOUT)
    try:
        return requests.post(server.url + "/score", data=json.dumps(payload or {"action": "pid"}), **kw)
    except requests.ConnectionError as e:  # same type (some tests expect it), with what the server said
        raise requests.ConnectionError(f"{e}\n--- server exit code: {server.proc.poll()}; log ---\n"
                                       f"{server.log()}") from e


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0, server: Any = None) -> Any:
    """Poll until predicate() is truthy; returns its value. Fails (with the server log) after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except requests.RequestException:
            value = None
        if value:
            return value
        time.sleep(0.02)
    pytest.fail(f"timed out waiting for {what}" + (f"\n--- server log ---\n{server.log()}" if server else ""))


def slots(server: Any) -> dict:
    r = requests.get(server.url + "/slots", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200
    return r.json()


def assert_no_leak(server: Any) -> None:
    """After a storm every slot is free again and nobody waits (polled: a handler may still be unwinding)."""
    wait_for(lambda: (lambda s: s["busy"] == 0 and s["queued"] == 0 and s["in_flight"] == 0)(slots(server)),
             "GET /slots to show busy 0, queued 0, in_flight 0", server=server)
    s = slots(server)
    assert (s["busy"], s["queued"], s["in_flight"]) == (0, 0, 0), s


def metric(server: Any, name: str, **labels: str) -> float:
    """Sum of the samples of `name` in GET /metrics whose labels include `labels` (0 when absent)."""
    text = requests.get(server.url + "/metrics", timeout=HTTP_TIMEOUT).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def json_message(r: requests.Response) -> str:
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == {"message"}, body
    return body["message"]


def raw_exchange(port: int, data: bytes, timeout: float = HTTP_TIMEOUT) -> bytes:
    """Send raw bytes, return everything the server answers until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_until_closed(s)


def read_until_closed(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_one_response(s: socket.socket) -> bytes:
    """Read one HTTP response (headers, then Content-Length bytes of body) without waiting for the close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    _, headers, body = parse_raw_response(data)
    while len(body) < int(headers.get("content-length", 0)):
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
        data += chunk
    return data


def parse_raw_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
    return status, headers, body


def in_background(fn: Callable[[], Any]) -> concurrent.futures.Future:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


# ---------------------------------------------------------------------------------------------
# 1. loading


@pytest.mark.parametrize("script, expected_in_log", [
    ("fault_import_error.py", ["failed to load", "Traceback", "RuntimeError: fault_import_error: boom at import time"]),
    ("fault_init_error.py", ["failed to initialize", "Traceback", "in init",
                             "ValueError: fault_init_error: model could not be loaded"]),
    ("fault_no_run.py", ["must define init() and run()", "missing: run"]),
    ("fault_varargs_run.py", ["run() parameter 'args' is variadic positional",
                              "only named parameters are supported"]),
])
def test_entry_script_that_cannot_load_exits_3(serve, script, expected_in_log):
    server = serve(script, wait=False)
    assert server.wait_exit(30) == 3
    log = server.log()
    for text in expected_in_log:
        assert text in log, f"{text!r} not in log:\n{log}"
    assert "failed to boot" in log and "exit code 3" in log


def test_a_worker_killed_during_init_stops_the_server_with_137(serve):
    """The memory limit during init(): one clear exit (OOMKilled in a pod) instead of endless respawns."""
    server = serve("fault_init_killed.py", wait=False)
    assert server.wait_exit(30) == 137
    log = server.log()
    assert "killed (SIGKILL) before it was ready" in log and "memory limit" in log, log
    assert "starting a replacement" not in log


def test_no_entry_script_exits_1(serve):
    server = serve(None, wait=False)
    assert server.wait_exit(30) == 1
    log = server.log()
    assert "openscore serve: error: no entry script" in log, log
    assert "--entry-script" in log and "AZUREML_ENTRY_SCRIPT" in log


def test_missing_entry_script_file_exits_1(serve, tmp_path):
    missing = tmp_path / "nope" / "score.py"
    server = serve(missing, wait=False)
    assert server.wait_exit(30) == 1
    log = server.log()
    assert f"entry script {missing} does not exist" in log, log


# ---------------------------------------------------------------------------------------------
# 2. requests while init() runs


def test_requests_during_slow_init_wait_for_it(serve, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    server = serve("fault_gated_init.py", env={"FAULT_DIR": str(gate)}, wait=False)
    wait_for(lambda: requests.get(server.url + "/healthz", timeout=2).status_code == 200,
             "/healthz to answer during init()", server=server)
    wait_for(lambda: (gate / "ticket-0").exists(), "init() to start", server=server)

    # init() is blocked until we create release-all: liveness yes, readiness no
    r = requests.get(server.url + "/healthz", timeout=HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json() == {"status": "alive"}
    r = requests.get(server.url + "/readyz", timeout=HTTP_TIMEOUT)
    assert r.status_code == 503
    assert r.json()["status"] == "not ready" and "init() has not finished" in r.json()["reason"]
    r = requests.get(server.url + "/", timeout=HTTP_TIMEOUT)
    assert r.status_code == 503 and "init() has not finished" in r.text

    # a score sent now waits for init() (it is in flight, holds no slot) and is then served
    pending = in_background(lambda: score(server))
    wait_for(lambda: slots(server)["in_flight"] == 1, "the early /score to be in flight", server=server)
    assert not pending.done()
    s = slots(server)
    assert s["busy"] == 0 and s["workers_ready"] == 0 and s["ready"] is False

    (gate / "release-all").touch()
    r = pending.result(HTTP_TIMEOUT)
    assert r.status_code == 200, r.text
    assert r.json()["inits"] == 1
    assert r.headers["x-ms-run-function-failed"] == "False"
    server.wait_ready(15)
    assert requests.get(server.url + "/", timeout=HTTP_TIMEOUT).status_code == 200
    assert_no_leak(server)


def test_score_during_init_gets_503_after_max_queue_wait(serve, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    server = serve("fault_gated_init.py", "--max-queue-wait-ms", "200", env={"FAULT_DIR": str(gate)}, wait=False)
    wait_for(lambda: (gate / "ticket-0").exists(), "init() to start", server=server)
    wait_for(lambda: requests.get(server.url + "/healthz", timeout=2).status_code == 200, "/healthz", server=server)

    r = score(server)
    assert r.status_code == 503, r.text
    assert "Retry-After" in r.headers and int(r.headers["Retry-After"]) >= 1
    assert "init() has not finished" in json_message(r)

    (gate / "release-all").touch()
    server.wait_ready(15)
    r = score(server)
    assert r.status_code == 200 and r.json()["inits"] == 1
    assert metric(server, "openscore_rejected_requests_total", reason="initializing") == 1
    assert_no_leak(server)


# ---------------------------------------------------------------------------------------------
# 3. concurrency slots and the wait queue


def test_concurrency_slots_limit_simultaneous_runs(serve):
    server = serve("fault_actions.py", "--max-concurrent-requests", "2")
    payload = {"action": "overlap", "expect": 2, "hold": 0.3, "max_wait": 5}
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        responses = list(ex.map(lambda _: score(server, payload), range(4)))
    for r in responses:
        assert r.status_code == 200, r.text
        assert r.headers["x-openscore-slots-total"] == "2"
    # run() saw exactly two calls at once: two slots were used, never a third
    assert max(r.json()["max_concurrent"] for r in responses) == 2
    assert_no_leak(server)


def test_queue_full_answers_503_and_headers_show_occupancy(serve, tmp_path):
    server = serve("fault_actions.py", "--max-concurrent-requests", "1", "--max-queue-size", "1")
    release = tmp_path / "release"
    blocked = {"action": "wait_file", "path": str(release)}

    first = in_background(lambda: score(server, blocked))
    wait_for(lambda: slots(server)["busy"] == 1, "the first request to take the slot", server=server)
    # every response carries the replica's occupancy
    r = requests.get(server.url + "/healthz", timeout=HTTP_TIMEOUT)
    assert (r.headers["x-openscore-slots-busy"], r.headers["x-openscore-slots-total"],
            r.headers["x-openscore-queue-length"]) == ("1", "1", "0")

    second = in_background(lambda: score(server, blocked))
    wait_for(lambda: slots(server)["queued"] == 1, "the second request to queue", server=server)
    s = slots(server)
    assert (s["busy"], s["total"], s["queued"], s["in_flight"], s["workers_ready"], s["workers"]) == \
        (1, 1, 1, 2, 1, 1)

    # the queue (size 1) is full: the third is refused at once
    r = score(server)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert json_message(r) == "all 1 concurrency slots are busy and the wait queue is full (1 requests)"
    assert r.headers["x-openscore-slots-busy"] == "1" and r.headers["x-openscore-queue-length"] == "1"
    assert r.headers["x-ms-run-function-failed"] == "False"

    release.touch()
    for fut in (first, second):
        r = fut.result(HTTP_TIMEOUT)
        assert r.status_code == 200 and r.json()["released"] is True
    assert metric(server, "openscore_rejected_requests_total", reason="overloaded") == 1
    assert_no_leak(server)
    r = score(server)
    assert r.status_code == 200
    assert r.headers["x-openscore-slots-busy"] == "0" and r.headers["x-openscore-queue-length"] == "0"


def test_queue_wait_expiry_answers_503(serve, tmp_path):
    server = serve("fault_actions.py", "--max-queue-wait-ms", "200")
    release = tmp_path / "release"
    first = in_background(lambda: score(server, {"action": "wait_file", "path": str(release)}))
    wait_for(lambda: slots(server)["busy"] == 1, "the first request to take the slot", server=server)

    r = score(server)  # waits in the queue for the only slot, gives up after --max-queue-wait-ms
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert json_message(r) == "no concurrency slot became free within 200 ms (1 slots busy)"

    release.touch()
    assert first.result(HTTP_TIMEOUT).status_code == 200
    assert_no_leak(server)
    assert score(server).status_code == 200


def test_slot_storm_leaves_no_leak(serve, tmp_path):
    """Many concurrent requests mixing success, errors, timeouts and refusals: afterwards all slots are free."""
    server = serve("fault_actions.py", "--max-concurrent-requests", "2", "--max-queue-size", "3",
                   "--max-queue-wait-ms", "200", "--scoring-timeout-ms", "300")
    actions = [{"action": "sleep", "seconds": 0.1}, {"action": "raise"}, {"action": "sleep", "seconds": 0.6},
               {"action": "object"}, {"action": "sys_exit"}, {"action": "pid"}] * 4
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        responses = list(ex.map(lambda p: score(server, p), actions))
    codes = {r.status_code for r in responses}
    assert codes <= {200, 500, 503}, codes
    for r in responses:
        if r.status_code != 200:
            assert "message" in r.json()
    assert_no_leak(server)
    r = score(server)
    assert r.status_code == 200


# ---------------------------------------------------------------------------------------------
# 4. scoring timeout and stuck run() threads


def test_scoring_timeout_answers_500_and_frees_the_slot(serve):
    server = serve("fault_actions.py", "--scoring-timeout-ms", "300")
    pid = score(server).json()["pid"]
    r = score(server, {"action": "sleep", "seconds": 1.5})
    assert r.status_code == 500
    assert json_message(r) == "Scoring timeout after 300 ms"
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert "x-ms-run-fn-exec-ms" not in r.headers
    # the only slot is free again at once: the next request is served by the same worker
    r = score(server)
    assert r.status_code == 200 and r.json()["pid"] == pid
    assert metric(server, "openscore_scoring_timeouts_total") == 1
    assert metric(server, "openscore_run_threads_abandoned_total") == 1
    log = server.log()
    assert "did not return within 300 ms" in log and "abandoned" in log
    assert_no_leak(server)


def test_worker_with_too_many_stuck_threads_is_replaced(serve):
    server = serve("fault_actions.py", "--scoring-timeout-ms", "300", "--max-stuck-threads", "2")
    old_pid = score(server).json()["pid"]
    for _ in range(2):
        r = score(server, {"action": "hang"})
        assert r.status_code == 500
        assert json_message(r) == "Scoring timeout after 300 ms"
        assert r.headers["x-ms-run-function-failed"] == "True"
    # the worker stops taking requests and a new one (running init() again) answers
    new_pid = wait_for(lambda: (lambda p: p if p != old_pid else None)(score(server).json()["pid"]),
                       "a replacement worker to answer", server=server)
    assert new_pid != old_pid
    log = server.log()
    assert "2 run() threads never returned; this worker stops taking requests and will be replaced" in log
    assert f"Worker {old_pid} (#0) died (recycled); starting a replacement" in log
    assert log.count("fault_actions: init() in pid") == 2
    assert metric(server, "openscore_worker_restarts_total", reason="recycled") == 1
    assert metric(server, "openscore_scoring_timeouts_total") == 2
    server.wait_ready(15)
    assert_no_leak(server)


# ---------------------------------------------------------------------------------------------
# 5. run() failures


def test_run_errors_answer_500_and_the_worker_keeps_serving(serve):
    server = serve("fault_actions.py")
    pid = score(server).json()["pid"]

    r = score(server, {"action": "raise"}, headers={"x-request-id": "req-raise-1"})
    assert r.status_code == 500
    assert json_message(r) == RUN_FAILED_MSG
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert r.headers["x-request-id"] == "req-raise-1"

    for action in ("numpy", "object"):
        r = score(server, {"action": action})
        assert r.status_code == 500, action
        assert json_message(r) == INTERNAL_MSG
        assert r.headers["x-ms-run-function-failed"] == "False"

    r = score(server, {"action": "sys_exit"})
    assert r.status_code == 500
    assert json_message(r) == RUN_FAILED_MSG
    assert r.headers["x-ms-run-function-failed"] == "True"
    assert score(server).json()["pid"] == pid

    r = score(server, {"action": "os_exit"})
    assert r.status_code == 500
    assert json_message(r) == RUN_FAILED_MSG
    assert score(server).json()["pid"] == pid

    log = server.log()
    assert "run() raised KeyError for request req-raise-1" in log
    assert "Traceback" in log and "KeyError: 'fault_actions: run() raised on purpose'" in log
    assert "cannot be encoded as JSON" in log
    assert "run() called os._exit(1); refused, the worker keeps serving" in log
    assert "SystemExit" in log
    assert log.count("fault_actions: init() in pid") == 1  # never restarted
    assert_no_leak(server)


def test_response_json_numpy_encodes_arrays(serve):
    server = serve("fault_actions.py", "--response-json", "numpy")
    r = score(server, {"action": "numpy"})
    assert r.status_code == 200, r.text
    assert r.json() == [0, 1, 2]
    assert r.headers["x-ms-run-function-failed"] == "False"
    r = score(server, {"action": "object"})
    assert r.status_code == 500 and json_message(r) == INTERNAL_MSG


@pytest.mark.parametrize("action, signame", [("segfault", "SIGSEGV"), ("sigkill", "SIGKILL")])
def test_interpreter_crash_in_run_replaces_the_worker(serve, action, signame):
    server = serve("fault_actions.py")
    old_pid = score(server).json()["pid"]
    with pytest.raises(requests.ConnectionError):
        score(server, {"action": action})
    # the next requests wait in the supervisor's backlog until the replacement has run init()
    r = score(server)
    assert r.status_code == 200
    new_pid = r.json()["pid"]
    assert new_pid != old_pid
    assert score(server).json()["pid"] == new_pid
    log = server.log()
    assert f"Worker {old_pid} (#0) died (signal {signame}); starting a replacement" in log
    assert log.count("fault_actions: init() in pid") == 2
    if action == "segfault":
        assert "Segmentation fault" in log  # faulthandler's dump names the crash
    assert metric(server, "openscore_worker_restarts_total", reason="signal") == 1
    assert metric(server, "openscore_worker_restarts_total") == 1
    server.wait_ready(15)
    assert_no_leak(server)


# ---------------------------------------------------------------------------------------------
# 6. limits and protocol errors


def test_body_size_limit_413(serve):
    server = serve("fault_actions.py", "--max-body-bytes", "1000")
    big = json.dumps({"action": "pid", "pad": "x" * 2000}).encode()

    r = requests.post(server.url + "/score", data=big, timeout=HTTP_TIMEOUT)
    assert r.status_code == 413
    msg = json_message(r)
    assert "1000 bytes" in msg and "--max-body-bytes" in msg

    def chunks():
        for i in range(0, len(big), 300):
            yield big[i:i + 300]

    r = requests.post(server.url + "/score", data=chunks(), timeout=HTTP_TIMEOUT)
    assert r.request.headers.get("Transfer-Encoding") == "chunked"
    assert r.status_code == 413
    assert "1000 bytes" in json_message(r)

    # at the limit is fine
    ok = json.dumps({"action": "pid", "pad": "x" * (1000 - len(json.dumps({"action": "pid", "pad": ""})))}).encode()
    assert len(ok) == 1000
    assert requests.post(server.url + "/score", data=ok, timeout=HTTP_TIMEOUT).status_code == 200
    assert_no_leak(server)


def test_header_limits_431(serve):
    server = serve("fault_actions.py")
    r = score(server, headers={"X-Huge": "a" * 9000})
    assert r.status_code == 431
    assert "too large" in json_message(r).lower()

    r = score(server, headers={"x-request-id": "r" * 101})
    assert r.status_code == 431
    assert json_message(r) == "The x-request-id header is longer than 100 characters."
    r = score(server, headers={"x-ms-client-request-id": "c" * 101})
    assert r.status_code == 431
    r = score(server, headers={"x-request-id": "r" * 100})
    assert r.status_code == 200 and r.headers["x-request-id"] == "r" * 100


def test_malformed_request_line_400(serve):
    server = serve("fault_actions.py")
    status, headers, body = parse_raw_response(raw_exchange(server.port, b"THIS IS NOT HTTP\r\n\r\n"))
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["message"].startswith("Bad request")
    assert score(server).status_code == 200


def test_unknown_path_404_and_wrong_method_405(serve):
    server = serve("fault_actions.py")
    r = requests.get(server.url + "/nope", timeout=HTTP_TIMEOUT)
    assert r.status_code == 404
    assert json_message(r).startswith("The requested URL was not found on the server.")
    for method in ("PUT", "DELETE"):
        r = requests.request(method, server.url + "/score", data="{}", timeout=HTTP_TIMEOUT)
        assert r.status_code == 405, method
        assert json_message(r) == "The method is not allowed for the requested URL."
        assert "POST" in r.headers["Allow"]
    assert requests.post(server.url + "/", timeout=HTTP_TIMEOUT).status_code == 405


def test_slow_body_408_while_others_are_served(serve):
    server = serve("fault_actions.py", "--body-read-timeout-s", "1")
    body = json.dumps({"action": "pid", "pad": "y" * 100}).encode()
    head = (f"POST /score HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=HTTP_TIMEOUT) as slow:
        slow.sendall(head + body[: len(body) // 2])  # ... and then nothing
        # another client is served while the slow one stalls (the body read holds no slot)
        r = score(server)
        assert r.status_code == 200
        status, headers, resp_body = parse_raw_response(read_one_response(slow))
    assert status == 408
    assert headers["content-type"].startswith("application/json")
    assert json.loads(resp_body) == {"message": "Timed out reading the request body after 1 s."}
    assert headers["connection"].lower() == "close"
    assert score(server).status_code == 200
    assert_no_leak(server)


# ---------------------------------------------------------------------------------------------
# 7. SIGTERM drains


def test_sigterm_drains_in_flight_requests_then_exits_0(serve, tmp_path):
    server = serve("fault_actions.py", "--graceful-timeout-s", "5")
    release = tmp_path / "release"
    in_flight = in_background(lambda: score(server, {"action": "wait_file", "path": str(release)}))
    wait_for(lambda: slots(server)["busy"] == 1, "the request to be running", server=server)

    server.signal(signal.SIGTERM)

    def refused() -> bool:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
        except ConnectionRefusedError:
            return True
        return False

    wait_for(refused, "new connections to be refused after SIGTERM", server=server)
    # still draining: the in-flight request has not been cut off
    assert server.proc.poll() is None
    assert not in_flight.done()

    release.touch()
    r = in_flight.result(HTTP_TIMEOUT)
    assert r.status_code == 200 and r.json()["released"] is True
    assert r.headers.get("Connection", "").lower() == "close"
    assert server.wait_exit(20) == 0
    log = server.log()
    assert "draining: 1 request(s) in flight" in log
    assert "Server stopped" in log
    assert "did not stop within the grace period" not in log


# ---------------------------------------------------------------------------------------------
# 8. several workers


def test_two_workers_each_init_and_share_metrics(serve, tmp_path):
    gate = tmp_path / "gate"
    gate.mkdir()
    server = serve("fault_gated_init.py", "--workers", "2", env={"FAULT_DIR": str(gate)}, wait=False)
    wait_for(lambda: (gate / "ticket-1").exists(), "both workers to start init()", server=server)

    # release one worker only: the server is not ready until both are
    (gate / "release-0").touch()
    wait_for(lambda: slots(server)["workers_ready"] == 1, "one worker to be ready", server=server)
    for _ in range(5):
        r = requests.get(server.url + "/readyz", timeout=HTTP_TIMEOUT)
        assert r.status_code == 503, r.text
        assert r.json()["reason"] in ("not every worker has finished init()", "init() has not finished")
    assert slots(server)["ready"] is False

    (gate / "release-1").touch()
    server.wait_ready(15)
    assert requests.get(server.url + "/readyz", timeout=HTTP_TIMEOUT).json() == {"status": "ready"}
    s = slots(server)
    assert (s["workers_ready"], s["workers"], s["total"], s["ready"]) == (2, 2, 2, True)

    # both workers answer (which one accepts a connection is up to the kernel: send rounds until both did)
    pids: set[int] = set()
    sent = 0
    deadline = time.monotonic() + 20
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        while len(pids) < 2 and time.monotonic() < deadline:
            responses = list(ex.map(lambda _: score(server), range(8)))
            sent += len(responses)
            for r in responses:
                assert r.status_code == 200
                assert r.json()["inits"] == 1
                pids.add(r.json()["pid"])
    assert len(pids) == 2, f"only {pids} answered {sent} requests"
    tickets = {int((gate / f"ticket-{k}").read_text()) for k in (0, 1)}
    assert pids == tickets

    log = server.log()
    for pid in pids:
        assert log.count(f"fault_gated_init: init() finished in pid {pid}") == 1
    assert log.count("fault_gated_init: init() started") == 2
    # counters from both processes are summed
    assert metric(server, "openscore_requests_total", route="score", status="200") == sent
    assert_no_leak(server)
